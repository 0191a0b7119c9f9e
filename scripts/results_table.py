"""Markdown tables from a run's results.json, for docs: one row per model with its gaps to the
retrained model (single seed), or mean ± sd per column (a `--seeds` run). With `--evidence`:
the evidence of forgetting instead (attacks with 95% intervals, divergences, and with
`--evidence full` the NeurIPS score, KLoM and U-LiRA; `--sort` ranks them by the NeurIPS score).

    python scripts/results_table.py runs/default-seed0/results.json [--sort] [--evidence | --goals | --scenario]
    python scripts/results_table.py runs/part-a/results.json runs/part-b/results.json --evidence --sort

Several single-seed runs of the same original and retrained model (methods run in parts) are
merged into one table; the evidence options must match.

`--goals`: each method against issue 15's goals for unlearnkit's own method, seed by seed:
|Δtest| ≤ 1 point, each attack's forget AUC inside the retrained model's 95% interval, the
backdoor's success rate inside the retrained model's interval (a backdoor run), and the NeurIPS
score against the finetune baseline's (an `--evidence full` run).

`--scenario`: a `--forget backdoor:...` or `confusion:...` run, sorted by the backdoor's success
rate or the two classes' confusion rate, each against the retrained model's 95% interval.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from statistics import fmean

COLUMNS = [("train", "train_acc"), ("test", "test_acc"), ("retain", "retain_acc"), ("forget", "forget_acc"), ("val", "val_acc")]
CLASSWISE = [("test, forgotten classes", "forget_class_test_acc"), ("test, other classes", "other_class_test_acc")]


def single(rows: list[dict], sort: bool) -> str:
    reference = next(r for r in rows if r["name"] == "retrain")
    columns = COLUMNS + [c for c in CLASSWISE if c[1] in reference]
    head = ["model", *(t for t, _ in columns), "MIA", "avg gap", "seconds", "× retrain"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ordered = rows[:2] + (sorted(rows[2:], key=lambda r: r["avg_gap"]) if sort else rows[2:])
    for row in ordered:
        method = row["name"] not in ("original", "retrain")
        cells = []
        for _, key in columns:
            value = f"{100 * row[key]:.1f}"
            cells.append(f"{value} ({100 * (row[key] - reference[key]):+.1f})" if method and not math.isnan(row[key]) else value)
        mia = f"{row['mia']:.3f}" + (f" ({row['mia'] - reference['mia']:+.3f})" if method else "")
        name = "**retrain (reference)**" if row["name"] == "retrain" else row["name"]
        lines.append("| " + " | ".join([name, *cells, mia, f"{row['avg_gap']:.3f}", f"{row['seconds']:.1f}", f"{row['time_ratio']:.3f}"]) + " |")
    return "\n".join(lines)


def aggregate(entries: list[dict], sort: bool) -> str:
    columns = [(t, k, 100, 1) for t, k in COLUMNS] + [("MIA", "mia", 1, 3), ("avg gap", "avg_gap", 1, 3), ("× retrain", "time_ratio", 1, 3)]
    columns += [(t, k, 100, 1) for t, k in CLASSWISE if k in entries[0]]
    head = ["model", *(t for t, *_ in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ordered = entries[:2] + (sorted(entries[2:], key=lambda e: e["avg_gap"]["mean"]) if sort else entries[2:])
    for entry in ordered:
        cells = [f"{scale * entry[k]['mean']:.{d}f} ± {scale * entry[k]['sd']:.{d}f}" for _, k, scale, d in columns]
        name = "**retrain (reference)**" if entry["name"] == "retrain" else entry["name"]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def interval(entry: dict, digits: int = 3) -> str:
    low, high = entry["ci95"]
    return f"{entry['value']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def single_evidence(results: dict, sort: bool = False) -> str:
    """One seed's evidence; with `sort`, the methods by the NeurIPS score, best first (the
    challenge's ranking), and with `--evidence full` the score's and KLoM's noise floors below."""
    rows, signal = results["rows"], results["evidence"]["signal"]
    attacks = list(rows[0]["evidence"]["attacks"])
    head = ["model", *(f"{a} AUC{'' if signal[a] else ' (no signal)'}" for a in attacks), f"{attacks[-1]} TPR at 1% FPR", "retain exposure raised", "JS forget", "JS test"]
    full = any("neurips" in row["evidence"] for row in rows)
    if full:
        head += ["NeurIPS score (F)", "KLoM (mean)", "KLoM smoothed (mean)", "U-LiRA AUC" + ("" if signal.get("u-lira") else " (no signal)")]
    if sort:
        rows = rows[:2] + sorted(rows[2:], key=lambda r: -r["evidence"]["neurips"]["score"] if "neurips" in r["evidence"] else math.inf)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        evidence = row["evidence"]
        cells = [interval(evidence["attacks"][a]["forget"]["auc"]) for a in attacks]
        cells.append(interval(evidence["attacks"][attacks[-1]]["forget"]["tpr_at_1pct_fpr"]))
        raised = [a for a in attacks if evidence["attacks"][a].get("retain_exposure_raised")]
        cells.append(", ".join(raised) if raised else ("—" if row["name"] == "original" else "no"))
        cells += [f"{evidence['divergence']['forget']['js']:.3f}", f"{evidence['divergence']['test']['js']:.3f}"]
        if full:
            neurips = evidence.get("neurips")
            cells.append(f"{neurips['score']:.3f} ({neurips['forgetting_quality']:.3f})" if neurips else "")
            cells += [f"{evidence[key]['mean']:.3f}" if evidence.get(key, {}).get("mean") is not None else "" for key in ("klom", "klom_smoothed")]
            cells.append(interval(evidence["u_lira"]["auc"]) if "u_lira" in evidence else "")
        name = "**retrain (reference)**" if row["name"] == "retrain" else row["name"]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    summary = results["evidence"]
    if full and "neurips_retrain_vs_retrain" in summary:
        ceiling, floor = summary["neurips_retrain_vs_retrain"], summary["klom_retrain_vs_retrain"]
        smoothed = summary.get("klom_smoothed_retrain_vs_retrain", {}).get("mean")
        lines += ["", f"N = {summary['n']} per side. Retrained models against retrained models "
                  f"({ceiling['models_per_side']} vs {ceiling['models_per_side']}): NeurIPS F = {ceiling['forgetting_quality']:.3f} "
                  f"(the score a method indistinguishable from retraining gets), KLoM = {floor['mean']:.3f} (its noise floor)"
                  + (f"; smoothed KLoM = {smoothed:.3f}." if smoothed is not None else ".")]
    shaped = [row for row in rows if "shape" in row["evidence"].get("neurips", {})]
    if shaped:
        lines += ["", "Why each scores as it does, per forget example (medians and shares over the forget set): where the N unlearned "
                  "confidences sit against the N retrained ones (offset of the means in retrained sds; signed, "
                  "so opposite offsets cancel in its median, and its size) and how wide they spread (ratio of sds).", "",
                  "| model | at the ε cap | median ε | offset (sd) | \\|offset\\| (sd) | above | spread ratio | narrower |", "|---|---|---|---|---|---|---|---|"]
        for row in shaped:
            neurips = row["evidence"]["neurips"]
            shape = neurips["shape"]
            lines.append(f"| {row['name']} | {100 * neurips['at_cap_share']:.1f}% | {neurips['epsilon_median']:.2f} | {shape['offset_median']:+.2f} | {shape['abs_offset_median']:.2f} | "
                         f"{100 * shape['above_share']:.0f}% | {shape['spread_ratio_median']:.2f} | {100 * shape['narrower_share']:.0f}% |")
    return "\n".join(lines)


