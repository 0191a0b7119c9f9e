"""Retraining from scratch on the retained users' interactions: the reference every other method
is measured against, here as a method too (exact, and as slow as training itself).

A fresh recommender of the same architecture (the factory the model records), initialized from
the task's seed, trained by BPR with the task's recipe: with the seed of the run it is, bitwise,
the retrained model `unlearnkit run` keeps in the store.
"""

from __future__ import annotations

import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import MethodConfig, register_method
from unlearnkit.recsys.training import train_recommender
from unlearnkit.store import build_model


class RetrainConfig(MethodConfig):
    """No hyperparameters: the task's recipe is the original's."""


@register_method("retrain", RetrainConfig, modality="recsys")
def retrain(model, task, config: RetrainConfig):
    """Train a fresh recommender of the same architecture on the retained users only."""
    spec = getattr(model, "unlearnkit_factory", None)
    if spec is None:
        raise UnlearnkitError(f"retrain rebuilds the recommender from the factory it records; {type(model).__name__} records none — build it with unlearnkit.recsys.models.create_recommender")
    torch.manual_seed(task.seed)
    fresh = build_model(spec).to(next(model.parameters()).device)
    train_recommender(fresh, task.retain, task.recipe, seed=task.seed, checkpoint=task.checkpoint, description="retrain")
    return fresh
