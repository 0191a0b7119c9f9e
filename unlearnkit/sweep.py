"""`unlearnkit sweep`: methods × seeds × forget scenarios × `--set` value lists, one run folder
per cell, an aggregate table over seeds, and every model made as a job that runs in this
process or on Ray (`unlearnkit.cluster`).

The work goes in three waves, each a batch of independent jobs:
1. the reference models of every (seed, scenario): original and retrained, and with
   `--evidence full` the retrained ensemble and the U-LiRA shadow models;
2. with `--evidence full`, the members of every cell's unlearned ensembles;
3. the cells: each a `run_experiment` of one method, which finds all of the above in the store.
Every model is content-addressed, so a rerun (or a retried job) reuses what is finished.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats

from unlearnkit.cluster import Executor, Job
from unlearnkit.data.scenarios import KINDS
from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluate.summary import aggregate_rows
from unlearnkit.evidence import EvidenceOptions
from unlearnkit.fileio import atomic_write_bytes, atomic_write_json
from unlearnkit.methods import make_config, parse_value, split_setting
from unlearnkit.presets import get_preset
from unlearnkit.progress import say

# columns of the aggregate table: (header, key in a row, scale, digits)
COLUMNS = [("forget", "forget_acc", 100, 1), ("retain", "retain_acc", 100, 1), ("test", "test_acc", 100, 1),
           ("MIA", "mia", 1, 3), ("avg gap", "avg_gap", 1, 3), ("NeurIPS", "neurips_score", 1, 3), ("KLoM", "klom", 1, 3), ("KLoM (smoothed)", "klom_smoothed", 1, 3), ("ASR", "backdoor_asr", 1, 3), ("confusion", "confusion_test", 100, 1), ("× retrain", "time_ratio", 1, 3)]


@dataclass(frozen=True)
class Cell:
    """One run of the grid: a method with one combination of its `--set` values, on one seed
    and one forget scenario."""

    method: str
    seed: int
    forget: str
    config: tuple[tuple[str, object], ...] = ()

    @property
    def settings(self) -> dict:
        return dict(self.config)

    @property
    def variant(self) -> str:
        return self.method + "".join(f"--{k}={v}" for k, v in self.config)

    @property
    def folder(self) -> Path:
        return Path(slug(self.forget)) / f"seed{self.seed}" / self.variant


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_") or "default"


def parse_seeds(text: str) -> list[int]:
    """`0-4`, `0,1,2` or a mix (`0-2,7`)."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match or (match.group(2) and int(match.group(2)) < int(match.group(1))):
            raise UnlearnkitError(f"--seeds {text!r} is not a list of seeds; write e.g. 0-4 or 0,1,2")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        seeds += range(low, high + 1)
    if len(set(seeds)) != len(seeds):
        raise UnlearnkitError(f"--seeds {text!r} names a seed twice; give each seed once")
    return seeds


def split_forget_specs(text: str) -> list[str]:
    """`random:0.1,class:cat,dog` → ['random:0.1', 'class:cat,dog']: a comma starts a new spec
    only where a scenario kind follows it."""
    starts = [0] + [m.start() + 1 for m in re.finditer(rf",(?=(?:{'|'.join(KINDS)}):)", text)]
    specs = [text[a : b - 1 if b else None].strip() for a, b in zip(starts, starts[1:] + [0])]
    if not all(specs) or any(s.endswith(",") or s.startswith(",") or ",," in s for s in specs):
        raise UnlearnkitError(f"--forget {text!r} holds an empty scenario; write e.g. random:0.1,class:cat")
    return specs


def parse_value_lists(items: list[str] | None, methods: list[str]) -> dict[str, dict[str, list]]:
    """`METHOD.FIELD=V1,V2` (repeatable) → {method: {field: [values]}}, every value validated by
    the method's config before any work starts."""
    grid: dict[str, dict[str, list]] = {}
    for item in items or []:
        name, field_name, values = split_setting(item, methods, "V1,V2,...", "sweep")
        texts = [v.strip() for v in values.split(",")]
        if not values.strip() or not all(texts):
            raise UnlearnkitError(f"--set '{item}' has an empty value list; give one or more values, e.g. {name}.{field_name}=0.1,0.2")
        parsed = [parse_value(text) for text in texts]
        for value in parsed:
            make_config(name, {field_name: value})
        grid.setdefault(name, {})[field_name] = parsed
    return grid


def expand(methods: list[str], seeds: list[int], forgets: list[str], grid: dict[str, dict[str, list]]) -> list[Cell]:
    cells = []
    for forget, seed, method in itertools.product(forgets, seeds, methods):
        fields = grid.get(method, {})
        for values in itertools.product(*fields.values()):
            cells.append(Cell(method, seed, forget, tuple(zip(fields, values))))
    return cells


# ---- jobs: module-level functions of plain arguments, so that any worker can run them ----

