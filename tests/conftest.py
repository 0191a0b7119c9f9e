"""Synthetic CIFAR-like data written in every supported layout, and shared helpers."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("UNLEARNKIT_QUIET", "1")
# pytest-xdist runs the suite in one worker per core (pyproject's addopts): each worker takes its share
# of the cores, so that two workers on two cores do not fight over them. Tests hold on 1 or 2 threads alike.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, torch.get_num_threads() // _workers)))
if _workers > 1:  # the processes that tests start (serve, the CLI) take the same share
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHARED_BINARY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10" / "cifar-10-batches-bin"


def synthetic_arrays(n_train: int = 250, n_test: int = 100, seed: int = 0, noise: float = 40):
    """Learnable images: each class has its own mean colour, plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(30, 225, size=(10, 3, 1, 1))

    def make(n):
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = np.clip(centres[y] + rng.normal(0, noise, size=(n, 3, 32, 32)), 0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    return (*make(n_train), *make(n_test))


def write_binary(folder: Path, train_x, train_y, test_x, test_y) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n\n")

    def records(x, y):
        return np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], axis=1).tobytes()

    for i, (xs, ys) in enumerate(zip(np.array_split(train_x, 5), np.array_split(train_y, 5)), start=1):
        (folder / f"data_batch_{i}.bin").write_bytes(records(xs, ys))
    (folder / "test_batch.bin").write_bytes(records(test_x, test_y))
    return folder


def write_python(folder: Path, train_x, train_y, test_x, test_y) -> Path:
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name, obj):
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    dump("batches.meta", {b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072})
    for i, (xs, ys) in enumerate(zip(np.array_split(train_x, 5), np.array_split(train_y, 5)), start=1):
        dump(f"data_batch_{i}", {b"batch_label": b"training", b"labels": ys.tolist(), b"data": xs.reshape(len(xs), -1)})
    dump("test_batch", {b"batch_label": b"testing", b"labels": test_y.tolist(), b"data": test_x.reshape(len(test_x), -1)})
    return folder


def write_folders(root: Path, train_x, train_y, test_x, test_y) -> Path:
    from PIL import Image

    for split, xs, ys in (("train", train_x, train_y), ("test", test_x, test_y)):
        for i, (x, y) in enumerate(zip(xs, ys)):
            path = root / split / CLASSES[y] / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x.transpose(1, 2, 0)).save(path)
    return root


@pytest.fixture(scope="session")
def arrays():
    return synthetic_arrays()


@pytest.fixture
def binary_dir(tmp_path, arrays):
    return write_binary(tmp_path / "cifar-10-batches-bin", *arrays)


@pytest.fixture
def python_dir(tmp_path, arrays):
    return write_python(tmp_path / "cifar-10-batches-py", *arrays)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(folder))
    monkeypatch.delenv("UNLEARNKIT_DATA", raising=False)
    return folder


def run_cli(*args: str, env: dict | None = None, cwd=None, timeout: float = 900) -> "subprocess.CompletedProcess":
    """`python -m unlearnkit ARGS` in a process of its own (quiet; `env` added to this process's
    environment): for what only a separate process shows (a shell's view, kills, restarts)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "unlearnkit", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "UNLEARNKIT_QUIET": "1", **(env or {})})


def run_main(*args: str) -> "subprocess.CompletedProcess":
    """`unlearnkit ARGS` through the CLI's entry point in this process: its exit code and what it
    printed. For one-line-error tests, where starting Python and torch again (2-3 s a command)
    would cost more than the command; an error that escapes `main` fails the test with its
    traceback, as it would print one in a process of its own."""
    import contextlib
    import io
    import subprocess
    import sys

    from unlearnkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["unlearnkit", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
