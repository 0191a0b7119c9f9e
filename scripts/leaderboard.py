"""The leaderboard: docs/leaderboard.md, generated from the small summaries committed under results/.

    python scripts/leaderboard.py add RUN_DIR [RUN_DIR | results/OLD.json ...] --name NAME --title TITLE --command "unlearnkit run ..."
        summarize run folders (one seed or --seeds each) into results/NAME.json: every method's
        figures (mean, sd and per-seed values over seeds), the retrained reference's, the noise
        floors, the command, machine and date; an earlier summary given instead of a folder
        contributes its seeds, so a seed run later joins the table of the first; two folders of
        one seed that ran different methods (against the same store) count as one run;
        --without M1,M2 leaves those methods out of the earlier summaries given (a run folder
        given beside them measured them again)
    python scripts/leaderboard.py compare OLD.json NEW.json
        print, as a markdown table, the rows of the methods both summaries hold whose figures
        differ: old and new side by side
    python scripts/leaderboard.py build [--check]
        write docs/leaderboard.md from results/*.json (--check: exit 1 if it would change)

One table per modality and scenario. Summaries of the same modality, preset and scenario share a
table: each column comes from the first summary (by file name) that has it, and says which
when there are several. Below each table, "which method when" is read off that table. A preset
with several forget sets (random, entangled, memorized) gets a last section that sets each
method's avg gap and audit verdict under each of them side by side.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (header, key, scale, digits); the first columns of each modality, in this order
COLUMNS = {
    "image": [("forget", "forget_acc", 100, 1), ("retain", "retain_acc", 100, 1), ("test", "test_acc", 100, 1), ("MIA", "mia", 1, 3),
              ("attack AUC", "attack_auc", 1, 3), ("JS forget", "js_forget", 1, 3), ("NeurIPS score", "neurips_score", 1, 3),
              ("KLoM", "klom", 1, 2), ("KLoM smoothed", "klom_smoothed", 1, 3), ("U-LiRA AUC", "ulira_auc", 1, 3),
              ("backdoor ASR", "backdoor_asr", 1, 3), ("confusion", "confusion_test", 100, 1), ("relearn gap", "relearn_gap", 100, 1),
              ("relearn gap, neighbours", "relearn_neighbours_gap", 100, 1), ("int4 forget gap", "int4_forget_gap", 100, 1), ("avg gap", "avg_gap", 1, 3),
              ("× retrain", "time_ratio", 1, 3)],
    "text": [("QA forget", "qa_forget", 100, 1), ("QA retain", "qa_retain", 100, 1), ("QA test", "qa_test", 100, 1),
             ("extraction", "extraction_forget", 100, 1), ("attack AUC", "attack_auc", 1, 3), ("perplexity", "perplexity", 1, 2), ("ε score", "neurips_score", 1, 3),
             ("KLoM", "klom", 1, 2), ("KLoM smoothed", "klom_smoothed", 1, 3), ("relearn gap", "relearn_gap", 100, 1),
             ("int4 QA-forget gap", "int4_forget_gap", 100, 1), ("avg gap", "avg_gap", 1, 3), ("× retrain", "time_ratio", 1, 3)],
}
# the columns `compare` puts side by side (a text row's avg gap is not stored: the table computes it)
COMPARED = {"image": ("forget_acc", "test_acc", "mia", "avg_gap", "time_ratio"),
            "text": ("qa_forget", "qa_retain", "qa_test", "extraction_forget", "time_ratio")}
# the figures whose mean |difference| to the retrained model is a text row's "avg gap": the
# accuracies and, as the MIA in an image row's, the membership attack (here the loss attack's AUC,
# which `tune` also scores), so that a method that only stops answering does not look forgotten
TEXT_GAP_KEYS = ("qa_forget", "qa_retain", "qa_test", "extraction_forget", "attack_auc")
REFERENCES = ("retrain", "original")
# a method's forgetting holds when, after each attack, it is at most 2 points (the run's margin) more
# accurate on the forget set than the retrained model after the same attack, in the mean over seeds:
# stricter than the run's own verdict, which holds a method whose gap's interval reaches 2 points
HOLD_KEYS = ("relearn_gap", "relearn_neighbours_gap", "int4_forget_gap")
AUDITED_KEYS = ("relearn_gap", "int4_forget_gap")  # what both modalities' audits give
HOLD_MARGIN = 0.02
# what a model must keep, per modality: (key, short label, long label)
UTILITY = {"image": ("test_acc", "test", "test accuracy"), "text": ("qa_retain", "QA retain", "QA accuracy on retained people")}
FLOORS = ("neurips_retrain_vs_retrain", "klom_retrain_vs_retrain", "klom_smoothed_retrain_vs_retrain")


def fail(message: str) -> None:
    print(f"leaderboard: {message}", file=sys.stderr)
    raise SystemExit(2)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"{path} does not exist; give a run folder that holds results.json")
    except json.JSONDecodeError as error:
        fail(f"{path} is not JSON ({error.msg}); run or evaluate the folder again")


def floor_value(value) -> float | None:
    return value.get("mean", value.get("forgetting_quality")) if isinstance(value, dict) else value


def seed_figures(results: dict) -> tuple[dict[str, dict], dict]:
    """One seed's results.json → name → {key: value}, and its floors."""
    keys = {key for columns in COLUMNS.values() for _, key, _, _ in columns}
    rows = {row["name"]: {k: v for k, v in row.items() if k in keys and isinstance(v, (int, float))} for row in results["rows"]}
    evidence = results.get("evidence", {})
    floors = {k: floor_value(evidence[k]) for k in FLOORS if k in evidence and floor_value(evidence[k]) is not None}
    return rows, floors


