"""The reference models of an experiment: the original (trained on forget + retain) and the
retrained gold standard (trained from scratch on the retain set only), through the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from torch import nn

from unlearnkit.data import Dataset
from unlearnkit.data.splits import Split
from unlearnkit.fileio import sha256_arrays
from unlearnkit.models import create_model_for
from unlearnkit.presets import Preset
from unlearnkit.progress import say
from unlearnkit.errors import UnlearnkitError
from unlearnkit.store import Store, build_from_factory, load_model, read_sidecar, save_model
from unlearnkit.train import Checkpoint, Source, accuracy, default_device, fit, resolve_precision

Role = Literal["original", "retrain", "subset"]  # subset: trained on `split.retain`, a part of the pool (unlearnkit.worstcase)


@dataclass
class Reference:
    role: Role
    model: nn.Module
    path: Path
    meta: dict
    cached: bool

    @property
    def seconds(self) -> float:
        return self.meta["timings"]["train_seconds"]

    def logits_cache(self, split: Split) -> Path:
        """Where this model's logits for `split` are kept, beside it in the store."""
        return self.path.parent / f"logits-{split.fingerprint[:16]}.npz"


def training_indices(role: Role, split: Split) -> np.ndarray:
    return np.sort(np.concatenate([split.forget, split.retain])) if role == "original" else split.retain


def net_maker(preset: Preset, dataset: Dataset) -> Callable[[], nn.Module]:
    """What builds the preset's network for `dataset`: a registered model sized for the data
    (classes, channels, image size, normalization), or the preset's own factory."""
    spec = preset.model
    if spec.factory:
        return lambda: build_from_factory(spec.factory, spec.kwargs)
    return lambda: create_model_for(spec.name, dataset, **spec.kwargs)


def train_reference(
    role: Role, dataset: Dataset, split: Split, preset: Preset, seed: int, store: Store, device: torch.device | None = None,
    make_net: Callable[[], nn.Module] | None = None,
) -> Reference:
    """Load the model from the store when the same inputs made it before; train it otherwise.
    `make_net` builds the untrained network (default: `net_maker(preset, dataset)`); one passed
    in must be a module-level function, which the store records to rebuild the model."""
    device = device or default_device()
    indices = training_indices(role, split)
    factory = None
    if make_net is not None:
        factory = f"{make_net.__module__}:{make_net.__qualname__}"
        if "<" in make_net.__qualname__:
            raise UnlearnkitError(f"make_net {factory} is not a module-level function; the store must be able to import it to rebuild the model")
    elif preset.model.factory:
        factory = preset.model.factory
    make_net = make_net or net_maker(preset, dataset)
    key = store.key(
        data=dataset.fingerprint,
        train_indices=sha256_arrays(indices),
        model={**preset.model.model_dump(), "factory": factory},
        recipe={**preset.recipe.model_dump(), "precision": resolve_precision(preset.recipe.precision, device)},
        seed=seed,
    )
    if path := store.find(key):
        say(f"[dim]{role}: loaded from the cache ({path})[/dim]")
        return Reference(role, load_model(path, device), path, read_sidecar(path), cached=True)
    with store.lock(key):  # another process making the same model: wait for it, then load it
        if path := store.find(key):
            say(f"[dim]{role}: made by another process while this one waited ({path})[/dim]")
            return Reference(role, load_model(path, device), path, read_sidecar(path), cached=True)
        if store.stale(key):
            say(f"[yellow]{role}: the cached model was trained by an older engine (the training code changed since); training again[/yellow]")

        torch.manual_seed(seed)
        model = make_net().to(device, memory_format=torch.channels_last)
        if factory:  # copies of it (unlearned models) are saved with the same recipe for rebuilding
            model.unlearnkit_factory = {"factory": factory, "kwargs": preset.model.kwargs if factory == preset.model.factory else {}}
        source = Source.take(dataset.train_x, dataset.train_y, indices, device)
        # a killed run leaves its checkpoint beside where the model will go; the same command resumes it
        checkpoint = Checkpoint(store.path(key).parent / "checkpoint.safetensors", key=key)
        report = fit(model, source, preset.recipe, seed=seed, description=f"{role} ({preset.name})", checkpoint=checkpoint)
        seconds = report.seconds  # training time, including the part before any crash
        metrics = {
            "train_acc": accuracy(model, dataset.train_x[indices], dataset.train_y[indices]),
            "test_acc": accuracy(model, dataset.test_x[split.test], dataset.test_y[split.test]),
        }
        path = save_model(
            model,
            store.path(key),
            role=role,
            preset=preset.name,
            recipe=preset.recipe.model_dump(),
            seed=seed,
            data_fingerprint=dataset.fingerprint,
            split_fingerprint=split.fingerprint,
            trained_on=int(indices.size),
            metrics=metrics,
            timings={"train_seconds": seconds, "images_per_second": report.images_per_second, "device": str(device)},
        )
    return Reference(role, model, path, read_sidecar(path), cached=False)
