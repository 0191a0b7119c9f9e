"""What the language-model methods share: their fine-tuning hyperparameters and sequence losses.

The references (TOFU's `CustomTrainerForgetting`, open-unlearning's trainers) run AdamW through
the Hugging Face Trainer at lr 1e-5 with linear decay after a warmup, weight decay 0.01 (TOFU) or
0 (open-unlearning), on a causal LM whose `loss` is the mean next-token NLL over every labelled
token of the batch. Our rows are already shifted (`y` is the next byte), so `token_nll` is that
loss; the learning rate, its cosine schedule, epochs and batch sizes are tuned for our presets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import MethodConfig, Task
from unlearnkit.methods.common import searched
from unlearnkit.train import IGNORE_INDEX, Recipe, Source, label_logprobs


class LMConfig(MethodConfig):
    """One pass of AdamW (β 0.9, 0.999, as the references' Trainer) through the training loop:
    `epochs` over the forget rows (over the retain rows for methods that only descend), with
    retain rows mixed into each step."""

    epochs: float = Field(5.0, json_schema_extra=searched(1.0, 10.0), gt=0, description="passes over the forget rows")
    lr: float = Field(1e-3, json_schema_extra=searched(1e-4, 1e-2, log=True), gt=0, description="peak learning rate (cosine decay)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW's decoupled weight decay")
    forget_batch: int = Field(8, ge=1, description="forget rows per step")
    retain_batch: int | None = Field(32, ge=1, description="retain rows per step (None: as many as forget rows)")

    def recipe(self, task: Task, batch_size: int | None = None) -> Recipe:
        return Recipe(epochs=self.epochs, batch_size=batch_size or self.forget_batch, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay,
                      schedule="cosine", warmup=0.0, optimizer="adamw", precision=task.recipe.precision)

    @property
    def retain_rows(self) -> int:
        """Retain rows per step (`retain_batch`, or as many as forget rows)."""
        return self.retain_batch or self.forget_batch

    def sources(self, task: Task, forget: Source | None = None) -> dict[str, Source]:
        """Forget rows first (they set the epoch), retain rows beside them."""
        forget = forget or task.forget
        return {"forget": Source(forget.x, forget.y, self.forget_batch), "retain": Source(task.retain.x, task.retain.y, self.retain_rows)}


def token_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token negative log-likelihood over every target position of a batch (a causal
    LM's `loss` in Hugging Face)."""
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)


def sequence_logprob(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's summed target log-probability, and its number of targets."""
    lp, keep, _ = label_logprobs(logits, y)
    return lp.sum(dim=1), keep.sum(dim=1).clamp(min=1)


def padded_length(y: torch.Tensor) -> int:
    """The length the references' collator pads a batch to: up to its longest row's last target."""
    used = (y != IGNORE_INDEX).any(dim=0).nonzero()
    return int(used.max()) + 1 if used.numel() else 1


def both(model: torch.nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(forget logits, forget targets, retain logits, retain targets) from one forward pass (the
    model has no batch statistics, so one pass over both is two passes' outputs)."""
    (xf, yf), (xr, yr) = batch["forget"], batch["retain"]
    logits = model(torch.cat([xf, xr]))
    return logits[: len(xf)], yf, logits[len(xf) :], yr
