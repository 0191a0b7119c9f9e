"""A synthetic implicit-feedback log with planted tastes, and the user-level deletion split.

The generator plants why each user interacted with what. There are `genres` genres. Each item
has a genre mix (Dirichlet, concentrated: most items are mostly one genre) and a popularity
(Zipf over a shuffled ranking of the items); each user has a taste over genres (Dirichlet,
concentrated: one or two favourite genres). A user's interactions are `per_user` distinct items
drawn without replacement (Gumbel top-k) with weight (taste · genre mix)^sharpness × popularity.
So what a user likes is predictable from the rest of their log (a model can generalize), while
which items of their genres they happened to interact with is chance (a model that ranks exactly
those first has memorized them). A seeded `heldout` fraction of each user's interactions is held
out: the test set.

The same spec gives the same log, bitwise, whatever the experiment's seed; `fingerprint` is the
sha256 of its arrays. A deletion forgets users, not single interactions: all of a user's
training interactions go.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from unlearnkit.errors import UnlearnkitError
from unlearnkit.data.scenarios import column_ids, read_csv_rows
from unlearnkit.fileio import atomic_save_npz, sha256_arrays, sha256_json
from unlearnkit.train import Source


class LogSpec(BaseModel):
    """The interaction log a recsys preset generates."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    users: int = Field(1000, ge=4, description="users in the log")
    items: int = Field(500, ge=20, description="items in the catalogue")
    genres: int = Field(8, ge=1, description="latent genres that tastes and items are mixes of")
    per_user: int = Field(30, ge=2, description="distinct items each user interacted with (train + held out)")
    heldout: float = Field(0.2, gt=0, lt=1, description="fraction of each user's interactions held out for testing (at least one)")
    taste_concentration: float = Field(0.3, gt=0, description="Dirichlet concentration of users' tastes: smaller, fewer favourite genres")
    genre_concentration: float = Field(0.2, gt=0, description="Dirichlet concentration of items' genre mixes: smaller, purer items")
    sharpness: float = Field(2.0, ge=0, description="exponent on taste · genre mix: how strongly taste decides (0: popularity alone)")
    popularity: float = Field(0.8, ge=0, description="Zipf exponent of item popularity (0: every item equally popular)")
    seed: int = Field(0, description="the log's own seed: the same log whatever the experiment's seed")


