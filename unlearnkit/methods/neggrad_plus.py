"""NegGrad+ (Kurmanji, Triantafillou, Hayes and Triantafillou, "Towards Unbounded Machine
Unlearning", NeurIPS 2023).

Reference: meghdadk/SCRUB @ 98ffb1196ffbec2665092598c13ad3b6ec3d095d,
thirdparty/repdistiller/helper/loops.py lines 12-76 (`train_negrad`: model in train mode; for each
retain batch, with the forget loader cycled alongside, a forward pass on the retain batch and a
separate one on the forget batch, loss alpha × retain cross-entropy − (1 − alpha) × forget
cross-entropy, one SGD step); MIA_experiments.ipynb cell 16 (`negative_grad`: SGD at lr 0.01, no
momentum, no weight decay, over `ng_epochs` passes of the retain loader); small_scale_unlearning.ipynb
cell 85 (alpha 0.95, 10 epochs, lr 0.01; the large-scale notebooks use alpha 0.9999).

Departures from the reference (each with its reason):
- the forget batches are reshuffled at each pass over the forget set (the reference's
  `itertools.cycle` replays its first pass's batches): the training loop draws every source alike.
- none in the update rule otherwise; the number of epochs is tuned for our presets. The small-scale
  notebook's `run_neggrad_epoch` (small_scale_unlearning.ipynb cell 70) also adds
  alpha × (wd/2) × ‖θ − θ₀‖² and keeps batch norm in eval mode; loops.py, which the large-scale
  experiments (our setting) run, has neither.

Options of ours (off by default): `ascent_ceiling` — count each forget example's loss only up to
chance level, log(classes); `retain_floor` — a retain-accuracy guard that steps back to the last
weights above that fraction of the original's accuracy.
"""

import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, bounded_ascent_loss, retain_guard, searched
from unlearnkit.train import Recipe, Source, fit


class NegGradPlusConfig(FitConfig):
    """NegGrad+'s hyperparameters: the reference's plain SGD (no momentum, no weight decay)."""

    epochs: float = Field(1.0, json_schema_extra=searched(0.25, 5.0), gt=0, description="passes over the retain set")
    lr: float = Field(0.01, json_schema_extra=searched(0.001, 0.2, log=True), gt=0, description="learning rate (constant)")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum (not Nesterov)")
    weight_decay: float = Field(0.0, ge=0, description="SGD weight decay")
    alpha: float = Field(0.95, json_schema_extra=searched(0.5, 0.9999), ge=0, le=1, description="loss = alpha × retain cross-entropy − (1 − alpha) × forget cross-entropy")
    forget_batch: int = Field(64, ge=1, description="forget images per step")
    ascent_ceiling: bool = Field(False, description="ours: count each forget example's loss only up to log(classes)")
    retain_floor: float = Field(0.0, ge=0, le=1, description="ours, off (0): step back when retain accuracy falls below this fraction of the original's")
    check_every: int = Field(5, ge=1, description="with retain_floor: steps between retain-accuracy checks")

    def recipe(self, task) -> Recipe:
        return Recipe(
            epochs=self.epochs, batch_size=task.recipe.batch_size, lr=self.lr, momentum=self.momentum, nesterov=False,
            weight_decay=self.weight_decay, schedule="constant", warmup=0.0, precision=task.recipe.precision,
        )


@register_method("neggrad-plus", NegGradPlusConfig)
def neggrad_plus(model, task, config: NegGradPlusConfig):
    """NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): descend
    alpha × the retain cross-entropy while ascending (1 − alpha) × the forget cross-entropy, each
    batch through its own forward pass."""

    def loss(student, batch, state):
        (xr, yr), (xf, yf) = batch["retain"], batch["forget"]
        retain_logits = student(xr)
        forget_logits = student(xf)
        state.correct += int((retain_logits.argmax(1) == yr).sum())
        state.seen += len(yr)
        forget_loss = bounded_ascent_loss(forget_logits, yf, task.num_classes) if config.ascent_ceiling else F.cross_entropy(forget_logits, yf)
        return config.alpha * F.cross_entropy(retain_logits, yr) - (1 - config.alpha) * forget_loss

    data = {"retain": task.retain, "forget": Source(task.forget.x, task.forget.y, config.forget_batch)}
    guard = retain_guard(model, task, config.retain_floor, config.check_every) if config.retain_floor > 0 else None
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, on_step=guard, description="neggrad-plus")
    return model
