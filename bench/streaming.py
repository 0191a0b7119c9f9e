"""Streaming vs resident training throughput, side by side in one run, on the same data.

Resident: the images as one uint8 tensor (the engine's fast path). Streamed: the same images
behind a `torch.utils.data.Dataset` that hands out one (image, label) at a time, read by a
`StreamSource` in the engine's order, as for data larger than RAM: by `--prefetch` threads, and
by `--workers` worker processes reading the coming batches ahead. `--decode png` stores each
image as PNG bytes decoded per item with Pillow (as a dataset of image files is), instead of
numpy arrays. Same model (ResNet-18, `--width` 16 as in the default preset), recipe, batch and
steps.

    python bench/streaming.py [--images 4096] [--width 16] [--batch 256] [--prefetch 4] [--workers 1] [--decode arrays|png] [--repeats 3] [--data PATH]
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


class PngDataset(torch.utils.data.Dataset):
    """Images kept as PNG bytes, decoded one at a time: a dataset of image files."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        import io

        from PIL import Image

        self.y, self.png = y, []
        for image in x:
            buffer = io.BytesIO()
            Image.fromarray(image.transpose(1, 2, 0)).save(buffer, format="PNG")
            self.png.append(buffer.getvalue())

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        import io

        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(self.png[i])).convert("RGB")).transpose(2, 0, 1).copy()
        return torch.from_numpy(image), int(self.y[i])


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
    parser.add_argument("--workers", type=int, default=1, help="worker processes reading ahead (the third row)")
    parser.add_argument("--decode", default="arrays", choices=["arrays", "png"], help="what each item costs to read")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each; the median is reported")
    parser.add_argument("--data", default=None, help="read real images from here (speed does not depend on content)")
    args = parser.parse_args()
    from unlearnkit.train import Source, StreamSource

    x, y = bench_images(args.data, args.images)
    resident = Source(torch.from_numpy(x), torch.from_numpy(np.asarray(y)))
    dataset = (ArrayDataset if args.decode == "arrays" else PngDataset)(x, np.asarray(y))
    sources = {
        "resident": resident,
        f"streamed, {args.prefetch} threads": StreamSource(dataset, torch.device("cpu"), prefetch=args.prefetch),
        f"streamed, {args.workers} worker process(es)": StreamSource(dataset, torch.device("cpu"), workers=args.workers),
    }
    rates = {name: [] for name in sources}
    for _ in range(args.repeats):
        for name, source in sources.items():
            rates[name].append(timed(source, args.width, args.batch, args.precision))
    median = {name: float(np.median(r)) for name, r in rates.items()}
    for name, r in rates.items():
        print(f"{name:32s}: {median[name]:7.1f} img/s = {median[name] / median['resident']:.2f}x resident (median of {args.repeats}: {', '.join(f'{v:.1f}' for v in r)})")
    print(f"(ResNet-18 width {args.width}, batch {args.batch}, {args.precision}, {args.images} images as {args.decode}, torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
