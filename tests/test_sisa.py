"""SISA: the partition, exact deletion (bitwise the shard trained from scratch without the ids),
which shards retrain and from which slice, saving, the command line and the method."""

from __future__ import annotations

import copy
import json
import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import run_main

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import Task, run_method
from unlearnkit.models import create_model
from unlearnkit.sisa import (
    FORMAT, SisaEnsemble, TrainingImages, VOTE_FLOOR, combine, delete, load_any_model, load_ensemble, partition, save_ensemble, slice_recipe,
    train_ensemble, train_shard,
)
from unlearnkit.store import Store
from unlearnkit.train import Recipe, Source

# fp32: the bf16 kernels of our two CPU kinds round differently; exactness holds in both, but a
# test should not depend on which kind runs it.
RECIPE = Recipe(epochs=2, batch_size=16, lr=0.05, precision="fp32")
SPEC = {"name": "resnet18", "kwargs": {"width": 2}}
SHARDS, SLICES, SEED = 3, 3, 0


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def bitwise_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """3 shards × 3 slices of a width-2 ResNet-18 on 90 learnable 16×16 images (ids 0..119, of
    which 90 are trained on), every slice's weights in the store."""
    rng = np.random.default_rng(0)
    centres = rng.integers(30, 225, size=(10, 3, 1, 1))
    y = rng.integers(0, 10, 120)
    x = np.clip(centres[y] + rng.normal(0, 40, size=(120, 3, 16, 16)), 0, 255).astype(np.uint8)
    images = TrainingImages(np.arange(120), torch.from_numpy(x), torch.from_numpy(y), Store(tmp_path_factory.mktemp("store")), torch.device("cpu"))
    ensemble, runs = train_ensemble(images, np.arange(10, 100), SHARDS, SLICES, SPEC, RECIPE, SEED)
    return images, ensemble, runs


@pytest.mark.parametrize("count, shards, slices", [(90, 3, 3), (101, 4, 5), (7, 7, 1), (10, 1, 10)])
def test_the_partition_holds_every_id_once_in_near_equal_parts_by_seed(count, shards, slices):
    ids = np.arange(1000, 1000 + count)
    layout = partition(ids, shards, slices, seed=3)
    assert len(layout) == shards and all(len(parts) == slices for parts in layout)
    dealt = np.concatenate([part for parts in layout for part in parts])
    assert np.array_equal(np.sort(dealt), ids)  # every id exactly once
    shard_sizes = [sum(len(part) for part in parts) for parts in layout]
    slice_sizes = [len(part) for parts in layout for part in parts]
    assert max(shard_sizes) - min(shard_sizes) <= 1 and max(slice_sizes) - min(slice_sizes) <= 1
    again = partition(ids[::-1], shards, slices, seed=3)  # the order ids come in does not matter, the seed does
    assert all(np.array_equal(a, b) for pa, pb in zip(layout, again) for a, b in zip(pa, pb))
    if count > 7:
        other = partition(ids, shards, slices, seed=4)
        assert not np.array_equal(dealt, np.concatenate([part for parts in other for part in parts]))


def test_slices_share_the_epochs_so_that_a_shard_sees_the_recipes_passes():
    for slices in (1, 2, 5):
        per_slice = slice_recipe(RECIPE, slices).epochs
        passes = sum(per_slice * k / slices for k in range(1, slices + 1))  # slice k trains on k/R of the shard
        assert per_slice == pytest.approx(2 * RECIPE.epochs / (slices + 1)) and passes == pytest.approx(RECIPE.epochs)


def test_vote_and_mean_aggregation():
    # three shards, two images, three classes: the first image 2 votes for class 1, 1 for class 0
    shard_logits = torch.tensor([[[5.0, 0, 0], [0, 0, 3]], [[0, 4, 0], [3, 0, 0]], [[0, 6, 0], [0, 3, 0]]])
    vote = combine(shard_logits, "vote")
    assert torch.allclose(vote.exp(), torch.tensor([[1 / 3, 2 / 3, VOTE_FLOOR], [1 / 3, 1 / 3, 1 / 3]]))
    assert vote.argmax(1).tolist() == [1, 0]  # a tie goes to the lowest class index, as np.argmax in the reference
    mean = combine(shard_logits, "mean")
    assert torch.allclose(mean.exp(), torch.softmax(shard_logits, -1).mean(0)) and math.isclose(mean.exp().sum(1)[0].item(), 1, rel_tol=1e-6)
    with pytest.raises(UnlearnkitError, match="--aggregate 'median': choose vote or mean"):
        combine(shard_logits, "median")


