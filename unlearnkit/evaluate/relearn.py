"""The relearning attack: does the forgetting hold once the model is fine-tuned a little?

A forgotten example that comes back after a few steps of fine-tuning was hidden, not forgotten
(Łucki et al. 2024, "An Adversarial Perspective on Machine Unlearning for AI Safety"; Hu et al.,
ICLR 2025, "Unlearning or Obfuscating?"). The attack here, for images:

- The forget set is split per seed into a small *relearn* part (`fraction`, at least one
  example) and the *measured* rest.
- A copy of the model is fine-tuned (its normalization statistics frozen) for `steps` SGD steps
  on batches drawn from the relearn part
  (attack "forget"), or, separately, on the retain examples nearest to the relearn part in pixel
  space, one per relearn example, which never were in the forget set (attack "neighbours").
- Accuracy and mean loss on the measured part are read before and after every step: the
  recovery curve.

The retrained model, which never saw the forget set, also learns from those steps, so the figure
is the *gap*: the unlearned model's recovery minus the retrained model's under the identical
attack (same examples, same batches, same seed), with a 95% t-interval over the seeds' paired
gaps. Recovery is the mean accuracy on the measured part over the attack's steps (the area under
the recovery curve): how fast it comes back, not only where it ends, since both models may end at
100% when the forgotten examples share a simple rule. `gap_final` is the same after the last step
alone. A gap whose interval lies above `margin` (2 points) means the forgetting did not hold.

Not a published reference implementation: the attack follows the papers' protocol (a handful of
fine-tuning steps on a part of the forget set or on related data, the rest measured); its sizes
are ours. Both attacks over three seeds predict 66,000 images per model in fp32, where an
evaluation predicts 35,000 in the run's precision: on the default preset the relearning and
quantization audits of 27 models took 54 of `evaluate`'s 61 minutes (docs/history.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from unlearnkit.progress import with_progress
from unlearnkit.train import logits as output_logits, model_device, predict_logits, to_float

ATTACKS = ("forget", "neighbours")


class RelearnOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: int = Field(10, ge=1, description="SGD steps of the attack")
    lr: float = Field(0.001, gt=0, description="the attack's learning rate (SGD, momentum 0.9)")
    batch_size: int = Field(16, ge=1, description="examples per step, drawn from the relearn part with replacement")
    fraction: float = Field(0.1, gt=0, lt=1, description="share of the forget set the attack trains on; the rest is measured")
    measured: int = Field(1000, ge=1, description="at most this many of the rest are measured (a seeded sample)")
    seeds: int = Field(3, ge=1, description="repetitions, each with its own relearn part and batches (the gap's interval is over them)")
    margin: float = Field(0.02, ge=0, le=1, description="gaps up to this (accuracy, 0-1) still count as held: two retrained models differ by about as much")


@dataclass
class Curve:
    """Accuracy and mean loss on the measured part before the attack and after each step."""

    accuracy: list[float]
    loss: list[float]


def relearn_parts(n_forget: int, options: RelearnOptions, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions in the forget set: the relearn part and the measured part (disjoint)."""
    order = np.random.default_rng([seed, 23]).permutation(n_forget)
    cut = max(1, round(options.fraction * n_forget))
    return np.sort(order[:cut]), np.sort(order[cut:][: options.measured])


def nearest_retain(forget_x: torch.Tensor, retain_x: torch.Tensor, chunk: int = 256) -> np.ndarray:
    """For each forget image, the position of the nearest retain image in pixel space (L2)."""
    flat_retain = retain_x.reshape(len(retain_x), -1).float()
    found = []
    for start in range(0, len(forget_x), chunk):
        flat = forget_x[start : start + chunk].reshape(-1, flat_retain.shape[1]).float()
        found.append(torch.cdist(flat, flat_retain).argmin(1))
    return torch.cat(found).numpy()


def _measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = predict_logits(model, x, precision="fp32")
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


