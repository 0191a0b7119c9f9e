"""The same sweep, side by side in one run: in this process (one job after another), on a local
Ray cluster of 1 single-thread worker, and on one of 2. Every job runs with one torch thread,
so the results must be bitwise the same. Overhead = workers × Ray's wall time − sequential wall
time, as a share of the sequential wall time: the worker time spent beyond the work itself
(Ray's start-up, scheduling and transfers; with 2 workers also the two jobs slowing each other
down on shared cores and memory). Goal: ≤ 10%.

From the measured per-job times, it then writes what N = 512 evidence for one method costs
(512 retrained models + 512 unlearned runs) on K CPU workers of this kind.

    python bench/ray_sweep.py [--data PATH] [--methods finetune,kl] [--seeds 0-1] [--pool 2000] [--width 8] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def weights(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): json.loads(p.read_text())["weights"]["sha256"] for p in sorted(out.rglob("models/*.json"))}


def job_seconds(out: Path) -> tuple[float, float]:
    """(mean training time of a retrained model, mean time of one unlearning run) from the runs' results."""
    retrain, unlearn = [], []
    for path in out.rglob("results.json"):
        rows = json.loads(path.read_text())["rows"]
        retrain += [r["seconds"] for r in rows if r["name"] == "retrain"]
        unlearn += [r["seconds"] for r in rows if r["name"] not in ("original", "retrain")]
    return sum(retrain) / len(retrain), sum(unlearn) / len(unlearn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--methods", default="finetune,kl")
    parser.add_argument("--seeds", default="0-1")
    parser.add_argument("--pool", type=int, default=2000, help="training images of the bench's preset")
    parser.add_argument("--width", type=int, default=8, help="ResNet-18 width of the bench's preset")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from unlearnkit.cluster import Executor
    from unlearnkit.presets import ModelSpec, Preset
    from unlearnkit.sweep import sweep
    from unlearnkit.train import Recipe

    preset = Preset(name="bench-sweep", description="bench/ray_sweep.py", model=ModelSpec(kwargs={"width": args.width}),
                    recipe=Recipe(epochs=args.epochs, batch_size=128, lr=0.1, precision="fp32"), train_pool=args.pool)
    with tempfile.TemporaryDirectory() as root:
        preset_file = Path(root) / "bench-sweep.toml"
        import tomli_w

        preset_file.write_text(tomli_w.dumps(json.loads(preset.model_dump_json(exclude_none=True))))
        walls = {}
        import ray

        for workers in (0, 1, args.workers):
            started = time.perf_counter()
            executor = Executor(workers=workers or None)
            sweep(preset=str(preset_file), data=args.data, methods=args.methods, seeds=args.seeds, out=Path(root) / str(workers) / "out",
                  cache=Path(root) / str(workers) / "cache", executor=executor)
            walls[workers] = time.perf_counter() - started
            ray.shutdown()
        same = all(weights(Path(root) / "0" / "out") == weights(Path(root) / str(w) / "out") for w in (1, args.workers))
        retrain_s, unlearn_s = job_seconds(Path(root) / "0" / "out")
    print(f"\nsweep of {args.methods} x seeds {args.seeds} (width {args.width}, {args.pool} images, {args.epochs:g} epochs), one thread per job:")
    print(f"  sequential {walls[0]:.1f}s   Ray x1 {walls[1]:.1f}s   Ray x{args.workers} {walls[args.workers]:.1f}s (Ray start-up included)   speed-up x{args.workers}: {walls[0] / walls[args.workers]:.2f}x")
    for workers in (1, args.workers):
        share = (workers * walls[workers] - walls[0]) / walls[0]
        print(f"  overhead with {workers} worker(s): {share:+.1%} of the sequential wall time (goal <= 10%)")
    print(f"  results bitwise identical: {same}")
    overhead = (args.workers * walls[args.workers] - walls[0]) / walls[0]
    per_model = retrain_s + unlearn_s
    print(f"\nN = 512 evidence for one method at this size: 512 x ({retrain_s:.1f}s retrain + {unlearn_s:.1f}s unlearning) = {512 * per_model / 3600:.2f} CPU-thread hours")
    for k in (8, 64, 512):
        print(f"  K = {k:3d} single-thread workers: {512 * per_model * (1 + max(overhead, 0)) / k / 60:8.1f} min")
    if not same:
        raise SystemExit("results differ between the sequential path and Ray")


if __name__ == "__main__":
    main()
