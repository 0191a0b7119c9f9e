"""Seeded, deterministic splits: forget / retain from the training set, test / val (50/50)
from the held-out set. Saved as split.npz; disjointness and coverage are checked on build
and on load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unlearnkit.data.scenarios import Scenario, parse_forget, select_forget
from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import atomic_save_npz, sha256_arrays, verify_file


@dataclass(frozen=True)
class Split:
    """Index arrays into the train array (forget, retain) and the held-out array (test, val)."""

    forget: np.ndarray
    retain: np.ndarray
    test: np.ndarray
    val: np.ndarray
    seed: int
    data_fingerprint: str
    spec: str = ""
    forget_classes: tuple[int, ...] = ()  # class-wise scenarios: the classes asked to be forgotten
    forget_subclasses: tuple[int, ...] = ()  # sub-class scenarios: the sub-classes asked to be forgotten

    @property
    def fingerprint(self) -> str:
        return sha256_arrays(self.forget, self.retain, self.test, self.val)

    @property
    def pool_size(self) -> int:
        return self.forget.size + self.retain.size

    def check(self, n_train: int, n_heldout: int, pool_size: int | None = None) -> "Split":
        for name, indices, size, universe in (
            ("forget", self.forget, n_train, "training"),
            ("retain", self.retain, n_train, "training"),
            ("test", self.test, n_heldout, "held-out"),
            ("val", self.val, n_heldout, "held-out"),
        ):
            if indices.size and (indices.min() < 0 or indices.max() >= size):
                bad = indices.min() if indices.min() < 0 else indices.max()
                raise UnlearnkitError(f"{name} index {bad} is outside the {universe} set of {size} images")
            if np.unique(indices).size != indices.size:
                raise UnlearnkitError(f"{name} indices contain duplicates; each image may appear once")
        for a, b, universe, size in (("forget", "retain", "training", pool_size or n_train), ("test", "val", "held-out", n_heldout)):
            first, second = getattr(self, a), getattr(self, b)
            if overlap := np.intersect1d(first, second).size:
                raise UnlearnkitError(f"{a} and {b} share {overlap} images; they must be disjoint")
            if first.size + second.size != size:
                raise UnlearnkitError(f"{a} and {b} cover {first.size + second.size} of the {size} {universe} images; they must cover all of them")
        if self.forget.size == 0:
            raise UnlearnkitError("the forget set is empty; ask to forget at least one training image")
        if self.retain.size == 0:
            raise UnlearnkitError("the forget set covers the whole training set; at least one image must be retained")
        return self

    def save(self, path: str | Path) -> Path:
        return atomic_save_npz(
            path,
            forget=self.forget,
            retain=self.retain,
            test=self.test,
            val=self.val,
            seed=np.int64(self.seed),
            data_fingerprint=np.str_(self.data_fingerprint),
            spec=np.str_(self.spec),
            forget_classes=np.asarray(self.forget_classes, dtype=np.int64),
            forget_subclasses=np.asarray(self.forget_subclasses, dtype=np.int64),
        )

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        verify_file(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                return cls(
                    forget=f["forget"].astype(np.int64),
                    retain=f["retain"].astype(np.int64),
                    test=f["test"].astype(np.int64),
                    val=f["val"].astype(np.int64),
                    seed=int(f["seed"]),
                    data_fingerprint=str(f["data_fingerprint"]),
                    spec=str(f["spec"]) if "spec" in f.files else "",
                    forget_classes=tuple(int(c) for c in f["forget_classes"]) if "forget_classes" in f.files else (),
                    forget_subclasses=tuple(int(c) for c in f["forget_subclasses"]) if "forget_subclasses" in f.files else (),
                )
        except (OSError, KeyError, ValueError) as error:
            raise UnlearnkitError(f"{path} is not a readable split file ({error})") from None


def sample_pool(train_y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A seeded, class-balanced sample of `size` training indices (sorted)."""
    rng = np.random.default_rng([seed, 0x9001])
    classes = np.unique(train_y)
    per_class = np.full(classes.size, size // classes.size)
    per_class[: size % classes.size] += 1
    picked = [rng.permutation(np.flatnonzero(train_y == c))[:k] for c, k in zip(classes, per_class)]
    return np.sort(np.concatenate(picked))


def make_split(
    train_y: np.ndarray,
    n_heldout: int,
    *,
    forget: float | str | Scenario = 0.1,
    seed: int = 0,
    pool: int | None = None,
    data_fingerprint: str = "",
    classes: tuple[str, ...] | None = None,
    subclass_y: np.ndarray | None = None,
    scores: np.ndarray | None = None,
) -> Split:
    """The forget set a scenario picks (a fraction or count, or a spec: see
    `unlearnkit.data.scenarios`), the rest of the pool retained; held-out set halved into test
    and val. With `pool`, only a class-balanced sample of that many training images takes part
    (plus any image a request file names). `scores` (one per training image) rank the pool for the
worst-case scenarios. The same arguments always give the same indices."""
    n_train = len(train_y)
    if pool is not None and not 2 <= pool <= n_train:
        raise UnlearnkitError(f"training pool of {pool} images is invalid; it must lie in 2..{n_train}")
    classes = classes or tuple(str(c) for c in range(int(train_y.max()) + 1))
    scenario = forget if isinstance(forget, Scenario) else parse_forget(forget, classes, n_train=n_train, n_heldout=n_heldout)
    candidates = sample_pool(train_y, pool, seed) if pool else np.arange(n_train)
    if scenario.requested:
        candidates = np.union1d(candidates, scenario.requested)
    rng = np.random.default_rng([seed, 0x5EED])
    order = rng.permutation(candidates)
    heldout = rng.permutation(n_heldout)
    forget_indices = select_forget(scenario, candidates, order, train_y, np.random.default_rng([seed, 0xF0E7]), subclass_y, scores)
    half = n_heldout // 2
    return Split(
        forget=forget_indices,
        retain=np.setdiff1d(candidates, forget_indices),
        test=np.sort(heldout[:half]),
        val=np.sort(heldout[half:]),
        seed=seed,
        data_fingerprint=data_fingerprint,
        spec=scenario.text + (f" pool:{pool}" if pool else ""),
        forget_classes=scenario.classes,
        forget_subclasses=scenario.subclasses,
    ).check(n_train, n_heldout, candidates.size)
