"""SCRUB (Kurmanji, Triantafillou, Hayes and Triantafillou, "Towards Unbounded Machine
Unlearning", NeurIPS 2023).

Reference: meghdadk/SCRUB @ 98ffb1196ffbec2665092598c13ad3b6ec3d095d, large_scale_unlearning.ipynb
cell 32 (optim sgd, gamma 0.99, alpha 0.001, beta 0, msteps 2, kd_T 4, sgda_epochs 3, learning rate
0.0005 decayed ×0.1 after epochs 3, 5, 9, weight decay 5e-4, momentum 0.9), cell 34 (one SGD
optimizer over the student for the whole run), cell 36 (each epoch: set the learning rate, then a
max pass over the forget loader if epoch <= msteps, then a min pass over the retain loader), cell 28
(forget loader batch 512, retain loader batch 256, both shuffled);
thirdparty/repdistiller/helper/loops.py lines 137-291 (`train_distill`: student in train mode,
teacher in eval mode; min loss gamma × cross-entropy + alpha × KL, max loss −KL);
thirdparty/repdistiller/distiller_zoo/KD.py lines 13-17 (`DistillKL`: KL(teacher ‖ student) on
outputs softened by T, summed, × T² / batch size); thirdparty/repdistiller/helper/util.py
lines 22-30 (`adjust_learning_rate`: lr × rate^(number of decay epochs below the epoch)).

Departures from the reference (each with its reason):
- each pass drops its last partial batch (fit's passes hold whole batches; the reference's
  loaders keep it): the training loop is shared by every method.
- none in the update rule otherwise; the learning rate and the number of epochs are tuned for our
  presets. A fractional `epochs` shortens the last min pass to that fraction (for time budgets).

Options of ours (off by default): `interleave` — one run over retain in which max steps on forget
alternate with min steps during the first `max_fraction` of the run (cosine schedule, Nesterov
momentum), at about a third of the reference's cost.
"""

import math

import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, kl_to_teacher, searched, teacher_probs
from unlearnkit.train import Recipe, Source, fit, make_optimizer


class ScrubConfig(FitConfig):
    """SCRUB's hyperparameters (the reference's large-scale values, learning rate aside)."""

    epochs: float = Field(3.0, json_schema_extra=searched(0.5, 4.0), gt=0, description="epochs, each a min pass over retain (fractions: a shorter last pass)")
    max_epochs: int = Field(2, ge=0, description="msteps: the first epochs, each opened by a max pass over the forget set")
    lr: float = Field(0.0005, json_schema_extra=searched(0.0001, 0.02, log=True), gt=0, description="learning rate (constant within an epoch)")
    lr_decay_epochs: tuple[int, ...] = Field((3, 5, 9), description="the learning rate is multiplied by lr_decay_rate in each epoch after each of these")
    lr_decay_rate: float = Field(0.1, gt=0, le=1, description="factor of each learning-rate decay")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (not Nesterov)")
    weight_decay: float = Field(5e-4, ge=0, description="SGD weight decay")
    alpha: float = Field(0.001, json_schema_extra=searched(0.0001, 0.1, log=True), ge=0, description="weight of the KL to the teacher in min steps")
    gamma: float = Field(0.99, ge=0, description="weight of the cross-entropy in min steps")
    temperature: float = Field(4.0, gt=0, description="distillation temperature of both KL terms")
    forget_batch: int = Field(512, ge=1, description="forget images per max step")
    interleave: bool = Field(False, description="ours: one run alternating max and min steps in its first max_fraction")
    max_fraction: float = Field(0.5, ge=0, le=1, description="with interleave: share of the run in which every other step is a max step")


def scrub_losses(teacher, config: ScrubConfig):
    """(max loss, min loss) as `fit` losses: −KL to the teacher on the forget batch; gamma ×
    cross-entropy + alpha × KL to the teacher on the retain batch."""

    def maximize(student, batch, state):
        x, _ = batch["forget"]
        return -kl_to_teacher(student(x), teacher_probs(teacher, x, config.temperature), config.temperature)

    def minimize(student, batch, state):
        x, y = batch["retain"]
        logits = student(x)
        state.correct += int((logits.argmax(1) == y).sum())
        state.seen += len(y)
        return config.gamma * F.cross_entropy(logits, y) + config.alpha * kl_to_teacher(logits, teacher_probs(teacher, x, config.temperature), config.temperature)

    return maximize, minimize


def interleaved(model, task, config: ScrubConfig, maximize, minimize):
    """Ours: max steps (every other step) in the first `max_fraction` of one run over retain."""

    def loss(student, batch, state):
        if state.step < config.max_fraction * state.total_steps and state.step % 2 == 0:
            return maximize(student, batch, state)
        return minimize(student, batch, state)

    data = {"retain": task.retain, "forget": Source(task.forget.x, task.forget.y, config.forget_batch)}
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="scrub")
    return model


@register_method("scrub", ScrubConfig)
def scrub(model, task, config: ScrubConfig):
    """SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): a student
    started from the original runs, in each of its first `max_epochs` epochs, a max pass over
    the forget set (move away from the teacher) and then, in every epoch, a min pass over the
    retain set (stay close to the teacher, plus cross-entropy), all through one SGD optimizer."""
    teacher = task.original.eval()
    maximize, minimize = scrub_losses(teacher, config)
    if config.interleave:
        return interleaved(model, task, config, maximize, minimize)
    forget = Source(task.forget.x, task.forget.y, config.forget_batch)
    optimizer = None
    epochs = math.ceil(config.epochs)
    for epoch in range(1, epochs + 1):
        lr = config.lr * config.lr_decay_rate ** sum(epoch > e for e in config.lr_decay_epochs)
        passes = [("max", {"forget": forget}, maximize, 1.0)] if epoch <= config.max_epochs else []
        passes.append(("min", {"retain": task.retain}, minimize, min(1.0, config.epochs - (epoch - 1))))
        for kind, data, loss, fraction in passes:
            recipe = Recipe(
                epochs=fraction, batch_size=task.recipe.batch_size, lr=lr, momentum=config.momentum, nesterov=False,
                weight_decay=config.weight_decay, schedule="constant", warmup=0.0, precision=task.recipe.precision,
            )
            optimizer = optimizer or make_optimizer(model, recipe)
            fit(model, data, recipe, seed=task.seed + epoch, loss=loss, optimizer=optimizer, checkpoint=task.checkpoint,
                description=f"scrub {kind} {epoch}/{epochs}")
    return model
