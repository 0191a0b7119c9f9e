"""Saved models and the content-addressed cache.

A model is two files: `NAME.safetensors` (weights; never a pickle) and `NAME.json` (the
sidecar: how to rebuild the architecture, the weights' sha256, and whatever metadata made it
— recipe, seed, data fingerprint, metrics, timings, versions). Loading verifies the hash.
The cache keys a model by a hash of everything that made it, so the same inputs load
instead of training again.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

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


def versions() -> dict[str, str]:
    return {"unlearnkit": __version__, "torch": torch.__version__, "python": platform.python_version()}


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def save_model(model: nn.Module, path: str | Path, **metadata: Any) -> Path:
    """Write weights then sidecar, each atomically; the sidecar (written last) marks completion."""
    path = Path(path)
    if not hasattr(model, "spec"):
        raise UnlearnkitError("save_model needs a model made by unlearnkit.create_model (it records how to rebuild it)")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, safetensors.torch.save(tensors))
    sidecar = {
        "format": FORMAT,
        "model": model.spec,
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


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild and load a saved model (`.safetensors`, sidecar beside it), hash-verified, in eval mode."""
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise UnlearnkitError(f"model file {path} does not exist")
    meta = read_sidecar(path)
    expected = meta.get("weights", {}).get("sha256")
    if (actual := sha256_file(path)) != expected:
        raise UnlearnkitError(f"{path} has sha256 {actual[:12]}…, its sidecar records {str(expected)[:12]}…: the weights file was changed or damaged")
    try:
        state = safetensors.torch.load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UnlearnkitError(f"{path} is not a readable safetensors file ({error})") from None
    spec = meta["model"]
    model = create_model(spec["name"], **spec.get("kwargs", {}))
    expected_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, tensor in state.items():
        if key in expected_shapes and tuple(tensor.shape) != expected_shapes[key]:
            raise UnlearnkitError(f"{path}: tensor {key} has shape {tuple(tensor.shape)} but {spec['name']} expects {expected_shapes[key]}")
    if missing := sorted(set(expected_shapes) - set(state)):
        raise UnlearnkitError(f"{path} lacks tensor {missing[0]} of {spec['name']}; the file is for another architecture")
    if unexpected := sorted(set(state) - set(expected_shapes)):
        raise UnlearnkitError(f"{path} has tensor {unexpected[0]} that {spec['name']} does not; the file is for another architecture")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UnlearnkitError(f"{path}: tensor {key} holds NaN or inf; the model is unusable")
    model.load_state_dict(state)
    return model.to(device, memory_format=torch.channels_last).eval()


class Store:
    """Models cached under a content address: `root/models/<key>/model.safetensors`."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else cache_dir() / "store"
        self.clean_temporaries()

    def key(self, **inputs: Any) -> str:
        return sha256_json({**inputs, "unlearnkit": __version__})[:24]

    def path(self, key: str) -> Path:
        return self.root / "models" / key / "model.safetensors"

    def find(self, key: str) -> Path | None:
        path = self.path(key)
        return path if path.is_file() and sidecar_path(path).is_file() else None

    def clean_temporaries(self) -> None:
        """Remove temporary files that a killed process left behind."""
        models = self.root / "models"
        if models.is_dir():
            for leftover in models.glob(f"*/{TMP_PREFIX}*"):
                leftover.unlink(missing_ok=True)
