"""Crash safety, measured: a small training run is killed with SIGKILL at random moments (some
land during a checkpoint write), started again with the same command, and its final weights
compared bit for bit with an uninterrupted run.

    python bench/crash_resume.py [--kills 10] [--seed 0]

Every other kill waits until a checkpoint write is under way (a temporary file exists). Prints
how many resumed runs ended bitwise identical (target: all), how many kills left a checkpoint
that could not be read (target: 0), and how many kills landed during a write (a temporary
file was left behind).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD_STEPS = 96  # 3 epochs of 32 steps: a few seconds on 2 cores


def child(folder: Path) -> None:
    """Train with a checkpoint every step; write the final weights' sha256 to folder/done."""
    import numpy as np
    import torch

    from unlearnkit.models import create_model
    from unlearnkit.train import Checkpoint, Recipe, Source, fit

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, size=(1024, 3, 16, 16), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 10, 1024))
    torch.manual_seed(0)
    model = create_model("resnet18", width=4).to(memory_format=torch.channels_last)
    (folder / "started").touch()
    fit(model, Source(x, y), Recipe(epochs=3, batch_size=32, lr=0.05, augment=True), checkpoint=Checkpoint(folder / "checkpoint.safetensors", key="crash-test", every=1))
    digest = hashlib.sha256(b"".join(v.detach().cpu().numpy().tobytes() for v in model.state_dict().values())).hexdigest()
    (folder / "done").write_text(digest)


def run_child(folder: Path, kill_after: float | None = None, in_write: bool = False) -> bool:
    """Run the child; with `kill_after`, SIGKILL it that many seconds after it started training
    (with `in_write`, at the first moment after that when a checkpoint write is under way).
    Returns True if it was killed before finishing."""
    env = {**os.environ, "UNLEARNKIT_QUIET": "1"}
    process = subprocess.Popen([sys.executable, __file__, "--child", str(folder)], env=env)
    if kill_after is None:
        if process.wait() != 0:
            raise SystemExit(f"the training run in {folder} failed")
        return False
    while not (folder / "started").exists() and process.poll() is None:
        time.sleep(0.01)
    (folder / "started").unlink(missing_ok=True)
    time.sleep(kill_after)
    deadline = time.perf_counter() + 5
    while in_write and process.poll() is None and time.perf_counter() < deadline:
        if any(entry.name.startswith(".unlearnkit-tmp-") for entry in os.scandir(folder)):
            break
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def checkpoint_readable(folder: Path) -> bool | None:
    """None when there is no checkpoint, else whether it opens and holds the weights."""
    import safetensors

    from unlearnkit.train import CHECKPOINT_FORMAT

    path = folder / "checkpoint.safetensors"
    if not path.exists():
        return None
    try:
        with safetensors.safe_open(str(path), "pt") as f:
            return "rng/fit" in f.keys() and f.metadata().get("format") == CHECKPOINT_FORMAT
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child))
        return

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as root:
        reference = Path(root) / "reference"
        reference.mkdir()
        started = time.perf_counter()
        run_child(reference)
        duration = time.perf_counter() - started
        expected = (reference / "done").read_text()
        identical = corrupt = during_write = killed = 0
        for i in range(args.kills):
            folder = Path(root) / f"run{i}"
            folder.mkdir()
            # torch's import takes most of a child's start; kill within its training time
            # every other kill waits for a checkpoint write to be under way
            was_killed = run_child(folder, kill_after=rng.uniform(0.05, 0.8) * max(duration - 1.5, 0.5), in_write=i % 2 == 1)
            killed += was_killed
            during_write += any(p.name.startswith(".unlearnkit-tmp-") for p in folder.iterdir())
            corrupt += checkpoint_readable(folder) is False
            if not (folder / "done").exists():
                run_child(folder)  # the same command again: it resumes
            identical += (folder / "done").read_text() == expected
        print(f"uninterrupted run: {duration:.1f}s; {killed} of {args.kills} runs killed with SIGKILL, {during_write} during a checkpoint write")
        print(f"{identical}/{args.kills} ended bitwise identical to the uninterrupted run; {corrupt} left a corrupt checkpoint")
    if identical != args.kills or corrupt:
        sys.exit(1)


if __name__ == "__main__":
    main()
