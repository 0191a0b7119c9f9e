"""NegGrad, gradient ascent on the forget set (as the baseline of Golatkar et al., CVPR 2020, and
Kurmanji et al., NeurIPS 2023; the code followed is Jia et al., "Model Sparsity Can Simplify
Machine Unlearning", NeurIPS 2023).

Reference: OPTML-Group/Unlearn-Sparse @ 80ba55d36d0871465c2d3e3896db26a98070e065, unlearn/GA.py
lines 21-110 (`GA`: model in train mode; for each forget batch, loss = −cross-entropy, one
optimizer step); unlearn/impl.py lines 72-77 and 98-100 (SGD with momentum and weight decay, the
learning rate cut ×0.1 only at epochs 91 and 136, i.e. constant over an unlearning run);
arg_parser.py lines 67-70, 76 and 113-121 (batch 256, momentum 0.9, weight decay 5e-4, lr cuts at
epochs 91 and 136, unlearning lr 0.01 over 10 epochs).
meghdadk/SCRUB @ 98ffb11, the NegGrad+ paper's code, has no forget-only ascent: its notebooks'
"NegGrad" runs NegGrad+ (see neggrad_plus.py).

Departures from the reference (each with its reason):
- none in the update rule; the number of passes, the learning rate and the forget batch (64, the
  reference 256) are tuned for our presets.

Options of ours (off by default): `ascent_ceiling` — count each forget example's loss only up to
chance level, log(classes) (unbounded ascent on a memorized set blows up within a few steps);
`retain_floor` — a retain-accuracy guard that steps back to the last weights above that fraction
of the original's accuracy.
"""

import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, bounded_ascent_loss, retain_guard, searched
from unlearnkit.train import Recipe, Source, fit


class GradientAscentConfig(FitConfig):
    """Gradient ascent's hyperparameters: the reference's SGD (momentum 0.9, weight decay 5e-4)."""

    epochs: float = Field(1.0, json_schema_extra=searched(0.25, 16.0, log=True), gt=0, description="passes over the forget set")
    lr: float = Field(0.01, json_schema_extra=searched(0.0005, 0.05, log=True), gt=0, description="learning rate (constant)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (not Nesterov)")
    weight_decay: float = Field(5e-4, ge=0, description="SGD weight decay")
    forget_batch: int = Field(64, ge=1, description="forget images per step")
    ascent_ceiling: bool = Field(False, description="ours: count each forget example's loss only up to log(classes)")
    retain_floor: float = Field(0.0, ge=0, le=1, description="ours, off (0): step back when retain accuracy falls below this fraction of the original's")
    check_every: int = Field(2, ge=1, description="with retain_floor: steps between retain-accuracy checks")

    def recipe(self, task) -> Recipe:
        return Recipe(
            epochs=self.epochs, batch_size=self.forget_batch, lr=self.lr, momentum=self.momentum, nesterov=False,
            weight_decay=self.weight_decay, schedule="constant", warmup=0.0, precision=task.recipe.precision,
        )


@register_method("gradient-ascent", GradientAscentConfig)
def gradient_ascent(model, task, config: GradientAscentConfig):
    """NegGrad: ascend the cross-entropy on the forget set (Golatkar et al. 2020; Jia et al. 2023)."""

    def loss(student, batch, state):
        x, y = batch["forget"]
        logits = student(x)
        return -(bounded_ascent_loss(logits, y, task.num_classes) if config.ascent_ceiling else F.cross_entropy(logits, y))

    forget = Source(task.forget.x, task.forget.y, config.forget_batch)
    guard = retain_guard(model, task, config.retain_floor, config.check_every) if config.retain_floor > 0 else None
    fit(model, {"forget": forget}, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, on_step=guard, description="gradient-ascent")
    return model
