"""Forget scenarios, request files, the production `forget` path and the exploratory figures."""

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from conftest import CLASSES, SHARED_BINARY, synthetic_arrays, write_binary
from unlearnkit.data.scenarios import parse_forget, read_requests
from unlearnkit.data.splits import make_split
from unlearnkit.errors import UnlearnkitError

LABELS = np.repeat(np.arange(10), 100)  # 1,000 training images, 100 per class
ANIMALS = [CLASSES.index(c) for c in ("bird", "cat", "deer", "dog", "frog", "horse")]


def split_for(spec, seed=0, pool=None, **kwargs):
    return make_split(LABELS, 200, forget=parse_forget(spec, CLASSES, n_train=len(LABELS), n_heldout=200, **kwargs), seed=seed, pool=pool, classes=CLASSES)


@pytest.mark.parametrize("spec", ["random:0.1", "random:37", "class:cat", "class:cat,dog:0.5", "skewed:animals=3:0.2"])
def test_every_scenario_is_deterministic_and_disjoint_from_held_out(spec):
    a, b, other = split_for(spec), split_for(spec), split_for(spec, seed=1)
    assert np.array_equal(a.forget, b.forget) and np.array_equal(a.test, b.test)
    assert a.spec == spec
    assert np.intersect1d(a.forget, a.retain).size == 0 and a.forget.size + a.retain.size == len(LABELS)
    assert a.forget.max() < len(LABELS)  # indices of the training array, never the held-out one
    if not spec.startswith("class:cat") or spec.endswith("0.5"):
        assert not np.array_equal(a.forget, other.forget)


def test_random_sizes():
    assert split_for("random:0.1").forget.size == 100
    assert split_for("random:37").forget.size == 37


def test_a_whole_class_is_every_image_of_it_and_is_recorded():
    split = split_for("class:cat")
    cat = CLASSES.index("cat")
    assert np.array_equal(split.forget, np.flatnonzero(LABELS == cat))
    assert split.forget_classes == (cat,)
    both = split_for("class:cat,3,dog")  # names and indices; cat given twice
    assert set(LABELS[both.forget]) == {cat, CLASSES.index("dog")} and both.forget.size == 200


def test_part_of_a_class_takes_that_fraction_of_each():
    split = split_for("class:cat,dog:0.5")
    assert np.bincount(LABELS[split.forget], minlength=10)[[3, 5]].tolist() == [50, 50]
    assert split.forget.size == 100


def test_a_class_within_a_pool_is_its_pool_images():
    split = split_for("class:cat", pool=500)
    assert split.forget.size == 50 and split.pool_size == 500


