"""Readers for CIFAR-10's official layouts: the binary batches, the python (pickle) batches,
and the official tarballs, downloaded with an md5 check when none is present."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from unlearnkit.data.dataset import Dataset
from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import atomic_write_bytes

TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
RECORD_BYTES = 1 + 3 * 32 * 32

# The official release (https://www.cs.toronto.edu/~kriz/cifar.html) and its published md5s.
TARBALLS = {
    "binary": ("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", "cifar-10-batches-bin"),
    "python": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py"),
}
DOWNLOAD_ROOT = "https://www.cs.toronto.edu/~kriz/"
HOW_TO_POINT = "pass --data PATH or set UNLEARNKIT_DATA to a local copy of CIFAR-10"


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise UnlearnkitError(f"missing file {path}; the official layout needs it ({HOW_TO_POINT})")
    return path


def read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(require_file(path), dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise UnlearnkitError(
            f"{path} holds {raw.size} bytes, not a whole number of {RECORD_BYTES}-byte records: "
            "the file is truncated or not a CIFAR-10 batch; fetch it again"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), records[:, 0].astype(np.int64)


def read_binary(folder: Path) -> Dataset:
    names = [line.strip() for line in require_file(folder / "batches.meta.txt").read_text().splitlines()]
    classes = tuple(name for name in names if name)
    batches = [read_binary_batch(folder / f"{batch}.bin") for batch in [*TRAIN_BATCHES, TEST_BATCH]]
    return _assemble(batches, classes, folder, "cifar10-binary")


def _assemble(batches: list[tuple[np.ndarray, np.ndarray]], classes, folder: Path, layout: str) -> Dataset:
    """Five training batches then the test batch, as one Dataset."""
    *train, (test_x, test_y) = batches
    return Dataset(
        train_x=np.concatenate([x for x, _ in train]),
        train_y=np.concatenate([y for _, y in train]),
        test_x=test_x,
        test_y=test_y,
        classes=tuple(classes),
        source=str(folder),
        layout=layout,
    )


class BatchUnpickler(pickle.Unpickler):
    """Admits only what CIFAR's python batches are made of: dicts, lists, bytes and numpy
    arrays. Anything else (os.system, eval, ...) is refused before it can run."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")


def read_python_batch(path: Path) -> dict:
    try:
        with open(require_file(path), "rb") as f:
            batch = BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise UnlearnkitError(f"{path} is not a readable CIFAR-10 python batch ({error})") from None
    if not isinstance(batch, dict):
        raise UnlearnkitError(f"{path} holds a {type(batch).__name__}, not a CIFAR-10 batch dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _python_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = read_python_batch(path)
    if "data" not in batch or "labels" not in batch:
        raise UnlearnkitError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UnlearnkitError(
            f"{path} 'data' has shape {data.shape} and dtype {data.dtype}; expected (N, 3072) uint8"
        )
    return data.reshape(-1, 3, 32, 32), np.asarray(batch["labels"], dtype=np.int64)


def read_python(folder: Path) -> Dataset:
    meta = read_python_batch(folder / "batches.meta")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", []))
    batches = [_python_split(folder / batch) for batch in [*TRAIN_BATCHES, TEST_BATCH]]
    return _assemble(batches, classes, folder, "cifar10-python")


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def extract_tarball(tarball: Path, into: Path) -> Path:
    """Verify an official tarball's md5 and extract it; returns the batches folder."""
    for kind, (name, md5, folder) in TARBALLS.items():
        if tarball.name == name:
            break
    else:
        raise UnlearnkitError(f"{tarball.name} is not an official CIFAR-10 tarball ({', '.join(t[0] for t in TARBALLS.values())})")
    actual = md5_of(tarball)
    if actual != md5:
        raise UnlearnkitError(f"{tarball} has md5 {actual}, expected {md5}: the file is corrupt; delete it and fetch it again")
    with tarfile.open(tarball, "r:gz") as archive:
        archive.extractall(into, filter="data")
    return into / folder


def download(into: Path, kind: str = "binary") -> Path:
    """Fetch the official tarball into `into` with md5 verification; returns its path."""
    name, md5, _ = TARBALLS[kind]
    url = DOWNLOAD_ROOT + name
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            payload = io.BytesIO()
            while block := response.read(1 << 20):
                payload.write(block)
    except OSError as error:
        reason = getattr(error, "reason", error)
        raise UnlearnkitError(f"no CIFAR-10 found in {into} and downloading {url} failed ({reason}); {HOW_TO_POINT}") from None
    if hashlib.md5(payload.getvalue()).hexdigest() != md5:
        raise UnlearnkitError(f"the download of {url} does not match its md5 {md5}; try again later or {HOW_TO_POINT}")
    return atomic_write_bytes(into / name, payload.getvalue())
