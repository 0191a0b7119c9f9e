"""The check after every method (`unlearnkit.health`): a collapsed or untouched model is said,
never returned in silence."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from conftest import synthetic_arrays
from foreign import build_mlp

import unlearnkit
from unlearnkit.health import health_warnings
from unlearnkit.methods import Task
from unlearnkit.train import Recipe, Source, fit


@pytest.fixture(scope="module")
def fitted():
    train_x, train_y, test_x, test_y = synthetic_arrays(n_train=300, n_test=200)
    torch.manual_seed(0)
    model = build_mlp()
    fit(model, Source(torch.from_numpy(train_x), torch.from_numpy(train_y)), Recipe(epochs=10, batch_size=50, lr=0.02, precision="fp32"))
    return model, (train_x, train_y, test_x, test_y)


def unlearnkit_warnings(model, data, method, config, stream=False) -> list[str]:
    train_x, train_y, test_x, test_y = data
    retain = (train_x[30:], train_y[30:])
    if stream:
        retain = torch.utils.data.TensorDataset(*(torch.from_numpy(a) for a in retain))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unlearnkit.unlearn(model, forget=(train_x[:30], train_y[:30]), retain=retain, val=(test_x, test_y), method=method, config=config, stream=stream)
    return [str(w.message) for w in caught if issubclass(w.category, unlearnkit.UnlearnkitWarning)]


@pytest.mark.parametrize("stream", [False, True])
def test_a_collapse_is_warned_of_on_retain_and_val(fitted, stream):
    """A streamed retain set is sampled item by item: streaming does not hide a collapse."""
    model, data = fitted
    said = unlearnkit_warnings(model, data, "gradient-ascent", {"lr": 1.0}, stream)
    assert [s.split(":")[0] for s in said] == ["gradient-ascent collapsed the model"] * 2
    assert "retain accuracy 100.0% →" in said[0] and "val accuracy" in said[1] and "(chance 10.0%)" in said[0]
    assert "change them with --set gradient-ascent.FIELD=VALUE" in said[0]  # names the method's own knobs: not every method has an lr


def test_a_model_that_kept_its_accuracy_is_not_warned_of(fitted):
    model, data = fitted
    assert unlearnkit_warnings(model, data, "finetune", {"epochs": 1, "lr": 0.02}) == []


def test_unchanged_weights_are_warned_of_and_a_moved_model_is_not(fitted):
    model, (train_x, train_y, test_x, test_y) = fitted
    source = lambda x, y: Source(torch.from_numpy(x), torch.from_numpy(y))  # noqa: E731
    task = Task(retain=source(train_x[30:], train_y[30:]), forget=source(train_x[:30], train_y[:30]), val=source(test_x, test_y),
                original=model, num_classes=10, recipe=Recipe())
    same = copy.deepcopy(model)
    assert health_warnings("m", model, same, task) == ["m returned the input weights unchanged: nothing was unlearned (a guard may have stepped back; try a smaller learning rate)"]
    with torch.no_grad():
        same.out.bias[0] += 1e-5
    said = health_warnings("m", model, same, task)
    assert len(said) == 1 and said[0].startswith("m barely changed the model: no class probability on the forget set moved by more than "), said
    with torch.no_grad():
        same.out.bias[0] += 0.1
    assert health_warnings("m", model, same, task) == []
    assert np.isclose(float((same.out.bias - model.out.bias).detach().abs().max()), 0.1 + 1e-5)


def test_tune_searches_a_method_on_your_own_model_and_data(fitted):
    pytest.importorskip("optuna")
    model, (train_x, train_y, test_x, test_y) = fitted
    found = unlearnkit.tune(model, forget=(train_x[:30], train_y[:30]), retain=(train_x[30:], train_y[30:]), val=(test_x, test_y),
                            method="gradient-ascent", trials=4, fixed={"epochs": 1.0})
    assert isinstance(found, unlearnkit.TuneResult) and len(found.trials) == 4
    assert found.trials[0]["config"]["lr"] == unlearnkit.methods.make_config("gradient-ascent").lr  # the defaults come first
    assert len({row["config"]["lr"] for row in found.trials}) == 4  # the search moved
    distance = lambda f, before: abs(f["forget"] - f["val"]) + abs(f["retain"] - before["retain"]) + abs(f["val"] - before["val"])  # noqa: E731
    for row in found.trials:
        assert row["distance"] == pytest.approx(distance(row["figures"], found.best["before"]))
    assert found.best["distance"] == min(row["distance"] for row in found.trials)
    with pytest.raises(unlearnkit.UnlearnkitError, match="trials=0 must be a whole number ≥ 1"):
        unlearnkit.tune(model, forget=(train_x[:30], train_y[:30]), retain=(train_x[30:], train_y[30:]), val=(test_x, test_y), trials=0)
