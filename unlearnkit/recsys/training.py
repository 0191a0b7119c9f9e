"""Training recommenders through `unlearnkit.train.fit`: the BPR loss as a `loss=` hook.

The loss is BPR (Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback",
UAI 2009): for each training pair (u, i) one negative item j drawn uniformly from the catalogue,
loss −log σ(s(u, i) − s(u, j)). Why BPR: the evidence is ranking (recall@k, NDCG@k, the rank of
an item in a user's list), and BPR optimizes exactly a user's ranking of their items above the
others (a smoothed AUC); it needs no calibrated probabilities, and its cost per step does not
grow with the catalogue, unlike a full softmax. A uniform negative is now and then an item the
user did interact with; at one in items/per_user draws that noise is left in, as in the paper.

Negatives are drawn from a generator seeded by (seed, step, source): a run is the same bitwise
for a seed, and a run resumed from a checkpoint draws the same negatives as one never stopped.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.train import Checkpoint, FitReport, Recipe, Source, TrainState, fit


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the body with one torch thread (on the CPU). A recommender's step is a few small
    gathers and matrix products: split over threads, they wait on each other longer than they
    compute (on the 2-core CPU under load, 2 threads trained the smoke preset 6× slower than 1,
    to the same weights)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """A generator for one step's negatives: from the seed, the step and a salt (one per source)."""
    return torch.Generator().manual_seed((seed % 2**31) * 2**32 + step * 16 + salt)


def bpr_margins(model: nn.Module, users: torch.Tensor, positives: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """s(u, i) − s(u, j) for each pair (u, i) and a uniformly drawn negative item j."""
    negatives = torch.randint(0, model.num_items, positives.shape, generator=generator).to(positives.device)
    return model.score(users, positives) - model.score(users, negatives)


def bpr_loss(seed: int, source: str = "data"):
    """A `fit` loss: mean BPR loss over the batch of `source`, counting how many positives
    outscore their negative (the progress line's "acc")."""

    def loss(model: nn.Module, batch, state: TrainState) -> torch.Tensor:
        users, positives = batch[source]
        margins = bpr_margins(model, users, positives, step_generator(seed, state.step))
        state.correct += int((margins > 0).sum())
        state.seen += len(margins)
        return -F.logsigmoid(margins).mean()

    return loss


def train_recommender(model: nn.Module, data: Source, recipe: Recipe, *, seed: int, description: str = "train",
                      checkpoint: Checkpoint | None = None) -> FitReport:
    """Train `model` in place by BPR on `data` ((user, item) pairs: x users, y items)."""
    return fit(model, data, recipe, seed=seed, loss=bpr_loss(seed), description=description, checkpoint=checkpoint)
