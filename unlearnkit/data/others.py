"""Readers for the other datasets of the unlearning literature, in their official layouts:

- CIFAR-100: the python release (`train`, `test`, `meta`, read through the same restricted
  unpickler as CIFAR-10's) or the binary one (`train.bin`, `test.bin`, `fine_label_names.txt`,
  `coarse_label_names.txt`); its tarball `cifar-100-python.tar.gz` is md5-checked. Labels are
  the 100 fine classes; the 20 coarse ones ride along (`Dataset.coarse_train_y`, ...,
  `coarse_classes`) for sub-class scenarios.
- MNIST and Fashion-MNIST: the idx files (`train-images-idx3-ubyte`, ..., gzipped or not).
  The two share the format; Fashion-MNIST is recognised by a `fashion` in the folder's name or
  by its files' published md5s, which name its classes.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from pathlib import Path

import numpy as np

from unlearnkit.data.cifar import RECORD_BYTES, BatchUnpickler, require_file
from unlearnkit.data.dataset import Dataset
from unlearnkit.errors import UnlearnkitError

CIFAR100_TARBALL = ("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python")
CIFAR100_RECORD = RECORD_BYTES + 1  # coarse label, fine label, 3072 pixels

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# the published md5 of Fashion-MNIST's gzipped training images: how a folder not named
# "fashion" is still recognised
FASHION_TRAIN_IMAGES_GZ_MD5 = "8d4fb7e6c68d591d4c3dfef9ec88bf0d"


def is_cifar100(path: Path) -> bool:
    return (path / "train.bin").is_file() or ((path / "train").is_file() and (path / "meta").is_file())


def _unpickle(path: Path) -> dict:
    try:
        with open(require_file(path), "rb") as f:
            value = BatchUnpickler(f, encoding="bytes").load()
    except (Exception,) as error:  # the unpickler's refusals and any malformed stream
        raise UnlearnkitError(f"{path} is not a readable CIFAR-100 python file ({type(error).__name__}: {error})") from None
    if not isinstance(value, dict):
        raise UnlearnkitError(f"{path} holds a {type(value).__name__}, not a CIFAR-100 dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in value.items()}


def _names(values) -> tuple[str, ...]:
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)


def read_cifar100(folder: Path) -> Dataset:
    if (folder / "train.bin").is_file():
        fine = tuple(n for n in require_file(folder / "fine_label_names.txt").read_text().splitlines() if n.strip())
        coarse = tuple(n for n in require_file(folder / "coarse_label_names.txt").read_text().splitlines() if n.strip())
        parts = [_binary_part(folder / name) for name in ("train.bin", "test.bin")]
        layout = "cifar100-binary"
    else:
        meta = _unpickle(folder / "meta")
        fine, coarse = _names(meta.get("fine_label_names", [])), _names(meta.get("coarse_label_names", []))
        parts = [_python_part(folder / name) for name in ("train", "test")]
        layout = "cifar100-python"
    (train_x, train_fine, train_coarse), (test_x, test_fine, test_coarse) = parts
    if len(fine) != 100 or len(coarse) != 20:
        raise UnlearnkitError(f"{folder}: expected 100 fine and 20 coarse class names, found {len(fine)} and {len(coarse)}")
    return Dataset(train_x, train_fine, test_x, test_fine, classes=fine, source=str(folder), layout=layout,
                   coarse_train_y=train_coarse, coarse_test_y=test_coarse, coarse_classes=coarse)


def _binary_part(path: Path):
    raw = np.fromfile(require_file(path), dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR100_RECORD:
        raise UnlearnkitError(f"{path} holds {raw.size} bytes, not a whole number of {CIFAR100_RECORD}-byte records: the file is truncated or not a CIFAR-100 batch")
    records = raw.reshape(-1, CIFAR100_RECORD)
    return records[:, 2:].reshape(-1, 3, 32, 32).copy(), records[:, 1].astype(np.int64), records[:, 0].astype(np.int64)


def _python_part(path: Path):
    part = _unpickle(path)
    if not {"data", "fine_labels", "coarse_labels"} <= set(part):
        raise UnlearnkitError(f"{path} lacks 'data', 'fine_labels' or 'coarse_labels' of a CIFAR-100 file")
    data = np.asarray(part["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UnlearnkitError(f"{path} 'data' has shape {data.shape} and dtype {data.dtype}; expected (N, 3072) uint8")
    return data.reshape(-1, 3, 32, 32), np.asarray(part["fine_labels"], dtype=np.int64), np.asarray(part["coarse_labels"], dtype=np.int64)


def extract_cifar100(tarball: Path, into: Path) -> Path:
    name, md5, folder = CIFAR100_TARBALL
    digest = hashlib.md5(tarball.read_bytes()).hexdigest()
    if digest != md5:
        raise UnlearnkitError(f"{tarball} has md5 {digest}, expected {md5}: the file is corrupt; delete it and fetch it again")
    with tarfile.open(tarball, "r:gz") as archive:
        archive.extractall(into, filter="data")
    return into / folder


def idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def is_idx(path: Path) -> bool:
    return idx_file(path, IDX_FILES[0]) is not None


def read_idx_array(path: Path, dims: int) -> np.ndarray:
    """An idx file: a big-endian header (magic 0x0000 08 dims, then each size) and uint8 data."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 + 4 * dims or raw[:4] != bytes([0, 0, 8, dims]):
        raise UnlearnkitError(f"{path} is not an idx file of {dims}-dimensional uint8 data (its header reads {raw[:4].hex()}, expected 000008{dims:02x})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise UnlearnkitError(f"{path} declares shape {shape} but holds {data.size} values: the file is truncated")
    return data.reshape(shape)


def read_idx(folder: Path) -> Dataset:
    files = {}
    for stem in IDX_FILES:
        if (found := idx_file(folder, stem)) is None:
            raise UnlearnkitError(f"missing file {folder / stem}(.gz); the MNIST layout needs all four idx files")
        files[stem] = found
    train_x, train_y, test_x, test_y = (read_idx_array(files[stem], 3 if "images" in stem else 1) for stem in IDX_FILES)
    images = files[IDX_FILES[0]]
    fashion = "fashion" in str(folder).lower() or (images.suffix == ".gz" and hashlib.md5(images.read_bytes()).hexdigest() == FASHION_TRAIN_IMAGES_GZ_MD5)
    classes = FASHION_CLASSES if fashion else tuple(str(d) for d in range(10))
    return Dataset(train_x[:, None].copy(), train_y.astype(np.int64), test_x[:, None].copy(), test_y.astype(np.int64), classes=classes,
                   source=str(folder), layout="fashion-mnist-idx" if fashion else "mnist-idx")
