"""SISA on a preset: the ensemble's accuracy beside the single model's, and the cost of deleting
k training images (1, 10, 100 by default) beside training the single model from scratch, in one
run on one machine.

    python bench/sisa_cost.py [--preset default] [--seed 0] [--shards 4] [--slices 4] [--deletions 1,10,100] [--repeats 3]

Both models come from the store (trained on the first call, loaded after; their training times
are the sidecars'). Each deletion starts from a fresh copy of the trained ensemble and deletes
k ids drawn at random from its training ids (a new draw per repeat); its time is the retraining
of the shards that held them. Prints a table and writes runs/bench/sisa-cost-PRESET-sSEED.json.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from unlearnkit.experiment import prepare
from unlearnkit.reference import train_reference
from unlearnkit.sisa import TrainingImages, delete, ensemble_accuracies, train_sisa
from unlearnkit.train import accuracy, default_device, machine_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--deletions", default="1,10,100")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    setup = prepare(preset=args.preset, seed=args.seed, forget="random:0.02")
    dataset, split = setup.dataset, setup.split
    single = train_reference("original", dataset, split, setup.preset, args.seed, setup.store)
    ensemble = train_sisa("original", dataset, split, setup.preset, args.seed, setup.store, shards=args.shards, slices=args.slices)
    test_x, test_y = dataset.test_x[split.test], dataset.test_y[split.test]
    result = {
        "preset": setup.preset.name, "seed": args.seed, "shards": args.shards, "slices": args.slices, "machine": machine_record(setup.preset.recipe.precision),
        "single": {"test_acc": accuracy(single.model, test_x, test_y, "fp32"), "train_seconds": single.seconds},
        "ensemble": {"test_acc": ensemble_accuracies(ensemble.model, test_x, test_y), "train_seconds": ensemble.meta["timings"]["train_seconds"]},
        "deletions": [],
    }
    images = TrainingImages(np.arange(len(dataset.train_y)), torch.from_numpy(dataset.train_x), torch.from_numpy(dataset.train_y), setup.store, default_device())
    held = ensemble.model.ids
    for count in (int(k) for k in args.deletions.split(",")):
        for repeat in range(args.repeats):
            ids = np.random.default_rng([args.seed, count, repeat]).choice(held, count, replace=False)
            done = delete(copy.deepcopy(ensemble.model), ids, images)
            result["deletions"].append({"images": count, "repeat": repeat, "seconds": done.seconds, "shards_retrained": len(done.runs),
                                        "first_slices": [run.first_slice + 1 for run in done.runs], "vs_single_training": done.seconds / single.seconds})
    out = Path("runs/bench") / f"sisa-cost-{setup.preset.name}-s{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{result['machine']}; preset {setup.preset.name}, seed {args.seed}")
    print(f"single model: test {100 * result['single']['test_acc']:.1f}%, trained in {single.seconds:.0f} s")
    accs = ", ".join(f"{how} {100 * value:.1f}%" for how, value in result["ensemble"]["test_acc"].items())
    print(f"SISA {args.shards} shards × {args.slices} slices: test {accs}, trained in {result['ensemble']['train_seconds']:.0f} s")
    print("images deleted | seconds (mean of repeats) | shards retrained | × single model's training")
    for count in sorted({d["images"] for d in result["deletions"]}):
        rows = [d for d in result["deletions"] if d["images"] == count]
        print(f"{count:>14} | {np.mean([d['seconds'] for d in rows]):>25.1f} | {np.mean([d['shards_retrained'] for d in rows]):>16.1f} | "
              f"{np.mean([d['vs_single_training'] for d in rows]):.3f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
