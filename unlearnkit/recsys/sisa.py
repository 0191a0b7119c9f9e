"""SISA for recommenders (after Bourtoule et al., "Machine Unlearning", IEEE S&P 2021, whose
image version is `unlearnkit.sisa`): users sharded, one recommender per shard, exact deletion by
retraining only the shards that held a deleted user.

Every user of the log is dealt to a shard by a seeded permutation (`assign_users`), whether or
not they have data yet: the assignment depends on the seed alone, so a deletion moves nobody.
Shard s's recommender trains by BPR on the interactions of its users only, from an initial
state and with negatives seeded by (seed, shard) alone, on its interactions in a canonical order
(by user, then item). A user is always answered by their shard's recommender — the only one
that saw them; averaging in shards that never trained their embedding would add noise. Deleting
users retrains each shard that held one, from scratch, without them: by construction bitwise
the shard a run that never saw them would train.

Departures from the image version (each with its reason): shards hold whole users, not single
examples — the deletion unit is a user; no slices — one slice per shard (a slice checkpoint
would save at most the slices before a deleted user's, and at the presets' sizes a shard trains
in seconds); no vote — routing a user to their shard is the aggregation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.recsys.training import train_recommender
from unlearnkit.sisa import derived_seed
from unlearnkit.store import build_model
from unlearnkit.train import Checkpoint, Recipe, Source

FACTORY = "unlearnkit.recsys.sisa:user_shards"


def assign_users(num_users: int, shards: int, seed: int) -> torch.Tensor:
    """Each user's shard: a seeded permutation of all users dealt into `shards` near-equal parts."""
    if not 1 <= shards <= num_users:
        raise UnlearnkitError(f"sisa.shards {shards}: give between 1 and the log's {num_users} users")
    order = np.random.default_rng(derived_seed(seed, "recsys-users")).permutation(num_users)
    assignment = np.empty(num_users, dtype=np.int64)
    for shard, users in enumerate(np.array_split(order, shards)):
        assignment[users] = shard
    return torch.from_numpy(assignment)


class UserShards(nn.Module):
    """One recommender per shard of users; `holds[s, u]` says whether shard s trained on user u.
    `forward(users)` and `score(users, items)` answer each user from their own shard."""

    def __init__(self, recommender: dict, shards: int, seed: int):
        super().__init__()
        self.recommender, self.seed = recommender, seed
        self.models = nn.ModuleList(build_model(recommender) for _ in range(shards))
        num_users = self.models[0].num_users
        self.register_buffer("assignment", assign_users(num_users, shards, seed))
        self.register_buffer("holds", torch.zeros(shards, num_users, dtype=torch.bool))
        self.unlearnkit_factory = {"factory": FACTORY, "kwargs": {"recommender": recommender, "shards": shards, "seed": seed}}

    @property
    def num_users(self) -> int:
        return self.models[0].num_users

    @property
    def num_items(self) -> int:
        return self.models[0].num_items

    def routed(self, users: torch.Tensor, answer) -> torch.Tensor:
        shard_of = self.assignment[users]
        parts = [(shard_of == s).nonzero().squeeze(1) for s in range(len(self.models))]
        answers = [answer(model, rows) for model, rows in zip(self.models, parts) if len(rows)]
        rows = torch.cat([rows for rows in parts if len(rows)])
        out = torch.empty((len(users), *answers[0].shape[1:]), dtype=answers[0].dtype, device=answers[0].device)
        out[rows] = torch.cat(answers)
        return out

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return self.routed(users, lambda model, rows: model(users[rows]))

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.routed(users, lambda model, rows: model.score(users[rows], items[rows]))


def user_shards(recommender: dict, shards: int, seed: int) -> UserShards:
    """The factory the store records to rebuild an ensemble (its weights and buffers then load)."""
    return UserShards(recommender, shards, seed)


def shard_rows(ensemble: UserShards, data: Source, shard: int, leave_out: torch.Tensor | None = None) -> Source:
    """The pairs of `data` whose user is in `shard` (and not in `leave_out`), by user then item."""
    users, items = data.x.cpu(), data.y.cpu()
    kept = ensemble.assignment.cpu()[users] == shard
    if leave_out is not None:
        kept &= ~torch.isin(users, leave_out.cpu())
    users, items = users[kept], items[kept]
    order = np.lexsort((items.numpy(), users.numpy()))
    order = torch.from_numpy(order)
    return Source(users[order].to(data.x.device), items[order].to(data.y.device))


def train_shard(ensemble: UserShards, shard: int, data: Source, recipe: Recipe, checkpoint: Checkpoint | None = None) -> float:
    """Shard `shard`'s recommender, from its seeded initial state, trained on `data` (its pairs);
    the seconds it took. A shard left with no pairs keeps its initial state."""
    started = time.perf_counter()
    seed = derived_seed(ensemble.seed, shard)
    device = ensemble.assignment.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = build_model(ensemble.recommender).to(device)
    if len(data):
        train_recommender(fresh, data, recipe, seed=seed, checkpoint=checkpoint, description=f"shard {shard + 1}/{len(ensemble.models)}")
    ensemble.models[shard].load_state_dict(fresh.state_dict())
    holds = torch.zeros_like(ensemble.holds[shard])
    holds[data.x.to(device)] = True
    ensemble.holds[shard] = holds
    return time.perf_counter() - started


def train_user_shards(recommender: dict, data: Source, shards: int, recipe: Recipe, seed: int, device: torch.device | str = "cpu") -> tuple[UserShards, float]:
    """An ensemble of `shards` recommenders (`recommender`: the factory spec of one) trained on
    `data`, and the seconds it took."""
    ensemble = UserShards(recommender, shards, seed).to(device)
    seconds = sum(train_shard(ensemble, s, shard_rows(ensemble, data, s), recipe) for s in range(shards))
    return ensemble.eval(), seconds


@dataclass
class Deletion:
    shards: list[int]  # the shards retrained; the others are untouched
    seconds: float


def delete_users(ensemble: UserShards, users: np.ndarray, retained: Source, recipe: Recipe, checkpoint: Checkpoint | None = None) -> Deletion:
    """Remove `users` from `ensemble` exactly, in place: each shard that held one is retrained from
    scratch on its pairs in `retained` (which must hold every pair of the users it keeps)."""
    started = time.perf_counter()
    gone = torch.as_tensor(np.asarray(users, dtype=np.int64), device=ensemble.holds.device)
    touched = [s for s in range(len(ensemble.models)) if ensemble.holds[s, gone].any()]
    for shard in touched:
        rows = shard_rows(ensemble, retained, shard, leave_out=gone)
        kept = ensemble.holds[shard].clone()
        kept[gone] = False
        missing = kept.clone()
        missing[rows.x.to(missing.device)] = False
        if missing.any():
            raise UnlearnkitError(f"sisa: shard {shard + 1} trained on user {int(missing.nonzero()[0])}, whose interactions the retained data lacks; give every retained user's interactions")
        train_shard(ensemble, shard, rows, recipe, checkpoint)
    return Deletion(touched, time.perf_counter() - started)