def seeds_of_run(run_dir: Path) -> list[dict]:
    """A run folder (one seed, or a --seeds run's per-seed files) → one entry per seed."""
    results = read_json(run_dir / "results.json")
    per_seed = [read_json(run_dir / relative) for relative in results["runs"]] if "runs" in results else [results]
    seeds = results["seeds"] if "runs" in results else [results["seed"]]
    entries = []
    for seed, one in zip(seeds, per_seed):
        rows, floors = seed_figures(one)
        entries.append({"seed": seed, "rows": rows, "floors": floors, "modality": one.get("modality", "image"), "preset": one["preset"],
                        "scenario": one["split"]["spec"], "machine": one.get("machine", "unrecorded"), "date": datetime.date.today().isoformat(), "from": str(run_dir)})
    return entries


def value_at_seed(cell, row_seeds: list[int], seed: int) -> float:
    """A summary cell's value for one seed: from its per-seed values, or the cell itself for one seed."""
    return cell["values"][row_seeds.index(seed)] if isinstance(cell, dict) else cell


def seeds_of_summary(path: Path, without: frozenset[str] = frozenset()) -> list[dict]:
    """A summary made earlier (results/NAME.json) → one entry per seed, from the per-seed values it
    keeps, less the methods in `without`."""
    summary = read_json(path)
    if missing := sorted(without - {row["name"] for row in summary["rows"]}):
        fail(f"{path} has no row {missing[0]} to leave out; give --without only methods the summary holds")
    seed_floors = summary.get("seed_floors") or ([summary["floors"]] if len(summary["seeds"]) == 1 else None)
    entries = []
    for index, seed in enumerate(summary["seeds"]):
        rows = {}
        for row in summary["rows"]:
            row_seeds = row.get("seeds", summary["seeds"])  # a row that only some seeds have lists them
            if seed not in row_seeds or row["name"] in without:
                continue
            cells = {}
            for key, cell in row.items():
                if key in ("name", "seeds"):
                    continue
                if isinstance(cell, dict) and "values" not in cell:
                    fail(f"{path} keeps only the mean and sd of its seeds; add its run folders instead")
                cells[key] = value_at_seed(cell, row_seeds, seed)
            rows[row["name"]] = cells
        if seed_floors is None:
            fail(f"{path} keeps only the mean of its seeds' floors; add its run folders instead")
        entries.append({"seed": seed, "rows": rows, "floors": seed_floors[index], "modality": summary["modality"], "preset": summary["preset"],
                        "scenario": summary["scenario"], "machine": summary["machine"], "date": summary.get("date", "undated"), "from": str(path)})
    return entries