@dataclass(frozen=True)
class InteractionLog:
    """Training and held-out (user, item) pairs, sorted by user then item, and the planted truth."""

    spec: LogSpec
    train_users: np.ndarray
    train_items: np.ndarray
    test_users: np.ndarray
    test_items: np.ndarray
    user_taste: np.ndarray  # (users, genres), each row sums to 1
    item_genres: np.ndarray  # (items, genres), each row sums to 1
    item_popularity: np.ndarray  # (items,), sums to 1
    fingerprint: str

    @property
    def num_users(self) -> int:
        return self.spec.users

    @property
    def num_items(self) -> int:
        return self.spec.items

    def rows(self, users: np.ndarray, part: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """The (users, items) pairs of `part` ("train" or "test") whose user is among `users`."""
        all_users, all_items = (self.train_users, self.train_items) if part == "train" else (self.test_users, self.test_items)
        kept = np.isin(all_users, users)
        return all_users[kept], all_items[kept]

    def source(self, users: np.ndarray, device: torch.device | str = "cpu", part: str = "train") -> Source:
        """A training source of `users`' interactions: x the user ids, y the item ids (int64)."""
        u, i = self.rows(users, part)
        return Source(torch.from_numpy(u).to(device), torch.from_numpy(i).to(device))

    def matrix(self, users: np.ndarray, part: str = "train") -> torch.Tensor:
        """(len(users), items) booleans: which items each of `users` interacted with in `part`."""
        u, i = self.rows(users, part)
        position = np.searchsorted(users, u)  # `users` sorted, as every split holds them
        out = torch.zeros(len(users), self.num_items, dtype=torch.bool)
        out[torch.from_numpy(position), torch.from_numpy(i)] = True
        return out


def zipf_popularity(items: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    weights = (1.0 + np.arange(items)) ** -exponent
    return rng.permutation(weights / weights.sum())


def generate(spec: LogSpec) -> InteractionLog:
    """The log of `spec` (see the module docstring for how it is drawn)."""
    if spec.per_user >= spec.items:
        raise UnlearnkitError(f"per_user {spec.per_user} needs a catalogue larger than that; give items above {spec.per_user} or fewer per_user")
    rng = np.random.default_rng(spec.seed)
    item_genres = rng.dirichlet(np.full(spec.genres, spec.genre_concentration), size=spec.items)
    user_taste = rng.dirichlet(np.full(spec.genres, spec.taste_concentration), size=spec.users)
    popularity = zipf_popularity(spec.items, spec.popularity, rng)
    log_weight = spec.sharpness * np.log(user_taste @ item_genres.T + 1e-12) + np.log(popularity)
    gumbel = rng.gumbel(size=log_weight.shape)
    chosen = np.sort(np.argpartition(-(log_weight + gumbel), spec.per_user, axis=1)[:, : spec.per_user], axis=1)
    held = max(1, round(spec.heldout * spec.per_user))
    is_test = np.zeros(chosen.shape, dtype=bool)
    picks = np.argsort(rng.random(chosen.shape), axis=1)[:, :held]
    np.put_along_axis(is_test, picks, True, axis=1)
    users = np.repeat(np.arange(spec.users, dtype=np.int64), spec.per_user).reshape(chosen.shape)
    chosen = chosen.astype(np.int64)
    train_u, train_i, test_u, test_i = users[~is_test], chosen[~is_test], users[is_test], chosen[is_test]
    fingerprint = sha256_arrays(train_u, train_i, test_u, test_i, np.frombuffer(sha256_json(spec.model_dump()).encode(), dtype=np.uint8))
    return InteractionLog(spec, train_u, train_i, test_u, test_i, user_taste, item_genres, popularity, fingerprint)


@dataclass(frozen=True)
class UserSplit:
    """Which users a deletion forgets (all their training interactions) and which it keeps."""

    forget_users: np.ndarray
    retain_users: np.ndarray
    spec: str

    @property
    def fingerprint(self) -> str:
        return sha256_arrays(self.forget_users, self.retain_users)

    def save(self, path: str | Path) -> Path:
        return atomic_save_npz(path, forget_users=self.forget_users, retain_users=self.retain_users, spec=np.array(self.spec))


def user_ids(values, num_users: int, what: str) -> np.ndarray:
    """Distinct user ids, each checked to be in the log: `values` are ints or their text."""
    ids = []
    for value in values:
        try:
            user = int(str(value).strip())
        except ValueError:
            raise UnlearnkitError(f"{what}: user id {value!r} is not an integer; give ids from 0 to {num_users - 1}") from None
        if not 0 <= user < num_users:
            raise UnlearnkitError(f"{what}: user id {user} is not in the log (ids 0 to {num_users - 1}); give a user the log holds")
        ids.append(user)
    if not ids:
        raise UnlearnkitError(f"{what} names no user; give at least one user id")
    if len(set(ids)) != len(ids):
        twice = next(u for u in ids if ids.count(u) > 1)
        raise UnlearnkitError(f"{what} names user {twice} more than once; give each user once")
    return np.array(sorted(ids), dtype=np.int64)


def split_users(log: InteractionLog, forget: float | int | str | list, seed: int) -> UserSplit:
    """Forget `forget` users: a fraction (0 < f < 1) or a count of them drawn with `seed`, a list
    of user ids, or "users:3,17,42" / "file:REQUESTS.csv" (a user_id column) naming them."""
    if isinstance(forget, str) and forget.startswith("users:"):
        forget = forget[len("users:"):].split(",")
    elif isinstance(forget, str) and forget.startswith("file:"):
        forget = request_users(Path(forget[len("file:"):]))
    if isinstance(forget, (list, tuple, np.ndarray)):
        chosen = user_ids(forget, log.num_users, "the deletion request")
        spec = f"users:{','.join(map(str, chosen))}"
    else:
        try:
            amount = float(forget)
        except ValueError:
            raise UnlearnkitError(f"--forget {forget!r}: a recsys preset forgets a fraction (0.05) or a count (10) of users, users:3,17 or file:REQUESTS.csv") from None
        count = round(amount * log.num_users) if 0 < amount < 1 else int(amount)
        if amount <= 0 or (amount >= 1 and amount != int(amount)):
            raise UnlearnkitError(f"--forget {forget!r}: give a fraction between 0 and 1 or a whole count of users")
        if not 1 <= count < log.num_users:
            raise UnlearnkitError(f"--forget {forget!r} forgets {count} of {log.num_users} users; give between 1 and {log.num_users - 1}")
        chosen = np.sort(np.random.default_rng([seed, 41]).choice(log.num_users, size=count, replace=False)).astype(np.int64)
        spec = f"random:{count}"
    if chosen.size >= log.num_users:
        raise UnlearnkitError(f"the deletion request names all {log.num_users} users; keep at least one")
    return UserSplit(chosen, np.setdiff1d(np.arange(log.num_users, dtype=np.int64), chosen), spec)


def request_users(path: Path) -> list[str]:
    """The user ids a deletion-request CSV names (its user_id column)."""
    rows = read_csv_rows(path, "request file")
    if not rows or "user_id" not in rows[0]:
        raise UnlearnkitError(f"request file {path} needs a user_id column and at least one row")
    return column_ids(rows, "user_id", path)
