"""SISA for recommenders: exact deletion from a user-sharded ensemble (`unlearnkit.recsys.sisa`),
retraining only the shards that held a deleted user, each from scratch on its remaining users.

It reads the retained users' interactions only (the deleted users' are never read) and needs
the ensemble, trained with the task's recipe (the shards are retrained with it), and the task's
deleted and kept user ids (`forget_ids`, `retain_ids`).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import MethodConfig, register_method
from unlearnkit.progress import say
from unlearnkit.recsys.sisa import UserShards, delete_users

HOW_TO_GET_ONE = "train one with unlearnkit.recsys.sisa.train_user_shards (`unlearnkit run --preset recsys-… --methods sisa` does)"


class RecsysSisaConfig(MethodConfig):
    """The layout of the original ensemble that `unlearnkit run` trains for this method; an
    ensemble handed in must have it."""

    shards: int = Field(4, ge=1, description="shard recommenders, each trained on its own users' interactions only")


@register_method("sisa", RecsysSisaConfig, modality="recsys")
def sisa(model, task, config: RecsysSisaConfig):
    """SISA: exact deletion from a user-sharded ensemble, retraining only the shards that held a
    deleted user."""
    if not isinstance(model, UserShards):
        raise UnlearnkitError(f"sisa deletes from a user-sharded ensemble, not a {type(model).__name__}; {HOW_TO_GET_ONE}")
    if len(model.models) != config.shards:
        raise UnlearnkitError(f"sisa: the ensemble has {len(model.models)} shards but the config asks for {config.shards}; set sisa.shards to match")
    if task.forget_ids is None or task.retain_ids is None:
        raise UnlearnkitError(f"sisa needs the task's deleted and kept user ids (forget_ids, retain_ids); {HOW_TO_GET_ONE}")
    held = model.holds.any(0).nonzero().squeeze(1).cpu().numpy()
    if (strangers := np.setdiff1d(task.forget_ids, held)).size:
        raise UnlearnkitError(f"sisa: user {strangers[0]} of the request is not among the ensemble's training users; it was trained on another log — {HOW_TO_GET_ONE}")
    if (unknown := np.setdiff1d(np.setdiff1d(held, task.forget_ids), task.retain_ids)).size:
        raise UnlearnkitError(f"sisa: the ensemble trained on user {unknown[0]}, who is neither deleted nor kept by the task; give the split it was trained on")
    deletion = delete_users(model, task.forget_ids, task.retain, task.recipe, task.checkpoint)
    say(f"sisa: {len(task.forget_ids)} users deleted; retrained {len(deletion.shards)} of {len(model.models)} shards in {deletion.seconds:.1f}s")
    return model
