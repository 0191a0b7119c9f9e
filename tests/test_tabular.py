"""Tables through the same API and through `unlearnkit run --preset tabular-default`: rows of
floats (N, D) from a real data set shipped inside scikit-learn (the Wisconsin breast-cancer table,
569 rows × 30 features), an MLP, every image method either running on them or refusing in one
line; and gradient-boosted trees refused by unlearn / audit / tune, retrained exactly instead."""

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


# --- the bundled table through `unlearnkit run` (preset tabular-default) ---------------------


def tabular_smoke(epochs: float = 60) -> dict:
    """tabular-default at fewer epochs: enough for the MLP to memorize swapped labels."""
    from unlearnkit.presets import get_preset

    preset = get_preset("tabular-default").model_dump()
    return {**preset, "name": "tabular-smoke", "recipe": {**preset["recipe"], "epochs": epochs, "batch_size": 64, "lr": 0.1}}


def test_a_bundled_table_is_read_as_rows_standardized_on_the_training_rows():
    from sklearn.datasets import load_breast_cancer

    from unlearnkit.data import load_dataset
    from unlearnkit.data.tables import table_rows

    data = load_dataset("sklearn:breast_cancer")
    assert data.is_table and data.train_x.dtype == np.float32 and data.classes == ("malignant", "benign")
    assert data.train_x.shape == (398, 30) and data.test_x.shape == (171, 30)
    assert np.abs(data.train_x.mean(0)).max() < 1e-4 and np.abs(data.train_x.std(0) - 1).max() < 1e-3
    assert np.abs(data.test_x.mean(0)).max() > 0.05  # the held-out rows did not take part in the statistics
    train_rows, heldout_rows = table_rows("sklearn:breast_cancer")
    raw, labels = load_breast_cancer(return_X_y=True)
    assert np.array_equal(data.train_y, labels[train_rows]) and np.array_equal(data.test_y, labels[heldout_rows])
    assert np.corrcoef(data.train_x[:, 0], raw[train_rows, 0])[0, 1] > 0.9999  # sample_id i is table row train_rows[i]
    assert abs(data.test_y.mean() - labels.mean()) < 0.01  # stratified
    assert load_dataset("sklearn:breast_cancer").fingerprint == data.fingerprint
    with pytest.raises(UnlearnkitError, match=r"^unknown table 'sklearn:titanic'; choose one of sklearn:breast_cancer, sklearn:wine, sklearn:iris$"):
        load_dataset("sklearn:titanic")


def test_the_mlp_takes_its_width_from_the_rows_and_image_models_refuse_them():
    from unlearnkit.data import load_dataset
    from unlearnkit.models import create_model_for
    from unlearnkit.models.interface import features, head, prunable_groups

    data = load_dataset("sklearn:wine")
    model = create_model_for("mlp", data, width=16)
    assert model.spec["kwargs"] == {"num_classes": 3, "in_features": 13, "width": 16}
    x = torch.from_numpy(data.train_x[:5])
    assert model(x).shape == (5, 3) and features(model, x).shape == (5, 16) and head(model).out_features == 3
    assert [g.name for g in prunable_groups(model)] == ["body.0"]
    with pytest.raises(UnlearnkitError, match=r"^mlp was built for 13 features per row, got 30; build it with in_features=30$"):
        model(torch.zeros(2, 30))
    with pytest.raises(UnlearnkitError, match=r"^model 'resnet18' is built for images; sklearn:wine is table rows, so choose a model that takes in_features \(e\.g\. mlp\)$"):
        create_model_for("resnet18", data)


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory):
    """Planted effect: the forget rows are 10% of each class with the other class's label
    (`confusion`); the original memorizes them, the retrained model predicts their true class.
    `--methods all` (here: finetune and two methods that cannot work on an MLP over rows) runs
    what can run and refuses the others in one line each."""
    import unlearnkit.run
    from unlearnkit.run import run_experiment

    root = tmp_path_factory.mktemp("tabular")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(unlearnkit.run, "list_methods", lambda: ["finetune", "boundary-shrink", "cfw"])
        results = run_experiment(preset=tabular_smoke(), methods="all", forget="confusion:malignant,benign:0.1", out=root / "run", cache=root / "cache", seed=0)
    return results, root


def test_the_tabular_preset_runs_end_to_end_and_tells_the_memorized_rows_apart(tabular_run):

    results, root = tabular_run
    rows = {row["name"]: row for row in results["rows"]}
    assert set(rows) == {"original", "retrain", "finetune"} and results["split"]["forget"] == 40
    assert rows["original"]["forget_acc"] >= 0.6 and rows["retrain"]["forget_acc"] <= 0.3  # memorized vs never seen
    assert rows["retrain"]["test_acc"] >= 0.9 and rows["retrain"]["retain_acc"] >= 0.95
    assert results["positive_control"]["passed"]
    assert results["preset_config"]["data"] == "sklearn:breast_cancer"
    out = root / "run"
    assert (out / "report.html").is_file() and all((out / figure).is_file() for figure in results["figures"])


def test_methods_all_on_rows_refuses_what_cannot_work_in_one_line_each(tabular_run):
    import json

    results, root = tabular_run
    refused = results["refused"]
    assert set(refused) == {"boundary-shrink", "cfw"} and all("\n" not in reason for reason in refused.values())
    assert "works on images only, not on table rows of shape (30,)" in refused["boundary-shrink"]
    assert refused["cfw"].startswith("cfw adds its noise to convolutions, and MLP has none")
    assert json.loads((root / "run" / "results.json").read_text())["refused"] == refused