def relearning(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, options: RelearnOptions, seed: int):
    """Fine-tune a copy of `model` on (train_x, train_y) for `options.steps` steps, yielding the
    copy before the first step and after each; the model given is left as it was. Batches depend
    only on `seed` and the sizes, so every model sees the same ones."""
    attacked = copy.deepcopy(model)
    device = model_device(attacked)
    optimizer = torch.optim.SGD(attacked.parameters(), lr=options.lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    yield attacked
    for _ in range(options.steps):
        batch = torch.randint(len(train_x), (options.batch_size,), generator=generator)
        # eval mode: normalization statistics stay frozen. In train mode, ten batches drawn from a
        # few dozen forget images replace most of BatchNorm's running statistics, which wrecks the
        # model for every model alike and hides what the weights still hold.
        attacked.eval()
        optimizer.zero_grad(set_to_none=True)
        attack_loss(attacked, to_float(train_x[batch]).to(device), train_y[batch].to(device)).backward()
        optimizer.step()
        yield attacked


def attack_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The attack's loss on a batch. An ensemble (a model with `members`, as a SISA ensemble) is
    attacked member by member: each member is fine-tuned on the batch as a model of its own (the
    sum of their losses), since its aggregated prediction (a vote) has no gradient; what is then
    measured is the ensemble's aggregated prediction."""
    members = getattr(model, "members", None)
    if members is not None:
        return sum(F.cross_entropy(output_logits(member(x)), y) for member in members)
    return F.cross_entropy(output_logits(model(x)), y)


def relearn_curve(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, measured_x: torch.Tensor, measured_y: torch.Tensor,
                  options: RelearnOptions, seed: int) -> Curve:
    """Accuracy and loss on (measured_x, measured_y) before and after each step of `relearning`."""
    curve = Curve([], [])
    for attacked in relearning(model, train_x, train_y, options, seed):
        accuracy, loss = _measure(attacked, measured_x, measured_y)
        curve.accuracy.append(accuracy)
        curve.loss.append(loss)
    return curve


def paired_interval(differences: list[float]) -> list[float] | None:
    """95% t-interval of the mean of paired differences (None with fewer than 2)."""
    if len(differences) < 2:
        return None
    from scipy import stats  # imported where used: scipy.stats takes about half a second to import

    values = np.asarray(differences, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return [float(values.mean() - half), float(values.mean() + half)]


def relearn_audit(models: dict[str, nn.Module], forget_x: torch.Tensor, forget_y: torch.Tensor, retain_x: torch.Tensor, retain_y: torch.Tensor,
                  options: RelearnOptions | None = None, seed: int = 0, reference: str = "retrain") -> dict:
    """Both attacks on every model in `models` (one of which is `reference`, the retrained model):
    per model and attack, the recovery curves of each seed, the accuracy after the attack (mean
    over seeds), and the gap to the reference with its interval."""
    options = options or RelearnOptions()
    curves: dict[str, dict[str, list[Curve]]] = {name: {attack: [] for attack in ATTACKS} for name in models}
    trainings, measured_parts = [], []
    for repetition in range(options.seeds):
        relearn, measured = relearn_parts(len(forget_x), options, seed + repetition)
        neighbours = nearest_retain(forget_x[relearn], retain_x)
        trainings.append({"forget": (forget_x[relearn], forget_y[relearn]), "neighbours": (retain_x[neighbours], retain_y[neighbours])})
        measured_parts.append(measured)
    steps = [(repetition, name) for repetition in range(options.seeds) for name in models]
    for repetition, name in with_progress(steps, "audit relearn", lambda step: f"{step[1]}, repetition {step[0] + 1}/{options.seeds}"):
        measured = measured_parts[repetition]
        for attack, (x, y) in trainings[repetition].items():
            curves[name][attack].append(relearn_curve(models[name], x, y, forget_x[measured], forget_y[measured], options, seed + repetition))
    report = {"options": options.model_dump(), "relearn_examples": max(1, round(options.fraction * len(forget_x))),
              "measured_examples": len(relearn_parts(len(forget_x), options, seed)[1]), "models": {}}
    recovery = lambda curve: float(np.mean(curve.accuracy[1:]))  # noqa: E731
    for name in models:
        report["models"][name] = {}
        for attack in ATTACKS:
            mine, theirs = curves[name][attack], curves[reference][attack]
            gaps = [recovery(a) - recovery(b) for a, b in zip(mine, theirs)]
            report["models"][name][attack] = {
                "accuracy_before": float(np.mean([c.accuracy[0] for c in mine])), "accuracy_after": float(np.mean([c.accuracy[-1] for c in mine])),
                "recovery": float(np.mean([recovery(c) for c in mine])), "loss_after": float(np.mean([c.loss[-1] for c in mine])),
                "gap": float(np.mean(gaps)), "gap_ci95": paired_interval(gaps),
                "gap_final": float(np.mean([a.accuracy[-1] - b.accuracy[-1] for a, b in zip(mine, theirs)])),
                "curves": [c.accuracy for c in mine],
            }
    return report


def held(entry: dict, margin: float) -> bool | None:
    """Whether the forgetting held under an attack: the gap's interval reaches `margin` or below
    (None without an interval)."""
    return None if entry["gap_ci95"] is None else bool(entry["gap_ci95"][0] <= margin)


def held_under_both(model_entry: dict, margin: float) -> bool | None:
    """Held under every attack (None when an attack has no interval)."""
    verdicts = [held(model_entry[attack], margin) for attack in ATTACKS]
    return None if None in verdicts else all(verdicts)


def unseen_after_relearning(model: nn.Module, forget_x: torch.Tensor, forget_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                            options: RelearnOptions | None = None, seed: int = 0) -> dict | None:
    """The relearning attack without a retrained model (the deletion service's case): after
    fine-tuning on a part of the forgotten images, is the rest recognised better than unseen
    test images under the same fine-tuning? Mean final accuracies over the seeds, on the measured
    rest and on as many test images. None when fewer than two images were forgotten."""
    options = options or RelearnOptions()
    if len(forget_x) < 2:
        return None
    forgotten, unseen = [], []
    for repetition in range(options.seeds):
        relearn, measured = relearn_parts(len(forget_x), options, seed + repetition)
        sample = np.sort(np.random.default_rng([seed + repetition, 29]).permutation(len(test_x))[: measured.size])
        *_, attacked = relearning(model, forget_x[relearn], forget_y[relearn], options, seed + repetition)  # one attack, measured on both
        forgotten.append(_measure(attacked, forget_x[measured], forget_y[measured])[0])
        unseen.append(_measure(attacked, test_x[sample], test_y[sample])[0])
    return {"options": options.model_dump(), "relearned": len(relearn), "measured": len(measured),
            "forget_acc": float(np.mean(forgotten)), "test_acc": float(np.mean(unseen))}
