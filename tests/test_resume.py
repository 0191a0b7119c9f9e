"""Crash safety: resumable training and writes that leave nothing half-done."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import TMP_PREFIX, atomic_write_bytes
from unlearnkit.models import create_model
from unlearnkit.train import Checkpoint, Recipe, Source, fit

RECIPE = Recipe(epochs=3, batch_size=32, lr=0.05, augment=True)


class Crash(Exception):
    pass


def source(seed=0, n=200):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 256, size=(n, 3, 16, 16), dtype=np.uint8)
    return Source(torch.from_numpy(x), torch.from_numpy(y))


def fresh_model(seed=0):
    torch.manual_seed(seed)
    return create_model("resnet18", width=4).to(memory_format=torch.channels_last)


def train(checkpoint=None, crash_at=None, seed=0, recipe=RECIPE):
    """Two sources (so both data orders must resume), augmentation on (so the RNG must too)."""
    model, extra = fresh_model(), source(1, 50)

    def crash(model, state):
        if state.step == crash_at:
            raise Crash()

    data = {"data": source(), "extra": Source(extra.x, extra.y, batch_size=8)}
    fit(model, data, recipe, seed=seed, checkpoint=checkpoint, on_step=crash if crash_at else None)
    return model.state_dict()


def identical(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def uninterrupted():
    return train()


@pytest.mark.parametrize("crash_at", [1, 5, 6, 7, 14])
def test_resume_after_a_crash_is_bitwise_identical(tmp_path, uninterrupted, crash_at):
    checkpoint = Checkpoint(tmp_path / "checkpoint.safetensors", key="k", every=3)
    with pytest.raises(Crash):
        train(checkpoint, crash_at=crash_at)
    assert checkpoint.path.exists() == (crash_at >= 3)
    resumed = train(checkpoint)
    assert identical(uninterrupted, resumed)
    assert not checkpoint.path.exists()  # removed once training ended


def test_adamw_resumes_bitwise_too(tmp_path):
    """Adam's two moments and its step count are in the checkpoint as well as SGD's momentum."""
    recipe = RECIPE.model_copy(update={"optimizer": "adamw", "lr": 0.002, "weight_decay": 0.05})
    checkpoint = Checkpoint(tmp_path / "checkpoint.safetensors", key="k", every=3)
    with pytest.raises(Crash):
        train(checkpoint, crash_at=7, recipe=recipe)
    assert identical(train(recipe=recipe), train(checkpoint, recipe=recipe))


def test_temporaries_of_a_killed_write_are_cleaned_on_resume(tmp_path, uninterrupted):
    checkpoint = Checkpoint(tmp_path / "checkpoint.safetensors", key="k", every=3)
    (tmp_path / f"{TMP_PREFIX}abc").write_bytes(b"half a checkpoint")
    assert identical(uninterrupted, train(checkpoint))
    assert not list(tmp_path.iterdir())


def test_a_checkpoint_of_another_run_is_ignored(tmp_path, uninterrupted):
    checkpoint = Checkpoint(tmp_path / "checkpoint.safetensors", key="k", every=3)
    with pytest.raises(Crash):
        train(checkpoint, crash_at=8, seed=1)  # other seed, same file
    assert identical(uninterrupted, train(checkpoint))
    with pytest.raises(Crash):
        train(Checkpoint(checkpoint.path, key="other", every=3), crash_at=8)
    assert identical(uninterrupted, train(checkpoint))


@pytest.mark.parametrize("damage", [b"", b"not a checkpoint", os.urandom(4096)])
def test_an_unreadable_checkpoint_means_starting_over(tmp_path, uninterrupted, damage):
    checkpoint = Checkpoint(tmp_path / "checkpoint.safetensors", key="k", every=3)
    checkpoint.path.write_bytes(damage)
    assert identical(uninterrupted, train(checkpoint))


def test_a_full_disk_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    target = atomic_write_bytes(tmp_path / "results.json", b"old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(UnlearnkitError, match=r"cannot write .*results.json: No space left on device; nothing was changed there"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*"))


def test_a_read_only_folder_is_a_one_line_error(tmp_path, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(UnlearnkitError, match=r"cannot write .*model.json: Read-only file system; choose a writable output folder"):
        atomic_write_bytes(tmp_path / "model.json", b"{}")
    assert not (tmp_path / "model.json").exists()


@pytest.mark.slow
def test_sigkill_at_random_points_resumes_identically():
    """The crash script itself (SIGKILL, then the same command again), with a few kills."""
    script = Path(__file__).resolve().parents[1] / "bench" / "crash_resume.py"
    done = subprocess.run([sys.executable, str(script), "--kills", "3", "--seed", "1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3/3 ended bitwise identical" in done.stdout and "0 left a corrupt checkpoint" in done.stdout


def test_leftover_temporaries_are_removed(tmp_path):
    from unlearnkit.fileio import remove_temporaries

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / f"{TMP_PREFIX}x").write_bytes(b"half")
    (tmp_path / "results.json").write_text("{}")
    assert remove_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["models", "results.json"]