def one_entry_per_seed(entries: list[dict]) -> list[dict]:
    """Runs of one seed that ran different methods against the same reference models (a later
    run of the methods an earlier one left out) → one entry with all their methods."""
    by_seed: dict[int, dict] = {}
    for entry in entries:
        first = by_seed.get(entry["seed"])
        if first is None:
            by_seed[entry["seed"]] = entry | {"rows": dict(entry["rows"])}
            continue
        shared = set(first["rows"]) & set(entry["rows"])
        if repeated := sorted(shared - set(REFERENCES)):
            fail(f"seed {entry['seed']} is given twice with {repeated[0]} in both ({first['from']}, {entry['from']}); give each method of a seed once")
        for name in sorted(shared):
            for key in ("forget_acc", "retain_acc", "test_acc"):
                theirs, ours = first["rows"][name].get(key), entry["rows"][name].get(key)
                if theirs is not None and ours is not None and abs(theirs - ours) > 1e-6:
                    fail(f"{entry['from']} has {name} {key} {ours:.4f} but {first['from']} has {theirs:.4f}; "
                         f"runs of one seed must use the same {name} model (the same store)")
        first["rows"].update({name: row for name, row in entry["rows"].items() if name not in shared})
        first["floors"] = entry["floors"] | first["floors"]
        for what, separator in (("machine", "; "), ("date", ", "), ("from", ", ")):
            if entry[what] not in first[what].split(separator):
                first[what] += separator + entry[what]
    return list(by_seed.values())


def summarize(sources: Path | list[Path], name: str, title: str, command: str, without: frozenset[str] = frozenset()) -> dict:
    """Run folders and earlier summaries (seeds of one preset and scenario) → one summary: a
    seed's value, or mean, sd and the per-seed values (so that a later seed can be added). The
    methods in `without` are left out of the summaries given (not of the run folders)."""
    if without & set(REFERENCES):
        fail(f"--without {sorted(without & set(REFERENCES))[0]}: the reference models cannot be left out; name methods only")
    entries = [e for source in ([sources] if isinstance(sources, Path) else sources)
               for e in (seeds_of_summary(source, without) if source.is_file() else seeds_of_run(source))]
    first = entries[0]
    for entry in entries[1:]:
        for what in ("modality", "preset", "scenario"):
            if entry[what] != first[what]:
                fail(f"{entry['from']} has {what} {entry[what]!r} but {first['from']} has {first[what]!r}; a summary holds seeds of one experiment")
    entries = sorted(one_entry_per_seed(entries), key=lambda e: e["seed"])
    seeds = [e["seed"] for e in entries]
    rows = []
    for row_name in dict.fromkeys(name for e in entries for name in e["rows"]):
        having = [e for e in entries if row_name in e["rows"]]
        row = {"name": row_name} | ({"seeds": [e["seed"] for e in having]} if len(having) < len(entries) else {})  # a method some seeds did not run
        for key in having[0]["rows"][row_name]:
            values = [e["rows"][row_name][key] for e in having if key in e["rows"][row_name]]
            if len(values) == len(having):
                row[key] = values[0] if len(values) == 1 else {"mean": mean(values), "sd": sd(values), "values": values}
        rows.append(row)
    floors = {k: mean([e["floors"][k] for e in entries]) for k in FLOORS if all(k in e["floors"] for e in entries)}
    machines = list(dict.fromkeys(m for e in entries for m in e["machine"].split("; ")))  # an entry of merged runs joins theirs
    return {
        "title": title, "modality": first["modality"], "preset": first["preset"], "scenario": first["scenario"],
        "seeds": sorted(seeds), "command": command, "machine": "; ".join(machines),
        "date": ", ".join(sorted({d for e in entries for d in e["date"].split(", ")})), "floors": floors, "seed_floors": [e["floors"] for e in entries], "rows": rows,
    }


def values_by_seed(summary: dict, row: dict, key: str) -> dict[int, float]:
    seeds = row.get("seeds", summary["seeds"])
    return {} if row.get(key) is None else {seed: value_at_seed(row[key], seeds, seed) for seed in seeds}


def differs_on_a_shared_seed(old: dict, old_row: dict, new: dict, new_row: dict, key: str) -> bool:
    before, after = values_by_seed(old, old_row, key), values_by_seed(new, new_row, key)
    return any(before[seed] != after[seed] for seed in before.keys() & after.keys())