def make_reference(*, preset: dict, data, seed: int, forget: str, cache: str | None, role: str, model_seed: int, shadow_width: int | None = None) -> dict:
    """One reference model of a (seed, scenario) through the store: trained once, found after."""
    from unlearnkit.evidence import narrower
    from unlearnkit.experiment import prepare
    from unlearnkit.reference import train_reference

    setup = prepare(data=data, preset=get_preset(preset), seed=seed, cache=cache, forget=forget)
    ref = train_reference(role, setup.dataset, setup.split, narrower(setup.preset, shadow_width), model_seed, setup.store)
    return {"role": role, "path": str(ref.path), "cached": ref.cached}


def make_unlearned(*, preset: dict, data, seed: int, forget: str, cache: str | None, method: str, config: dict, original_seed: int, member_seed: int, shadow_width: int | None = None) -> dict:
    """One member of an unlearned ensemble: the method with `member_seed` on the original
    trained with `original_seed`; only its logits are kept (see `evidence.unlearned_outputs`)."""
    from unlearnkit.evidence import Ledger, narrower, unlearned_outputs
    from unlearnkit.experiment import prepare
    from unlearnkit.reference import train_reference
    from unlearnkit.run import method_settings

    setup = prepare(data=data, preset=get_preset(preset), seed=seed, cache=cache, forget=forget)
    shadow = narrower(setup.preset, shadow_width)
    original = train_reference("original", setup.dataset, setup.split, shadow, original_seed, setup.store)
    ledger = Ledger()
    settings = method_settings(setup.preset, [method], {method: config}).get(method)  # as the cell's run will resolve them
    unlearned_outputs(method, make_config(method, settings), original, setup, shadow, member_seed, ledger)
    return {"method": method, "member_seed": member_seed, "cached": bool(ledger.reused)}


def run_cell(*, preset: dict, data, seed: int, forget: str, cache: str | None, method: str, config: dict, out: str, evidence: dict) -> dict:
    """One cell: `run_experiment` of one method; returns its rows and control."""
    from unlearnkit.run import run_experiment

    results = run_experiment(
        preset=get_preset(preset), data=data, methods=method, seed=seed, out=out, cache=cache,
        configs={method: config} if config else None, forget=forget, evidence=EvidenceOptions(**evidence),
    )
    return {"rows": results["rows"], "positive_control": results["positive_control"], "seconds": results["seconds_total"]}


@dataclass
class Sweep:
    preset: dict
    data: str | None
    cells: list[Cell]
    out: Path
    cache: str | None
    evidence: EvidenceOptions = field(default_factory=EvidenceOptions)

    def common(self, seed: int, forget: str) -> dict:
        return {"preset": self.preset, "data": self.data, "seed": seed, "forget": forget, "cache": self.cache}

    def scenarios(self) -> list[tuple[int, str]]:
        return sorted({(c.seed, c.forget) for c in self.cells}, key=lambda s: (s[1], s[0]))

    def reference_jobs(self) -> list[Job]:
        jobs, options = [], self.evidence
        for seed, forget in self.scenarios():
            wanted = [("original", seed, None), ("retrain", seed, None)]
            if options.level == "full":
                wanted += [("retrain", seed + i, None) for i in range(1, options.n)]
                wanted += [(role, seed + 1 + i, options.shadow_width) for i in range(options.k) for role in ("original", "retrain")]
            for role, model_seed, width in dict.fromkeys(wanted):
                label = f"{role} seed {model_seed}" + (f" width {width}" if width else "")
                jobs.append(Job(f"{forget} / seed {seed}: {label}", make_reference,
                                {**self.common(seed, forget), "role": role, "model_seed": model_seed, "shadow_width": width}))
        return jobs

    def member_jobs(self) -> list[Job]:
        if self.evidence.level != "full":
            return []
        jobs, options = [], self.evidence
        for cell in self.cells:
            members = [(cell.seed, cell.seed + i, None) for i in range(1, options.n)]
            members += [(cell.seed + 1 + i, cell.seed + 1 + i, options.shadow_width) for i in range(options.k)]
            for original_seed, member_seed, width in members:
                jobs.append(Job(f"{cell.folder}: member seed {member_seed}" + (" (shadow)" if original_seed != cell.seed else ""), make_unlearned,
                                {**self.common(cell.seed, cell.forget), "method": cell.method, "config": cell.settings,
                                 "original_seed": original_seed, "member_seed": member_seed, "shadow_width": width}))
        return jobs

    def cell_jobs(self) -> list[Job]:
        return [Job(str(cell.folder), run_cell, {**self.common(cell.seed, cell.forget), "method": cell.method, "config": cell.settings,
                                                  "out": str(self.out / cell.folder), "evidence": self.evidence.model_dump()})
                for cell in self.cells]

    def run(self, executor: Executor) -> dict:
        started = time.perf_counter()
        say(f"[bold]unlearnkit sweep[/bold]: {len(self.cells)} cells ({len(self.scenarios())} seed × scenario pairs), {executor.describe()}")
        executor.map(self.reference_jobs(), "reference models")
        executor.map(self.member_jobs(), "unlearned ensemble members")
        outcomes = executor.map(self.cell_jobs(), "cells")
        summary = self.summarize(outcomes, time.perf_counter() - started, executor.describe())
        atomic_write_json(self.out / "sweep.json", summary)
        atomic_write_bytes(self.out / "sweep.md", markdown(summary).encode())
        Console(width=None if Console().is_terminal else 200).print(table(summary))
        say(f"wrote {self.out / 'sweep.json'} and {self.out / 'sweep.md'} ({len(self.cells)} run folders) in {summary['seconds']:.0f}s")
        return summary

    def summarize(self, outcomes: list[dict], seconds: float, where: str) -> dict:
        groups: dict[tuple, dict] = {}
        for cell, outcome in zip(self.cells, outcomes):
            rows = {row["name"]: row for row in outcome["rows"]}
            for name, variant in (("original", "original"), ("retrain", "retrain"), (cell.method, cell.variant)):
                entry = groups.setdefault((cell.forget, variant), {"forget": cell.forget, "variant": variant, "runs": {}})
                entry["runs"].setdefault(cell.seed, {**rows[name], "name": variant})
        aggregated = []
        for entry in groups.values():
            seeds = sorted(entry["runs"])
            (row,) = aggregate_rows([[entry["runs"][s]] for s in seeds])
            aggregated.append({"forget": entry["forget"], "seeds": seeds, **with_intervals(row)})
        return {
            "preset": self.preset, "evidence": self.evidence.model_dump(), "where": where, "seconds": seconds,
            "cells": [{"method": c.method, "seed": c.seed, "forget": c.forget, "config": c.settings, "folder": str(c.folder),
                       "seconds": o["seconds"], "control": o["positive_control"]["passed"]} for c, o in zip(self.cells, outcomes)],
            "table": aggregated,
        }


