"""Saved models and the content-addressed cache.

A model is two files: `NAME.safetensors` (weights; never a pickle) and `NAME.json` (the
sidecar: how to rebuild the architecture, the weights' sha256, and whatever metadata made it
— recipe, seed, data fingerprint, metrics, timings, versions). Loading verifies the hash.
The cache keys a model by a hash of everything that made it, so the same inputs load
instead of training again.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import platform
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from unlearnkit import __version__
from unlearnkit.data import cache_dir
from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import TMP_PREFIX, atomic_write_bytes, atomic_write_json, read_json, sha256_file, sha256_json
from unlearnkit.models import create_model

FORMAT = "unlearnkit.model/1"

# The code that decides what weights a recipe, a seed and a dataset produce. The store's address
# includes a digest of it, so a cached model is reused only by the engine that trained it.
ENGINE_MODULES = ("train.py", "reference.py", "models", "data/dataset.py", "data/cifar.py", "data/generic.py", "data/__init__.py")


@functools.cache
def engine_digest(root: Path = Path(__file__).parent, modules: tuple[str, ...] = ENGINE_MODULES) -> str:
    """sha256 over the syntax trees of the engine's modules: a change of code changes it; a
    change of comments or layout does not."""
    files = sorted(f for name in modules for f in ((root / name).rglob("*.py") if (root / name).is_dir() else [root / name]))
    trees = {str(f.relative_to(root)): ast.dump(ast.parse(f.read_text())) for f in files}
    return sha256_json(trees)


def versions() -> dict[str, str]:
    return {"unlearnkit": __version__, "engine": engine_digest()[:16], "torch": torch.__version__, "python": platform.python_version()}


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def build_from_factory(factory: str, kwargs: dict | None = None) -> nn.Module:
    """Call `package.module:function` with `kwargs` (JSON values): how a model that unlearnkit
    did not define is rebuilt. Only the named function runs; nothing is unpickled."""
    module_name, colon, function_name = str(factory).partition(":")
    if not colon or not module_name or not function_name:
        raise UnlearnkitError(f"model factory '{factory}' is not 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UnlearnkitError(f"model factory '{factory}': cannot import {module_name} ({error}); install it or put it on PYTHONPATH") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UnlearnkitError(f"model factory '{factory}': {module_name} has no function {function_name}")
    try:
        model = function(**(kwargs or {}))
    except TypeError as error:
        raise UnlearnkitError(f"model factory '{factory}' rejected its arguments {kwargs or {}} ({error})") from None
    if not isinstance(model, nn.Module):
        raise UnlearnkitError(f"model factory '{factory}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def build_model(spec: dict) -> nn.Module:
    """An untrained network from a sidecar's "model" spec: a registered name, or a factory."""
    if "factory" in spec:
        model = build_from_factory(spec["factory"], spec.get("kwargs"))
        model.unlearnkit_factory = spec
        return model
    return create_model(spec["name"], **spec.get("kwargs", {}))


def model_spec(model: nn.Module, factory: str | None, factory_kwargs: dict | None) -> dict:
    """How the sidecar says to rebuild `model`: a registered name, or a factory."""
    if factory is not None:
        json.dumps(factory_kwargs or {})  # kwargs must be JSON, so that loading needs no pickle
        return {"factory": factory, "kwargs": factory_kwargs or {}}
    if hasattr(model, "spec"):
        return model.spec
    if hasattr(model, "unlearnkit_factory"):  # set by load_model on a factory-built model
        return model.unlearnkit_factory
    raise UnlearnkitError(f"save_model cannot tell how to rebuild {type(model).__name__}; pass factory='package.module:function' (and factory_kwargs) that builds it")