def compare(old: dict, new: dict) -> list[str]:
    """The methods whose figures differ between two summaries on a seed both hold (measured again)
    → a markdown table, each summary's mean over its own seeds side by side."""
    modality = new["modality"]
    olds = {row["name"]: row for row in old["rows"]}
    keys = [c for c in COLUMNS[modality] if c[1] in COMPARED[modality]]
    changed = [row for row in new["rows"] if row["name"] in olds and row["name"] not in REFERENCES
               and any(differs_on_a_shared_seed(old, olds[row["name"]], new, row, key) for _, key, _, _ in keys)]
    if not changed:
        fail("no method's figures differ between the two summaries; nothing to compare")
    changed.sort(key=lambda row: (value_of(row.get("avg_gap")) if row.get("avg_gap") is not None else float("inf"), row["name"]))
    head = ["method", *(f"{header} (old → new)" for header, _, _, _ in keys)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in changed:
        before = olds[row["name"]]
        cells = [f"{formatted(before.get(key), scale, digits) or '—'} → {formatted(row.get(key), scale, digits) or '—'}" for _, key, scale, digits in keys]
        lines.append("| " + " | ".join([row["name"], *cells]) + " |")
    return lines


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def sd(values: list[float]) -> float:
    m = mean(values)
    return (sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def value_of(cell) -> float | None:
    return cell["mean"] if isinstance(cell, dict) else cell


def formatted(cell, scale: float, digits: int) -> str:
    if cell is None:
        return ""
    # a collapsed model's perplexity runs to 1e11: twelve digits hide its order of magnitude
    number = lambda value: f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.1e}"  # noqa: E731
    if isinstance(cell, dict):
        return f"{number(scale * cell['mean'])} ± {number(scale * cell['sd'])}"
    return number(scale * cell)


def with_text_gaps(rows: dict[str, dict]) -> None:
    """A text row's avg gap: the mean |difference| to the retrained model over the QA accuracies, extraction and the attack's AUC."""
    reference = rows.get("retrain", {})
    for row in rows.values():
        pairs = [(value_of(row[k]), value_of(reference[k])) for k in TEXT_GAP_KEYS if k in row and k in reference]
        if pairs and "avg_gap" not in row:
            row["avg_gap"] = mean([abs(a - b) for a, b in pairs])


def merged_table(summaries: list[tuple[str, dict]]) -> tuple[list[str], list[tuple[str, str, int, int, int]], dict[str, dict]]:
    """Row names (retrain, original, then methods by avg gap), the columns with their source, and
    the cells: each column from the summary that has it for the most rows (the first of those),
    so that a summary which measured one method's audits too does not take the column from the
    summary that audited them all."""
    modality = summaries[0][1]["modality"]
    rows: dict[str, dict] = {}
    columns = []
    for header, key, scale, digits in COLUMNS[modality]:
        found_in = [{row["name"]: row[key] for row in summary["rows"] if key in row} for _, summary in summaries]
        index = max(range(len(summaries)), key=lambda i: (len(found_in[i]), -i))
        if found_in[index]:
            columns.append((header, key, scale, digits, index))
            for name, cell in found_in[index].items():
                rows.setdefault(name, {})[key] = cell
                rows[name].setdefault("_source", {})[key] = index
        elif key == "avg_gap" and modality == "text":
            columns.append((header, key, scale, digits, 0))
    contributing = {index for *_, index in columns}
    for index, (_, summary) in enumerate(summaries):
        for row in summary["rows"]:
            rows.setdefault(row["name"], {})
            if "seeds" in row and index in contributing:  # run on some of the summary's seeds only: say which columns
                rows[row["name"]].setdefault("_seeds", {})[index] = row["seeds"]
    if modality == "text":
        with_text_gaps(rows)
    gap = lambda name: value_of(rows[name].get("avg_gap")) if rows[name].get("avg_gap") is not None else float("inf")  # noqa: E731
    methods = sorted((n for n in rows if n not in ("retrain", "original")), key=lambda n: (gap(n), n))
    order = [n for n in ("retrain", "original") if n in rows] + methods
    return order, columns, rows


def holds(row: dict) -> bool | None:
    """Whether a row's forgetting holds under the audits (None when it was not audited). A text
    row has no neighbours attack: its relearning and int4 gaps decide."""
    if any(row.get(key) is None for key in AUDITED_KEYS):
        return None
    return all(value_of(row[key]) <= HOLD_MARGIN for key in HOLD_KEYS if row.get(key) is not None)


def guide(order: list[str], rows: dict[str, dict], modality: str) -> list[str]:
    """Which method when, read off the table."""
    methods = [n for n in order if n not in ("retrain", "original")]
    lines = []
    utility, short_label, long_label = UTILITY[modality]
    reference = value_of(rows.get("retrain", {}).get(utility))

    def best(key: str, highest: bool = False, among: list[str] = methods):
        scored = [(value_of(rows[n][key]), n) for n in among if rows[n].get(key) is not None]
        scored.sort(key=lambda pair: (-pair[0] if highest else pair[0], pair[1]))
        return scored[0] if scored else None

    if found := best("avg_gap"):
        lines.append(f"- **Closest to retraining on average** (lowest avg gap): `{found[1]}` ({found[0]:.3f}).")
    audited = [n for n in methods if holds(rows[n]) is not None]
    if audited:
        holding = [n for n in audited if holds(rows[n])]
        if found := best("avg_gap", among=holding):
            # a model destroyed by the method also "holds": its utility beside the name shows which it is
            kept = value_of(rows[found[1]].get(utility))
            beside = f"; {short_label} {100 * kept:.1f}%, the retrained model's {100 * reference:.1f}%" if kept is not None and reference is not None else ""
            lines.append(f"- **Closest to retraining whose forgetting holds** (mean relearning and int4 gaps at most {100 * HOLD_MARGIN:.0f} points above the "
                         f"retrained model's): `{found[1]}` ({found[0]:.3f}{beside}); {len(holding)} of the {len(audited)} audited methods {'holds' if len(holding) == 1 else 'hold'}.")
        elif not holding:
            lines.append(f"- **No audited method's forgetting holds**: every one recovers more than {100 * HOLD_MARGIN:.0f} points beyond the retrained model under an attack.")
    if found := best("neurips_score", highest=True):
        lines.append(f"- **Best per-example forgetting** (highest NeurIPS score): `{found[1]}` ({found[0]:.3f}).")
    if found := best("klom"):
        lines.append(f"- **Margins distributed most like retraining's** (lowest KLoM): `{found[1]}` ({found[0]:.2f}).")
    untouched = value_of(rows.get("original", {}).get("avg_gap"))
    if reference is not None:
        # a method that leaves the model as it was keeps its accuracy too: it must also have at
        # least halved the original's avg gap to the retrained model
        kept = [n for n in methods if rows[n].get(utility) is not None and rows[n].get("time_ratio") is not None
                and value_of(rows[n][utility]) >= reference - 0.01
                and (untouched is None or rows[n].get("avg_gap") is None or value_of(rows[n]["avg_gap"]) <= untouched / 2)]
        if kept:
            cheapest = min(kept, key=lambda n: (value_of(rows[n]["time_ratio"]), n))
            lines.append(f"- **Cheapest that keeps the retrained model's {long_label}** (within 1 point) and halves the original's gap: `{cheapest}` "
                         f"({value_of(rows[cheapest]['time_ratio']):.3f}× the retraining time).")
    return lines


def table_markdown(summaries: list[tuple[str, dict]], merged: tuple[list[str], list, dict[str, dict]]) -> list[str]:
    """`summaries`' table, from their `merged_table`, with its sources and guide."""
    order, columns, rows = merged
    several = len(summaries) > 1
    head = ["model", *(header + (f" [{index + 1}]" if several else "") for header, _, _, _, index in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in order:
        label = "**retrain (reference)**" if name == "retrain" else name
        partial = rows[name].get("_seeds", {})
        if len(partial) == len({index for *_, index in columns}) and len({tuple(seeds) for seeds in partial.values()}) == 1:
            partial = {None: next(iter(partial.values()))}  # the same seeds in every column
        for index, seeds in partial.items():
            label += f" ({f'[{index + 1}]: ' if several and index is not None else ''}seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} only)"
        lines.append("| " + " | ".join([label, *(formatted(rows[name].get(key), scale, digits) for _, key, scale, digits, _ in columns)]) + " |")
    lines.append("")
    for index, (file, summary) in enumerate(summaries):
        seeds = ", ".join(map(str, summary["seeds"]))
        floors = "; ".join(f"{key.removesuffix('_retrain_vs_retrain').replace('_', ' ')} floor {value:.3f}" for key, value in summary["floors"].items())
        lines.append(f"{f'[{index + 1}] ' if several else ''}`{summary['command']}` — seeds {seeds}; {summary['machine']}; {summary['date']}; "
                     f"results/{file}" + (f". Retrained against retrained: {floors}." if floors else "."))
        lines.append("")
    lines += ["Which method when:", "", *guide(order, rows, summaries[0][1]["modality"]), ""]
    return lines


def worst_audit_gap(row: dict) -> str:
    """' at +2.3': the largest of the row's mean relearning and int4 gaps, in points, so that a
    verdict at the bar reads as one."""
    if holds(row) is None:
        return ""
    return f" at {100 * max(value_of(row[key]) for key in HOLD_KEYS if row.get(key) is not None):+.1f}"


def seeds_label(row: dict) -> str:
    """' (seeds 0, 1)' where the row's avg gap and audits come from some seeds only; each named
    apart where they come from summaries of different seeds."""
    def seeds_of(key):
        index = row.get("_source", {}).get(key)
        return tuple(row.get("_seeds", {}).get(index, ())) if index is not None else ()
    said = lambda seeds: f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"  # noqa: E731
    gap, audits = seeds_of("avg_gap"), {seeds_of(key) for key in HOLD_KEYS if key in row}
    if audits <= {gap}:
        return f" ({said(gap)})" if gap else ""
    return f" (avg gap: {said(gap) if gap else 'every seed'}; audits: {'; '.join(said(seeds) if seeds else 'every seed' for seeds in sorted(audits))})"


def across_forget_sets(tables: dict[str, tuple[list[str], dict[str, dict]]], modality: str = "image") -> list[str]:
    """One preset's scenarios side by side: each method's avg gap per forget set and whether its
    forgetting holds there, sorted by its worst avg gap over the forget sets it ran; and the
    method closest to retraining on all of them whose forgetting holds on all of them."""
    scenarios = sorted(tables, key=lambda scenario: (not scenario.startswith("random"), scenario))  # random forgetting first: the others are read against it
    cells = {}
    for scenario, (order, rows) in tables.items():
        for name in order:
            if name != "retrain" and rows[name].get("avg_gap") is not None:
                cells.setdefault(name, {})[scenario] = rows[name]
    worst = lambda name: max(value_of(row["avg_gap"]) for row in cells[name].values())  # noqa: E731
    names = sorted(cells, key=lambda name: (name != "original", len(cells[name]) < len(scenarios), worst(name), name))
    verdict = {True: "holds", False: "fails", None: "not audited"}
    lines = ["| model | " + " | ".join(f"`{s}`" for s in scenarios) + " |", "|" + "---|" * (len(scenarios) + 1)]
    for name in names:
        row_cells = []
        for scenario in scenarios:
            row = cells[name].get(scenario)
            row_cells.append("" if row is None else f"{value_of(row['avg_gap']):.3f}, {verdict[holds(row)]}{worst_audit_gap(row)}{seeds_label(row)}")
        lines.append(f"| {name} | " + " | ".join(row_cells) + " |")
    everywhere = [n for n in names if n != "original" and len(cells[n]) == len(scenarios) and all(holds(row) for row in cells[n].values())]
    lines += ["", "Which method when:", ""]
    if everywhere:
        best = min(everywhere, key=lambda n: (worst(n), n))
        lines.append(f"- **Closest to retraining on every forget set whose forgetting holds on every one** (lowest worst avg gap): `{best}` "
                     f"({worst(best):.3f}{utility_lost(cells[best], tables, modality)}); {len(everywhere)} of the {sum(len(cells[n]) == len(scenarios) for n in names if n != 'original')} methods run on every "
                     "forget set hold on every one.")
    else:
        lines.append(f"- **No method's forgetting holds on all {len(scenarios)} forget sets** (or none ran on all of them).")
    return lines + [""]


def utility_lost(rows: dict[str, dict], tables: dict[str, tuple[list[str], dict[str, dict]]], modality: str) -> str:
    """"; test accuracy 10.3 to 11.2 points under the retrained model's": what a method that
    holds everywhere paid for it, over the forget sets (empty where a table lacks the figure)."""
    key, _, label = UTILITY[modality]
    references = [tables[scenario][1].get("retrain", {}) for scenario in rows]
    if any(key not in row or key not in reference for row, reference in zip(rows.values(), references)):
        return ""
    losses = [100 * (value_of(reference[key]) - value_of(row[key])) for row, reference in zip(rows.values(), references)]
    low, high = f"{min(losses):.1f}", f"{max(losses):.1f}"
    return f"; {label} {low if low == high else f'{low} to {high}'} points under the retrained model's"


def build(results: Path) -> str:
    files = sorted(results.glob("*.json"))
    if not files:
        fail(f"no summaries in {results}; make one with `python scripts/leaderboard.py add RUN_DIR ...`")
    groups: dict[tuple, list[tuple[str, dict]]] = {}
    for path in files:
        summary = read_json(path)
        groups.setdefault((summary["modality"], summary["preset"], summary["scenario"]), []).append((path.name, summary))
    lines = ["# Leaderboard", "",
             "Generated by `python scripts/leaderboard.py build` from the summaries in `results/`; do not edit by hand. "
             "Each table compares every method with the model retrained without the forget set (the gold standard): "
             "accuracies in %, avg gap = mean |difference| to the retrained model over the accuracies and the membership attack (the MIA for images, the attack AUC for text), "
             "× retrain = time as a fraction of retraining. Methods are sorted by avg gap. The evidence columns are defined in "
             "[evaluation.md](evaluation.md); dated experiments are in [history.md](history.md).", ""]
    by_preset: dict[tuple, dict[str, tuple]] = {}
    for (modality, preset, scenario), summaries in sorted(groups.items()):
        lines += [f"## {summaries[0][1]['title']}", "", f"{modality}, preset `{preset}`, forget `{scenario}`.", ""]
        order, columns, rows = merged_table(summaries)
        lines += table_markdown(summaries, (order, columns, rows))
        by_preset.setdefault((modality, preset), {})[scenario] = (order, rows)
    for (modality, preset), tables in by_preset.items():
        if len(tables) > 1:
            lines += [f"## Across forget sets: {modality}, preset `{preset}`", "",
                      "Each method's avg gap under each forget set of the tables above (the mean over the seeds each holds; a method run on fewer "
                      "seeds says which), and whether its forgetting holds there (mean relearning and int4 gaps at most "
                      f"{100 * HOLD_MARGIN:.0f} points above the retrained model's; \"at\" gives the largest of them). The original first; then sorted by the worst avg gap over the "
                      "forget sets, methods missing from some last.", ""]
            lines += across_forget_sets(tables, modality)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="what", required=True)
    add = commands.add_parser("add", help="summarize run folders (and earlier summaries) into results/NAME.json")
    add.add_argument("sources", type=Path, nargs="+", help="run folders, or results/*.json summaries whose seeds are added to")
    add.add_argument("--name", required=True, help="the summary's file name, without .json")
    add.add_argument("--title", required=True, help="the table's heading")
    add.add_argument("--command", required=True, help="the command that made the run, as a reader would type it")
    add.add_argument("--without", default="", help="comma-separated methods to leave out of the summaries given (measured again by a run folder given)")
    add.add_argument("--results", type=Path, default=ROOT / "results")
    versus = commands.add_parser("compare", help="print the rows two summaries both hold whose figures differ, old and new side by side")
    versus.add_argument("old", type=Path)
    versus.add_argument("new", type=Path)
    make = commands.add_parser("build", help="write docs/leaderboard.md from results/")
    make.add_argument("--results", type=Path, default=ROOT / "results")
    make.add_argument("--out", type=Path, default=ROOT / "docs" / "leaderboard.md")
    make.add_argument("--check", action="store_true", help="exit 1 if the file would change")
    args = parser.parse_args()
    if args.what == "add":
        without = frozenset(name.strip() for name in args.without.split(",") if name.strip())
        summary = summarize(args.sources, args.name, args.title, args.command, without)
        args.results.mkdir(parents=True, exist_ok=True)
        path = args.results / f"{args.name}.json"
        path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path} ({len(summary['rows'])} rows, seeds {summary['seeds']})")
        return
    if args.what == "compare":
        print("\n".join(compare(read_json(args.old), read_json(args.new))))
        return
    text = build(args.results)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python scripts/leaderboard.py build", file=sys.stderr)
            raise SystemExit(1)
        print(f"{args.out} is up to date")
        return
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
