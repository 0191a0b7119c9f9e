"""KL: the seed study's distillation method, after Bad Teacher (Chundawat et al., "Can Bad
Teaching Induce Forgetting? Unlearning in Deep Networks Using an Incompetent Teacher", AAAI 2023).

Reference: none — the seed study (an unpublished write-up, see docs/results.md "Against the
seed study's table") published no code; this is the seed's own variant of Bad Teacher
(vikram2000b/bad-teaching-unlearning; our faithful version of it is `bad-teacher`): the student
starts from the original and matches the original's softened outputs on retain images, as Bad
Teacher's competent teacher, while on forget images it is pulled to the uniform output by
KL(uniform ‖ student) where Bad Teacher matches a randomly initialized (incompetent) teacher.
The two terms are summed, the forget term weighted by `forget_weight`, over one forward pass of
the retain and forget images of a step together (batch-norm statistics shared), each term
averaged over its images; the retain term is KL(teacher_T ‖ student_T) × T².

Departures from the reference (each with its reason):
- none: the rule is the seed's own; the kit's SGD (Nesterov momentum) with cosine decay.
"""

import torch
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, kl_to_teacher, kl_to_uniform, searched, teacher_probs
from unlearnkit.train import Source, fit


class KLConfig(FitConfig):
    """Defaults: `forget_weight` 0.5, chosen on val from 0.1, 0.3, 0.5 and 1.0."""

    forget_weight: float = Field(0.5, json_schema_extra=searched(0.05, 2.0, log=True), ge=0, description="weight of the forget term (KL from uniform) against the retain term")
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