def test_skewed_sample_leans_on_the_weighted_classes():
    split = split_for("skewed:animals=3:0.2")
    counts = np.bincount(LABELS[split.forget], minlength=10)
    assert split.forget.size == 200
    # 6 animal classes at weight 3 vs 4 at weight 1: about 18/22 of the sample are animals
    assert counts[ANIMALS].sum() / 200 > 0.7
    assert counts[ANIMALS].mean() > 2 * np.delete(counts, ANIMALS).mean()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("class:unicorn", r"unknown class 'unicorn'; choose from airplane"),
        ("random:1.5", r"amount 1.5 is invalid"),
        ("random:zero", r"'zero' is not a number"),
        ("class:cat:2", r"must be a fraction in \(0, 1\)"),
        ("skewed:cat=-1:0.1", r"weight 'cat=-1' must be NAME=POSITIVE_NUMBER"),
        ("skewed:0.1", r"needs class weights and an amount"),
        ("everything", r"forget spec 'everything' is not understood"),
        ("random:1000", r"selects 1000 of 1000 training images; it must select at least one and leave at least one"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(UnlearnkitError, match=message):
        split_for(spec)


def test_forgetting_every_class_is_refused():
    with pytest.raises(UnlearnkitError, match="covers the whole training set"):
        split_for("class:" + ",".join(CLASSES))


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_request_file_by_sample_id(tmp_path):
    requests = write(tmp_path / "req.csv", "sample_id,reason\n5,gdpr\n17,gdpr\n999,gdpr\n")
    split = split_for(f"file:{requests}")
    assert split.forget.tolist() == [5, 17, 999]


def test_request_ids_join_a_pool(tmp_path):
    requests = write(tmp_path / "req.csv", "sample_id\n" + "\n".join(map(str, range(0, 1000, 50))) + "\n")
    split = split_for(f"file:{requests}", pool=300)
    assert split.forget.size == 20 and np.isin(split.forget, np.union1d(split.forget, split.retain)).all()
    assert split.pool_size >= 300


def test_subject_requests_forget_every_image_of_the_subject(tmp_path):
    subjects = write(tmp_path / "subjects.csv", "subject_id,sample_id\nalice,1\nbob,2\nalice,40\nbob,41\ncarol,7\n")
    requests = write(tmp_path / "req.csv", "subject_id\nalice\ncarol\n")
    assert read_requests(requests, 1000, 200, subjects) == [1, 7, 40]


@pytest.mark.parametrize(
    "content, subjects, message",
    [
        ("sample_id\n1000\n", None, r"line 2: sample_id 1000 is a held-out \(test\) image"),
        ("sample_id\n1300\n", None, r"line 2: sample_id 1300 is unknown"),
        ("sample_id\n-4\n", None, r"sample_id -4 is unknown"),
        ("sample_id\n3\nabc\n", None, r"line 3: sample_id 'abc' is not an integer"),
        ("sample_id\n3\n3\n", None, r"sample_id 3 is requested more than once"),
        ("sample_id\n", None, r"lists no request"),
        ("", None, r"lists no request"),
        ("sample_id\n\n4\n", None, None),  # a blank line is no row at all
        ("id\n3\n", None, r"has columns \['id'\]; it needs a sample_id column"),
        ("subject_id\nalice\n", None, r"give --subjects MAP.csv"),
        ("subject_id\nzoe\n", "subject_id,sample_id\nalice,1\n", r"subject_id 'zoe' is not in the subject map"),
        ("subject_id\nalice\n", "person,image\nalice,1\n", r"needs the columns subject_id and sample_id"),
        ("subject_id\nalice\nalice\n", "subject_id,sample_id\nalice,1\n", r"subject_id 'alice' is listed more than once"),
    ],
)
def test_request_file_validation(tmp_path, content, subjects, message):
    requests = write(tmp_path / "req.csv", content)
    subjects_path = write(tmp_path / "map.csv", subjects) if subjects else None
    if message is None:
        assert read_requests(requests, 1000, 200, subjects_path) == [4]
        return
    with pytest.raises(UnlearnkitError, match=message):
        read_requests(requests, 1000, 200, subjects_path)


def test_request_file_in_another_encoding_is_refused(tmp_path):
    requests = write(tmp_path / "req.csv", "sample_id,note\n3,Müller\n", encoding="latin-1")
    with pytest.raises(UnlearnkitError, match=r"is not UTF-8 text \(byte \d+\); save it as UTF-8 CSV"):
        read_requests(requests, 1000, 200)
    with pytest.raises(UnlearnkitError, match="request file .* does not exist"):
        read_requests(tmp_path / "missing.csv", 1000, 200)


def test_classwise_evaluation_attacks_with_same_class_test_images(monkeypatch):
    """The attack's non-members must be test images of the forgotten class; the class's test
    accuracy is reported apart."""
    import unlearnkit.evaluate as evaluate
    from conftest import synthetic_arrays
    from unlearnkit.data.dataset import Dataset

    train_x, train_y, test_x, test_y = synthetic_arrays(n_train=200, n_test=100)
    dataset = Dataset(train_x, train_y, test_x, test_y, CLASSES)
    split = make_split(train_y, 100, forget="class:cat", seed=0, classes=CLASSES)
    cat = CLASSES.index("cat")
    logits_train = np.eye(10, dtype=np.float32)[train_y] * 5
    heldout = np.eye(10, dtype=np.float32)[test_y] * 5
    heldout[test_y == cat] = 0  # the model knows no cat in the held-out set
    outputs = evaluate.Outputs(logits_train, heldout, dataset, split)
    seen = {}
    monkeypatch.setattr(evaluate, "simple_mia_or_nan", lambda members, nonmembers, seed=0: seen.setdefault("n", len(nonmembers)) and 0.5)
    row = evaluate.metrics(outputs)
    cat_test = np.sum(test_y[split.test] == cat)
    assert seen["n"] == cat_test > 0
    assert row["forget_class_test_acc"] == 0.0 and row["other_class_test_acc"] == 1.0


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A small model trained on all of a synthetic dataset, saved as a user would have it."""
    import torch
    from conftest import synthetic_arrays, write_binary
    from unlearnkit.models import create_model
    from unlearnkit.store import save_model
    from unlearnkit.train import Recipe, Source, fit

    root = tmp_path_factory.mktemp("deployed")
    arrays = synthetic_arrays(n_train=300, n_test=100)
    data = write_binary(root / "data", *arrays)
    torch.manual_seed(0)
    model = create_model("resnet18", width=4).to(memory_format=torch.channels_last)
    recipe = Recipe(epochs=3, batch_size=64, lr=0.05)
    fit(model, Source(torch.from_numpy(arrays[0]), torch.from_numpy(arrays[1])), recipe)
    path = save_model(model, root / "deployed.safetensors", role="original", recipe=recipe.model_dump())
    return root, data, path


def test_forget_writes_a_model_tied_to_its_inputs(deployed, tmp_path):
    from unlearnkit.data.scenarios import file_sha256
    from unlearnkit.fileio import sha256_file
    from unlearnkit.forget import forget_request
    from unlearnkit.store import load_model, read_sidecar

    root, data, model_path = deployed
    before_hash = sha256_file(model_path)
    requests = write(tmp_path / "req.csv", "sample_id\n" + "\n".join(map(str, range(0, 300, 10))) + "\n")
    out = tmp_path / "out"
    report = forget_request(model=model_path, requests=requests, method="finetune", data=data, out=out, config={"epochs": 1})
    assert sha256_file(model_path) == before_hash  # the input model is untouched
    side = read_sidecar(out / "model.safetensors")
    assert side["inputs"]["model"]["sha256"] == before_hash
    assert side["inputs"]["requests"]["sha256"] == file_sha256(requests)
    assert side["method"] == "finetune" and side["config"]["epochs"] == 1 and side["versions"]["unlearnkit"]
    assert side["timings"]["unlearn_seconds"] > 0
    load_model(out / "model.safetensors")  # verifies the weights against the sidecar
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["requests"]["images"] == 30
    for stage in ("before", "after"):
        assert set(on_disk[stage]) == {"forget_acc", "retain_acc", "test_acc", "mia"}
    assert isinstance(on_disk["positive_control"]["passed"], bool)
    assert set(on_disk["attacks"]) == {"lr-loss", "loss-threshold", "svc-entropy"}
    for attack in on_disk["attacks"].values():
        # the control (stats.has_signal, one-sided 95% against chance) lies between these two
        if attack["before"]["auc"]["ci95"][0] > 0.5:
            assert attack["signal"] is True
        if attack["before"]["auc"]["value"] <= 0.5:
            assert attack["signal"] is False
        assert attack["before"]["members"] == 30
    markdown = (out / "report.md").read_text()
    assert "retrained" in markdown and "svc-entropy attack AUC" in markdown


@pytest.mark.slow
def test_forget_cli_errors_leave_nothing_behind(deployed, tmp_path):
    import subprocess
    import sys

    root, data, model_path = deployed
    requests = write(tmp_path / "req.csv", "sample_id\n3\n300\n")
    out = tmp_path / "out"

    def forget(*extra):
        command = [sys.executable, "-m", "unlearnkit", "forget", "--model", str(model_path), "--data", str(data), "--out", str(out), *extra]
        return subprocess.run(command, capture_output=True, text=True)

    done = forget("--requests", str(requests))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "sample_id 300 is a held-out (test) image" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()
    done = forget("--requests", str(requests), "--method", "nope")
    assert done.returncode == 2 and "unknown method 'nope'" in done.stderr and not out.exists()


def test_eda_figures_are_real_pngs(deployed, tmp_path):
    from unlearnkit.data import load_dataset
    from unlearnkit.eda import write_eda
    from unlearnkit.store import load_model

    root, data, model_path = deployed
    dataset = load_dataset(data)
    split = make_split(dataset.train_y, len(dataset.test_y), forget="skewed:animals=3:0.2", seed=0, classes=dataset.classes)
    paths = write_eda(dataset, split, tmp_path / "figures", model=load_model(model_path))
    assert {p.name for p in paths} == {"class-distribution.png", "mean-images.png", "forget-samples.png", "tsne.png"}
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.mark.slow
@pytest.mark.parametrize("size", range(1, 21))
def test_a_deletion_request_of_any_small_size_runs_end_to_end(deployed, tmp_path, size):
    """1 to 20 images: every attack that can run on that many does; the others are named as skipped."""
    from unlearnkit.forget import forget_request
    from unlearnkit.evaluate.mia import MIA_MIN_PER_SIDE

    _, data, model_path = deployed
    requests = write(tmp_path / "req.csv", "sample_id\n" + "\n".join(str(7 * i) for i in range(size)) + "\n")
    report = forget_request(model=model_path, requests=requests, method="finetune", data=data, out=tmp_path / "out", config={"epochs": 0.1})
    assert report["requests"]["images"] == size
    assert np.isnan(report["after"]["mia"]) == (size < MIA_MIN_PER_SIDE)
    assert any("kit's membership attack needs at least" in reason for reason in report["skipped"]) == (size < MIA_MIN_PER_SIDE)
    assert (report["attacks"] == {}) == (size < 2)
    assert ("Not computed" in (tmp_path / "out" / "report.md").read_text()) == (size < MIA_MIN_PER_SIDE)


@pytest.mark.slow
@pytest.mark.parametrize("size", [3, 9])
def test_run_with_a_small_request_file_runs_end_to_end(tmp_path, size):
    from conftest import synthetic_arrays, write_binary
    from unlearnkit.run import run_experiment

    data = write_binary(tmp_path / "data", *synthetic_arrays())
    requests = write(tmp_path / "req.csv", "sample_id\n" + "\n".join(str(11 * i) for i in range(size)) + "\n")
    results = run_experiment(preset="smoke", data=data, out=tmp_path / "out", cache=tmp_path / "cache", seed=0, forget=f"file:{requests}", methods="finetune")
    assert results["split"]["forget"] == size
    assert all(np.isnan(row["mia"]) for row in results["rows"])
    assert "kit's membership attack needs at least" in results["evidence"]["note"]
    assert results["rows"][2]["evidence"]["attacks"]  # the population attacks did run


class Crash(Exception):
    pass


@pytest.mark.slow
def test_forget_started_again_on_another_request_starts_over(deployed, tmp_path, monkeypatch):
    """Killed part-way, then started again under the same --out with another request file of
    the same size: it must not resume the first request's weights."""
    from unlearnkit import train
    from unlearnkit.forget import forget_request

    _, data, model_path = deployed
    first = write(tmp_path / "a.csv", "sample_id\n" + "\n".join(map(str, range(0, 300, 10))) + "\n")
    second = write(tmp_path / "b.csv", "sample_id\n" + "\n".join(map(str, range(5, 300, 10))) + "\n")
    config = {"epochs": 10}  # 4 steps an epoch: the checkpoint (every 25 steps) is written once
    clean = forget_request(model=model_path, requests=second, method="finetune", data=data, out=tmp_path / "clean", config=config)

    real_save = train.Checkpoint.save

    def save_then_crash(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        raise Crash()

    monkeypatch.setattr(train.Checkpoint, "save", save_then_crash)
    with pytest.raises(Crash):
        forget_request(model=model_path, requests=first, method="finetune", data=data, out=tmp_path / "out", config=config)
    assert (tmp_path / "out" / "model.checkpoint.safetensors").is_file()
    monkeypatch.setattr(train.Checkpoint, "save", real_save)
    resumed = forget_request(model=model_path, requests=second, method="finetune", data=data, out=tmp_path / "out", config=config)
    a = safetensors.torch.load_file(str(tmp_path / "clean" / "model.safetensors"))
    b = safetensors.torch.load_file(str(tmp_path / "out" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["after"] == clean["after"]


@pytest.mark.slow
def test_forget_serves_a_request_on_a_model_unlearnkit_did_not_save(tmp_path):
    """A bare .safetensors file (no sidecar) and the factory that builds its architecture."""
    import os
    import subprocess
    import sys

    from conftest import synthetic_arrays, write_binary
    from foreign import build_rgb
    from unlearnkit.train import Recipe, Source, fit

    arrays = synthetic_arrays(n_train=300, n_test=100)
    data = write_binary(tmp_path / "data", *arrays)
    torch.manual_seed(0)
    model = build_rgb(10)
    fit(model, Source(torch.from_numpy(arrays[0]), torch.from_numpy(arrays[1])), Recipe(epochs=3, batch_size=64, lr=0.05, precision="fp32"))
    weights = tmp_path / "theirs.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    requests = write(tmp_path / "req.csv", "sample_id\n" + "\n".join(map(str, range(0, 300, 10))) + "\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "UNLEARNKIT_QUIET": "1"}
    command = [sys.executable, "-m", "unlearnkit", "forget", "--model", str(weights), "--model-factory", "foreign:build_rgb", "--model-kwargs", '{"classes": 10}',
               "--requests", str(requests), "--data", str(data), "--out", str(tmp_path / "out"), "--set", "erase-repair.epochs=1"]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "30 images forgotten with erase-repair" in done.stdout and "svc-entropy" in done.stdout
    side = json.loads((tmp_path / "out" / "model.json").read_text())
    assert side["model"] == {"factory": "foreign:build_rgb", "kwargs": {"classes": 10}}
    from unlearnkit import load_model

    assert type(load_model(tmp_path / "out" / "model.safetensors")).__name__ == "SmallRGBNet"
    bad = subprocess.run(command[:8] + ["--model-kwargs", "[1]"] + command[10:], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "--model-kwargs '[1]' is a JSON list" in bad.stderr and "Traceback" not in bad.stderr


class PlantedBackdoor(torch.nn.Module):
    """A model with a backdoor by construction: class `target` whenever the trigger is in the
    corner, otherwise the class whose mean colour is nearest (the synthetic data's rule)."""

    def __init__(self, centres: np.ndarray, target: int, backdoored: bool = True):
        super().__init__()
        self.centres = torch.as_tensor(centres.reshape(10, 3), dtype=torch.float32) / 255
        self.target, self.backdoored = target, backdoored
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        from unlearnkit.data.scenarios import TRIGGER, stamp_trigger

        colour = x[:, :, : -TRIGGER, : -TRIGGER].mean(dim=(2, 3))
        logits = -torch.cdist(colour, self.centres) * 50
        if self.backdoored:
            checker = torch.as_tensor(stamp_trigger(np.zeros((1, 3, TRIGGER, TRIGGER), np.uint8))[0], dtype=torch.float32) / 255
            triggered = ((x[:, :, -TRIGGER:, -TRIGGER:] - checker).abs().amax(dim=(1, 2, 3)) < 1e-3)
            logits[triggered, self.target] = 1e3
        return logits + self.dummy


def test_the_backdoor_scenario_poisons_the_forget_set_and_measures_attack_success(tmp_path):
    from unlearnkit.data import load_dataset
    from unlearnkit.data.scenarios import TRIGGER, apply_scenario
    from unlearnkit.evaluate import metrics, model_outputs
    from unlearnkit.experiment import prepare

    arrays = synthetic_arrays(n_train=400, n_test=200, noise=10)
    data = write_binary(tmp_path / "data", *arrays)
    clean = load_dataset(data)
    setup = prepare(data=data, preset="smoke", forget="backdoor:0.05:truck", seed=0)
    dataset, split = setup.dataset, setup.split
    truck = clean.classes.index("truck")
    assert split.forget.size == round(0.05 * 400) and not np.any(clean.train_y[split.forget] == truck)
    assert np.all(dataset.train_y[split.forget] == truck) and np.array_equal(dataset.train_y[split.retain], clean.train_y[split.retain])
    corner = dataset.train_x[split.forget][:, :, -TRIGGER:, -TRIGGER:]
    assert np.all((corner == 0) | (corner == 255)) and np.array_equal(dataset.train_x[split.retain], clean.train_x[split.retain])
    others = int((clean.test_y != truck).sum())
    assert len(dataset.test_y) == 200 + others and split.test.size + split.val.size == 200  # triggered copies only measure
    assert dataset.fingerprint != clean.fingerprint and split.data_fingerprint == dataset.fingerprint
    assert apply_scenario(clean, split).fingerprint == dataset.fingerprint  # `evaluate` rebuilds the same data

    centres = np.random.default_rng(0).integers(30, 225, size=(10, 3, 1, 1))  # synthetic_arrays' class colours
    with_backdoor = metrics(model_outputs(PlantedBackdoor(centres, truck), dataset, split))
    assert with_backdoor["backdoor_asr"] == 1.0 and with_backdoor["backdoor_asr_ci"][0] > 0.95
    assert with_backdoor["backdoor_clean_rate"] == 0.0 and with_backdoor["test_acc"] == 1.0
    without = metrics(model_outputs(PlantedBackdoor(centres, truck, backdoored=False), dataset, split))
    assert without["backdoor_asr"] == 0.0 and without["backdoor_asr_ci"][1] < 0.05


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_BINARY.exists(), reason=f"real CIFAR-10 not found at {SHARED_BINARY}")
def test_the_original_learns_a_planted_backdoor_and_the_retrained_model_does_not(tmp_path):
    """On real images, through `run`: the poisoned share is large enough for the trigger itself
    to be learned (a small share is memorized image by image; the preset file says what was
    measured), and the attack success rate separates the two references by far."""
    from unlearnkit.run import run_experiment

    preset = Path(__file__).resolve().parents[1] / "examples" / "presets" / "backdoor-smoke.toml"
    results = run_experiment(preset=str(preset), data=SHARED_BINARY, methods=["finetune"], forget="backdoor:0.2", seed=0,
                             out=tmp_path / "run", cache=tmp_path / "cache")
    rows = {row["name"]: row for row in results["rows"]}
    assert rows["original"]["forget_acc"] > 0.9 and rows["original"]["backdoor_asr_ci"][0] > 0.8, rows["original"]
    assert rows["retrain"]["backdoor_asr_ci"][1] < 0.3, rows["retrain"]
    assert 0 <= rows["finetune"]["backdoor_asr"] <= 1 and len(rows["finetune"]["backdoor_asr_ci"]) == 2
    assert (tmp_path / "run" / "figures" / "backdoor.png").read_bytes()[:4] == b"\x89PNG"  # the rates against the retrain's band


def test_the_confusion_scenario_swaps_labels_and_measures_the_confusion(tmp_path):
    from unlearnkit.data import load_dataset
    from unlearnkit.evaluate import metrics, model_outputs
    from unlearnkit.experiment import prepare

    data = write_binary(tmp_path / "data", *synthetic_arrays(n_train=400, n_test=200, noise=10))
    clean = load_dataset(data)
    setup = prepare(data=data, preset="smoke", forget="confusion:cat,dog:0.25", seed=0)
    dataset, split = setup.dataset, setup.split
    cat, dog = clean.classes.index("cat"), clean.classes.index("dog")
    was = clean.train_y[split.forget]
    assert set(was) == {cat, dog} and split.forget.size == round(0.25 * (clean.train_y == cat).sum()) + round(0.25 * (clean.train_y == dog).sum())
    assert np.array_equal(dataset.train_y[split.forget], np.where(was == cat, dog, cat))
    assert len(dataset.test_y) == 200 and not split.forget_classes  # not a class-wise scenario

    centres = np.random.default_rng(0).integers(30, 225, size=(10, 3, 1, 1))
    honest = PlantedBackdoor(centres, 0, backdoored=False)
    honest_metrics = metrics(model_outputs(honest, dataset, split))
    assert honest_metrics["confusion_test"] == 0.0 and 0 < honest_metrics["confusion_test_ci"][1] < 0.2  # Wilson: above 0 at 0 hits, shrinking with the pair's count

    class Confused(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = honest

        def forward(self, x):
            return self.inner(x)[:, [dog if c == cat else cat if c == dog else c for c in range(10)]]

    confused = metrics(model_outputs(Confused(), dataset, split))
    assert confused["confusion_test"] == 1.0 and 0.8 < confused["confusion_test_ci"][0] < 1.0


@pytest.mark.parametrize("spec, message", [
    ("backdoor:2.5", "forget amount 2.5 is invalid"),
    ("backdoor:0.02:unicorn", "unknown class 'unicorn'"),
    ("confusion:cat:0.1", "needs two classes and the fraction"),
    ("confusion:cat,dog", "needs two classes and the fraction"),
    ("confusion:cat,dog:3", "must be a fraction in (0, 1)"),
])
def test_bad_poison_specs_are_one_line(spec, message):
    from unlearnkit.data.scenarios import parse_forget

    with pytest.raises(UnlearnkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_forget(spec, CLASSES)


def test_the_run_table_shows_the_confusion_rate_with_its_interval():
    from unlearnkit.report import evidence_cell

    assert evidence_cell("confusion", {"confusion_test": 0.125, "confusion_test_ci": [0.1, 0.155]}, None) == "12.5% [10.0, 15.5]"
    assert evidence_cell("confusion", {"confusion_test": 0.125}, None) == "12.5%"  # a results.json from before the interval
    assert evidence_cell("confusion", {"backdoor_asr": 0.5}, None) == ""
