"""SISA (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021): exact deletion from an ensemble
trained by `unlearnkit.sisa` (sharded, sliced training), whose module holds the Reference block.

The method does not approximate: each shard that held a forget image is retrained from the
weights kept before the first slice that held one, and ends bitwise as if trained without it;
the other shards are untouched. It reads the retain images only (the forget images are never
read), and needs the ensemble and the training ids of the task's images.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import MethodConfig, register_method
from unlearnkit.models.interface import model_name
from unlearnkit.progress import say
from unlearnkit.sisa import SisaEnsemble, TrainingImages, delete
from unlearnkit.store import Store

HOW_TO_GET_ONE = "train one with `unlearnkit train --role original --shards S --slices R` (`unlearnkit run --methods sisa` does)"


class SisaConfig(MethodConfig):
    """The layout of the original ensemble that `unlearnkit run` trains for this method; an
    ensemble handed in must have it."""

    shards: int = Field(4, ge=1, description="shard models, each trained on its own part of the data")
    slices: int = Field(4, ge=1, description="slices per shard: its weights are kept after each, so a deletion retrains from the first slice it touches")
    aggregate: Literal["vote", "mean"] = Field("vote", description="vote (the share of shards predicting each class, the reference's) or mean (their mean probabilities)")


@register_method("sisa", SisaConfig)
def sisa(model, task, config: SisaConfig):
    """SISA: exact deletion from a sharded, sliced ensemble, retraining only the shards that held a
    forget image from the slice that first held one."""
    if not isinstance(model, SisaEnsemble):
        raise UnlearnkitError(f"sisa deletes from a SISA ensemble, not a {model_name(model)}; {HOW_TO_GET_ONE}")
    if task.forget_ids is None or task.retain_ids is None:
        raise UnlearnkitError(f"sisa needs the training ids of the forget and retain images (Task.from_split sets forget_ids and retain_ids); {HOW_TO_GET_ONE}")
    layout = (len(model.layout), len(model.layout[0]))
    if layout != (config.shards, config.slices):
        raise UnlearnkitError(f"sisa: the ensemble has {layout[0]} shards × {layout[1]} slices but the config asks for {config.shards} × {config.slices}; set sisa.shards and sisa.slices to match")
    held = model.ids
    if (strangers := np.setdiff1d(task.forget_ids, held).size):
        raise UnlearnkitError(f"sisa: {strangers} forget ids are not among the ensemble's training ids; it was trained on another pool — {HOW_TO_GET_ONE} on this split")
    if (unseen := np.setdiff1d(np.setdiff1d(held, task.forget_ids), task.retain_ids).size):
        raise UnlearnkitError(f"sisa: the ensemble trained on {unseen} ids that are in neither the task's forget nor its retain set; give the split it was trained on")
    device = next(model.parameters()).device
    images = TrainingImages.of(np.asarray(task.retain_ids), task.retain.x, task.retain.y, model.store or Store(), device)
    deletion = delete(model, task.forget_ids, images)
    restarts = ", ".join(f"shard {run.shard + 1} from slice {run.first_slice + 1}" for run in deletion.runs)
    say(f"sisa: {deletion.removed} ids deleted; retrained {len(deletion.runs)} of {len(model.shards)} shards ({restarts}) in {deletion.seconds:.1f}s")
    model.aggregate = config.aggregate
    return model
