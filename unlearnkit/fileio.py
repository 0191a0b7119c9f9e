"""Atomic file writes and content hashes.

Every artifact goes to a temporary name in the destination folder, is fsynced, then renamed
over the final name, so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from unlearnkit.errors import UnlearnkitError

TMP_PREFIX = ".unlearnkit-tmp-"


def default_file_mode() -> int:
    """The permissions `open(path, "w")` would give a new file: 0666 less the process umask
    (mkstemp's own 0600 would hide every artifact from other accounts, e.g. a serving one)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def jsonable(value):
    """`value` with numpy scalars as Python numbers, tuples as lists, keys as strings and NaN as
    None, so that `json.dumps` writes it and every reader parses it."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """Write `data` to `path` so that a crash or a full disk leaves the previous file (or none),
    never part of the new one; its permissions are `mode` (default: as `open` would give). A
    failed write is one-line UnlearnkitError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    except OSError as error:
        raise UnlearnkitError(f"cannot write {path}: {error.strerror or error}; choose a writable output folder") from None
    try:
        os.fchmod(fd, default_file_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise UnlearnkitError(f"cannot write {path}: {error.strerror or error}; nothing was changed there — free some space or choose another folder") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-able object, independent of key order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sha256_arrays(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


MANIFEST = "manifest.json"


def write_manifest(folder: str | Path) -> Path:
    """Record the sha256 of every file under `folder` (but the manifest itself and temporaries)
    in `folder/manifest.json`, so that a reader can tell a damaged or edited artifact."""
    folder = Path(folder)
    files = {
        str(path.relative_to(folder)): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST and not path.name.startswith(TMP_PREFIX)
    }
    return atomic_write_json(folder / MANIFEST, {"format": "unlearnkit.manifest/1", "sha256": files})


def read_json(path: Path, missing: str, damaged: str) -> Any:
    """JSON from `path`; one-line errors: '<path> <missing>' when absent, and when unreadable
    '<path> is not valid JSON (why); <damaged>'."""
    if not path.is_file():
        raise UnlearnkitError(f"{path} {missing}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UnlearnkitError(f"{path} is not valid JSON ({error}); {damaged}") from None


def read_manifest(folder: Path) -> dict[str, str]:
    """File name → sha256 from `folder/manifest.json`; a damaged manifest is a one-line error."""
    manifest = folder / MANIFEST
    try:
        return json.loads(manifest.read_text())["sha256"]
    except (ValueError, KeyError, TypeError):
        raise UnlearnkitError(f"{manifest} is damaged (not a manifest); rerun the command that wrote {folder}") from None


def verify_file(path: str | Path) -> None:
    """Check `path` against the manifest of its folder or of one above it, when there is one;
    a mismatch is a one-line error."""
    path = Path(path).resolve()
    for folder in path.parents:
        if (folder / MANIFEST).is_file():
            recorded = read_manifest(folder)
            key = str(path.relative_to(folder))
            if key in recorded and sha256_file(path) != recorded[key]:
                raise UnlearnkitError(f"{path} does not match the sha256 its manifest {folder / MANIFEST} records: the file was changed or damaged")
            return


def verify_folder(folder: str | Path) -> int:
    """Check every file the folder's manifest lists; returns how many were checked."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise UnlearnkitError(f"{folder} has no {MANIFEST}; only folders written by `unlearnkit run` or `forget` can be verified")
    recorded = read_manifest(folder)
    for name, digest in recorded.items():
        path = folder / name
        if not path.is_file():
            raise UnlearnkitError(f"{path} is missing; its manifest lists it")
        if sha256_file(path) != digest:
            raise UnlearnkitError(f"{path} does not match the sha256 its manifest records: the file was changed or damaged")
    return len(recorded)


def remove_temporaries(folder: str | Path) -> int:
    """Delete temporary files that killed writes left anywhere under `folder`."""
    leftovers = list(Path(folder).rglob(f"{TMP_PREFIX}*")) if Path(folder).is_dir() else []
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return len(leftovers)
