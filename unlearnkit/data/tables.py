"""Tables shipped inside scikit-learn, read as rows of floats: `--data sklearn:NAME`, or a
preset's `data`.

scikit-learn bundles three classification tables that need no download: the Wisconsin
breast-cancer table (569 patients × 30 measurements, malignant / benign), wine (178 × 13,
3 cultivars) and iris (150 × 4, 3 species). Its larger bundled `digits` set is 8×8 images, not a
table, and its other classification tables (covertype, …) are downloads.

A table has no official held-out part, so a stratified 30% of its rows, drawn with a fixed seed,
is held out: the same rows for every experiment seed, as CIFAR's test set is. The training rows
are the others, in table order; request files' `sample_id` index them, and `table_rows` maps
them to the table's own row numbers. Features are standardized with the mean and standard
deviation of the training rows only, so nothing about the held-out rows reaches training.
"""

from __future__ import annotations

import numpy as np

from unlearnkit.data.dataset import Dataset
from unlearnkit.errors import UnlearnkitError

PREFIX = "sklearn:"
TABLES = {"breast_cancer": "load_breast_cancer", "wine": "load_wine", "iris": "load_iris"}
HELDOUT_FRACTION = 0.3
HELDOUT_SEED = 0  # fixed, not the experiment's seed: the held-out rows are part of the data, like CIFAR's test set


def names_a_table(data) -> bool:
    return isinstance(data, str) and data.startswith(PREFIX)


def _bunch(name: str):
    if name not in TABLES:
        raise UnlearnkitError(f"unknown table '{PREFIX}{name}'; choose one of {', '.join(PREFIX + t for t in TABLES)}")
    import sklearn.datasets

    return getattr(sklearn.datasets, TABLES[name])()


def heldout_split(y: np.ndarray, fraction: float = HELDOUT_FRACTION, seed: int = HELDOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows), both sorted: `fraction` of each class's rows held out."""
    rng = np.random.default_rng(seed)
    held = [rng.permutation(np.flatnonzero(y == c))[: round(fraction * np.count_nonzero(y == c))] for c in np.unique(y)]
    heldout = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(y)), heldout), heldout


def table_rows(data: str) -> tuple[np.ndarray, np.ndarray]:
    """The table's own row numbers of the training rows (what `sample_id` i names) and of the
    held-out rows of `data` ("sklearn:breast_cancer")."""
    return heldout_split(_bunch(data.removeprefix(PREFIX)).target)


def read_table(data: str) -> Dataset:
    """The bundled table `data` ("sklearn:breast_cancer") as float32 rows, standardized with the
    training rows' statistics."""
    bunch = _bunch(data.removeprefix(PREFIX))
    x, y = np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)
    train, heldout = heldout_split(y)
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std == 0] = 1.0  # a constant feature stays 0 instead of dividing by zero
    rows = ((x - mean) / std).astype(np.float32)
    classes = tuple(str(name) for name in bunch.target_names)
    return Dataset(rows[train], y[train], rows[heldout], y[heldout], classes, source=data, layout="sklearn-table")
