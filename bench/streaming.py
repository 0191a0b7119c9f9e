"""Streaming vs resident training throughput, side by side in one run, on the same data.

Resident: the images as one uint8 tensor (the engine's fast path). Streamed: the same images
behind a `torch.utils.data.Dataset` that hands out one (image, label) at a time, read by a
`StreamSource` in the engine's order with `--prefetch` threads, as for data larger than RAM.
Same model (ResNet-18, `--width` 16 as in the default preset), recipe, batch and steps.

    python bench/streaming.py [--images 4096] [--width 16] [--batch 256] [--prefetch 4] [--repeats 3] [--data PATH]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from images import bench_images  # bench/images.py
import torch


class ArrayDataset(torch.utils.data.Dataset):
    """A typical user Dataset: numpy arrays, one item at a time, converted per item."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.from_numpy(self.x[i]), int(self.y[i])


def timed(source, width: int, batch: int, precision: str) -> float:
    from unlearnkit.models import create_model
    from unlearnkit.train import Recipe, fit

    torch.manual_seed(0)
    model = create_model("resnet18", width=width).to(memory_format=torch.channels_last)
    fit(model, source, Recipe(epochs=2 * batch / len(source), batch_size=batch, precision=precision), description="warm-up")
    report = fit(model, source, Recipe(epochs=1, batch_size=batch, precision=precision), description="timed")
    return report.images / report.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--prefetch", type=int, default=4, help="threads reading items of a batch")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each; the median is reported")
    parser.add_argument("--data", default=None, help="read real images from here (speed does not depend on content)")
    args = parser.parse_args()
    from unlearnkit.train import Source, StreamSource

    x, y = bench_images(args.data, args.images)
    resident = Source(torch.from_numpy(x), torch.from_numpy(np.asarray(y)))
    streamed = StreamSource(ArrayDataset(x, np.asarray(y)), torch.device("cpu"), prefetch=args.prefetch)
    rates = {"resident": [], "streamed": []}
    for _ in range(args.repeats):
        rates["resident"].append(timed(resident, args.width, args.batch, args.precision))
        rates["streamed"].append(timed(streamed, args.width, args.batch, args.precision))
    median = {name: float(np.median(r)) for name, r in rates.items()}
    for name, r in rates.items():
        print(f"{name:9s}: {median[name]:7.1f} img/s (median of {args.repeats}: {', '.join(f'{v:.1f}' for v in r)})")
    print(f"streamed / resident: {median['streamed'] / median['resident']:.2f}x  (ResNet-18 width {args.width}, batch {args.batch}, "
          f"{args.precision}, {args.images} images, prefetch {args.prefetch}, torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
