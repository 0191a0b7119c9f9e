"""The public API on a model and data that unlearnkit did not make (tests/foreign.py)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import unlearnkit
from foreign import GreyNet, NoNormNet, TupleOutputNet, WrappedOutputNet, build, grey_data
from unlearnkit import UnlearnkitError
from unlearnkit.api import examples
from unlearnkit.train import Recipe, Source, fit, predict_logits

RECIPE = Recipe(epochs=30, batch_size=32, lr=0.05, precision="fp32")


def train(model, *sets, seed=0):
    data = [examples(s, "train") for s in sets]
    torch.manual_seed(seed)
    fit(model, {f"part{i}": Source(d.x, d.y, max(len(d) // 8, 1)) for i, d in enumerate(data)}, RECIPE, seed=seed)
    return model.eval()


def accuracy(model, data) -> float:
    d = examples(data, "x")
    return float((predict_logits(model, d.x, precision="fp32").argmax(1) == d.y).float().mean())


@pytest.fixture(scope="module")
def world():
    retain, forget, test = grey_data()
    torch.manual_seed(0)
    original = train(GreyNet(), retain, forget)
    torch.manual_seed(1)
    reference = train(GreyNet(), retain, seed=1)
    return original, reference, retain, forget, test


def test_the_original_memorized_what_the_reference_never_saw(world):
    original, reference, retain, forget, test = world
    assert accuracy(original, forget) >= 0.9 and accuracy(reference, forget) <= 0.5
    assert accuracy(original, test) >= 0.8


def test_unlearn_a_foreign_model_leaves_it_untouched_and_forgets(world):
    original, _, retain, forget, _ = world
    before = copy.deepcopy(original.state_dict())
    new = unlearnkit.unlearn(original, forget=forget, retain=retain, method="dummy-labels", config={"epochs": 4}, seed=0, batch_size=32)
    assert type(new) is GreyNet and new is not original
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert accuracy(new, forget) < accuracy(original, forget) - 0.3
    assert accuracy(new, retain) >= 0.85


def test_datasets_and_loaders_give_the_same_model_as_arrays(world):
    original, _, retain, forget, _ = world
    as_dataset = lambda xy: torch.utils.data.TensorDataset(torch.from_numpy(xy[0]), torch.from_numpy(xy[1]))  # noqa: E731
    config = {"epochs": 1}
    a = unlearnkit.unlearn(original, forget=forget, retain=retain, config=config)
    b = unlearnkit.unlearn(original, forget=as_dataset(forget), retain=torch.utils.data.DataLoader(as_dataset(retain), batch_size=50), config=config)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_audit_reports_every_measure_with_intervals_and_is_json(world):
    original, reference, retain, forget, test = world
    new = unlearnkit.unlearn(original, forget=forget, retain=retain, method="dummy-labels", config={"epochs": 4}, batch_size=32)
    report = unlearnkit.audit(new, forget=forget, test=test, retain=retain, original=original, reference=reference, resamples=200)
    out = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(out["models"]) == {"unlearned", "original", "reference"}
    assert out["models"]["original"]["forget_acc"] == pytest.approx(accuracy(original, forget))
    assert out["models"]["unlearned"]["test_acc"] == pytest.approx(accuracy(new, test))
    for name in ("unlearned", "original", "reference"):
        assert set(out["attacks"][name]) == {"lr-loss", "loss-threshold", "svc-entropy"}
        auc = out["attacks"][name]["svc-entropy"]["forget"]["auc"]
        assert auc["ci95"][0] <= auc["value"] <= auc["ci95"][1]
        assert {"tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr"} <= set(out["attacks"][name]["lr-loss"]["forget"])
    assert out["positive_control"]["against"] == "reference" and set(out["positive_control"]["signal"]) == {"lr-loss", "loss-threshold", "svc-entropy"}
    assert out["gaps"]["original"]["forget_acc"] == pytest.approx(out["models"]["original"]["forget_acc"] - out["models"]["reference"]["forget_acc"])
    assert set(out["divergence"]) == {"forget", "test"}
    assert out["skipped"] == []  # 32 forget images: everything could be computed


def test_audit_says_what_it_could_not_compute(world):
    original, _, _, forget, test = world
    report = unlearnkit.audit(original, forget=forget, test=test).to_dict()
    assert report["attacks"] == {}
    assert any("need `retain`" in reason for reason in report["skipped"])
    assert any("need `reference`" in reason for reason in report["skipped"])
    few = unlearnkit.audit(original, forget=(forget[0][:3], forget[1][:3]), test=test).to_dict()
    assert few["models"]["unlearned"]["mia"] is None
    assert any("at least 10 forget" in reason for reason in few["skipped"])


def test_models_that_return_an_output_object(world):
    original, _, retain, forget, test = world
    wrapped = WrappedOutputNet()
    wrapped.load_state_dict(original.state_dict())
    new = unlearnkit.unlearn(wrapped, forget=forget, retain=retain, config={"epochs": 1})
    assert type(new) is WrappedOutputNet and isinstance(new(torch.zeros(1, 1, 48, 48)), type(wrapped(torch.zeros(1, 1, 48, 48))))
    plain = unlearnkit.unlearn(original, forget=forget, retain=retain, config={"epochs": 1})
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), new.state_dict().values()))
    assert unlearnkit.audit(new, forget=forget, test=test).to_dict()["models"]["unlearned"]["forget_acc"] is not None
    as_tuple = TupleOutputNet()  # a Hugging Face model called with return_dict=False
    as_tuple.load_state_dict(original.state_dict())
    from_tuple = unlearnkit.unlearn(as_tuple, forget=forget, retain=retain, config={"epochs": 1})
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), from_tuple.state_dict().values()))


@pytest.mark.parametrize("name", ["prune-l1", "prune-cosine", "bad-teacher"])
def test_structure_aware_methods_find_the_structure_of_a_foreign_model(world, name):
    original, _, retain, forget, _ = world
    new = unlearnkit.unlearn(original, forget=forget, retain=retain, method=name, config={"epochs": 2})
    if name.startswith("prune"):  # the discovered conv → batch-norm pairs were pruned
        dead = new.down.weight.flatten(1).abs().sum(1) == 0
        assert 0 < int(dead.sum()) < new.down.weight.shape[0]


def test_a_method_that_needs_missing_structure_refuses_in_one_line(world):
    _, _, retain, forget, _ = world
    with pytest.raises(UnlearnkitError, match=r"prune-l1 needs prunable groups .* found none in NoNormNet"):
        unlearnkit.unlearn(NoNormNet(), forget=forget, retain=retain, method="prune-l1")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f, r: ((f[0], f[1].astype(np.float32)), r), r"forget labels have dtype torch.float32 .* integer class indices"),
        (lambda f, r: ((f[0], f[1] + 4), r), r"forget label \d is out of range: the model predicts 4 classes, so labels must lie in 0..3"),
        (lambda f, r: ((f[0][:0], f[1][:0]), r), r"the forget set is empty"),
        (lambda f, r: ((np.concatenate([f[0], r[0][:1]]), np.concatenate([f[1], r[1][:1]])), r), r"forget example 32 is also retain example 0"),
        (lambda f, r: ((f[0][:, :40], f[1]), r), r"inputs of different shapes"),
        (lambda f, r: ("images.npy", r), r"forget is a str; give a tuple"),
    ],
)
def test_bad_input_is_one_line(world, change, message):
    original, _, retain, forget, _ = world
    f, r = change(forget, retain)
    with pytest.raises(UnlearnkitError, match=message) as error:
        unlearnkit.unlearn(original, forget=f, retain=r)
    assert "\n" not in str(error.value)


def test_a_model_whose_output_is_not_batch_by_classes_is_refused(world):
    _, _, retain, forget, _ = world

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x.flatten() * self.w

    with pytest.raises(UnlearnkitError, match=r"logits have shape \(2304,\); a classifier must return \(batch, classes\)"):
        unlearnkit.unlearn(Flat(), forget=forget, retain=retain)


def test_subsets_of_one_dataset_that_overlap_are_refused(world):
    original, _, retain, _, _ = world
    full = torch.utils.data.TensorDataset(torch.from_numpy(retain[0]), torch.from_numpy(retain[1]))
    with pytest.raises(UnlearnkitError, match=r"dataset index 5 is in both forget and retain"):
        unlearnkit.unlearn(original, forget=torch.utils.data.Subset(full, [5, 6]), retain=torch.utils.data.Subset(full, range(0, 100)))


def test_save_and_load_any_model_through_its_factory(world, tmp_path):
    original = world[0]
    with pytest.raises(UnlearnkitError, match="save_model cannot tell how to rebuild GreyNet; pass factory="):
        unlearnkit.save_model(original, tmp_path / "m.safetensors")
    path = unlearnkit.save_model(original, tmp_path / "m.safetensors", factory="foreign:build", factory_kwargs={"classes": 4})
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["model"] == {"factory": "foreign:build", "kwargs": {"classes": 4}}
    loaded = unlearnkit.load_model(path)
    assert type(loaded) is GreyNet and all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), loaded.state_dict().values()))
    unlearnkit.save_model(loaded, tmp_path / "again.safetensors")  # a factory-built model remembers its factory
    assert json.loads((tmp_path / "again.json").read_text())["model"]["factory"] == "foreign:build"


@pytest.mark.parametrize("factory, message", [
    ("foreign", "is not 'package.module:function'"),
    ("no_such_module:build", "cannot import no_such_module"),
    ("foreign:nothing", "foreign has no function nothing"),
])
def test_bad_factories_are_one_line(world, tmp_path, factory, message):
    import safetensors.torch

    path = tmp_path / "bare.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in world[0].state_dict().items()}, str(path))
    with pytest.raises(UnlearnkitError, match=message):
        unlearnkit.load_model(path, factory=factory)


@pytest.mark.slow
@pytest.mark.parametrize("method,workers", [("finetune", 0), ("finetune", 2), ("erase-repair", 0), ("neggrad-plus", 0), ("neggrad-plus", 1), ("ssd", 0)])
def test_a_streamed_retain_set_gives_the_same_model_as_a_resident_one(world, method, workers):
    """Streaming reads the same items in the engine's order, by threads or by worker processes
    reading ahead: bitwise the same weights, with the methods that sample retain themselves
    (the guard, the importances) too."""
    original, _, retain, forget, _ = world
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(retain[0]), torch.from_numpy(retain[1]))
    config = {"epochs": 2} if method != "ssd" else {}
    resident = unlearnkit.unlearn(original, forget=forget, retain=dataset, method=method, config=config, batch_size=64, stream=False)
    streamed = unlearnkit.unlearn(original, forget=forget, retain=dataset, method=method, config=config, batch_size=64, stream=True, prefetch=3, workers=workers)
    assert all(torch.equal(a, b) for a, b in zip(resident.state_dict().values(), streamed.state_dict().values()))


def test_worker_processes_read_the_batches_the_engine_draws_ahead_of_it():
    from unlearnkit.train import StreamSource

    dataset = torch.utils.data.TensorDataset(torch.arange(40, dtype=torch.float32).view(40, 1, 1, 1), torch.arange(40) % 4)
    source = StreamSource(dataset, torch.device("cpu"), workers=2)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    source.plan(order, 8, 8)
    assert source.ahead is not None and len(source.planned) == 4
    for start in range(8, 40, 8):
        x, y = source.batch(order[start : start + 8])
        assert x.view(-1).long().tolist() == order[start : start + 8].tolist() and y.tolist() == (order[start : start + 8] % 4).tolist()
    assert source.planned == []
    x, _ = source.batch(torch.tensor([3, 1]))  # off the plan: read directly
    assert x.view(-1).tolist() == [3.0, 1.0]


def test_a_streamed_retain_set_is_checked_as_it_is_read(world):
    original, _, retain, forget, _ = world
    bad = torch.utils.data.TensorDataset(torch.from_numpy(retain[0]), torch.from_numpy(retain[1] + 3))
    with pytest.raises(UnlearnkitError, match=r"retain label \d is out of range"):
        unlearnkit.unlearn(original, forget=forget, retain=bad, stream=True, config={"epochs": 1})
    with pytest.raises(UnlearnkitError, match=r"^retain label \d is out of range[^\n]*$"):  # from a worker process too, as one line
        unlearnkit.unlearn(original, forget=forget, retain=bad, stream=True, workers=2, config={"epochs": 1})
    with pytest.raises(UnlearnkitError, match="stream=True needs retain as a torch Dataset"):
        unlearnkit.unlearn(original, forget=forget, retain=retain, stream=True)
