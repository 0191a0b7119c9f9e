"""Evaluation: one forward pass per model over every image the experiment uses (the training
pool and the held-out set) gives cached logits; every metric is computed from them."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from torch import nn

from unlearnkit.data import Dataset
from unlearnkit.data.splits import Split
from unlearnkit.evaluate.mia import mia_skip_reason, per_example_loss, simple_mia, simple_mia_or_nan
from unlearnkit.fileio import atomic_save_npz
from unlearnkit.train import predict_logits

__all__ = ["Outputs", "cached_outputs", "model_outputs", "metrics", "mia_skip_reason", "per_example_loss", "simple_mia", "simple_mia_or_nan"]


@dataclass
class Outputs:
    """Logits of one model: `train` rows for the pool's indices (NaN elsewhere), `heldout` for all."""

    train: np.ndarray
    heldout: np.ndarray
    dataset: Dataset
    split: Split

    @cached_property
    def train_loss(self) -> np.ndarray:
        pool = self.pool
        loss = np.full(len(self.train), np.nan)
        loss[pool] = per_example_loss(self.train[pool], self.dataset.train_y[pool])
        return loss

    @cached_property
    def heldout_loss(self) -> np.ndarray:
        return per_example_loss(self.heldout, self.dataset.test_y)

    @cached_property
    def pool(self) -> np.ndarray:
        return np.union1d(self.split.forget, self.split.retain)

    def accuracy(self, part: str) -> float:
        logits, labels, indices = {
            "train": (self.train, self.dataset.train_y, self.pool),
            "retain": (self.train, self.dataset.train_y, self.split.retain),
            "forget": (self.train, self.dataset.train_y, self.split.forget),
            "test": (self.heldout, self.dataset.test_y, self.split.test),
            "val": (self.heldout, self.dataset.test_y, self.split.val),
        }[part]
        return float((logits[indices].argmax(1) == labels[indices]).mean())

    def losses(self, part: str) -> np.ndarray:
        if part in ("forget", "retain"):
            return self.train_loss[getattr(self.split, part)]
        return self.heldout_loss[getattr(self.split, part)]


def cached_outputs(dataset: Dataset, split: Split, cache: Path) -> Outputs | None:
    """The logits saved in `cache` when they were written for this split; None when missing,
    written for another split, or unreadable (they are then computed again)."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as f:
            if str(f["split"]) != split.fingerprint:
                return None
            everything = f["logits"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    pool = np.union1d(split.forget, split.retain)
    if everything.shape != (len(pool) + len(dataset.test_y), dataset.num_classes):
        return None
    return _outputs(everything, dataset, split, pool)


def model_outputs(model: nn.Module | None, dataset: Dataset, split: Split, cache: Path | None = None, parts: tuple[str, ...] | None = None) -> Outputs:
    """Logits from one forward pass over the pool and the held-out set. With `cache`, they are
    read from that .npz when it was written for the same split, and written there otherwise.
    With `parts` (e.g. `("forget", "val")`), only those sets' images are predicted and every
    other row is NaN: for a score that reads nothing else, at a fraction of the cost."""
    if parts is not None:
        return partial_outputs(model, dataset, split, parts)
    if cache is not None and (found := cached_outputs(dataset, split, cache)) is not None:
        return found
    pool = np.union1d(split.forget, split.retain)
    everything = predict_logits(model, np.concatenate([dataset.train_x[pool], dataset.test_x])).numpy()
    if cache is not None:
        atomic_save_npz(cache, logits=everything, split=np.str_(split.fingerprint))
    return _outputs(everything, dataset, split, pool)


def partial_outputs(model: nn.Module, dataset: Dataset, split: Split, parts: tuple[str, ...]) -> Outputs:
    unknown = set(parts) - {"forget", "retain", "test", "val"}
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; give forget, retain, test or val")
    rows = {side: np.unique(np.concatenate([getattr(split, p) for p in parts if p in names] or [np.empty(0, dtype=np.int64)]))
            for side, names in (("train", ("forget", "retain")), ("heldout", ("test", "val")))}
    predicted = predict_logits(model, np.concatenate([dataset.train_x[rows["train"]], dataset.test_x[rows["heldout"]]])).numpy()
    train = np.full((len(dataset.train_y), dataset.num_classes), np.nan, dtype=np.float32)
    heldout = np.full((len(dataset.test_y), dataset.num_classes), np.nan, dtype=np.float32)
    train[rows["train"]] = predicted[: len(rows["train"])]
    heldout[rows["heldout"]] = predicted[len(rows["train"]) :]
    return Outputs(train, heldout, dataset, split)


def _outputs(everything: np.ndarray, dataset: Dataset, split: Split, pool: np.ndarray) -> Outputs:
    train = np.full((len(dataset.train_y), dataset.num_classes), np.nan, dtype=np.float32)
    train[pool] = everything[: len(pool)]
    return Outputs(train, everything[len(pool) :], dataset, split)


def like_forget(dataset: Dataset, split: Split) -> np.ndarray | None:
    """For class-wise and sub-class scenarios, which test images (a mask over `split.test`)
    are of the forgotten classes or sub-classes; None for other scenarios."""
    if split.forget_classes:
        return np.isin(dataset.test_y[split.test], split.forget_classes)
    if split.forget_subclasses and dataset.subclass_test_y is not None:
        return np.isin(dataset.subclass_test_y[split.test], split.forget_subclasses)
    return None


def metrics(outputs: Outputs, seed: int = 0) -> dict[str, float]:
    """Accuracy on every set and the attack (forget vs test losses). When whole classes (or
    sub-classes) are forgotten, the attack's non-members are test images of those classes only
    (otherwise it would detect the class, not membership), and their test accuracy is reported
    apart from the other classes' (`forget_class_test_acc`, `other_class_test_acc`)."""
    row = {f"{part}_acc": outputs.accuracy(part) for part in ("train", "retain", "forget", "test", "val")}
    nonmembers = outputs.losses("test")
    if (in_classes := like_forget(outputs.dataset, outputs.split)) is not None:
        nonmembers = nonmembers[in_classes]
        predicted = outputs.heldout[outputs.split.test].argmax(1) == outputs.dataset.test_y[outputs.split.test]
        row["forget_class_test_acc"] = float(predicted[in_classes].mean())
        row["other_class_test_acc"] = float(predicted[~in_classes].mean()) if (~in_classes).any() else float("nan")
    forget = outputs.losses("forget")
    row["mia"] = simple_mia_or_nan(forget, nonmembers, seed=seed)
    row.update(poison_metrics(outputs))
    return row