def with_intervals(row: dict) -> dict:
    """Adds a 95% t-interval over seeds (`ci95`: half-width) to every mean ± sd of `row`."""
    n = row["n"]
    for key, value in row.items():
        if isinstance(value, dict) and "mean" in value:
            half = float(stats.t.ppf(0.975, n - 1) * value["sd"] / math.sqrt(n)) if n > 1 else math.nan
            value["ci95"] = half
    return row


def cell_text(entry: dict, key: str, scale: float, digits: int) -> str:
    value = entry.get(key)
    if not isinstance(value, dict) or not np.isfinite(value["mean"]):
        return "–"
    text = f"{value['mean'] * scale:.{digits}f} ± {value['sd'] * scale:.{digits}f}"
    return text + (f" [±{value['ci95'] * scale:.{digits}f}]" if np.isfinite(value.get("ci95", math.nan)) else "")


def table(summary: dict) -> Table:
    result = Table(title="sweep: mean ± sd over seeds [95% interval half-width]; accuracy in %", title_justify="left")
    for header in ["scenario", "model", "seeds", *[c[0] for c in COLUMNS]]:
        result.add_column(header, justify="left" if header in ("scenario", "model") else "right")
    for entry in summary["table"]:
        result.add_row(entry["forget"], entry["name"], str(entry["n"]), *[cell_text(entry, key, scale, digits) for _, key, scale, digits in COLUMNS])
    return result


def markdown(summary: dict) -> str:
    headers = ["scenario", "model", "seeds", *[c[0] for c in COLUMNS]]
    lines = [f"# Sweep ({summary['where']}, {summary['seconds']:.0f}s)", "",
             "Mean ± sd over seeds, [half-width of the 95% t-interval]; accuracy in %.", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for entry in summary["table"]:
        lines.append("| " + " | ".join([entry["forget"], entry["name"], str(entry["n"]), *[cell_text(entry, key, scale, digits) for _, key, scale, digits in COLUMNS]]) + " |")
    return "\n".join(lines) + "\n"


def sweep(
    *, preset: str = "default", data=None, methods: str | list[str] | None = None, seeds: str | list[int] = "0", forget: str | list[str] | None = None,
    sets: list[str] | None = None, out: str | Path = "runs/sweep", cache: str | None = None, evidence: EvidenceOptions | None = None,
    executor: Executor | None = None,
) -> dict:
    """Run the grid (see the module's text); everything is validated before any work starts."""
    from unlearnkit.experiment import prepare
    from unlearnkit.run import resolve_methods

    chosen = get_preset(preset)
    if chosen.modality == "text":
        raise UnlearnkitError(f"unlearnkit sweep runs image presets; for {chosen.name} use `unlearnkit run --preset {chosen.name} --seeds 0,1,2` and `unlearnkit tune METHOD --preset {chosen.name}`")
    names = resolve_methods(methods)
    seed_list = parse_seeds(seeds) if isinstance(seeds, str) else list(seeds)
    forgets = (split_forget_specs(forget) if isinstance(forget, str) else list(forget)) if forget else [f"random:{chosen.forget:g}"]
    cells = expand(names, seed_list, forgets, parse_value_lists(sets, names))
    for spec in forgets:  # a bad scenario fails here, in one line, before any job starts
        prepare(data=data, preset=chosen, seed=seed_list[0], cache=cache, forget=spec)
    plan = Sweep(chosen.model_dump(), None if data is None else str(data), cells, Path(out), None if cache is None else str(cache), evidence or EvidenceOptions())
    return plan.run(executor or Executor())
