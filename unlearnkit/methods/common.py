"""Pieces several methods share: fine-tuning hyperparameters, distillation losses,
relabelling, the L1 norm, and the retain-accuracy guard for methods that ascend a loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import MethodConfig, Task
from unlearnkit.train import Recipe, accuracy


def require_continuous_inputs(task: Task, method: str, why: str) -> None:
    """Refuse in one line inputs a method cannot perturb: integer token ids (a method that
    optimizes or adds noise in input space needs images or float rows)."""
    x = task.forget.x
    if not (x.is_floating_point() or x.dtype == torch.uint8):
        raise UnlearnkitError(f"{method} {why}, which needs images or float rows; it cannot work on integer inputs (token ids) of shape {tuple(x.shape[1:])}: choose another method (e.g. finetune, kl, scrub)")


def searched(low: float, high: float, *, log: bool = False) -> dict:
    """A config field's search range, for `unlearnkit tune` (TPE draws it uniformly, or
    log-uniformly with `log`): `Field(0.1, json_schema_extra=searched(0.01, 0.5, log=True))`."""
    return {"search": {"low": low, "high": high, "log": log}}


class FitConfig(MethodConfig):
    """Hyperparameters of the fine-tuning pass most methods run through the training loop."""

    epochs: float = Field(1.0, json_schema_extra=searched(0.25, 3.0), gt=0, description="passes over the retain set")
    lr: float = Field(0.05, json_schema_extra=searched(0.005, 0.5, log=True), gt=0, description="peak learning rate (cosine decay)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    forget_batch: int = Field(64, ge=1, description="forget images per step, for methods that mix them in")

    def recipe(self, task: Task) -> Recipe:
        return Recipe(
            epochs=self.epochs, batch_size=task.recipe.batch_size, lr=self.lr, momentum=self.momentum,
            weight_decay=self.weight_decay, schedule="cosine", warmup=0.0, precision=task.recipe.precision,
        )


def reset(module: torch.nn.Module, seed: int) -> None:
    """Re-initialize a layer as its constructor would, from `seed`, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module.reset_parameters()


def kl_to_teacher(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher ‖ student), averaged over the batch, on temperature-softened outputs."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(log_student, teacher_probs, reduction="batchmean") * temperature**2


@torch.no_grad()
def teacher_probs(teacher: torch.nn.Module, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return F.softmax(teacher(x).float() / temperature, dim=1)


def distillation_loss(teacher: torch.nn.Module, temperature: float, label_weight: float, distill_weight: float):
    """A `fit` loss for the erase-then-repair methods: `label_weight` × cross-entropy plus
    `distill_weight` × KL to the teacher's softened outputs on the same images (a term of weight 0
    is not computed), counting accuracy for the progress line."""
    def loss(student, batch, state):
        x, y = batch["data"]
        logits = student(x)
        state.correct += int((logits.argmax(1) == y).sum())
        state.seen += len(y)
        total = label_weight * F.cross_entropy(logits, y) if label_weight > 0 else 0.0
        if distill_weight > 0:
            total = total + distill_weight * kl_to_teacher(logits, teacher_probs(teacher, x, temperature), temperature)
        return total
    return loss


def kl_to_uniform(student_logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform ‖ student): zero when the student is maximally unsure."""
    log_student = F.log_softmax(student_logits.float(), dim=1)
    return (-log_student.mean(dim=1) - math.log(student_logits.shape[1])).mean()


def random_wrong_labels(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """A uniformly random label other than the true one, for each example."""
    generator = torch.Generator().manual_seed(seed)
    offset = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
    return (y + offset) % num_classes


def l1_norm(model: torch.nn.Module) -> torch.Tensor:
    """Sum of |w| over the weight matrices and kernels (not biases or norm scales)."""
    return sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)


def bounded_ascent_loss(logits: torch.Tensor, labels: torch.Tensor, num_classes: int, bounded: bool = True) -> torch.Tensor:
    """The mean cross-entropy to ascend, each example's counted only up to chance level,
    log(classes): past it the example is forgotten and pushes no further. Unbounded, ascent on a
    memorized set starts from vanishing gradients and then blows up within a step or two."""
    losses = F.cross_entropy(logits.float(), labels, reduction="none")
    return (losses.clamp(max=math.log(num_classes)) if bounded else losses).mean()


def retain_guard(model: torch.nn.Module, task: Task, floor: float, every: int, sample: int = 512, patience: int = 3):
    """An `on_step` hook for methods that ascend a loss, so that the model they return keeps
    its retain accuracy: every `every` steps (and at the last) it measures the accuracy on a
    fixed sample of retain images against `floor` × the original's. A passing check keeps the
    weights as "last good"; a failing one is tolerated (a high learning rate dips and recovers)
    until `patience` checks in a row fail, or training ends below the floor: then the last good
    weights are put back and training stops. The input weights are the first "last good" (they
    pass by definition), so the model returned is never below the floor on that sample."""
    generator = torch.Generator().manual_seed(task.seed)
    x, y = task.retain.batch(torch.randperm(len(task.retain), generator=generator)[:sample])
    required = floor * accuracy(task.original, x, y, task.recipe.precision)
    last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}
    failures = 0

    def check(model, state) -> bool:
        nonlocal failures
        last = state.step >= state.total_steps
        if state.step % every and state.step != 1 and not last:
            return False
        if accuracy(model, x, y, task.recipe.precision) >= required:
            last_good.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            failures = 0
            return False
        failures += 1
        if failures >= patience or last:
            model.load_state_dict(last_good)
            return True
        return False

    return check
