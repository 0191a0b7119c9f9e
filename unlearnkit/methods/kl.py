import torch
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, kl_to_teacher, kl_to_uniform, searched, teacher_probs
from unlearnkit.train import Source, fit


class KLConfig(FitConfig):
    forget_weight: float = Field(0.5, json_schema_extra=searched(0.05, 2.0, log=True), ge=0, description="weight of the forget term against the retain term (chosen on val from 0.1, 0.3, 0.5, 1.0)")
    temperature: float = Field(1.0, json_schema_extra=searched(0.5, 8.0, log=True), gt=0, description="softening of the teacher's retain outputs")


@register_method("kl", KLConfig)
def kl(model, task, config: KLConfig):
    """The seed's KL method (after Bad Teacher, Chundawat et al. 2023): the student, started from
    the original, matches the original on retain images and a uniform output on forget images."""
    teacher = task.original.eval()

    def loss(student, batch, state):
        (xr, _), (xf, _) = batch["retain"], batch["forget"]
        logits = student(torch.cat([xr, xf]))
        retain_term = kl_to_teacher(logits[: len(xr)], teacher_probs(teacher, xr, config.temperature), config.temperature)
        return retain_term + config.forget_weight * kl_to_uniform(logits[len(xr) :])

    data = {"retain": task.retain, "forget": Source(task.forget.x, task.forget.y, config.forget_batch)}
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="kl")
    return model
