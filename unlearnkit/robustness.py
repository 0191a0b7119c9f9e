"""`--audit relearn,quantize`: does the forgetting hold under a relearning attack and under
compression? Every model of a run (the retrained one included, which is what each figure is read
against) goes through the same attack or transform. See `evaluate/relearn.py` and
`evaluate/compress.py` for what each does and why."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluate import metrics, model_outputs
from unlearnkit.evaluate.compress import TRANSFORMS, compressed
from unlearnkit.evaluate.relearn import RelearnOptions, held_under_both, relearn_audit
from unlearnkit.progress import say, with_progress

AUDITS = ("relearn", "quantize")
NEIGHBOUR_POOL = 5000  # retain images searched for the relearn part's nearest neighbours (a seeded sample)


def parse_audits(text: str | None) -> tuple[str, ...]:
    """'relearn,quantize' → ('relearn', 'quantize'); one line naming an unknown audit."""
    if not text:
        return ()
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    for name in names:
        if name not in AUDITS:
            raise UnlearnkitError(f"--audit '{name}' is unknown; choose from {', '.join(AUDITS)} (comma-separated)")
    return names


def robustness_audits(models: dict[str, nn.Module], dataset, split, seed: int, audits: tuple[str, ...], relearn: RelearnOptions | None = None) -> dict:
    """The audits asked for, over `models` (which hold 'retrain'): JSON-ready, per audit and model."""
    found = {}
    if "relearn" in audits:
        relearn = relearn or RelearnOptions()
        say(f"audit relearn: {len(models)} models × 2 attacks × {relearn.seeds} seeds …")
        pool = np.sort(np.random.default_rng([seed, 29]).permutation(split.retain)[:NEIGHBOUR_POOL])
        tensors = lambda rows: (torch.from_numpy(dataset.train_x[rows]), torch.from_numpy(dataset.train_y[rows]).long())  # noqa: E731
        found["relearn"] = relearn_audit(models, *tensors(split.forget), *tensors(pool), relearn, seed)
    if "quantize" in audits:
        say(f"audit quantize: {len(models)} models × {len(TRANSFORMS)} transforms …")
        table = {name: {t: {k: v for k, v in metrics(model_outputs(compressed(models[name], t), dataset, split), seed=seed).items() if k in ("forget_acc", "retain_acc", "test_acc", "mia")}
                        for t in TRANSFORMS} for name in with_progress(models, "audit quantize")}
        for name, row in table.items():
            for t, values in row.items():
                values["forget_gap"] = values["forget_acc"] - table["retrain"][t]["forget_acc"]
        found["quantize"] = {"transforms": list(TRANSFORMS), "models": table}
    return found


def headline(found: dict, name: str) -> dict:
    """The columns a results row carries for `name`: relearning gaps (and whether the forgetting
    held) and the forget-accuracy gap to the retrained model after each transform."""
    row = {}
    if "relearn" in found:
        for attack, key in (("forget", "relearn_gap"), ("neighbours", "relearn_neighbours_gap")):
            entry = found["relearn"]["models"][name][attack]
            row[key], row[f"{key}_ci95"] = entry["gap"], entry["gap_ci95"]
        row["relearn_held"] = held_under_both(found["relearn"]["models"][name], found["relearn"]["options"]["margin"])
    if "quantize" in found:
        for t, values in found["quantize"]["models"][name].items():
            row[f"{t}_forget_gap"] = values["forget_gap"]
    return row
