"""Does the forgetting hold? The relearning attack and the compression audits (issue 39), with
planted effects: a model that only hides the forget set behind its output layer must fail the
relearning test, and a model retrained without the forget set must pass it."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import synthetic_arrays, write_binary
from unlearnkit.evaluate.compress import compressed
from unlearnkit.evaluate.relearn import RelearnOptions, held_under_both, nearest_retain, paired_interval, relearn_audit, relearn_parts
from unlearnkit.models import create_model
from unlearnkit.train import Recipe, Source, accuracy, fit

RECIPE = Recipe(epochs=30, batch_size=32, lr=0.05, precision="fp32")


@pytest.fixture(scope="module")
def planted():
    """Retain: a colour rule. Forget: 40 images of those colours with a white corner patch, each
    labelled as the next colour's class (a trigger the original learns). Not one class for all:
    then a retrained model fine-tuned on ten of them learns a bias toward that class and recovers
    the rest as fast as the hider (with AVX2 kernels at 1 thread: gap 0.087 [-0.014, 0.187]).
    Two models are retrained without them (seeds 0 and 1). The hider is the original with only
    its output layer trained further, on the retain images and the forget images under their
    colour's label, until the forget set is gone from its predictions: its features still detect
    the patch."""
    rng = np.random.default_rng(0)
    centres = rng.integers(30, 225, size=(10, 3, 1, 1))

    def coloured(n, noise=60):
        y = rng.integers(0, 10, n)
        return torch.from_numpy(np.clip(centres[y] + rng.normal(0, noise, size=(n, 3, 16, 16)), 0, 255).astype(np.uint8)), torch.from_numpy(y)

    retain_x, retain_y = coloured(320)
    forget_x, colour_y = coloured(40)
    forget_x[:, :, :4, :4] = 255
    forget_y = (colour_y + 1) % 10

    def trained(seed, with_forget):
        torch.manual_seed(seed)
        model = create_model("resnet18", width=8)
        sources = {"retain": Source(retain_x, retain_y)} | ({"forget": Source(forget_x, forget_y, 4)} if with_forget else {})
        fit(model, sources, RECIPE)
        return model.eval()

    original, retrained, other_retrained = trained(0, True), trained(0, False), trained(1, False)
    hider = copy.deepcopy(original).eval()  # only the output layer moves: the features and their BatchNorm statistics stay the original's
    optimizer = torch.optim.SGD([p for n, p in hider.named_parameters() if n.startswith("fc.")], lr=0.01, momentum=0.9)
    inputs, labels = torch.cat([retain_x, forget_x]).float() / 255, torch.cat([retain_y, colour_y])
    for _ in range(300):
        optimizer.zero_grad()
        F.cross_entropy(hider(inputs), labels).backward()
        optimizer.step()
        if accuracy(hider, forget_x, forget_y, "fp32") <= 0.1:
            break
    return {"original": original, "retrain": retrained, "other": other_retrained, "hider": hider,
            "forget": (forget_x, forget_y), "retain": (retain_x, retain_y)}


@pytest.mark.slow
def test_the_planted_models_are_what_the_test_needs(planted):
    fx, fy = planted["forget"]
    rx, ry = planted["retain"]
    assert accuracy(planted["original"], fx, fy, "fp32") >= 0.95
    assert accuracy(planted["hider"], fx, fy, "fp32") <= 0.1 and accuracy(planted["hider"], rx, ry, "fp32") >= 0.8
    assert accuracy(planted["retrain"], fx, fy, "fp32") <= 0.2 and accuracy(planted["other"], fx, fy, "fp32") <= 0.2


@pytest.mark.slow
def test_relearning_exposes_a_hidden_forget_set_and_passes_a_retrained_model(planted):
    fx, fy = planted["forget"]
    rx, ry = planted["retain"]
    options = RelearnOptions(fraction=0.25)  # the default attack: 10 steps at lr 0.01, 3 seeds
    models = {name: planted[name] for name in ("hider", "other", "retrain")}
    before = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in models.items()}
    found = relearn_audit(models, fx, fy, rx, ry, options, seed=0)
    hider, other = found["models"]["hider"], found["models"]["other"]
    # the hider comes back faster when fine-tuned on part of the forget set (measured at the defaults, AVX-512 / AVX2
    # kernels: gap 0.430 [0.362, 0.498] / 0.444 [0.427, 0.462] at 1 thread, 0.521 [0.411, 0.631] / 0.302 [0.163, 0.441]
    # at 2). Fine-tuned on retain neighbours without the patch, its recovery hangs on the low bits of its training
    # (gap 0.081 to 0.121, intervals from 0.003 to 0.239): reported with its interval, not asserted.
    assert hider["forget"]["gap_ci95"][0] > 0.1, hider
    neighbours = hider["neighbours"]
    assert neighbours["gap_ci95"][0] <= neighbours["gap"] <= neighbours["gap_ci95"][1] and -1 <= neighbours["gap"] <= 1
    assert held_under_both(hider, options.margin) is False
    assert held_under_both(other, options.margin) is True, other  # another retrained model learns no faster than the reference (measured: forget -0.04 to 0.01, neighbours 0.0)
    assert found["models"]["retrain"]["forget"]["gap"] == 0.0 and found["models"]["retrain"]["forget"]["gap_ci95"] == [0.0, 0.0]
    assert len(hider["forget"]["curves"]) == 3 and len(hider["forget"]["curves"][0]) == 11
    assert found["relearn_examples"] == 10 and found["measured_examples"] == 30
    for name, model in models.items():  # the attack works on copies
        assert all(torch.equal(before[name][k], v) for k, v in model.state_dict().items()), name


def test_the_relearn_parts_are_disjoint_seeded_and_the_neighbours_nearest():
    options = RelearnOptions(fraction=0.2, measured=5)
    relearn, measured = relearn_parts(40, options, seed=3)
    assert len(relearn) == 8 and len(measured) == 5 and not set(relearn) & set(measured)
    assert np.array_equal(relearn, relearn_parts(40, options, seed=3)[0]) and not np.array_equal(relearn, relearn_parts(40, options, seed=4)[0])
    retain = torch.zeros((3, 1, 2, 2), dtype=torch.uint8)
    retain[1] += 100
    retain[2] += 200
    forget = torch.tensor([190, 90, 5], dtype=torch.uint8).reshape(3, 1, 1, 1).expand(3, 1, 2, 2)
    assert nearest_retain(forget, retain).tolist() == [2, 1, 0]
    assert paired_interval([0.1]) is None
    low, high = paired_interval([0.1, 0.2, 0.3])
    assert low < 0.2 < high and high - 0.2 == pytest.approx(0.2 - low)


def test_the_compression_transforms_round_and_prune_as_named():
    torch.manual_seed(0)
    model = create_model("resnet18", width=4)
    weight = model.conv1.weight.detach().clone()
    for name, levels in (("int8", 255), ("int4", 15)):
        rounded = compressed(model, name).conv1.weight.detach()
        for channel, original in zip(rounded, weight):
            assert len(torch.unique(channel)) <= levels
            assert (channel - original).abs().max() <= original.abs().max() / (levels // 2) / 2 + 1e-7
    pruned = compressed(model, "prune50")
    for module, original in ((pruned.conv1.weight, weight), (pruned.fc.weight, model.fc.weight)):
        zeros = (module == 0).sum().item()
        assert zeros == module.numel() // 2
        kept = module != 0
        assert torch.equal(module[kept], original[kept]) and original[~kept].abs().max() <= original[kept].abs().min()
    assert torch.equal(pruned.fc.bias, model.fc.bias) and torch.equal(model.conv1.weight, weight)  # biases kept; the input untouched


@pytest.mark.slow
def test_run_with_both_audits_writes_the_columns_and_the_figure(tmp_path):
    from unlearnkit.evidence import EvidenceOptions
    from unlearnkit.run import run_experiment

    data = write_binary(tmp_path / "data", *synthetic_arrays(n_train=300, n_test=100))
    options = EvidenceOptions(audits=("relearn", "quantize"), resamples=200)
    results = run_experiment(preset="smoke", data=data, methods="finetune", out=tmp_path / "run", cache=tmp_path / "cache", evidence=options)
    rows = {row["name"]: row for row in results["rows"]}
    assert rows["retrain"]["relearn_gap"] == 0.0 and rows["retrain"]["int4_forget_gap"] == 0.0
    for name in ("original", "finetune"):
        assert -1 <= rows[name]["relearn_gap"] <= 1 and len(rows[name]["relearn_gap_ci95"]) == 2 and isinstance(rows[name]["relearn_held"], bool)
        assert {"int8_forget_gap", "int4_forget_gap", "prune50_forget_gap", "relearn_neighbours_gap"} <= set(rows[name])
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(saved["robustness"]) == {"relearn", "quantize"} and saved["robustness"]["quantize"]["transforms"] == ["int8", "int4", "prune50"]
    assert (tmp_path / "run" / "figures" / "relearn.png").read_bytes()[:4] == b"\x89PNG"


def test_an_unknown_audit_is_one_line():
    from unlearnkit.errors import UnlearnkitError
    from unlearnkit.robustness import parse_audits

    assert parse_audits("relearn, quantize,relearn") == ("relearn", "quantize") and parse_audits(None) == ()
    with pytest.raises(UnlearnkitError, match="--audit 'int3' is unknown; choose from relearn, quantize"):
        parse_audits("relearn,int3")


@pytest.mark.slow
def test_the_api_audit_runs_the_relearning_attack_against_the_reference(planted):
    import unlearnkit

    fx, fy = planted["forget"]
    rx, ry = planted["retain"]
    options = unlearnkit.RelearnOptions(fraction=0.25, seeds=2)
    report = unlearnkit.audit(planted["hider"], forget=(fx, fy), test=(rx[:100], ry[:100]), retain=(rx[100:], ry[100:]), reference=planted["retrain"],
                              relearn=options, resamples=200)
    assert report.relearn["models"]["unlearned"]["forget"]["gap"] > 0.1 and report.to_dict()["relearn"]["options"]["seeds"] == 2
    alone = unlearnkit.audit(planted["hider"], forget=(fx, fy), test=(rx[:100], ry[:100]), relearn=True, resamples=200)
    assert alone.relearn == {} and any(line.startswith("relearning attack: it needs `reference`") for line in alone.skipped)


def test_the_audits_say_each_model_done_with_a_count_and_an_eta(monkeypatch, capsys):
    """An audit of 27 models runs for an hour: it reports each model as it finishes."""
    from unlearnkit.progress import with_progress

    monkeypatch.setenv("UNLEARNKIT_QUIET", "0")
    assert list(with_progress(["retrain", "kl", "ssd"], "audit quantize")) == ["retrain", "kl", "ssd"]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("  ")[:2] for line in lines] == [["audit quantize 1/3", "retrain"], ["audit quantize 2/3", "kl"], ["audit quantize 3/3", "ssd"]]
    assert lines[-1].endswith("ETA 0s")
    monkeypatch.setenv("UNLEARNKIT_QUIET", "1")
    assert list(with_progress(["retrain"], "audit quantize")) == ["retrain"] and capsys.readouterr().err == ""


def test_the_eta_extrapolates_the_mean_step_over_the_steps_left(monkeypatch):
    from unlearnkit import progress

    monkeypatch.setattr(progress.time, "perf_counter", lambda: 110.0)
    assert progress.elapsed_and_eta(100.0, 2, 5) == "elapsed 10s  ETA 15s"
    assert progress.elapsed_and_eta(100.0, 5, 5) == "elapsed 10s  ETA 0s"


def test_every_relearning_curve_of_a_full_run_has_its_own_look():
    """25 methods in one figure: with matplotlib's ten-colour cycle alone, ssd and ct were the same orange."""
    from unlearnkit.report import curve_style

    methods = [f"m{index}" for index in range(25)]
    looks = [(style["color"], style.get("linestyle", "-")) for style in (curve_style(name, methods) for name in ["original", "retrain", *methods])]
    assert len(set(looks)) == len(looks) and looks[1] == ("black", "-")
