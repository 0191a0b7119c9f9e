import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, bounded_ascent_loss, retain_guard, searched
from unlearnkit.train import Source, fit


class NegGradPlusConfig(FitConfig):
    forget_weight: float = Field(0.5, json_schema_extra=searched(0.05, 2.0, log=True), ge=0, description="weight of the ascended forget loss against the descended retain loss; chosen on val from 0.2, 0.5, 1.0 (and 0.25 or 1 epoch)")
    retain_floor: float = Field(0.9, ge=0, le=1, description="stop when retain accuracy falls below this fraction of the original's")
    check_every: int = Field(5, ge=1, description="steps between retain-accuracy checks")
    lr: float = Field(0.05, json_schema_extra=searched(0.002, 0.2, log=True), gt=0, description="peak learning rate (cosine decay). With small batches (32 retain images a step, as in the contract task) 0.0125: at 0.05 retain accuracy dips under the guard's floor for long enough that the guard steps back to the input weights")
    ascent_ceiling: bool = Field(True, description="stop ascending an example's loss once it passes chance level, log(classes): an unbounded ascent blows up a step after it starts on a memorized forget set, and the guard then has to step back over the progress made")


@register_method("neggrad-plus", NegGradPlusConfig)
def neggrad_plus(model, task, config: NegGradPlusConfig):
    """NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): descend
    the retain loss while ascending the forget loss (per example, up to chance level), with the
    same retain-accuracy guard as gradient ascent."""

    def loss(student, batch, state):
        (xr, yr), (xf, yf) = batch["retain"], batch["forget"]
        logits = student(torch.cat([xr, xf]))
        forget_loss = bounded_ascent_loss(logits[len(xr) :], yf, task.num_classes, config.ascent_ceiling)
        return F.cross_entropy(logits[: len(xr)], yr) - config.forget_weight * forget_loss

    data = {"retain": task.retain, "forget": Source(task.forget.x, task.forget.y, config.forget_batch)}
    guard = retain_guard(model, task, config.retain_floor, config.check_every)
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, on_step=guard, description="neggrad-plus")
    return model