def backdoor_rates(model: nn.Module, test_x: np.ndarray, test_y: np.ndarray, target: int) -> dict:
    """A model's backdoor attack success rate on held-out images of the other classes with the
    trigger stamped (`scenarios.stamp_trigger`), with its Wilson 95% interval, beside the rate at
    which it assigns the same images without the trigger to the target."""
    from unlearnkit.data.scenarios import stamp_trigger
    from unlearnkit.evaluate.stats import wilson_interval
    from unlearnkit.train import predict_logits

    others = test_x[test_y != target]
    hits = int((predict_logits(model, stamp_trigger(others), precision="fp32").argmax(1) == target).sum())
    clean = float((predict_logits(model, others, precision="fp32").argmax(1) == target).float().mean())
    return {"asr": hits / len(others), "asr_ci95": list(wilson_interval(hits, len(others))), "clean_rate": clean, "images": len(others)}


def poison_metrics(outputs: Outputs) -> dict:
    """Backdoor: the attack success rate (triggered held-out images of the other classes that the
    model assigns to the target) with its Wilson 95% interval, beside the rate at which it
    assigns the same kind of test images without the trigger to the target. Confusion: the share of the two
    classes' test images predicted as the other of the two, with its Wilson 95% interval."""
    from unlearnkit.data.scenarios import scenario_of
    from unlearnkit.evaluate.stats import wilson_interval

    split, dataset = outputs.split, outputs.dataset
    scenario = scenario_of(split, dataset.classes)
    if scenario is None:
        return {}
    if scenario.kind == "backdoor":
        target = scenario.targets[0]
        triggered = outputs.heldout[split.test.size + split.val.size :]
        hits = int((triggered.argmax(1) == target).sum())
        clean = split.test[dataset.test_y[split.test] != target]  # the same kind of images without the trigger
        return {"backdoor_asr": hits / len(triggered), "backdoor_asr_ci": list(wilson_interval(hits, len(triggered))),
                "backdoor_clean_rate": float((outputs.heldout[clean].argmax(1) == target).mean())}
    a, b = scenario.targets
    labels, predicted = dataset.test_y[split.test], outputs.heldout[split.test].argmax(1)
    pair = np.isin(labels, (a, b))
    swapped = ((labels == a) & (predicted == b)) | ((labels == b) & (predicted == a))
    hits, count = int(swapped[pair].sum()), int(pair.sum())
    return {"confusion_test": hits / count, "confusion_test_ci": list(wilson_interval(hits, count))}
