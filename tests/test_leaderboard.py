"""docs/leaderboard.md is generated from results/ and regenerates byte for byte; the script
summarizes run folders (one seed or several) and reads its guide off the table."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "leaderboard.py"


@pytest.fixture(scope="module")
def leaderboard():
    spec = importlib.util.spec_from_file_location("leaderboard", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_leaderboard_is_what_results_generate(leaderboard):
    assert (ROOT / "docs" / "leaderboard.md").read_text(encoding="utf-8") == leaderboard.build(ROOT / "results")


def row(name, test, gap, ratio, **extra):
    return {"name": name, "forget_acc": 0.8, "retain_acc": 0.99, "test_acc": test, "mia": 0.5, "avg_gap": gap, "time_ratio": ratio, **extra}


def run_folder(folder: Path, seed: int, rows: list[dict], evidence: dict | None = None, spec: str = "random:0.1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    results = {"preset": "default", "seed": seed, "machine": "AMD EPYC, fp32", "split": {"spec": spec}, "evidence": evidence or {}, "rows": rows}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_a_single_seed_run_becomes_a_table_sorted_by_gap_with_its_guide(leaderboard, tmp_path):
    rows = [row("original", 0.76, 0.05, 1.0), row("retrain", 0.75, 0.0, 1.0),
            row("slow-close", 0.752, 0.010, 0.5, neurips_score=0.10), row("fast-close", 0.745, 0.020, 0.1, neurips_score=0.15),
            row("fast-far", 0.70, 0.050, 0.05), row("no-op", 0.76, 0.06, 0.01)]
    run = run_folder(tmp_path / "run", 0, rows, {"klom_retrain_vs_retrain": {"mean": 6.4, "models_per_side": 4}})
    summary = leaderboard.summarize(run, "x", "CIFAR-10", "unlearnkit run --methods all")
    assert summary["seeds"] == [0] and summary["floors"] == {"klom_retrain_vs_retrain": 6.4} and summary["machine"] == "AMD EPYC, fp32"
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.json").write_text(json.dumps(summary))
    text = leaderboard.build(tmp_path / "results")
    order = [line.split(" | ")[0].strip("| ") for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert order == ["**retrain (reference)**", "original", "slow-close", "fast-close", "fast-far", "no-op"]
    assert "**Closest to retraining on average** (lowest avg gap): `slow-close` (0.010)" in text
    assert "(highest NeurIPS score): `fast-close` (0.150)" in text
    # no-op is the cheapest and keeps test accuracy, but is no closer to retraining than the original;
    # (fast-close's 0.02 is under half the original's 0.05)
    # fast-far is cheaper than fast-close, but 5 points below the retrained model's test accuracy
    assert "(within 1 point) and halves the original's gap: `fast-close` (0.100× the retraining time)" in text
    assert "klom floor 6.400" in text and "`unlearnkit run --methods all` — seeds 0; AMD EPYC, fp32" in text


def test_several_seeds_give_mean_and_sd_and_two_summaries_share_one_table(leaderboard, tmp_path):
    out = tmp_path / "seeds"
    for seed, test in ((0, 0.74), (1, 0.76)):
        run_folder(out / f"seed{seed}", seed, [row("retrain", test, 0.0, 1.0), row("finetune", test - 0.01, 0.02, 0.1)])
    (out / "results.json").write_text(json.dumps({"seeds": [0, 1], "runs": ["seed0/results.json", "seed1/results.json"]}))
    summary = leaderboard.summarize(out, "a", "CIFAR-10", "unlearnkit run --seeds 0,1")
    finetune = next(r for r in summary["rows"] if r["name"] == "finetune")
    assert finetune["test_acc"]["mean"] == pytest.approx(0.74) and finetune["test_acc"]["sd"] == pytest.approx(0.01414, abs=1e-4)
    evidence = leaderboard.summarize(run_folder(tmp_path / "full", 0, [row("retrain", 0.75, 0.0, 1.0), row("finetune", 0.74, 0.03, 0.1, neurips_score=0.06)]),
                                     "b", "CIFAR-10", "unlearnkit run --evidence full")
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.json").write_text(json.dumps(summary))
    (results / "b.json").write_text(json.dumps(evidence))
    text = leaderboard.build(results)
    assert text.count("## CIFAR-10") == 1  # same modality, preset and scenario: one table
    assert "| test [1] |" in text and "| NeurIPS score [2] |" in text
    assert "| finetune | 80.0 ± 0.0 | 99.0 ± 0.0 | 74.0 ± 1.4 |" in text


def test_a_later_seed_joins_an_earlier_summary_as_if_both_runs_were_given(leaderboard, tmp_path):
    first = run_folder(tmp_path / "s0", 0, [row("retrain", 0.74, 0.0, 1.0), row("kl", 0.73, 0.02, 0.1)])
    second = run_folder(tmp_path / "s1", 1, [row("retrain", 0.76, 0.0, 1.0), row("kl", 0.71, 0.04, 0.2)])
    earlier = tmp_path / "s0.json"
    earlier.write_text(json.dumps(leaderboard.summarize(first, "s0", "CIFAR-10", "unlearnkit run --seed 0")))
    joined = leaderboard.summarize([second, earlier], "s01", "CIFAR-10", "unlearnkit run --seed S")
    assert joined == leaderboard.summarize([first, second], "s01", "CIFAR-10", "unlearnkit run --seed S")
    kl = next(r for r in joined["rows"] if r["name"] == "kl")
    assert joined["seeds"] == [0, 1] and kl["test_acc"]["values"] == [0.73, 0.71] and kl["test_acc"]["mean"] == pytest.approx(0.72)
    third = run_folder(tmp_path / "s2", 2, [row("retrain", 0.75, 0.0, 1.0), row("kl", 0.72, 0.03, 0.1)])
    (tmp_path / "s01.json").write_text(json.dumps(joined))
    assert leaderboard.summarize([tmp_path / "s01.json", third], "s012", "CIFAR-10", "x")["seeds"] == [0, 1, 2]


@pytest.mark.parametrize("problem, message", [
    ("same seed", "seed 0 is given twice with kl in both"),
    ("other reference", "has retrain test_acc 0.7000 but"),
    ("other scenario", "has scenario 'memorized:0.02' but"),
    ("mean only", "keeps only the mean and sd of its seeds"),
])
def test_a_summary_refuses_seeds_of_other_experiments_in_one_line(leaderboard, tmp_path, capsys, problem, message):
    first = run_folder(tmp_path / "s0", 0, [row("retrain", 0.74, 0.0, 1.0), row("kl", 0.73, 0.02, 0.1)])
    other = run_folder(tmp_path / "o", 0 if problem in ("same seed", "other reference") else 1,
                       [row("retrain", 0.70 if problem == "other reference" else 0.74, 0.0, 1.0), row("kl" if problem == "same seed" else "ssd", 0.73, 0.02, 0.1)])
    if problem == "other scenario":
        results = json.loads((other / "results.json").read_text())
        (other / "results.json").write_text(json.dumps({**results, "split": {"spec": "memorized:0.02"}}))
    if problem == "mean only":
        old = {"title": "t", "modality": "image", "preset": "default", "scenario": "random:0.1", "seeds": [1, 2], "machine": "m", "floors": {},
               "rows": [{"name": "retrain", "test_acc": {"mean": 0.75, "sd": 0.01}}]}
        other = tmp_path / "old.json"
        other.write_text(json.dumps(old))
    with pytest.raises(SystemExit):
        leaderboard.summarize([first, other], "x", "t", "c")
    said = capsys.readouterr().err
    assert message in said and said.count("\n") == 1


def test_two_runs_of_one_seed_with_different_methods_are_one_seed(leaderboard, tmp_path):
    eight = run_folder(tmp_path / "eight", 1, [row("retrain", 0.74, 0.0, 1.0), row("original", 0.76, 0.1, 2.0), row("kl", 0.73, 0.02, 0.1)],
                       {"klom_retrain_vs_retrain": {"mean": 6.4}})
    rest = run_folder(tmp_path / "rest", 1, [row("retrain", 0.74, 0.0, 1.0), row("original", 0.76, 0.1, 2.0), row("ssd", 0.70, 0.09, 0.05)])
    other_seed = run_folder(tmp_path / "s2", 2, [row("retrain", 0.76, 0.0, 1.0), row("kl", 0.71, 0.04, 0.2), row("ssd", 0.72, 0.07, 0.07)])
    joined = leaderboard.summarize([eight, rest, other_seed], "x", "t", "c")
    names = {r["name"]: r for r in joined["rows"]}
    assert joined["seeds"] == [1, 2] and sorted(names) == ["kl", "original", "retrain", "ssd"]
    assert names["ssd"]["test_acc"]["values"] == [0.70, 0.72] and names["kl"]["test_acc"]["values"] == [0.73, 0.71]
    assert names["original"]["seeds"] == [1] and joined["seed_floors"] == [{"klom_retrain_vs_retrain": 6.4}, {}]
    swapped = leaderboard.summarize([rest, eight, other_seed], "x", "t", "c")
    assert {r["name"]: r for r in swapped["rows"]} == names and swapped["seed_floors"] == joined["seed_floors"]


def test_a_method_only_some_seeds_ran_keeps_its_values_and_says_which_seeds(leaderboard, tmp_path):
    first = run_folder(tmp_path / "s0", 0, [row("retrain", 0.74, 0.0, 1.0), row("kl", 0.73, 0.02, 0.1)])
    second = run_folder(tmp_path / "s1", 1, [row("retrain", 0.76, 0.0, 1.0), row("kl", 0.71, 0.04, 0.2), row("sisa", 0.55, 0.2, 0.9)])
    earlier = tmp_path / "s0.json"
    earlier.write_text(json.dumps(leaderboard.summarize(first, "s0", "CIFAR-10", "c")))
    joined = leaderboard.summarize([earlier, second], "s01", "CIFAR-10", "c")
    sisa = next(r for r in joined["rows"] if r["name"] == "sisa")
    assert sisa["seeds"] == [1] and sisa["test_acc"] == 0.55 and "seeds" not in next(r for r in joined["rows"] if r["name"] == "kl")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "s01.json").write_text(json.dumps(joined))
    assert "| sisa (seed 1 only) | 80.0 | 99.0 | 55.0 |" in leaderboard.build(tmp_path / "results")
    third = run_folder(tmp_path / "s2", 2, [row("retrain", 0.75, 0.0, 1.0), row("kl", 0.72, 0.03, 0.1), row("sisa", 0.57, 0.2, 0.9)])
    again = leaderboard.summarize([tmp_path / "results" / "s01.json", third], "s012", "CIFAR-10", "c")
    assert next(r for r in again["rows"] if r["name"] == "sisa")["test_acc"]["values"] == [0.55, 0.57]


def test_a_partial_row_in_a_shared_table_says_which_summarys_columns_lack_seeds(leaderboard, tmp_path):
    audited = {"relearn_gap": 0.01, "relearn_neighbours_gap": 0.0, "int4_forget_gap": 0.0}
    table = [run_folder(tmp_path / f"all{seed}", seed, [row("retrain", 0.75, 0.0, 1.0), row("kl", 0.73, 0.02, 0.1)]) for seed in (0, 1)]
    audits = [run_folder(tmp_path / "audit0", 0, [row("retrain", 0.75, 0.0, 1.0, **audited)]),
              run_folder(tmp_path / "audit1", 1, [row("retrain", 0.75, 0.0, 1.0, **audited), row("kl", 0.73, 0.02, 0.1, **audited)])]
    (tmp_path / "results").mkdir()
    for name, runs in (("a", table), ("b", audits)):
        (tmp_path / "results" / f"{name}.json").write_text(json.dumps(leaderboard.summarize(runs, name, "CIFAR-10", "c")))
    text = leaderboard.build(tmp_path / "results")
    assert "| kl ([2]: seed 1 only) | 80.0 ± 0.0 |" in text  # its accuracies [1] have both seeds; its audits [2] one
    assert "| **retrain (reference)** | 80.0 ± 0.0 |" in text


def test_the_guide_names_the_closest_method_whose_forgetting_holds_under_the_audits(leaderboard, tmp_path):
    audits = lambda relearn, neighbours, int4: {"relearn_gap": relearn, "relearn_neighbours_gap": neighbours, "int4_forget_gap": int4}  # noqa: E731
    rows = [row("retrain", 0.75, 0.0, 1.0, **audits(0.0, 0.0, 0.0)), row("original", 0.76, 0.2, 2.0, **audits(0.6, 0.6, 0.6)),
            row("hides", 0.75, 0.01, 0.1, **audits(0.30, 0.01, 0.01)), row("int4-leaks", 0.75, 0.02, 0.1, **audits(0.0, 0.0, 0.021)),
            row("holds", 0.74, 0.05, 0.1, **audits(0.02, -0.1, 0.0)), row("holds-farther", 0.74, 0.08, 0.1, **audits(0.0, 0.0, 0.0)),
            row("unaudited", 0.75, 0.001, 0.1)]
    (tmp_path / "results").mkdir()
    summary = leaderboard.summarize(run_folder(tmp_path / "run", 0, rows), "x", "t", "c")
    (tmp_path / "results" / "x.json").write_text(json.dumps(summary))
    text = leaderboard.build(tmp_path / "results")
    assert "whose forgetting holds** (mean relearning and int4 gaps at most 2 points above the retrained model's): `holds` (0.050; test 74.0%, the retrained model's 75.0%); 2 of the 4 audited methods hold." in text
    failing = [r | ({"relearn_gap": 0.5} if r["name"].startswith("holds") else {}) for r in rows]
    (tmp_path / "results" / "x.json").write_text(json.dumps(leaderboard.summarize(run_folder(tmp_path / "bad", 0, failing), "x", "t", "c")))
    assert "**No audited method's forgetting holds**" in leaderboard.build(tmp_path / "results")


def test_a_method_measured_again_replaces_its_rows_from_an_earlier_summary_and_compare_shows_both(leaderboard, tmp_path, capsys):
    references = [row("original", 0.76, 0.05, 1.0), row("retrain", 0.75, 0.0, 1.0)]
    earlier = tmp_path / "before.json"
    earlier.write_text(json.dumps(leaderboard.summarize(
        [run_folder(tmp_path / f"old{seed}", seed, references + [row("kept", 0.74, 0.01 + seed / 100, 0.1), row("changed", 0.60, 0.2, 0.1)]) for seed in (0, 1)],
        "before", "t", "c")))
    again = [run_folder(tmp_path / f"new{seed}", seed, references + [row("changed", 0.73, 0.03 + seed / 100, 0.2)]) for seed in (0, 1)]
    with pytest.raises(SystemExit):  # without --without, a method given twice for a seed is refused
        leaderboard.summarize([earlier, *again], "after", "t", "c")
    assert "changed in both" in capsys.readouterr().err
    after = leaderboard.summarize([earlier, *again], "after", "t", "c", without=frozenset({"changed"}))
    rows = {r["name"]: r for r in after["rows"]}
    assert rows["changed"]["avg_gap"]["values"] == [0.03, 0.04] and rows["kept"]["avg_gap"]["values"] == [0.01, 0.02]
    (tmp_path / "after.json").write_text(json.dumps(after))
    lines = leaderboard.compare(json.loads(earlier.read_text()), after)
    assert len(lines) == 3 and lines[2].startswith("| changed | 80.0 ± 0.0 → 80.0 ± 0.0 | 60.0 ± 0.0 → 73.0 ± 0.0 |")
    assert "0.200 ± 0.000 → 0.035 ± 0.007" in lines[2]  # the avg gap, old → new; kept's rows are equal, so not listed
    for bad, message in ((frozenset({"absent"}), "has no row absent to leave out"), (frozenset({"retrain"}), "reference models cannot be left out")):
        with pytest.raises(SystemExit):
            leaderboard.summarize([earlier, *again], "after", "t", "c", without=bad)
        assert message in capsys.readouterr().err


def text_row(name: str, forget: float, auc: float = 0.6, **audits) -> dict:
    return {"name": name, "qa_forget": forget, "qa_retain": 1.0, "qa_test": 0.04, "extraction_forget": 0.0, "attack_auc": auc, "time_ratio": 0.1, **audits}


def text_leaderboard(leaderboard, tmp_path: Path, rows: list[dict]) -> str:
    """The leaderboard of one facts-default run of seed 0 with these rows."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"preset": "facts-default", "seed": 0, "modality": "text", "machine": "m", "split": {"spec": "people:0.1"}, "evidence": {}, "rows": rows}))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "t.json").write_text(json.dumps(leaderboard.summarize(run, "t", "facts", "c")))
    return leaderboard.build(tmp_path / "results")


