import json

import numpy as np
import pytest

from unlearnkit import load_model
from unlearnkit.data import load_dataset
from unlearnkit.data.splits import Split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.run import DEFAULT_METHODS, run_experiment
from unlearnkit.train import predict_logits

ROW_KEYS = {"name", "train_acc", "retain_acc", "forget_acc", "test_acc", "val_acc", "mia", "avg_gap", "seconds", "time_ratio", "model"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from conftest import synthetic_arrays, write_binary

    root = tmp_path_factory.mktemp("run")
    data = write_binary(root / "cifar-10-batches-bin", *synthetic_arrays())
    out = root / "out"
    results = run_experiment(preset="smoke", data=data, out=out, cache=root / "cache", seed=0)
    return results, out, data, root


def test_results_json_schema(finished_run):
    results, out, _, _ = finished_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert {"preset", "seed", "data_fingerprint", "rows", "positive_control"} <= set(on_disk)
    assert [row["name"] for row in on_disk["rows"]] == ["original", "retrain", *DEFAULT_METHODS]
    for row in on_disk["rows"]:
        assert ROW_KEYS <= set(row)
        for key in ("train_acc", "retain_acc", "forget_acc", "test_acc", "val_acc", "mia"):
            assert 0 <= row[key] <= 1
    assert isinstance(on_disk["positive_control"]["passed"], bool)
    reference = on_disk["rows"][1]
    for row in on_disk["rows"]:
        expected = np.mean([abs(row[k] - reference[k]) for k in ("forget_acc", "retain_acc", "test_acc", "mia")])
        assert row["avg_gap"] == pytest.approx(expected, abs=1e-12)
    assert reference["avg_gap"] == 0


def test_reported_accuracies_match_a_recomputation(finished_run):
    results, out, data, _ = finished_run
    dataset, split = load_dataset(data), Split.load(out / "split.npz")
    assert split.data_fingerprint == results["data_fingerprint"]
    for row in results["rows"]:
        model = load_model(row["model"])
        for key, x, y, idx in (
            ("forget_acc", dataset.train_x, dataset.train_y, split.forget),
            ("retain_acc", dataset.train_x, dataset.train_y, split.retain),
            ("test_acc", dataset.test_x, dataset.test_y, split.test),
            ("val_acc", dataset.test_x, dataset.test_y, split.val),
        ):
            accuracy = float((predict_logits(model, x[idx]).argmax(1).numpy() == y[idx]).mean())
            assert accuracy == pytest.approx(row[key], abs=1e-9), (row["name"], key)


def test_figures_are_written(finished_run):
    results, out, _, _ = finished_run
    names = {p.name for p in (out / "figures").iterdir()}
    assert {"mia.png", "accuracy.png", "losses-original.png", "losses-retrain.png"} <= names
    for figure in results["figures"]:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_second_run_reuses_reference_models(finished_run):
    _, _, data, root = finished_run
    again = run_experiment(preset="smoke", data=data, out=root / "again", cache=root / "cache", seed=0, methods="finetune")
    assert again["reference_cached"] == {"original": True, "retrain": True}
    assert [row["name"] for row in again["rows"]] == ["original", "retrain", "finetune"]


def test_unknown_method_fails_before_training(tmp_path):
    with pytest.raises(UnlearnkitError, match="unknown method 'magic'"):
        run_experiment(preset="smoke", data=tmp_path, methods="finetune,magic", out=tmp_path / "o")
    assert not (tmp_path / "o").exists()
