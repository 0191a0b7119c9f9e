"""Training throughput, side by side in one run: unlearnkit's engine vs the seed study's loop.

The seed's loop: a torch Dataset that converts each image on its own (to-tensor + normalize),
DataLoader(shuffle=True, num_workers=2), fp32. The engine: resident uint8 tensors, batched
conversion, bf16 autocast where the CPU has bf16 units (else fp32: the recipe's "auto") + channels_last. Same model (ResNet-18, width 64 by default), same
images, same machine, and the same batch size (`--batch`, 128 as in the seed); the engine runs
once more at the batch size of the recipe it is used with (`--engine-batch`, the presets'
256). Each loop runs in its own process so that its peak memory is its own.

    python bench/train_throughput.py [--images 3072] [--model resnet18|vgg11|vit-tiny] [--width 64] [--batch 128] [--engine-batch 256] [--data PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from images import bench_images  # bench/images.py
import torch
import torch.nn.functional as F


class PerImageDataset(torch.utils.data.Dataset):
    """The seed's pattern: each item converted on its own (HWC uint8 → CHW float, normalize)."""

    def __init__(self, x, y):
        self.x, self.y = x.transpose(0, 2, 3, 1), y
        self.mean = torch.tensor((0.4914, 0.4822, 0.4465)).view(3, 1, 1)
        self.std = torch.tensor((0.2470, 0.2435, 0.2616)).view(3, 1, 1)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        image = torch.from_numpy(np.ascontiguousarray(self.x[i])).permute(2, 0, 1).float().div(255)
        return (image - self.mean) / self.std, int(self.y[i])


def built(name: str, width: int, **kwargs):
    from unlearnkit.models import create_model

    return create_model(name, **({} if name == "vit-tiny" else {"width": width}), **kwargs)


def seed_loop(x, y, width: int, device: torch.device, warmup: int, batch: int, name: str = "resnet18") -> dict:
    torch.manual_seed(0)
    # the seed normalized in the data pipeline: identity normalization inside the model
    model = built(name, width, mean=(0, 0, 0), std=(1, 1, 1)).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(PerImageDataset(x, y), batch_size=batch, shuffle=True, num_workers=2, drop_last=True)
    images, started = 0, None
    for step, (xb, yb) in enumerate(loader):
        if step == warmup:
            sync(device)
            started, images = time.perf_counter(), 0
        loss = F.cross_entropy(model(xb.to(device)), yb.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        images += len(xb)
    sync(device)
    return {"images": images, "seconds": time.perf_counter() - started}


def engine_loop(x, y, width: int, device: torch.device, warmup: int, batch: int, name: str = "resnet18") -> dict:
    from unlearnkit.train import Recipe, Source, fit

    torch.manual_seed(0)
    model = built(name, width).to(device, memory_format=torch.channels_last)
    source = Source(torch.from_numpy(x).to(device), torch.from_numpy(np.asarray(y)).to(device))
    fit(model, source, Recipe(epochs=warmup * batch / len(x), batch_size=batch), description="warm-up")
    sync(device)
    report = fit(model, source, Recipe(epochs=1, batch_size=batch), description="engine")
    return {"images": report.images, "seconds": report.seconds}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def child(args) -> None:
    device = torch.device(args.device)
    x, y = bench_images(args.data, args.images)
    result = (seed_loop if args.loop == "seed" else engine_loop)(x, y, args.width, device, args.warmup, args.batch, args.model)
    result["peak_memory_mb"] = (
        torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3072, help="images per timed pass")
    parser.add_argument("--model", default="resnet18", choices=["resnet18", "vgg11", "vit-tiny"])
    parser.add_argument("--width", type=int, default=64, help="resnet18 and vgg11 only")
    parser.add_argument("--warmup", type=int, default=3, help="steps excluded from timing")
    parser.add_argument("--batch", type=int, default=128, help="batch size of both loops (the seed's 128)")
    parser.add_argument("--engine-batch", type=int, default=256, help="the engine once more at this batch size (its presets' 256)")
    parser.add_argument("--data", default=None, help="read real images from here (speed does not depend on content)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--loop", choices=["seed", "engine"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        return child(args)

    results = {}
    runs = {"seed": ("seed", args.batch), "engine": ("engine", args.batch), f"engine@{args.engine_batch}": ("engine", args.engine_batch)}
    passthrough = [a for a in sys.argv[1:]]
    for label, (loop, batch) in runs.items():
        command = [sys.executable, __file__, *passthrough, "--loop", loop, "--batch", str(batch)]
        env = {**os.environ, "UNLEARNKIT_QUIET": "1"}
        output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
        results[label] = json.loads(output.strip().splitlines()[-1])
        rate = results[label]["images"] / results[label]["seconds"]
        results[label]["images_per_second"] = rate
        print(f"{loop:6s} batch {batch:4d}: {rate:8.1f} img/s  ({results[label]['images']} images in {results[label]['seconds']:.1f}s), peak memory {results[label]['peak_memory_mb']:.0f} MB", flush=True)
    ratio = results["engine"]["images_per_second"] / results["seed"]["images_per_second"]
    print(f"ratio engine/seed at batch {args.batch}: {ratio:.2f}x  ({args.model}{'' if args.model == 'vit-tiny' else f' width {args.width}'}, device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads)")

if __name__ == "__main__":
    main()
