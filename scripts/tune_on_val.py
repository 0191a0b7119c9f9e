"""A small hyperparameter search on the validation split (never test), scored by the distance
to the retrained model: |Δforget acc| + |Δval acc| + |ΔMIA|, where the attack compares forget
losses with validation losses. Uses the cached reference models of the preset.

    python scripts/tune_on_val.py --method kl --grid forget_weight=0.1,0.3,1.0 [--preset default]

Every point is appended to runs/tune/<method>-<preset>-seed<N>.jsonl (config, distance, metrics,
seconds), so the search budget and what it found stay on record; the best point is printed last.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from unlearnkit.evaluate import model_outputs, simple_mia_or_nan
from unlearnkit.experiment import prepare
from unlearnkit.methods import Task, run_method
from unlearnkit.reference import train_reference


def val_metrics(outputs) -> dict:
    return {
        "forget": outputs.accuracy("forget"),
        "val": outputs.accuracy("val"),
        "mia": simple_mia_or_nan(outputs.losses("forget"), outputs.losses("val")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True)
    parser.add_argument("--grid", nargs="+", default=[], help="field=v1,v2 ... (numbers)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--data", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    setup = prepare(data=args.data, preset=args.preset, seed=args.seed)
    original, retrain = (train_reference(role, setup.dataset, setup.split, setup.preset, args.seed, setup.store) for role in ("original", "retrain"))
    task = Task.from_split(setup.dataset, setup.split, original.model, setup.preset.recipe, args.seed, cache_dir=original.path.parent)
    reference = val_metrics(model_outputs(retrain.model, setup.dataset, setup.split))
    print(f"retrain (val): {reference}")
    fields = [item.split("=")[0] for item in args.grid]
    values = [[parse(v) for v in item.split("=")[1].split(",")] for item in args.grid]
    record = Path("runs/tune") / f"{args.method}-{args.preset}-seed{args.seed}.jsonl"
    record.parent.mkdir(parents=True, exist_ok=True)
    best = None
    for combination in itertools.product(*values):
        config = dict(zip(fields, combination))
        result = run_method(args.method, original.model, task, config)
        found = val_metrics(model_outputs(result.model, setup.dataset, setup.split))
        distance = sum(abs(found[k] - reference[k]) for k in reference)
        point = {"method": args.method, "config": config, "distance": distance, **found, "seconds": result.seconds, "time_ratio": result.seconds / retrain.seconds}
        with record.open("a") as f:
            f.write(json.dumps(point) + "\n")
        best = point if best is None or distance < best["distance"] else best
        print(f"{args.method} {config}: distance {distance:.3f}  forget {found['forget']:.3f}  val {found['val']:.3f}  mia {found['mia']:.3f}  {result.seconds:.0f}s  ({result.seconds / retrain.seconds:.3f}× retrain)", flush=True)

    if best is not None:
        print(f"best: {best['config']} distance {best['distance']:.3f} (all points in {record})")


def parse(value: str):
    """A grid value: true/false, an integer, or a float."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return int(value)
    except ValueError:
        return float(value)


if __name__ == "__main__":
    main()