def aggregate_evidence(entries: list[dict]) -> str:
    keys = sorted({k for e in entries for k in e if k.startswith("evidence.attacks.") and k.endswith(".forget.auc.value")})
    keys += [k for k in ("js_forget", "neurips_score", "klom", "klom_smoothed", "ulira_auc") if any(k in e for e in entries)]
    head = ["model", *(k.removeprefix("evidence.attacks.").removesuffix(".forget.auc.value") + (" AUC" if k.startswith("evidence") else "") for k in keys)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in entries:
        cells = [f"{entry[k]['mean']:.3f} ± {entry[k]['sd']:.3f}" if k in entry else "" for k in keys]
        name = "**retrain (reference)**" if entry["name"] == "retrain" else entry["name"]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


SCENARIO_RATES = {"backdoor_asr": "backdoor success", "confusion_test": "confusion rate"}


def scenario(rows: list[dict]) -> str:
    """A backdoor or confusion run: each model's rate with its 95% interval, whether it lies in
    the retrained model's interval, and the strongest population attack, sorted by the rate."""
    key = next((k for k in SCENARIO_RATES if k in rows[0]), None)
    if key is None:
        raise SystemExit("--scenario wants a run made with --forget backdoor:... or confusion:...")
    retrain = next(r for r in rows if r["name"] == "retrain")
    attack = list(retrain["evidence"]["attacks"])[-1]
    clean = key == "backdoor_asr"
    head = ["model", "test", "retain", "forget", f"{SCENARIO_RATES[key]} [95%]", "in retrain's 95%"] + ["clean rate to target"] * clean + [f"{attack} AUC", "× retrain"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows[:2] + sorted(rows[2:], key=lambda r: r[key]):
        low, high = row[f"{key}_ci"]
        cells = [f"{100 * row[k]:.1f}" for k in ("test_acc", "retain_acc", "forget_acc")]
        cells += [f"{row[key]:.3f} [{low:.3f}, {high:.3f}]", "" if row["name"] in ("original", "retrain") else ("yes" if inside(row[key], retrain[f"{key}_ci"]) else "no")]
        cells += [f"{row['backdoor_clean_rate']:.3f}"] if clean else []
        cells += [f"{row['evidence']['attacks'][attack]['forget']['auc']['value']:.3f}", f"{row['time_ratio']:.3f}"]
        name = "**retrain (reference)**" if row["name"] == "retrain" else row["name"]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def inside(value: float, bounds: list[float]) -> bool:
    return bounds[0] <= value <= bounds[1]


def goals(runs: list[dict]) -> str:
    """Per method: the mean Δtest over the seeds, and on how many seeds each goal holds."""
    attacks = list(runs[0]["rows"][0]["evidence"]["attacks"])
    backdoor = "backdoor_asr" in runs[0]["rows"][0]
    neurips = all("neurips" in row["evidence"] for row in runs[0]["rows"][2:])
    head = ["method", "Δtest (mean)", "|Δtest| ≤ 1", *(f"{a} AUC in retrain's 95%" for a in attacks)]
    head += ["ASR in retrain's 95%"] * backdoor + ["NeurIPS score (mean)", "× finetune's"] * neurips
    methods = [row["name"] for row in runs[0]["rows"][2:]]
    deltas, checks, scores = ({m: [] for m in methods} for _ in range(3))
    for run in runs:
        rows = {row["name"]: row for row in run["rows"]}
        retrain = rows["retrain"]
        for m in methods:
            row = rows[m]
            deltas[m].append(row["test_acc"] - retrain["test_acc"])
            held = [abs(deltas[m][-1]) <= 0.01]
            held += [inside(row["evidence"]["attacks"][a]["forget"]["auc"]["value"], retrain["evidence"]["attacks"][a]["forget"]["auc"]["ci95"]) for a in attacks]
            if backdoor:
                held.append(inside(row["backdoor_asr"], retrain["backdoor_asr_ci"]))
            checks[m].append(held)
            if neurips:
                scores[m].append(row["evidence"]["neurips"]["score"])
    order = sorted(methods, key=lambda m: -fmean(scores[m]) if neurips else abs(fmean(deltas[m])))
    lines = [f"{len(runs)} seed(s); each goal's cell counts the seeds on which it holds", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in order:
        cells = [m, f"{100 * fmean(deltas[m]):+.1f}", *(f"{sum(seed[i] for seed in checks[m])}/{len(runs)}" for i in range(len(checks[m][0])))]
        if neurips:
            cells += [f"{fmean(scores[m]):.3f}", f"{fmean(scores[m]) / fmean(scores['finetune']):.2f}" if "finetune" in scores else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


TEXT_COLUMNS = [("QA forget", "qa_forget", 100, 1), ("QA retain", "qa_retain", 100, 1), ("QA test", "qa_test", 100, 1),
                ("extraction", "extraction_forget", 100, 1), ("attack AUC", "attack_auc", 1, 3), ("ε score", "neurips_score", 1, 3),
                ("KLoM", "klom", 1, 3), ("KLoM (smoothed)", "klom_smoothed", 1, 3), ("perplexity", "perplexity", 1, 3), ("seconds", "seconds", 1, 0), ("× retrain", "time_ratio", 1, 3)]


def text_table(entries: list[dict], aggregated: bool) -> str:
    """A facts run (single seed: the attack's 95% interval beside its AUC; several: mean ± sd)."""
    columns = [c for c in TEXT_COLUMNS if any(c[1] in e for e in entries)]
    lines = ["| model | " + " | ".join(t for t, *_ in columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for entry in entries:
        cells = []
        for _, key, scale, digits in columns:
            if key not in entry:
                cells.append("")
            elif aggregated:
                cells.append(f"{scale * entry[key]['mean']:.{digits}f} ± {scale * entry[key]['sd']:.{digits}f}")
            elif key == "attack_auc":
                cells.append(f"{entry[key]:.3f} [{entry['attack_auc_ci'][0]:.3f}, {entry['attack_auc_ci'][1]:.3f}]")
            else:
                cells.append(f"{scale * entry[key]:.{digits}f}")
        lines.append(f"| {entry['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_results(path: str | Path) -> dict:
    """A run's results.json, or one line saying why it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file; give the results.json that `unlearnkit run` wrote in its --out folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as error:
        raise SystemExit(f"{path}: not a results.json ({error})") from None


def merged(paths: list[str]) -> dict:
    """Single-seed runs of the same original and retrained model (methods run in parts, say)
    as one run: the first run's reference rows and evidence summary, then every run's methods."""
    runs = [read_results(path) for path in paths]
    if len(runs) == 1:
        return runs[0]
    if any("aggregate" in run for run in runs):
        raise SystemExit("only single-seed runs can be merged; give one --seeds run at a time")
    first = runs[0]
    same = ("n", "k", "shadow_width", "level")
    for path, run in zip(paths[1:], runs[1:]):
        if [r["model"] for r in run["rows"][:2]] != [r["model"] for r in first["rows"][:2]]:
            raise SystemExit(f"{path}: its original or retrained model differs from {paths[0]}'s; merge only runs of the same models")
        if any(run["evidence"].get(key) != first["evidence"].get(key) for key in same):
            raise SystemExit(f"{path}: its evidence options ({', '.join(same)}) differ from {paths[0]}'s")
    rows = first["rows"][:2] + [row for run in runs for row in run["rows"][2:]]
    names = [row["name"] for row in rows]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise SystemExit(f"{', '.join(twice)} in more than one run; give each method once")
    return {**first, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="a results.json; several single-seed runs of the same models are merged into one table")
    parser.add_argument("--sort", action="store_true", help="methods by average gap to retrain (with --evidence: by the NeurIPS score, best first)")
    parser.add_argument("--evidence", action="store_true", help="the evidence of forgetting instead of accuracies")
    parser.add_argument("--goals", action="store_true", help="each method against the goals of unlearnkit's own method, seed by seed")
    parser.add_argument("--scenario", action="store_true", help="a backdoor or confusion run: each model's rate against the retrained model's interval")
    args = parser.parse_args()
    results = merged(args.results)
    if args.scenario or args.goals:
        folder = Path(args.results[0]).parent
        runs = [read_results(folder / run) for run in results["runs"]] if "runs" in results else [results]
        if args.goals:
            print(goals(runs))
        else:
            print("\n\n".join(f"seed {run['seed']}\n\n{scenario(run['rows'])}" if len(runs) > 1 else scenario(run["rows"]) for run in runs))
        return
    rows = results["aggregate"] if "aggregate" in results else results["rows"]
    if any("qa_forget" in row for row in rows):
        print(text_table(rows, "aggregate" in results))
        return
    if args.evidence:
        print(aggregate_evidence(results["aggregate"]) if "aggregate" in results else single_evidence(results, args.sort))
        return
    print(aggregate(results["aggregate"], args.sort) if "aggregate" in results else single(results["rows"], args.sort))


if __name__ == "__main__":
    main()
