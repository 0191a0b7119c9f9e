"""The equal-budget search at a glance, for docs: one row per method tuned on a preset and seed
(the studies `unlearnkit tune` exported to docs/tune/), best validation distance first: the
distance at the method's defaults (a study's first trial), the best found, that trial's
measures, time and machine (studies exported before trials recorded it show "–"), and the
fields where the best config differs from the defaults.

    python scripts/tune_table.py [--preset default] [--seed 0] [--folder docs/tune]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unlearnkit.tuning import study_name


def studies(folder: Path, preset: str, seed: int) -> list[dict]:
    found = []
    for path in sorted(folder.glob(f"*-{preset}-seed{seed}*.json")):
        study = json.loads(path.read_text())
        if study.get("modality", "image") == "image" and study["study"] == study_name(study["method"], preset, seed, hold=study.get("held")):
            found.append(study)
    return found


def changed(study: dict) -> str:
    best, before = study["best"]["config"], study["defaults_before"]
    moved = [f"{k} {before[k]:.3g} → {best[k]:.3g}" for k in study["space"] if k in best and best[k] != before[k]]
    return ", ".join(moved) or "the defaults"


def row(study: dict) -> list[str]:
    trials = study["trials"]
    at_defaults = next((t for t in trials if t.get("defaults")), None)
    best = study["best"]["metrics"]
    held = ", ".join(f"{k} {v}" for k, v in study.get("held", {}).items()) or "–"
    return [study["method"], str(len(trials)), "–" if at_defaults is None or at_defaults["distance"] is None else f"{at_defaults['distance']:.3f}",
            f"{study['best']['distance']:.3f}", f"{100 * best['forget']:.1f}", f"{100 * best['val']:.1f}", f"{best['mia']:.3f}",
            f"{best['seconds']:.0f}", f"{best['time_ratio']:.3f}", held, best.get("machine", "–").replace("(R)", ""), changed(study)]


def table(found: list[dict]) -> str:
    head = ["method", "trials", "distance at the defaults", "best distance", "forget", "val", "MIA", "seconds", "× retrain", "held", "machine", "best vs the defaults"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row(s)) + " |" for s in sorted(found, key=lambda s: s["best"]["distance"])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, default=Path("docs/tune"))
    args = parser.parse_args()
    found = studies(args.folder, args.preset, args.seed)
    if not found:
        raise SystemExit(f"no exported image studies for preset '{args.preset}', seed {args.seed} in {args.folder}; run `unlearnkit tune METHOD` first")
    # studies run on different machines score against different retrained models: name each
    retrains = {}
    for study in found:
        best = study["best"]["metrics"]
        if "retrain" in best:
            retrains.setdefault(json.dumps(best["retrain"], sort_keys=True), (best["retrain"], best.get("machine", "–").replace("(R)", "")))
    for retrain, machine in retrains.values():
        print(f"The retrained model on validation (machine {machine}): forget {100 * retrain['forget']:.1f}, val {100 * retrain['val']:.1f}, MIA {retrain['mia']:.3f}.")
    print()
    print(table(found))


if __name__ == "__main__":
    main()
