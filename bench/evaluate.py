"""Cost of evaluating one model, side by side with a plain inference pass, in one run.

Plain: `predict_logits` over all 60,000 CIFAR-10 images (the 50,000 training and 10,000
held-out ones). Evaluation: what `unlearnkit run` and `unlearnkit evaluate` do per model with
`--evidence fast`, on a split over the whole training set (so its one forward pass covers the
same 60,000 images): the forward pass, every accuracy, the kit's attack, all population attacks
on the forget set and on retained examples with their bootstrap intervals (1,000 resamples),
and the divergence to the retrained model (whose logits, computed once per run, are made
before the clock starts). Shadow-model training (`--evidence full`) is excluded, as the target
says. The two alternate `--repeats` times; medians are reported.

    python bench/evaluate.py [--width 16] [--repeats 3] [--data PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16, help="ResNet-18 width (16: the default preset's model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=None, help="CIFAR-10 location (default: $UNLEARNKIT_DATA)")
    args = parser.parse_args()

    from unlearnkit.data import load_dataset
    from unlearnkit.data.splits import make_split
    from unlearnkit.evaluate import metrics, model_outputs
    from unlearnkit.evaluate.population import Probe, divergence, population_attacks
    from unlearnkit.models import create_model
    from unlearnkit.train import predict_logits

    dataset = load_dataset(args.data)
    split = make_split(dataset.train_y, len(dataset.test_y), forget=0.1, seed=0, data_fingerprint=dataset.fingerprint)
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=dataset.num_classes, width=args.width).to(memory_format=torch.channels_last).eval()
    reference = model_outputs(create_model("resnet18", num_classes=dataset.num_classes, width=args.width).to(memory_format=torch.channels_last).eval(), dataset, split)
    everything = np.concatenate([dataset.train_x, dataset.test_x])

    def plain():
        predict_logits(model, everything)

    def evaluation():
        outputs = model_outputs(model, dataset, split)
        metrics(outputs, seed=0)
        probe = Probe.of(outputs, 0)
        population_attacks(outputs, probe, seed=0, resamples=1000)
        divergence(outputs, reference, probe)

    plain()  # warm-up: oneDNN's first call builds its kernels
    times = {"plain": [], "evaluation": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("evaluation", evaluation)):
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    plain_s, evaluation_s = statistics.median(times["plain"]), statistics.median(times["evaluation"])
    result = {
        "images": int(len(everything)), "width": args.width, "threads": torch.get_num_threads(), "repeats": args.repeats,
        "plain_inference_s": plain_s, "evaluation_s": evaluation_s, "ratio": evaluation_s / plain_s, "target": 1.2,
        "all_times": times,
    }
    print(json.dumps(result, indent=2))
    print(f"evaluation / plain inference = {result['ratio']:.3f} (target ≤ 1.2): {'met' if result['ratio'] <= 1.2 else 'NOT met'}")


if __name__ == "__main__":
    main()