def save_model(model: nn.Module, path: str | Path, *, factory: str | None = None, factory_kwargs: dict | None = None, **metadata: Any) -> Path:
    """Write weights (safetensors) then the sidecar (JSON), each atomically; the sidecar,
    written last, marks completion. A model that `create_model` did not make names its
    `factory` ('package.module:function', called with `factory_kwargs` to rebuild it)."""
    path = Path(path)
    spec = model_spec(model, factory, factory_kwargs)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, safetensors.torch.save(tensors))
    sidecar = {
        "format": FORMAT,
        "model": spec,
        "weights": {"file": path.name, "sha256": sha256_file(path)},
        "versions": versions(),
        **metadata,
    }
    atomic_write_json(sidecar_path(path), sidecar)
    return path


def read_sidecar(path: str | Path) -> dict:
    side = sidecar_path(path)
    meta = read_json(side, "is missing; a model needs its .json sidecar beside the .safetensors file", "the sidecar is damaged")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UnlearnkitError(f"{side} is not an unlearnkit model sidecar (format {meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT})")
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu", *, factory: str | None = None, factory_kwargs: dict | None = None) -> nn.Module:
    """Rebuild and load a saved model (`.safetensors`), in eval mode. With its sidecar beside
    it, the weights are verified against the recorded sha256 and the architecture is rebuilt
    from the sidecar; a bare weights file (a model unlearnkit did not save) needs `factory`."""
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise UnlearnkitError(f"model file {path} does not exist")
    if factory is not None and not sidecar_path(path).is_file():
        spec = {"factory": factory, "kwargs": factory_kwargs or {}}
    else:
        meta = read_sidecar(path)
        expected = meta.get("weights", {}).get("sha256")
        if (actual := sha256_file(path)) != expected:
            raise UnlearnkitError(f"{path} has sha256 {actual[:12]}…, its sidecar records {str(expected)[:12]}…: the weights file was changed or damaged")
        spec = {"factory": factory, "kwargs": factory_kwargs or {}} if factory is not None else meta["model"]
    try:
        state = safetensors.torch.load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UnlearnkitError(f"{path} is not a readable safetensors file ({error})") from None
    model = build_model(spec)
    label = spec.get("factory") or spec["name"]
    expected_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, tensor in state.items():
        if key in expected_shapes and tuple(tensor.shape) != expected_shapes[key]:
            raise UnlearnkitError(f"{path}: tensor {key} has shape {tuple(tensor.shape)} but {label} expects {expected_shapes[key]}")
    if missing := sorted(set(expected_shapes) - set(state)):
        raise UnlearnkitError(f"{path} lacks tensor {missing[0]} of {label}; the file is for another architecture")
    if unexpected := sorted(set(state) - set(expected_shapes)):
        raise UnlearnkitError(f"{path} has tensor {unexpected[0]} that {label} does not; the file is for another architecture")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UnlearnkitError(f"{path}: tensor {key} holds NaN or inf; the model is unusable")
    model.load_state_dict(state)
    return model.to(device, memory_format=torch.channels_last).eval()


class Store:
    """Models cached under a content address: `root/models/<key>/model.safetensors`."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else cache_dir() / "store"

    def key(self, **inputs: Any) -> str:
        """`<inputs>-<engine>`: a hash of what made the model, then of the code that trained it."""
        return f"{sha256_json(inputs)[:16]}-{engine_digest()[:8]}"

    def stale(self, key: str) -> list[Path]:
        """Models made from the same inputs by another engine (older code): never reused."""
        inputs = key.rpartition("-")[0]
        return [p for p in sorted((self.root / "models").glob(f"{inputs}-*/model.safetensors")) if p.parent.name != key]

    def path(self, key: str) -> Path:
        return self.root / "models" / key / "model.safetensors"

    def find(self, key: str) -> Path | None:
        path = self.path(key)
        return path if path.is_file() and sidecar_path(path).is_file() else None

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold entry `key` alone: a file lock, so that processes and machines sharing the store
        folder (a shared filesystem with POSIX locks) never make the same model twice. Once held,
        temporary files that a killed writer left in the entry are removed; a killed holder's
        lock is released by the operating system."""
        from filelock import FileLock

        folder = self.path(key).parent
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(folder / ".lock"):
            for leftover in folder.glob(f"{TMP_PREFIX}*"):
                leftover.unlink(missing_ok=True)
            yield
