import torch
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, kl_to_teacher, searched, teacher_probs
from unlearnkit.models.interface import reinitialized
from unlearnkit.train import Source, fit


class BadTeacherConfig(FitConfig):
    temperature: float = Field(1.0, json_schema_extra=searched(0.5, 8.0, log=True), gt=0, description="softening of both teachers' outputs")
    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="peak learning rate (cosine decay); chosen on val from 0.05, 0.1, 0.2")


@register_method("bad-teacher", BadTeacherConfig)
def bad_teacher(model, task, config: BadTeacherConfig):
    """Distil from a competent teacher (the original) on retain images and from an incompetent
    teacher (the same architecture, randomly initialized) on forget images (Chundawat et al.,
    "Can Bad Teaching Induce Forgetting?", AAAI 2023)."""
    good = task.original.eval()
    bad = reinitialized(model, task.seed).eval()

    def loss(student, batch, state):
        (xr, _), (xf, _) = batch["retain"], batch["forget"]
        logits = student(torch.cat([xr, xf]))
        targets = torch.cat([teacher_probs(good, xr, config.temperature), teacher_probs(bad, xf, config.temperature)])
        return kl_to_teacher(logits, targets, config.temperature)

    data = {"retain": task.retain, "forget": Source(task.forget.x, task.forget.y, config.forget_batch)}
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="bad-teacher")
    return model
