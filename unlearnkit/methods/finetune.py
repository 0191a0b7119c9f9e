"""Fine-tuning on the retain set: the baseline of the NeurIPS 2023 Machine Unlearning Challenge
(Triantafillou et al., starting kit).

Reference: unlearning-challenge/starting-kit @ 901e784c4243eee541a5748a075d132c1724f5ed,
unlearning-CIFAR10.ipynb lines 329-369 (the `unlearning` function: cross-entropy on retain
batches in train mode, SGD at lr 0.1 with momentum 0.9 and weight decay 5e-4, no Nesterov,
CosineAnnealingLR with T_max = the number of epochs, stepped once per epoch, 5 epochs).

Departures from the reference (each with its reason):
- none in the update rule; the learning rate and the number of epochs are ours, set for our presets.
- fit draws whole batches only: the last retain images of a pass that do not fill a batch wait
  for the next pass's shuffle (the training loop's batching).

Options of ours (off by default): `smooth_cosine` — lower the learning rate along the cosine at
every step instead of once per epoch.
"""

from __future__ import annotations

from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, searched
from unlearnkit.train import Recipe, fit


class FinetuneConfig(FitConfig):
    """Defaults: one pass over the retain set (the kit ran 5 of its 30 epochs; one of our
    preset's 9 is the same order of cost) at lr 0.2, chosen on val (docs/results.md) with the
    cosine lowered at every step; with one epoch the kit's schedule keeps the rate constant."""

    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="learning rate of the first epoch (cosine decay, once per epoch)")
    smooth_cosine: bool = Field(False, description="ours: lower the learning rate along the cosine at every step instead of once per epoch")

    def recipe(self, task) -> Recipe:
        """The kit's optimizer: SGD with momentum and weight decay, no Nesterov, the cosine
        lowered once per epoch (per step with `smooth_cosine`)."""
        return Recipe(
            epochs=self.epochs, batch_size=task.recipe.batch_size, lr=self.lr, momentum=self.momentum, nesterov=False,
            weight_decay=self.weight_decay, schedule="cosine" if self.smooth_cosine else "epoch-cosine", warmup=0.0,
            precision=task.recipe.precision,
        )


@register_method("finetune", FinetuneConfig)
def finetune(model, task, config: FinetuneConfig):
    """Continue training on the retain set only (the NeurIPS 2023 kit's baseline): SGD, the
    learning rate lowered along a cosine once per epoch."""
    fit(model, task.retain, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, description="finetune")
    return model
