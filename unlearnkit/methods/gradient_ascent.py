from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, bounded_ascent_loss, retain_guard, searched
from unlearnkit.train import Source, fit


class GradientAscentConfig(FitConfig):
    epochs: float = Field(1.0, json_schema_extra=searched(0.25, 16.0, log=True), gt=0, description="passes over the forget set")
    lr: float = Field(0.01, json_schema_extra=searched(0.0005, 0.05, log=True), gt=0, description="peak learning rate (cosine decay); chosen on val from 0.005, 0.01, 0.02. With small batches (8 forget images a step, as in the contract task) 0.002 over 48 passes: at 0.01 retain accuracy fell under the guard's floor within about ten steps, and at 0.005 the guard stopped the ascent at forget accuracy 0.38–0.81 depending on the CPU's kernels (0.28–0.38 at 0.002)")
    retain_floor: float = Field(0.9, ge=0, le=1, description="stop when retain accuracy falls below this fraction of the original's")
    check_every: int = Field(2, ge=1, description="steps between retain-accuracy checks")
    ascent_ceiling: bool = Field(True, description="stop ascending an example's loss once it passes chance level, log(classes) (see methods.common.bounded_ascent_loss)")


@register_method("gradient-ascent", GradientAscentConfig)
def gradient_ascent(model, task, config: GradientAscentConfig):
    """NegGrad: ascend the cross-entropy on the forget set (per example, up to chance level), stopping (and stepping back to the
    last good weights) before retain accuracy falls below the floor (as in Kurmanji et al., 2023)."""

    def loss(student, batch, state):
        x, y = batch["forget"]
        return -bounded_ascent_loss(student(x), y, task.num_classes, config.ascent_ceiling)

    forget = Source(task.forget.x, task.forget.y, config.forget_batch)
    guard = retain_guard(model, task, config.retain_floor, config.check_every)
    fit(model, {"forget": forget}, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, on_step=guard, description="gradient-ascent")
    return model