def test_a_text_rows_gap_counts_the_attack_so_a_method_that_only_stops_answering_ranks_below_one_that_forgets(leaderboard, tmp_path):
    rows = [text_row("retrain", 0.05, 0.55), text_row("original", 1.0, 1.0), text_row("refuses", 0.0, 1.0), text_row("forgets", 0.15, 0.60)]
    text = text_leaderboard(leaderboard, tmp_path, rows)
    order = [line.split(" | ")[0].strip("| ") for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert order == ["**retrain (reference)**", "original", "forgets", "refuses"]
    assert "`forgets` (0.030)" in text  # (0.10 + 0.05) / 5; refuses: (0.05 + 0.45) / 5 = 0.100


def test_the_forget_sets_of_one_preset_are_set_side_by_side_and_the_guide_wants_forgetting_that_holds_on_all(leaderboard, tmp_path):
    audits = lambda gap: {"relearn_gap": gap, "relearn_neighbours_gap": 0.0, "int4_forget_gap": 0.0}  # noqa: E731
    results = tmp_path / "results"
    results.mkdir()
    scenarios = {  # name → (avg gap, relearn gap) under random, entangled
        "steady": ((0.05, 0.0), (0.06, 0.01)), "random-only": ((0.01, 0.0), (0.04, 0.3)),
        "far-but-holds": ((0.09, 0.0), (0.10, 0.0)), "original": ((0.2, 0.5), (0.3, 0.6)), "retrain": ((0.0, 0.0), (0.0, 0.0))}
    for index, spec in enumerate(("random:0.1", "entangled:0.02")):
        rows = [row(name, 0.75 - (name == "steady") * (0.03 + 0.02 * index), gaps[index][0], 0.1, **audits(gaps[index][1])) for name, gaps in scenarios.items()]
        if spec == "random:0.1":
            rows.append(row("random-run-only", 0.75, 0.001, 0.1, **audits(0.0)))
        runs = [run_folder(tmp_path / f"{index}-{seed}", seed, rows, spec=spec) for seed in (0, 1)]
        if spec == "entangled:0.02":  # one method on seed 0 only
            runs[0] = run_folder(tmp_path / f"{index}-0", 0, rows + [row("one-seed", 0.75, 0.02, 0.1, **audits(0.0))], spec=spec)
        (results / f"{index}.json").write_text(json.dumps(leaderboard.summarize(runs, f"{index}", spec, "c")))
    text = leaderboard.build(results)
    section = text[text.index("## Across forget sets: image, preset `default`"):]
    table = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert table[0] == "| model | `random:0.1` | `entangled:0.02` |"  # random first, though it sorts after
    # the original first; then by the worst avg gap over the forget sets; those missing from one last
    assert [line.split(" | ")[0].strip("| ") for line in table[1:]] == ["original", "random-only", "steady", "far-but-holds", "random-run-only", "one-seed"]
    assert "| random-only | 0.010, holds at +0.0 | 0.040, fails at +30.0 |" in table and "| one-seed |  | 0.020, holds at +0.0 (seed 0) |" in table
    assert ("whose forgetting holds on every one** (lowest worst avg gap): `steady` (0.060; test accuracy 3.0 to 5.0 points under the retrained model's); 2 of the 3 methods run on every forget set "
            "hold on every one.") in section
    (results / "1.json").unlink()
    assert "## Across forget sets" not in leaderboard.build(results)  # one forget set: nothing to set side by side


def test_a_method_whose_avg_gap_and_audits_cover_different_seeds_names_each(leaderboard, tmp_path):
    """A forget set's table can take its avg gap from one summary and its audits from another: the
    side-by-side comparison must name the seeds of each, not just those of the first."""
    audits = {"relearn_gap": 0.0, "relearn_neighbours_gap": 0.0, "int4_forget_gap": 0.0}
    results = tmp_path / "results"
    results.mkdir()
    plain = [row(name, 0.75, gap, 0.1) for name, gap in (("retrain", 0.0), ("original", 0.2), ("late", 0.03))]
    runs = [run_folder(tmp_path / f"a-{seed}", seed, plain) for seed in (0, 1)]
    (results / "a.json").write_text(json.dumps(leaderboard.summarize(runs, "a", "random:0.1", "c")))
    audited = [row(name, 0.75, gap, 0.1, **audits) for name, gap in (("retrain", 0.0), ("original", 0.2))]
    runs = [run_folder(tmp_path / "b-0", 0, audited + [row("late", 0.75, 0.03, 0.1, **audits)]), run_folder(tmp_path / "b-1", 1, audited)]
    (results / "b.json").write_text(json.dumps(leaderboard.summarize(runs, "b", "random:0.1", "c")))
    runs = [run_folder(tmp_path / f"c-{seed}", seed, audited + [row("late", 0.75, 0.05, 0.1, **audits)], spec="entangled:0.02") for seed in (0, 1)]
    (results / "c.json").write_text(json.dumps(leaderboard.summarize(runs, "c", "entangled:0.02", "c")))
    section = leaderboard.build(results).split("## Across forget sets")[1]
    assert "| late | 0.030, holds at +0.0 (avg gap: every seed; audits: seed 0) | 0.050, holds at +0.0 |" in section


def test_a_text_rows_forgetting_holds_on_its_relearning_and_int4_gaps(leaderboard, tmp_path):
    """The text audits have no neighbours attack: a text row is judged on the two gaps it has."""
    audited = lambda relearn: {"relearn_gap": relearn, "int4_forget_gap": 0.0}  # noqa: E731
    rows = [text_row("retrain", 0.05, **audited(0.0)), text_row("original", 1.0, **audited(0.9)), text_row("hides", 0.05, **audited(0.4)),
            text_row("forgets", 0.15, **audited(0.01))]
    text = text_leaderboard(leaderboard, tmp_path, rows)
    assert "whose forgetting holds** (mean relearning and int4 gaps at most 2 points above the retrained model's): `forgets` (0.020; QA retain 100.0%, the retrained model's 100.0%); 1 of the 2 audited methods holds." in text


def test_a_destroyed_model_that_holds_shows_its_lost_utility_and_its_perplexity_its_magnitude(leaderboard, tmp_path):
    """gradient-ascent on facts-default "holds" by answering nothing: the guide's pick says what it kept."""
    audited = {"relearn_gap": 0.0, "int4_forget_gap": 0.0}
    destroyed = text_row("destroyed", 0.0, **audited) | {"qa_retain": 0.0, "perplexity": 2.355e11}
    rows = [text_row("retrain", 0.05, **audited), text_row("original", 1.0, relearn_gap=0.9, int4_forget_gap=0.9), destroyed,
            text_row("hides", 0.05, relearn_gap=0.4, int4_forget_gap=0.0)]
    text = text_leaderboard(leaderboard, tmp_path, rows)
    assert "`destroyed` (0.210; QA retain 0.0%, the retrained model's 100.0%); 1 of the 2 audited methods holds." in text
    assert "| 2.4e+11 |" in text  # not 235500000000.00


def test_a_column_comes_from_the_summary_that_has_it_for_the_most_rows(leaderboard, tmp_path):
    """One method measured again with its audits joins the accuracies' summary [1]: the audit
    columns must still come from the summary that audited every method [2]."""
    audited = lambda gap: {"relearn_gap": gap, "relearn_neighbours_gap": 0.0, "int4_forget_gap": 0.0}  # noqa: E731
    accuracies = run_folder(tmp_path / "all", 0, [row("retrain", 0.75, 0.0, 1.0, **audited(0.0)), row("kl", 0.73, 0.02, 0.1),
                                                  row("prune", 0.70, 0.05, 0.1), row("again", 0.60, 0.2, 0.9, **audited(-0.1))])
    audits = run_folder(tmp_path / "audits", 0, [row(name, 0.75, 0.0, 1.0, **audited(gap)) for name, gap in (("retrain", 0.0), ("kl", 0.03), ("prune", 0.01), ("again", -0.2))])
    (tmp_path / "results").mkdir()
    for name, run in (("a", accuracies), ("b", audits)):
        (tmp_path / "results" / f"{name}.json").write_text(json.dumps(leaderboard.summarize(run, name, "CIFAR-10", "c")))
    text = leaderboard.build(tmp_path / "results")
    assert "| forget [1] | retain [1] | test [1] | MIA [1] | relearn gap [2] |" in text
    assert "| kl | 80.0 | 99.0 | 73.0 | 0.500 | 3.0 |" in text
