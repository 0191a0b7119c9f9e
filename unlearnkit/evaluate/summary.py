"""The numbers a run's table is made of, computed from its rows: gaps to the retrained model,
the attack's positive control, and means with standard deviations over seeds. `report.py`
only renders them."""

from __future__ import annotations

import numpy as np

from unlearnkit.evaluate.attacks import KIT_ATTACK_TWIN

GAP_COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia")


def add_average_gaps(rows: list[dict]) -> None:
    """Mean |Δ| to the retrained model over forget, retain and test accuracy and the attack
    score (all as fractions): 0 is the retrained model itself. A score that cannot be computed
    (the attack on a one-image forget set) is left out of the mean."""
    reference = next(row for row in rows if row["name"] == "retrain")
    for row in rows:
        row["avg_gap"] = float(np.nanmean([abs(row[k] - reference[k]) for k in GAP_COLUMNS]))


def positive_control(rows: list[dict], signal: dict[str, bool]) -> dict:
    """The kit's attack's control, from its twin with intervals (`lr-loss`; the definition is
    `unlearnkit.evaluate.stats.has_signal`)."""
    by_name = {row["name"]: row for row in rows}
    passed = bool(signal.get(KIT_ATTACK_TWIN, False))
    return {
        "original_mia": by_name["original"]["mia"],
        "retrain_mia": by_name["retrain"]["mia"],
        "attack": KIT_ATTACK_TWIN,
        "passed": passed,
        "note": "the attack tells members on the original model" if passed else
        "not run: too few forget images for any attack" if KIT_ATTACK_TWIN not in signal else
        "NO SIGNAL: the attack does not tell members on the original model better than on the retrained one, so its scores on unlearned models prove nothing",
    }


def numeric_leaves(entry: dict, prefix: str = "") -> dict[str, float]:
    """Every number in a nested row, under a dotted key (booleans and lists left out)."""
    leaves = {}
    for key, value in entry.items():
        if isinstance(value, dict):
            leaves.update(numeric_leaves(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            leaves[f"{prefix}{key}"] = float(value)
    return leaves


def aggregate_rows(runs: list[list[dict]]) -> list[dict]:
    """Mean and standard deviation (n − 1) per model over runs with different seeds, of every
    number the runs' rows have in common (nested evidence under dotted keys)."""
    names = [row["name"] for row in runs[0]]
    aggregated = []
    for name in names:
        leaves = [numeric_leaves(next(row for row in rows if row["name"] == name)) for rows in runs]
        entry = {"name": name, "n": len(leaves)}
        for key in [k for k in leaves[0] if all(k in other for other in leaves)]:
            values = np.array([leaf[key] for leaf in leaves], dtype=np.float64)
            entry[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
        aggregated.append(entry)
    return aggregated
