"""Tables through the same API: rows of floats (N, D) from a real data set shipped inside
scikit-learn (the Wisconsin breast-cancer table, 569 rows × 30 features), an MLP, and every image
method either running on them or refusing in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import unlearnkit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.train import Recipe, Source, accuracy, fit


def standardized_table():
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    return x[order], y[order].astype(np.int64)


@pytest.fixture(scope="module")
def table():
    x, y = standardized_table()
    train, test = slice(0, 400), slice(400, None)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 2))
    fit(model, Source(torch.from_numpy(x[train]), torch.from_numpy(y[train])), Recipe(epochs=60, batch_size=32, lr=0.05, precision="fp32"))
    return model, x[train], y[train], x[test], y[test]


def test_an_mlp_on_a_table_is_unlearned_and_audited(table):
    model, train_x, train_y, test_x, test_y = table
    assert accuracy(model, train_x, train_y, "fp32") == 1.0  # it memorized its rows, the mislabeled-looking ones included
    forget, retain = (train_x[:40], train_y[:40]), (train_x[40:], train_y[40:])
    new = unlearnkit.unlearn(model, forget=forget, retain=retain, val=(test_x, test_y), method="finetune", config={"epochs": 2})
    report = unlearnkit.audit(new, forget=forget, test=(test_x, test_y), retain=retain, original=model).to_dict()
    assert report["sizes"]["forget"] == 40 and report["models"]["unlearned"]["test_acc"] >= 0.9
    assert report["models"]["original"]["forget_acc"] == 1.0


def test_every_method_runs_on_table_rows_or_refuses_in_one_line(table):
    model, train_x, train_y, test_x, test_y = table
    refused = {}
    for method in unlearnkit.list_methods():
        try:
            unlearnkit.unlearn(model, forget=(train_x[:40], train_y[:40]), retain=(train_x[40:], train_y[40:]), val=(test_x, test_y), method=method)
        except UnlearnkitError as error:
            assert "\n" not in str(error)
            refused[method] = str(error)
    assert set(refused) <= {"boundary-shrink", "ct", "prune-l1", "prune-cosine", "prmq", "msg", "cfw", "sisa", "ssd", "rni"}, refused  # each needs convolutions, pixels or an ensemble
    assert "works on images only" in refused["boundary-shrink"] and "sisa deletes from a SISA ensemble" in refused["sisa"]


def test_non_finite_rows_are_refused_in_one_line(table):
    model, train_x, train_y, test_x, test_y = table
    bad = train_x[:40].copy()
    bad[3, 2] = np.nan
    with pytest.raises(UnlearnkitError, match=r"^forget rows contain NaN or inf; impute or drop them first$"):
        unlearnkit.unlearn(model, forget=(bad, train_y[:40]), retain=(train_x[40:], train_y[40:]))