def first_slice_holding(ensemble, shard, ids):
    return next(k for k, part in enumerate(ensemble.layout[shard]) if np.isin(part, ids).any())


def test_deletion_is_bitwise_the_shards_trained_from_scratch_without_the_ids(trained, tmp_path, monkeypatch):
    images, ensemble, _ = trained
    # one id in shard 0's middle slice, one in shard 1's first slice: shard 2 holds neither
    doomed = np.array([ensemble.layout[0][1][0], ensemble.layout[1][0][2]])
    before = [state(shard) for shard in ensemble.shards]
    after = copy.deepcopy(ensemble)
    fits = []
    import unlearnkit.sisa

    real_fit = unlearnkit.sisa.fit
    monkeypatch.setattr(unlearnkit.sisa, "fit", lambda model, data, *a, **k: fits.append(len(data)) or real_fit(model, data, *a, **k))
    deletion = delete(after, doomed, images)
    monkeypatch.undo()

    # only the shards that held an id were retrained, each from the first slice that held one
    assert deletion.removed == 2 and [run.shard for run in deletion.runs] == [0, 1]
    assert [run.first_slice for run in deletion.runs] == [1, 0] == [first_slice_holding(ensemble, s, doomed) for s in (0, 1)]
    assert [run.trained for run in deletion.runs] == [SLICES - 1, SLICES]
    sizes = [[len(part) for part in after.layout[s]] for s in (0, 1)]
    assert fits == [sum(sizes[0][:2]), sum(sizes[0]), *np.cumsum(sizes[1])]  # the slices so far, without the ids
    assert not np.isin(doomed, after.ids).any() and after.ids.size == ensemble.ids.size - 2
    assert bitwise_equal(state(after.shards[2]), before[2])

    scratch = dataclasses.replace(images, store=Store(tmp_path / "empty"))
    for s in (0, 1):
        kept = [part[~np.isin(part, doomed)] for part in ensemble.layout[s]]
        expected, run = train_shard(scratch, kept, s, SPEC, RECIPE, SEED)
        assert (run.first_slice, run.trained) == (0, SLICES)  # really from scratch
        assert bitwise_equal(state(after.shards[s]), state(expected)), f"shard {s} is not the shard trained without the ids"
        assert not bitwise_equal(state(after.shards[s]), before[s])

    # the check can fail: deleting another id of the same slice gives other weights
    other = copy.deepcopy(ensemble)
    delete(other, np.array([ensemble.layout[0][1][1]]), images)
    assert not bitwise_equal(state(other.shards[0]), state(after.shards[0]))


def test_deleting_ids_the_ensemble_does_not_hold_retrains_nothing(trained):
    images, ensemble, _ = trained
    untouched = copy.deepcopy(ensemble)
    deletion = delete(untouched, np.array([0, 5, 119]), images)  # ids outside the trained 10..99
    assert deletion.removed == 0 and deletion.runs == []
    assert all(bitwise_equal(state(a), state(b)) for a, b in zip(untouched.shards, ensemble.shards))


def test_a_second_training_loads_every_slice_from_the_store(trained):
    images, ensemble, runs = trained
    assert [(run.first_slice, run.trained) for run in runs] == [(0, SLICES)] * SHARDS
    again, reruns = train_ensemble(images, np.arange(10, 100), SHARDS, SLICES, SPEC, RECIPE, SEED)
    assert [run.trained for run in reruns] == [0] * SHARDS
    assert all(bitwise_equal(state(a), state(b)) for a, b in zip(again.shards, ensemble.shards))


def test_save_and_load_round_trip(trained, tmp_path):
    images, ensemble, _ = trained
    ensemble = copy.deepcopy(ensemble)
    delete(ensemble, np.array([ensemble.layout[2][2][0]]), images)  # a slice one shorter than its neighbours
    path = save_ensemble(ensemble, tmp_path / "sisa.safetensors", role="original")
    loaded = load_ensemble(path, store=images.store)
    assert bitwise_equal(state(loaded), state(ensemble))
    assert all(np.array_equal(a, b) for pa, pb in zip(loaded.layout, ensemble.layout) for a, b in zip(pa, pb))
    assert (loaded.spec, loaded.recipe, loaded.seed, loaded.aggregate) == (ensemble.spec, ensemble.recipe, ensemble.seed, ensemble.aggregate)
    x = images.x[:8]
    for how in ("vote", "mean"):
        loaded.aggregate = ensemble.aggregate = how
        assert torch.equal(loaded(x.float() / 255), ensemble(x.float() / 255))
    assert isinstance(load_any_model(path), SisaEnsemble)
    path.write_bytes(path.read_bytes()[:-1] + b" ")
    with pytest.raises(UnlearnkitError, match="the weights file was changed or damaged"):
        load_ensemble(path)


