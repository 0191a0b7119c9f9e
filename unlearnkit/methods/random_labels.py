"""Random labels (RL: Golatkar et al., CVPR 2020; Graves et al., "Amnesiac Machine Learning",
AAAI 2021), as the SalUn authors run it (Fan et al., ICLR 2024).

Reference: OPTML-Group/Unlearn-Saliency @ a6e89fd17ff737c24c6aa16c9574469a234ffd91,
Classification/unlearn/RL.py lines 109-159 (the CIFAR-10/SVHN branch: each epoch one pass over
the forget set, each batch's labels drawn uniformly over all classes by `torch.randint`, then one
pass over the retain set with its true labels, one cross-entropy step per batch, one optimizer
throughout); Classification/unlearn/impl.py lines 68-73 (SGD with momentum and weight decay,
no Nesterov), 95-97 and 102-114 (MultiStepLR at epochs 91 and 136: a constant learning rate over
the few epochs of unlearning).

Departures from the reference (each with its reason):
- none in the update rule; the learning rate and the number of epochs are ours, set for our presets.
- fit draws whole batches only: the last images of a pass that do not fill a batch wait for the
  next pass's shuffle instead of making a smaller step (the training loop's batching).
- the CIFAR-100/TinyImageNet branch of RL.py (lines 51-107) mixes the relabelled forget images
  into the retain set instead; we follow the CIFAR-10 branch, the setting of the paper's tables.

Options of ours (off by default): `mixed` — our earlier variant: one pass over the retain set,
each step adding `forget_batch` forget images with fixed random wrong labels, cosine decay.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, random_wrong_labels, searched
from unlearnkit.train import Recipe, Source, fit, make_optimizer


class RandomLabelsConfig(FitConfig):
    """Defaults: one epoch (a forget pass, then a retain pass) at a constant learning rate.
    `mixed` restores our earlier variant, whose learning rate 0.2 was chosen on val."""

    epochs: float = Field(1.0, json_schema_extra=searched(0.25, 3.0), gt=0, description="epochs, each a pass over the forget set then one over the retain set")
    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="learning rate (constant; peak of a cosine decay when mixed)")
    mixed: bool = Field(False, description="ours: mix forget_batch forget images with fixed random wrong labels into each retain step, cosine decay")

    def recipe(self, task, epochs: float | None = None) -> Recipe:
        """The reference's optimizer: SGD with momentum and weight decay, no Nesterov, a
        constant learning rate; our earlier variant's (cosine, Nesterov) when `mixed`."""
        if self.mixed:
            return super().recipe(task)
        return Recipe(
            epochs=epochs or self.epochs, batch_size=task.recipe.batch_size, lr=self.lr, momentum=self.momentum, nesterov=False,
            weight_decay=self.weight_decay, schedule="constant", warmup=0.0, precision=task.recipe.precision,
        )


def random_label_loss(num_classes: int):
    """Cross-entropy to labels drawn uniformly over all classes afresh for each batch (the true
    class included), from torch's global generator as RL.py line 125 draws them: a resumed run
    restores that generator, so it draws the same labels."""

    def loss(model, batch, state):
        x, y = batch["data"]
        target = torch.randint(0, num_classes, tuple(y.shape)).to(y.device)
        logits = model(x)
        state.correct += int((logits.argmax(1) == y).sum())
        state.seen += len(y)
        return F.cross_entropy(logits, target)

    return loss


def forget_then_retain(model, task, config: RandomLabelsConfig, mask=None, description: str = "random-labels"):
    """RL.py's epochs: a pass over the forget set with random labels, then a pass over the retain
    set, through one SGD optimizer (its momentum carried from pass to pass); with `mask`, only
    the masked-in weights change (SalUn). A fractional last epoch runs that fraction of both passes."""
    recipe = config.recipe(task)
    optimizer = make_optimizer(model, recipe)
    rounds = math.ceil(config.epochs)
    for epoch in range(rounds):
        part = recipe.model_copy(update={"epochs": min(1.0, config.epochs - epoch)})
        common = dict(seed=task.seed + epoch, checkpoint=task.checkpoint, mask=mask, optimizer=optimizer)
        fit(model, task.forget, part, loss=random_label_loss(task.num_classes), description=f"{description} forget {epoch + 1}/{rounds}", **common)
        fit(model, task.retain, part, description=f"{description} retain {epoch + 1}/{rounds}", **common)
    return model


def mixed_relabelling(model, task, config: RandomLabelsConfig, mask=None, description: str = "random-labels"):
    """Our earlier variant: one fit over the retain set, each step adding `forget_batch` forget
    images with random wrong labels fixed for the run."""
    relabelled = Source(task.forget.x, random_wrong_labels(task.forget.y, task.num_classes, task.seed), config.forget_batch)
    fit(model, {"retain": task.retain, "forget": relabelled}, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, mask=mask, description=description)
    return model


@register_method("random-labels", RandomLabelsConfig)
def random_labels(model, task, config: RandomLabelsConfig):
    """Random labels, as in SalUn's code: each epoch, a pass over the forget set with labels drawn
    at random over all classes, then a pass over the retain set, through one SGD optimizer."""
    unlearn = mixed_relabelling if config.mixed else forget_then_retain
    return unlearn(model, task, config, description="random-labels")