@pytest.mark.slow
def test_a_tabular_run_is_evaluated_again_on_the_data_its_preset_names(tabular_run):
    from unlearnkit.run import evaluate_run

    results, root = tabular_run
    again = {row["name"]: row for row in evaluate_run(root / "run", cache=root / "cache")["rows"]}
    assert {name: row["forget_acc"] for name, row in again.items()} == {row["name"]: row["forget_acc"] for row in results["rows"]}


def test_forget_requests_name_rows_or_subjects_and_a_backdoor_is_refused(tmp_path):
    from unlearnkit.experiment import prepare

    requests, subjects = tmp_path / "requests.csv", tmp_path / "subjects.csv"
    requests.write_text("subject_id\npatient-a\npatient-c\n")
    subjects.write_text("subject_id,sample_id\npatient-a,3\npatient-b,7\npatient-a,11\npatient-c,250\n")
    split = prepare(preset="tabular-default", forget=f"file:{requests}", subjects=subjects, cache=tmp_path / "cache").split
    assert split.forget.tolist() == [3, 11, 250] and split.retain.size == 398 - 3
    (tmp_path / "rows.csv").write_text("sample_id\n5\n9\n")
    assert prepare(preset="tabular-default", forget=f"file:{tmp_path / 'rows.csv'}", cache=tmp_path / "cache").split.forget.tolist() == [5, 9]
    with pytest.raises(UnlearnkitError, match=r"^forget spec 'backdoor:0.05' stamps a trigger patch on images, and sklearn:breast_cancer is table rows, which have no pixels; "):
        prepare(preset="tabular-default", forget="backdoor:0.05", cache=tmp_path / "cache")


# --- gradient-boosted trees: refused by unlearn / audit / tune, retrained exactly ------------


@pytest.fixture(scope="module")
def boosted():
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = standardized_table()
    return GradientBoostingClassifier(n_estimators=50, max_depth=3, learning_rate=0.5, random_state=0).fit(x[:400], y[:400]), x, y


TREE_REFUSAL = ("the {role} is a sklearn {kind}, not a torch.nn.Module, so unlearnkit cannot {action} it; refit it without the rows: "
                "unlearnkit.retrain_estimator(model, retain=(x, y)) fits a fresh clone on the retain rows, which is exact unlearning")


def test_a_tree_ensemble_is_refused_in_one_line_naming_it_and_the_way_out(boosted, table):
    import re

    from sklearn.ensemble import HistGradientBoostingClassifier

    trees, x, y = boosted
    forget, retain, test = (x[:40], y[:40]), (x[40:400], y[40:400]), (x[400:], y[400:])
    with pytest.raises(UnlearnkitError, match="^" + re.escape(TREE_REFUSAL.format(role="model", kind="GradientBoostingClassifier", action="unlearn")) + "$"):
        unlearnkit.unlearn(trees, forget=forget, retain=retain)
    with pytest.raises(UnlearnkitError, match="^" + re.escape(TREE_REFUSAL.format(role="model", kind="GradientBoostingClassifier", action="tune an unlearning method on")) + "$"):
        unlearnkit.tune(trees, forget=forget, retain=retain, val=test)
    histogram = HistGradientBoostingClassifier()  # refused before it is used: it need not be fitted
    with pytest.raises(UnlearnkitError, match="^" + re.escape(TREE_REFUSAL.format(role="reference", kind="HistGradientBoostingClassifier", action="audit")) + "$"):
        unlearnkit.audit(table[0], forget=forget, test=test, reference=histogram)
    with pytest.raises(UnlearnkitError, match=r"^the model is a str, not a torch\.nn\.Module; unlearnkit can unlearn only PyTorch classifiers that return logits$"):
        unlearnkit.unlearn("model.pkl", forget=forget, retain=retain)


def test_retrain_estimator_refits_a_clone_on_the_retain_rows_only(boosted):
    from sklearn.base import clone

    trees, x, y = boosted
    flipped = y.copy()
    flipped[:40] = 1 - flipped[:40]  # the rows to forget carry the other diagnosis: only a model that saw them predicts it
    original = clone(trees).fit(x[:400], flipped[:400])
    before = original.predict(x)
    retrained = unlearnkit.retrain_estimator(original, retain=(x[40:400], flipped[40:400]))
    assert retrained is not original and np.array_equal(original.predict(x), before)  # the given estimator is untouched
    assert retrained.get_params() == original.get_params()
    assert np.array_equal(retrained.predict(x), clone(trees).fit(x[40:400], y[40:400]).predict(x))  # exactly retraining
    assert (original.predict(x[:40]) == flipped[:40]).mean() > 0.8 > (retrained.predict(x[:40]) == flipped[:40]).mean() + 0.5
    with pytest.raises(UnlearnkitError, match=r"^retain has rows of shape \(360,\) and labels of shape \(360,\); give x as \(N, D\) rows and y as N labels$"):
        unlearnkit.retrain_estimator(original, retain=(x[40:400, 0], y[40:400]))
    with pytest.raises(UnlearnkitError, match=r"^retrain_estimator takes a scikit-learn-style estimator \(with fit and get_params\), not a torch Linear; unlearn a PyTorch model with unlearnkit\.unlearn$"):
        unlearnkit.retrain_estimator(nn.Linear(30, 2), retain=(x, y))