@pytest.mark.parametrize("aggregate", ["vote", "mean"])
def test_the_relearning_attack_fine_tunes_every_member_and_finds_an_exact_deletion_indistinguishable(trained, tmp_path, aggregate):
    """The attack trains an ensemble member by member (a vote has no gradient); on a deletion and
    on the ensemble trained from scratch without the ids (bitwise the same) every curve is the
    same, so the gap is 0."""
    from unlearnkit.evaluate.relearn import RelearnOptions, relearn_audit, relearning

    images, ensemble, _ = trained
    doomed = np.concatenate([ensemble.layout[s][SLICES - 1][:3] for s in range(SHARDS)])  # 3 ids of every shard's last slice
    deleted = copy.deepcopy(ensemble)
    delete(deleted, doomed, images)
    scratch = dataclasses.replace(images, store=Store(tmp_path / "empty"))
    shards = [train_shard(scratch, [part[~np.isin(part, doomed)] for part in ensemble.layout[s]], s, SPEC, RECIPE, SEED)[0] for s in range(SHARDS)]
    from_scratch = SisaEnsemble(shards, deleted.layout, spec=SPEC, recipe=RECIPE, seed=SEED)
    kept = np.setdiff1d(ensemble.ids, doomed)
    for model in (deleted, from_scratch):
        model.aggregate = aggregate
    x, y = images.x[doomed], images.y[doomed]
    attacked = list(relearning(deleted, x[:4], y[:4], RelearnOptions(steps=2), seed=0))[-1]
    assert all(not bitwise_equal(state(a), state(b)) for a, b in zip(attacked.shards, deleted.shards))  # each member was trained
    options = RelearnOptions(steps=3, fraction=0.25, seeds=2, lr=0.05)
    found = relearn_audit({"retrain": from_scratch, "sisa": deleted}, x, y, images.x[kept], images.y[kept], options, seed=0)
    for attack in ("forget", "neighbours"):
        assert found["models"]["sisa"][attack]["gap"] == 0.0 and found["models"]["sisa"][attack]["gap_ci95"] == [0.0, 0.0]


def task_of(images: TrainingImages, forget, retain, **changes) -> Task:
    source = lambda ids: Source(images.x[ids], images.y[ids])  # noqa: E731  (row i holds id i here)
    plain = create_model("resnet18", width=2)
    return dataclasses.replace(Task(retain=source(retain), forget=source(forget), val=source(retain[:4]), original=plain, num_classes=10,
                                    recipe=RECIPE, forget_ids=forget, retain_ids=retain), **changes)


def test_the_method_deletes_the_forget_ids_exactly(trained, tmp_path):
    images, ensemble, _ = trained
    forget = np.array([ensemble.layout[2][2][1]])  # in the last slice of shard 2: one slice to retrain
    retain = np.setdiff1d(ensemble.ids, forget)
    task = task_of(images, forget, retain)  # the method sees the retain and forget images only, not `images`
    result = run_method("sisa", ensemble, task, {"shards": SHARDS, "slices": SLICES, "aggregate": "mean"}).model
    kept = [part[part != forget[0]] for part in ensemble.layout[2]]
    from_scratch, _ = train_shard(dataclasses.replace(images, store=Store(tmp_path)), kept, 2, SPEC, RECIPE, SEED)
    assert bitwise_equal(state(result.shards[2]), state(from_scratch)) and result.aggregate == "mean"
    assert all(bitwise_equal(state(result.shards[s]), state(ensemble.shards[s])) for s in (0, 1))
    assert not np.isin(forget, result.ids).any()
    assert np.isin(forget, ensemble.ids).all(), "the input ensemble was modified"


