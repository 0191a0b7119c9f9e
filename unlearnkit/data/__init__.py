"""Finding and reading a dataset: `--data PATH` → `UNLEARNKIT_DATA` → the cache folder.

The layout is detected from what is there: CIFAR-10 binary or python batches (or a folder
holding them), an official tarball, CIFAR-100 (python or binary), MNIST / Fashion-MNIST idx
files, image folders, or an .npz file. An empty cache folder
triggers a download of the official binary release. `sklearn:NAME` names a table bundled with
scikit-learn, read as rows of floats (`unlearnkit.data.tables`).
"""

from __future__ import annotations

import os
from pathlib import Path

from unlearnkit.data import cifar, others, tables
from unlearnkit.data.dataset import Dataset
from unlearnkit.data.generic import read_folders, read_npz
from unlearnkit.errors import UnlearnkitError

__all__ = ["Dataset", "load_dataset", "resolve_data_path", "cache_dir"]

DATA_ENV = "UNLEARNKIT_DATA"
CACHE_ENV = "UNLEARNKIT_CACHE"


def cache_dir() -> Path:
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "unlearnkit"


def resolve_data_path(data: str | Path | None = None) -> tuple[Path, bool]:
    """The data location and whether it is the default (the only place we download into)."""
    if data:
        return Path(data).expanduser(), False
    if env := os.environ.get(DATA_ENV):
        return Path(env).expanduser(), False
    return cache_dir() / "cifar10", True


def _detect(path: Path) -> Dataset | None:
    if path.is_file():
        if path.suffix == ".npz":
            return read_npz(path)
        if path.name == others.CIFAR100_TARBALL[0]:
            return _detect(others.extract_cifar100(path, path.parent))
        if path.name.endswith(".tar.gz"):
            return _detect(cifar.extract_tarball(path, path.parent))
        raise UnlearnkitError(f"{path} is a file of an unknown kind; give a .npz file, an official tarball or a folder")
    if others.is_cifar100(path):
        return others.read_cifar100(path)
    if others.is_idx(path):
        return others.read_idx(path)
    if (path / others.CIFAR100_TARBALL[2]).is_dir():
        return _detect(path / others.CIFAR100_TARBALL[2])
    if (path / others.CIFAR100_TARBALL[0]).is_file():
        return _detect(others.extract_cifar100(path / others.CIFAR100_TARBALL[0], path))
    if (path / "data_batch_1.bin").exists() or (path / "batches.meta.txt").exists():
        return cifar.read_binary(path)
    if (path / "data_batch_1").exists() or (path / "batches.meta").exists():
        return cifar.read_python(path)
    for _, _, folder in cifar.TARBALLS.values():
        if (path / folder).is_dir():
            return _detect(path / folder)
    for tarball, _, _ in cifar.TARBALLS.values():
        if (path / tarball).is_file():
            return _detect(cifar.extract_tarball(path / tarball, path))
    if (path / "train").is_dir() and (path / "test").is_dir():
        return read_folders(path)
    return None


COARSE_SUFFIX = "#coarse"


def load_dataset(data: str | Path | None = None) -> Dataset:
    """The dataset at `data` (see `_detect` for the layouts read). A CIFAR-100 location ending
    in `#coarse` is read with its 20 superclasses as labels, the 100 fine classes as sub-classes."""
    if isinstance(data, str) and data.endswith(COARSE_SUFFIX):
        return load_dataset(data.removesuffix(COARSE_SUFFIX)).superclasses()
    if tables.names_a_table(data):
        return tables.read_table(data)
    path, is_default = resolve_data_path(data)
    if not path.exists() and not is_default:
        raise UnlearnkitError(f"data path {path} does not exist; {cifar.HOW_TO_POINT}")
    if path.exists() and (dataset := _detect(path)) is not None:
        return dataset
    if is_default:
        return _detect(cifar.download(path))
    raise UnlearnkitError(
        f"no dataset found in {path}: expected CIFAR-10 or CIFAR-100 files (binary or python), an official "
        "tarball, MNIST idx files, train/ and test/ image folders, or an .npz file"
    )
