"""scripts/results_table.py --goals: each method checked against the retrained model's intervals."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "results_table.py"


def row(name: str, test_acc: float, auc: float, asr: float, score: float | None = None) -> dict:
    evidence = {"attacks": {"svc-entropy": {"forget": {"auc": {"value": auc, "ci95": [auc - 0.01, auc + 0.01]}}}}}
    if score is not None:
        evidence["neurips"] = {"score": score}
    return {"name": name, "test_acc": test_acc, "evidence": evidence, "backdoor_asr": asr, "backdoor_asr_ci": [asr - 0.02, asr + 0.02]}


def seed_run(close_auc: float, score_scale: float = 1.0) -> dict:
    return {"rows": [row("original", 0.76, 0.70, 0.99), row("retrain", 0.74, 0.50, 0.08),
                     row("close", 0.745, close_auc, 0.09, 0.12 * score_scale), row("finetune", 0.70, 0.56, 0.30, 0.06 * score_scale)]}


def test_goals_count_the_seeds_on_which_each_goal_holds(tmp_path):
    runs = [seed_run(0.505), seed_run(0.52)]  # the second seed's AUC falls outside the retrain's [0.49, 0.51]
    for seed, run in enumerate(runs):
        (tmp_path / f"seed{seed}").mkdir()
        (tmp_path / f"seed{seed}" / "results.json").write_text(json.dumps(run))
    (tmp_path / "results.json").write_text(json.dumps({"runs": ["seed0/results.json", "seed1/results.json"], "aggregate": []}))
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "results.json"), "--goals"], capture_output=True, text=True, check=True).stdout
    lines = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ") and "---" not in line}
    assert lines["close"] == "| close | +0.5 | 2/2 | 1/2 | 2/2 | 0.120 | 2.00 |"
    assert lines["finetune"] == "| finetune | -4.0 | 0/2 | 0/2 | 0/2 | 0.060 | 1.00 |"
    assert out.index("| close |") < out.index("| finetune |")  # sorted by the NeurIPS score


def test_goals_without_the_full_evidence_sort_by_the_test_gap():
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = seed_run(0.50)
    for entry in run["rows"]:
        entry["evidence"].pop("neurips", None)
        del entry["backdoor_asr"]
    table = module.goals([run])
    assert "NeurIPS" not in table and "ASR" not in table
    assert table.index("| close | +0.5 | 1/1 | 1/1 |") < table.index("| finetune | -4.0 | 0/1 | 0/1 |")


def test_the_scenario_table_sorts_by_the_rate_and_checks_it_against_the_retrains_interval():
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def confusion_row(name: str, rate: float, width: float) -> dict:
        return {"name": name, "test_acc": 0.75, "retain_acc": 0.99, "forget_acc": 0.5, "time_ratio": 0.1,
                "confusion_test": rate, "confusion_test_ci": [rate - width, rate + width],
                "evidence": {"attacks": {"svc-entropy": {"forget": {"auc": {"value": 0.6}}}}}}

    rows = [confusion_row("original", 0.30, 0.03), confusion_row("retrain", 0.10, 0.02), confusion_row("left-in", 0.25, 0.03), confusion_row("close", 0.11, 0.02)]
    table = module.scenario(rows)
    assert "| confusion rate [95%] | in retrain's 95% | svc-entropy AUC |" in table and "clean rate" not in table
    assert "| close | 75.0 | 99.0 | 50.0 | 0.110 [0.090, 0.130] | yes | 0.600 | 0.100 |" in table
    assert "| left-in | 75.0 | 99.0 | 50.0 | 0.250 [0.220, 0.280] | no |" in table
    assert table.index("| close |") < table.index("| left-in |")  # sorted by the rate
    with pytest.raises(SystemExit, match="--scenario wants"):
        module.scenario([{"name": "original"}])


def test_the_full_evidence_table_ranks_by_the_neurips_score_with_klom_and_the_floors():
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def evidence_row(name: str, score: float | None, klom: float | None) -> dict:
        stat = {"value": 0.5, "ci95": [0.45, 0.55]}
        evidence = {"attacks": {"svc-entropy": {"forget": {"auc": stat, "tpr_at_1pct_fpr": stat}}},
                    "divergence": {"forget": {"js": 0.1}, "test": {"js": 0.05}}}
        if score is not None:
            evidence.update(neurips={"score": score, "forgetting_quality": score + 0.01}, klom={"mean": klom}, klom_smoothed={"mean": klom / 10}, u_lira={"auc": {"value": 0.7, "ci95": [0.69, 0.71]}})
        return {"name": name, "evidence": evidence}

    results = {"rows": [evidence_row("original", None, None), evidence_row("retrain", None, None),
                        evidence_row("weak", 0.05, 2.5), evidence_row("strong", 0.20, 0.4)],
               "evidence": {"signal": {"svc-entropy": True, "u-lira": True}, "n": 8,
                            "neurips_retrain_vs_retrain": {"forgetting_quality": 0.259, "models_per_side": 4},
                            "klom_retrain_vs_retrain": {"mean": 0.31}, "klom_smoothed_retrain_vs_retrain": {"mean": 0.12}}}
    unsorted, ranked = module.single_evidence(results), module.single_evidence(results, sort=True)
    assert "| NeurIPS score (F) | KLoM (mean) | KLoM smoothed (mean) | U-LiRA AUC |" in ranked
    assert "| strong | 0.500 [0.450, 0.550] | 0.500 [0.450, 0.550] | no | 0.100 | 0.050 | 0.200 (0.210) | 0.400 | 0.040 | 0.700 [0.690, 0.710] |" in ranked
    assert unsorted.index("| weak |") < unsorted.index("| strong |")
    assert ranked.index("| strong |") < ranked.index("| weak |") and ranked.index("| original |") < ranked.index("| strong |")
    assert "N = 8 per side" in ranked and "F = 0.259" in ranked and "KLoM = 0.310" in ranked and "smoothed KLoM = 0.120" in ranked
    assert "Why each scores as it does" not in ranked  # results from before the shape was recorded: no empty table

    shape = {"offset_median": 0.8, "abs_offset_median": 0.9, "above_share": 0.75, "spread_ratio_median": 0.4, "narrower_share": 0.9}
    results["rows"][2]["evidence"]["neurips"].update(at_cap_share=0.032, epsilon_median=1.79, shape=shape)
    shaped = module.single_evidence(results, sort=True)
    assert "| weak | 3.2% | 1.79 | +0.80 | 0.90 | 75% | 0.40 | 90% |" in shaped
    assert "| strong | " not in shaped.split("Why each scores")[1]


def test_runs_of_the_same_models_merge_into_one_table_and_others_are_refused(tmp_path):
    def part(methods: list[str], retrain_model: str = "store/retrain", n: int = 8) -> dict:
        rows = [{"name": "original", "model": "store/original"}, {"name": "retrain", "model": retrain_model}]
        return {"rows": rows + [{"name": m, "model": f"runs/{m}"} for m in methods], "evidence": {"level": "full", "n": n, "k": 4, "shadow_width": 8}}

    def write(name: str, run: dict) -> str:
        (tmp_path / name).write_text(json.dumps(run))
        return str(tmp_path / name)

    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    a, b = write("a.json", part(["erase-repair", "finetune"])), write("b.json", part(["msg"]))
    assert [row["name"] for row in module.merged([a, b])["rows"]] == ["original", "retrain", "erase-repair", "finetune", "msg"]
    with pytest.raises(SystemExit, match="original or retrained model differs"):
        module.merged([a, write("c.json", part(["ct"], retrain_model="store/other"))])
    with pytest.raises(SystemExit, match="evidence options"):
        module.merged([a, write("d.json", part(["ct"], n=16))])
    with pytest.raises(SystemExit, match="finetune in more than one run"):
        module.merged([a, write("e.json", part(["finetune"]))])


def test_a_missing_or_broken_results_file_is_one_line(tmp_path):
    broken = tmp_path / "results.json"
    broken.write_text("{not json")
    for path, message in ((tmp_path / "absent.json", "no such file"), (broken, "not a results.json")):
        done = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines() == [done.stderr.strip()] and message in done.stderr


def test_the_scenario_table_of_a_seeds_run_has_one_table_per_seed(tmp_path):
    def backdoor_row(name: str, asr: float) -> dict:
        return {"name": name, "test_acc": 0.75, "retain_acc": 0.99, "forget_acc": 0.5, "time_ratio": 0.1,
                "backdoor_asr": asr, "backdoor_asr_ci": [asr - 0.005, asr + 0.005], "backdoor_clean_rate": 0.03,
                "evidence": {"attacks": {"svc-entropy": {"forget": {"auc": {"value": 0.6}}}}}}

    for seed, method_rate in enumerate((0.031, 0.12)):  # inside the retrain's [0.025, 0.035] on seed 0 only
        (tmp_path / f"seed{seed}").mkdir()
        rows = [backdoor_row("original", 0.99), backdoor_row("retrain", 0.03), backdoor_row("erase-repair", method_rate)]
        (tmp_path / f"seed{seed}" / "results.json").write_text(json.dumps({"seed": seed, "rows": rows}))
    (tmp_path / "results.json").write_text(json.dumps({"runs": ["seed0/results.json", "seed1/results.json"], "aggregate": []}))
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "results.json"), "--scenario"], capture_output=True, text=True, check=True).stdout
    first, second = out.split("seed 1\n")
    assert first.startswith("seed 0\n")
    assert "| erase-repair | 75.0 | 99.0 | 50.0 | 0.031 [0.026, 0.036] | yes |" in first
    assert "| erase-repair | 75.0 | 99.0 | 50.0 | 0.120 [0.115, 0.125] | no |" in second