@pytest.mark.parametrize("given, changes, config, message", [
    ("plain", {}, {}, "sisa deletes from a SISA ensemble, not a ResNet; train one with `unlearnkit train --role original --shards S --slices R`"),
    ("ensemble", {"forget_ids": None}, {"shards": SHARDS, "slices": SLICES}, "sisa needs the training ids of the forget and retain images"),
    ("ensemble", {}, {"shards": 4}, "the ensemble has 3 shards × 3 slices but the config asks for 4 × 4"),
    ("ensemble", {"forget_ids": np.array([0])}, {"shards": SHARDS, "slices": SLICES}, "1 forget ids are not among the ensemble's training ids"),
])
def test_the_method_refuses_in_one_line(trained, given, changes, config, message):
    images, ensemble, _ = trained
    forget = np.array([ensemble.layout[0][0][0]])
    task = task_of(images, forget, np.setdiff1d(ensemble.ids, forget), **changes)
    model = ensemble if given == "ensemble" else create_model("resnet18", width=2)
    with pytest.raises(UnlearnkitError) as refused:
        run_method("sisa", model, task, config)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("options, message", [
    (["--shards", "0"], "--shards 0: give 1 or more shards"),
    (["--shards", "-2", "--slices", "2"], "--shards -2: give 1 or more shards"),
    (["--shards", "251"], "--shards 251 is more than the 250 training images; give at most 250"),
    (["--shards", "2", "--slices", "0"], "--slices 0: give 1 or more slices per shard"),
    (["--shards", "100", "--slices", "3"], "--slices 3: the smallest of 100 shards holds 2 images, too few to cut into 3 slices; give at most 2"),
])
def test_bad_sisa_layouts_are_one_line_errors(binary_dir, cache, options, message):
    done = run_main("train", "--role", "original", "--preset", "smoke", "--data", str(binary_dir), *options)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in " ".join(done.stderr.split())
    assert not (cache / "store").exists() or not any((cache / "store").rglob("*.safetensors"))


@pytest.mark.slow
def test_train_command_trains_then_loads_the_ensemble(binary_dir, cache):
    argv = ["train", "--role", "original", "--preset", "smoke", "--data", str(binary_dir), "--shards", "2", "--slices", "2"]
    first = run_main(*argv)
    assert first.returncode == 0, first.stderr
    assert "original SISA ensemble (smoke, seed 0, 2 shards × 2 slices, vote): trained in" in first.stdout and "test accuracy" in first.stdout
    stored = first.stdout.split("stored at ")[1].split()[0]
    ensemble = load_ensemble(stored)
    assert ensemble.ids.size == 250 and len(ensemble.shards) == 2
    second = run_main(*argv, "--aggregate", "mean")
    assert "2 shards × 2 slices, mean): loaded from cache" in second.stdout and stored in second.stdout


@pytest.mark.slow
def test_run_with_sisa_deletes_the_forget_set_from_an_ensemble_of_the_pool(tmp_path):
    from conftest import synthetic_arrays, write_binary
    from unlearnkit.data.splits import Split
    from unlearnkit.evidence import EvidenceOptions
    from unlearnkit.run import run_experiment

    data = write_binary(tmp_path / "cifar-10-batches-bin", *synthetic_arrays())
    results = run_experiment(preset="smoke", data=data, out=tmp_path / "out", cache=tmp_path / "cache", methods=["sisa"],
                             configs={"sisa": {"shards": 2, "slices": 2}})
    row = next(row for row in results["rows"] if row["name"] == "sisa")
    model = load_any_model(row["model"])
    split = Split.load(tmp_path / "out" / "split.npz")
    assert isinstance(model, SisaEnsemble) and np.array_equal(model.ids, split.retain)
    assert row["seconds"] > 0 and results["reference_cached"] == {"original": False, "retrain": False}
    audited = run_experiment(preset="smoke", data=data, out=tmp_path / "audited", cache=tmp_path / "cache", methods=["sisa"],
                             configs={"sisa": {"shards": 2, "slices": 2}}, evidence=EvidenceOptions(audits=("relearn", "quantize")))
    sisa = next(row for row in audited["rows"] if row["name"] == "sisa")
    assert {"relearn_gap", "relearn_neighbours_gap", "int8_forget_gap", "int4_forget_gap", "relearn_held"} <= set(sisa)
    assert audited["reference_cached"] == {"original": True, "retrain": True}
    # the NeurIPS score's N unlearned models are deletions from N ensembles (seeds 0 and 1), U-LiRA's shadow ones from narrower ensembles
    full = run_experiment(preset="smoke", data=data, out=tmp_path / "full", cache=tmp_path / "cache", methods=["sisa"], configs={"sisa": {"shards": 2, "slices": 2}},
                          evidence=EvidenceOptions(level="full", n=2, k=2, shadow_width=2, resamples=100))
    sisa = next(row for row in full["rows"] if row["name"] == "sisa")
    assert 0 <= sisa["neurips_score"] <= 1 and 0 <= sisa["ulira_auc"] <= 1 and sisa["klom"] >= 0
    assert len(np.load(tmp_path / "full" / "epsilon.npz")["sisa"]) == split.forget.size
    sidecars = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("*.json")]
    ensembles = {(meta["model"]["kwargs"]["width"], meta["seed"]) for meta in sidecars if meta.get("format") == FORMAT}
    assert ensembles == {(4, 0), (4, 1), (2, 1), (2, 2)}  # the run's and the second of N (smoke's width 4), U-LiRA's two shadows (width 2)
