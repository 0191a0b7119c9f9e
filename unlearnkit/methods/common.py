"""Pieces several methods share: fine-tuning hyperparameters, distillation losses,
relabelling, the L1 norm, and the retain-accuracy guard for methods that ascend a loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import MethodConfig, Task
from unlearnkit.train import Recipe, accuracy


class FitConfig(MethodConfig):
    """Hyperparameters of the fine-tuning pass most methods run through the training loop."""

    epochs: float = Field(1.0, gt=0, description="passes over the retain set")
    lr: float = Field(0.05, gt=0, description="peak learning rate (cosine decay)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    forget_batch: int = Field(64, ge=1, description="forget images per step, for methods that mix them in")

    def recipe(self, task: Task) -> Recipe:
        return Recipe(
            epochs=self.epochs, batch_size=task.recipe.batch_size, lr=self.lr, momentum=self.momentum,
            weight_decay=self.weight_decay, schedule="cosine", warmup=0.0, precision=task.recipe.precision,
        )


def kl_to_teacher(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher ‖ student), averaged over the batch, on temperature-softened outputs."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(log_student, teacher_probs, reduction="batchmean") * temperature**2


@torch.no_grad()
def teacher_probs(teacher: torch.nn.Module, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return F.softmax(teacher(x).float() / temperature, dim=1)


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


def retain_guard(task: Task, floor: float, every: int, sample: int = 512):
    """An `on_step` hook for methods that ascend a loss: every `every` steps it measures the
    accuracy on a fixed sample of retain images; when that falls below `floor` × the original's,
    it puts back the weights of the last check that passed and stops the run."""
    generator = torch.Generator().manual_seed(task.seed)
    picked = torch.randperm(len(task.retain), generator=generator)[:sample].to(task.retain.x.device)
    x, y = task.retain.x[picked], task.retain.y[picked]
    required = floor * accuracy(task.original, x, y)
    last_good: dict = {}

    def check(model, state) -> bool:
        if state.step % every and state.step != 1:
            return False
        if accuracy(model, x, y) >= required:
            last_good.clear()
            last_good.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            return False
        if last_good:
            model.load_state_dict(last_good)
        return True

    return check
