import json
import subprocess
import sys

import pytest
from conftest import run_cli, run_main


@pytest.fixture
def env(cache, monkeypatch):
    import os

    return {**os.environ, "UNLEARNKIT_QUIET": "1"}


@pytest.mark.slow
def test_train_then_cache_hit(binary_dir, env):
    first = run_cli("train", "--role", "original", "--preset", "smoke", "--data", str(binary_dir), env=env)
    assert first.returncode == 0, first.stderr
    assert "trained in" in first.stdout and "train accuracy" in first.stdout
    second = run_cli("train", "--role", "original", "--preset", "smoke", "--data", str(binary_dir), env=env)
    assert second.returncode == 0 and "loaded from cache" in second.stdout
    stored = [line.split("stored at ")[1] for line in first.stdout.splitlines() if "stored at" in line][0]
    assert stored in second.stdout
    retrain = run_cli("train", "--role", "retrain", "--preset", "smoke", "--data", str(binary_dir), env=env)
    assert retrain.returncode == 0 and "trained in" in retrain.stdout
    meta = json.loads(open(stored.replace(".safetensors", ".json")).read())
    assert meta["trained_on"] == 250 and meta["role"] == "original"


def test_data_info(binary_dir, env):
    result = run_main("data", "info", "--data", str(binary_dir))
    assert result.returncode == 0, result.stderr
    assert "fingerprint:" in result.stdout and "airplane" in result.stdout and "mean" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--role", "original", "--preset", "huge"], "unknown preset 'huge'; choose one of smoke, default, paper"),
        (["data", "info", "--data", "/no/such/place"], "data path /no/such/place does not exist"),
        (["train", "--role", "sideways"], "Invalid value for '--role'"),
        (["run", "--preset", "smoke", "--methods", "finetune,magic"], "unknown method 'magic'; choose from"),
        (["run", "--preset", "smoke", "--seeds", "0,one"], "--seeds '0,one' is not a comma-separated list of integers"),
    ],
)
def test_bad_input_is_one_line_without_traceback(binary_dir, env, args, message):
    if "--data" not in args:
        args = [*args, "--data", str(binary_dir)]
    result = run_main(*args)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_tune_searches_on_val_resumes_its_budget_and_writes_a_preset_that_run_uses(binary_dir, env, tmp_path):
    """`unlearnkit tune` (what every 'chosen on val' default points to): a budget that counts
    the trials of earlier runs of the study, the export, and a preset file `run` reads."""
    import json
    import subprocess
    import sys

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    command = [sys.executable, "-m", "unlearnkit", "tune", "finetune", "--preset", "smoke", "--data", str(binary_dir), "--storage", storage,
               "--export", str(tmp_path / "export"), "--write-preset", str(tmp_path / "tuned.toml")]
    first = subprocess.run([*command, "--trials", "2"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([*command, "--trials", "3"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    study = json.loads((tmp_path / "export" / "finetune-smoke-seed0.json").read_text())
    assert [t["number"] for t in study["trials"]] == [0, 1, 2]  # one more trial, not three more
    assert all(0.01 <= t["params"]["lr"] <= 0.5 and 0.25 <= t["params"]["epochs"] <= 3 for t in study["trials"])
    within = [t for t in study["trials"] if t["time_ratio"] <= 0.2]  # the default time budget
    best = min(within or study["trials"], key=lambda t: t["distance"])
    assert study["best"]["config"] == best["params"] and study["best"]["within_budget"] == bool(within)
    assert "| trial | distance |" in (tmp_path / "export" / "finetune-smoke-seed0.md").read_text()
    ran = subprocess.run([sys.executable, "-m", "unlearnkit", "run", "--preset", str(tmp_path / "tuned.toml"), "--methods", "finetune",
                          "--data", str(binary_dir), "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    row = json.loads((tmp_path / "run" / "results.json").read_text())["rows"][2]
    assert row["config"]["lr"] == best["params"]["lr"] and row["config"]["epochs"] == best["params"]["epochs"]


def test_tune_starts_at_the_defaults_and_holds_set_fields_out_of_the_search(binary_dir, cache, tmp_path):
    """The first trial of a new study is the method's defaults; a held field is never searched,
    is in the best config at its held value, and names the study."""
    from unlearnkit.methods import make_config
    from unlearnkit.train import machine_description
    from unlearnkit.tuning import tune

    summary = tune("finetune", preset="smoke", data=binary_dir, trials=2, storage=f"sqlite:///{tmp_path / 's.db'}", export=tmp_path / "export", hold={"epochs": 0.5})
    assert summary["study"] == "finetune-smoke-seed0-epochs0.5"
    assert summary["trials"][0]["params"] == {"lr": make_config("finetune").lr}
    assert all(set(t["params"]) == {"lr"} for t in summary["trials"]) and len(summary["trials"]) == 2
    assert summary["best"]["config"]["epochs"] == 0.5
    assert "Held out of the search: epochs=0.5" in (tmp_path / "export" / "finetune-smoke-seed0-epochs0.5.md").read_text()
    assert all(t["machine"] == machine_description() for t in summary["trials"])  # which CPU kind and precision scored it
    import optuna

    recorded = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{tmp_path / 's.db'}").trials
    assert [t.constraints for t in recorded] == [{"time_ratio": t["time_ratio"] - 0.2} for t in summary["trials"]]  # what TPE steers by


@pytest.mark.parametrize("modality", ["image", "text"])
def test_every_searched_range_holds_the_methods_default_so_that_the_first_trial_is_the_defaults(modality):
    """A default outside its range is left out of trial 0 (amun's 50 PGD steps in a range of 2-20
    made its "defaults" trial one at a sampled step count): the search could not say whether it
    beat the authors' values."""
    from unlearnkit.errors import UnlearnkitError
    from unlearnkit.methods import list_methods
    from unlearnkit.tuning import default_params, search_space

    searched = 0
    for name in list_methods(modality=modality):
        try:
            space = search_space(name, modality)
        except UnlearnkitError:  # declares no ranges: nothing to search
            continue
        assert set(default_params(name, {}, space, modality)) == set(space), name
        searched += 1
    assert searched >= {"image": 20, "text": 8}[modality]


def test_tune_chooses_the_best_trial_within_the_time_budget():
    from types import SimpleNamespace

    from unlearnkit.tuning import pick_best

    fast, slow_but_closer = SimpleNamespace(value=0.3, user_attrs={"time_ratio": 0.15}), SimpleNamespace(value=0.1, user_attrs={"time_ratio": 0.35})
    assert pick_best([slow_but_closer, fast], 0.2) == (fast, True)
    assert pick_best([slow_but_closer, fast], None) == (slow_but_closer, True)
    assert pick_best([slow_but_closer], 0.2) == (slow_but_closer, False)  # none kept to it: the best of all, flagged


@pytest.mark.parametrize("args, message", [
    (["tune", "magic"], "unknown method 'magic'"),
    (["tune", "finetune", "--trials", "0"], "--trials 0 is invalid"),
    (["tune", "finetune", "--max-time-ratio", "0"], "--max-time-ratio 0.0 is invalid"),
    (["tune", "dummy-labels", "--trials", "1", "--storage", "nosuchdb://x"], "cannot open the study database nosuchdb://x"),
    (["tune", "finetune", "--set", "finetune.epochs=1", "--set", "finetune.lr=0.1"], "--set holds every field that finetune searches"),
    (["tune", "finetune", "--set", "finetune.colour=1"], "colour"),
    (["tune", "finetune", "--set", "kl.lr=0.1"], "names method 'kl'"),
])
def test_bad_tune_input_is_one_line(binary_dir, env, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    done = run_main(*args, "--preset", "smoke", "--data", str(binary_dir))
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_version():
    from typer.testing import CliRunner

    from unlearnkit import __version__
    from unlearnkit.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"unlearnkit {__version__}"


def test_method_summaries_are_whole_sentences():
    from unlearnkit.methods import first_paragraph

    assert first_paragraph("NegGrad: ascend the loss, stopping (and stepping back)\n    before retain accuracy falls.\n\n    Details.") == \
        "NegGrad: ascend the loss, stopping (and stepping back) before retain accuracy falls."


def test_python_dash_m_unlearnkit_is_the_cli(monkeypatch, capsys):
    import runpy

    monkeypatch.setattr(sys, "argv", ["unlearnkit", "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("unlearnkit", run_name="__main__")
    assert done.value.code == 0 and "ledger" in capsys.readouterr().out
