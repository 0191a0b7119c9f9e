"""Boundary Shrink (Chen, Gao, Liu, Peng, Wang, "Boundary Unlearning: Rapid Forgetting of Deep
Networks via Shifting the Decision Boundary", CVPR 2023).

Reference: OPTML-Group/Unlearn-Saliency @ a6e89fd17ff737c24c6aa16c9574469a234ffd91,
Classification/unlearn/boundary_sh.py lines 35-52 (the attack: one signed-gradient step of the
original model's cross-entropy of size `bound`, clamped to [0, 1] and rounded to 1/255),
69 (bound 0.1, "hard coding in the paper"), 80-109 (per forget batch: the label is the
original's argmax on the attacked image, whatever it is; the model is trained with
cross-entropy on the clean forget image to that label, nothing else), 136-141 (the attacked
model is a frozen copy of the original); Classification/unlearn/impl.py lines 68-73, 95-97,
102-114 (SGD with momentum and weight decay, no Nesterov, constant learning rate). The authors'
code (Boundary-Unlearning-Code.zip, linked from the paper, not on GitHub; we read copies of it
there) has the same attack, labels and loss, with SGD at lr 1e-5, momentum 0.9, no weight decay,
10 epochs.

Departures from the reference (each with its reason):
- none in the update rule; the learning rate is ours, set for our presets (the number of epochs,
  10, is the authors').
- the labels are computed once before training instead of at every batch: the original is
  frozen, in eval mode, the attack has no random start and the images are not augmented, so
  every epoch's labels are the same.
- the forget images come in batches of `forget_batch` (64; the reference has one batch size, 256,
  for all its loaders): a hyperparameter, like the number of epochs, scaled to our forget sets.
- fit draws whole batches only: the last forget images of a pass that do not fill a batch wait
  for the next pass's shuffle (the training loop's batching).

Options of ours (off by default): `with_retain` — mix retain images into every step (the paper
forgets whole classes; on a random forget set the forget set alone dragged test accuracy down);
`wrong_only` — where the attack leaves the prediction on the true class, label with the
strongest wrong class instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, searched
from unlearnkit.train import Recipe, Source, fit, to_float


class BoundaryShrinkConfig(FitConfig):
    """Defaults: the reference's attack (ε 0.1) and loss, at a constant learning rate; the
    learning rate 0.05 was chosen on val for our earlier variant with retain images mixed in."""

    epochs: float = Field(10.0, json_schema_extra=searched(2.0, 20.0), gt=0, description="passes over the forget set (over the retain set when with_retain is on)")
    lr: float = Field(0.05, json_schema_extra=searched(0.005, 0.5, log=True), gt=0, description="learning rate (constant)")
    epsilon: float = Field(0.1, gt=0, description="size of the signed-gradient step that finds each image's neighbouring class, in [0, 1] pixel units")
    with_retain: bool = Field(False, description="ours: mix retain images (with forget_batch forget images) into every step")
    wrong_only: bool = Field(False, description="ours: where the attack fails, label with the strongest wrong class instead of the true one")

    def recipe(self, task) -> Recipe:
        """The reference's optimizer: SGD with momentum and weight decay, no Nesterov, constant rate."""
        return Recipe(
            epochs=self.epochs, batch_size=task.recipe.batch_size, lr=self.lr, momentum=self.momentum, nesterov=False,
            weight_decay=self.weight_decay, schedule="constant", warmup=0.0, precision=task.recipe.precision,
        )


def boundary_labels(model, x: torch.Tensor, y: torch.Tensor, epsilon: float, wrong_only: bool = False, batch_size: int = 256) -> torch.Tensor:
    """For each image, the class `model` predicts after one signed-gradient step of size
    `epsilon` that raises its loss in pixel space (clamped to [0, 1], rounded to 1/255): the
    class across the nearest decision boundary, or the true class where the step does not
    cross one. With `wrong_only`, the true class is never chosen: the strongest wrong one is."""
    model.eval()
    labels = []
    for start in range(0, len(x), batch_size):
        xb, yb = to_float(x[start : start + batch_size]).requires_grad_(True), y[start : start + batch_size]
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xb), yb), xb)
        pushed = torch.round((xb + epsilon * grad.sign()).clamp(0, 1) * 255).div(255).detach()
        with torch.no_grad():
            logits = model(pushed).float()
        if wrong_only:
            logits[torch.arange(len(yb)), yb] = -torch.inf
        labels.append(logits.argmax(1))
    return torch.cat(labels)


def nearest_wrong_class(model, x: torch.Tensor, y: torch.Tensor, epsilon: float, batch_size: int = 256) -> torch.Tensor:
    """The strongest wrong class after the signed-gradient step (`boundary_labels` with `wrong_only`)."""
    return boundary_labels(model, x, y, epsilon, wrong_only=True, batch_size=batch_size)


@register_method("boundary-shrink", BoundaryShrinkConfig)
def boundary_shrink(model, task, config: BoundaryShrinkConfig):
    """Boundary Shrink (Chen et al., "Boundary Unlearning", CVPR 2023): label each forget image
    with the original's prediction after an adversarial step, then fine-tune on the forget
    images with those labels."""
    if task.forget.x.ndim != 4:
        raise UnlearnkitError(f"boundary-shrink attacks in pixel space (a step clamped to [0, 1], rounded to 1/255): it works on images only, not on {'table rows' if task.forget.x.ndim == 2 and task.forget.x.is_floating_point() else 'inputs'} of shape {tuple(task.forget.x.shape[1:])}")
    labels = boundary_labels(task.original, task.forget.x, task.forget.y, config.epsilon, wrong_only=config.wrong_only)
    if config.with_retain:
        data = {"retain": task.retain, "forget": Source(task.forget.x, labels, config.forget_batch)}
    else:
        data = Source(task.forget.x, labels, config.forget_batch)
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, description="boundary-shrink")
    return model
