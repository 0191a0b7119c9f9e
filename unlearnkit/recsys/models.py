"""Recommenders, and their registry: `create_recommender(name, num_users, num_items, **kwargs)`.

Every recommender maps user ids to a score per item: `forward(users)` gives (batch, items)
scores (what ranking and the evaluation read), `score(users, items)` the score of each (user,
item) pair (what BPR trains on, without scoring the whole catalogue). They live in this registry,
not in `unlearnkit.models`, whose models take images or tokens and whose contract tests feed
them images. A recommender records the factory that rebuilds it (`unlearnkit_factory`), so the
store saves and loads it like any model, as safetensors with a JSON sidecar.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError

FACTORY = "unlearnkit.recsys.models:create_recommender"
_RECOMMENDERS: dict[str, Callable[..., nn.Module]] = {}


def register_recommender(name: str):
    """Register a recommender class (or function) taking num_users, num_items and keywords."""

    def decorate(maker):
        if name in _RECOMMENDERS:
            raise UnlearnkitError(f"recommender '{name}' is registered twice ({_RECOMMENDERS[name].__module__} and {maker.__module__}); rename one")
        _RECOMMENDERS[name] = maker
        return maker

    return decorate


def list_recommenders(pattern: str = "*") -> list[str]:
    return sorted(name for name in _RECOMMENDERS if fnmatch.fnmatch(name, pattern))


def check_recommender(name: str, what: str = "model") -> None:
    if name not in _RECOMMENDERS:
        raise UnlearnkitError(f"{what}: recommender '{name}' is not registered; choose one of {', '.join(list_recommenders())}")


def create_recommender(name: str, num_users: int, num_items: int, **kwargs) -> nn.Module:
    """Recommender `name` for `num_users` users and `num_items` items, initialized from torch's
    global generator (seed it first)."""
    check_recommender(name)
    try:
        model = _RECOMMENDERS[name](num_users=num_users, num_items=num_items, **kwargs)
    except (TypeError, ValueError) as error:
        raise UnlearnkitError(f"recommender '{name}' rejected its arguments {kwargs} ({error})") from None
    model.unlearnkit_factory = recommender_factory(name, num_users, num_items, **kwargs)
    return model


def recommender_factory(name: str, num_users: int, num_items: int, **kwargs) -> dict:
    """The spec the store records to rebuild recommender `name` (`unlearnkit.store.build_model`)."""
    return {"factory": FACTORY, "kwargs": {"name": name, "num_users": num_users, "num_items": num_items, **kwargs}}


def check_sizes(num_users: int, num_items: int, dim: int) -> None:
    if min(num_users, num_items) < 1:
        raise ValueError(f"num_users and num_items must be at least 1 (got {num_users}, {num_items})")
    if dim < 1:
        raise ValueError(f"dim must be at least 1 (got {dim})")


@register_recommender("mf")
class MatrixFactorization(nn.Module):
    """Matrix factorization: score(u, i) = p_u · q_i + b_i. There is no user bias: it would add
    the same amount to every item of a user, so it cancels from every ranking and every BPR
    comparison and would never be trained."""

    def __init__(self, num_users: int, num_items: int, dim: int = 32, init_std: float = 0.1):
        super().__init__()
        check_sizes(num_users, num_items, dim)
        self.num_users, self.num_items = num_users, num_items
        self.user = nn.Embedding(num_users, dim)
        self.item = nn.Embedding(num_items, dim)
        self.item_bias = nn.Parameter(torch.zeros(num_items))
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return self.user(users) @ self.item.weight.T + self.item_bias

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user(users) * self.item(items)).sum(-1) + self.item_bias[items]


def tower(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))


@register_recommender("two-tower")
class TwoTower(nn.Module):
    """Two towers: score(u, i) = f(p_u) · g(q_i), f and g each an MLP (one hidden ReLU layer) over
    the user's and the item's embedding."""

    def __init__(self, num_users: int, num_items: int, dim: int = 32, hidden: int = 64, init_std: float = 0.1):
        super().__init__()
        check_sizes(num_users, num_items, dim)
        self.num_users, self.num_items = num_users, num_items
        self.user = nn.Embedding(num_users, dim)
        self.item = nn.Embedding(num_items, dim)
        self.user_tower, self.item_tower = tower(dim, hidden), tower(dim, hidden)
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_tower(self.user(users)) @ self.item_tower(self.item.weight).T

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_tower(self.user(users)) * self.item_tower(self.item(items))).sum(-1)
