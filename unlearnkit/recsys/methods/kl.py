"""KL for recommenders (the seed study's distillation rule, after Bad Teacher, Chundawat et al.,
AAAI 2023): the student, started from the original, matches the original's softmax over the
whole catalogue for the retained users in each batch, and is pulled to a uniform softmax —
no item preferred — for the deleted users: KL(teacher_T ‖ student_T) × T² + forget_weight ×
KL(uniform ‖ student), each averaged over its users.

A step scores the whole catalogue for its users (the softmax needs every item); at the presets'
catalogue sizes that costs about as much as the BPR pairs.
"""

from __future__ import annotations

from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import kl_to_teacher, kl_to_uniform, searched, teacher_probs
from unlearnkit.recsys.methods.common import RecsysFitConfig
from unlearnkit.train import Source, fit


class RecsysKLConfig(RecsysFitConfig):
    """Defaults: two passes at lr 0.01, forget weight 1, temperature 1, set by hand on
    recsys-default (seed 0) from a handful of runs: one pass at lr 0.005 left the deleted users'
    lists almost as they were."""

    lr: float = Field(0.01, json_schema_extra=searched(0.0005, 0.05, log=True), gt=0, description="peak learning rate (cosine decay)")
    forget_weight: float = Field(1.0, json_schema_extra=searched(0.1, 5.0, log=True), ge=0, description="weight of the forget term (KL from uniform)")
    temperature: float = Field(1.0, json_schema_extra=searched(0.5, 4.0, log=True), gt=0, description="softening of the teacher's scores over items")


@register_method("kl", RecsysKLConfig, modality="recsys")
def kl(model, task, config: RecsysKLConfig):
    """Distil the original's item distribution on the retained users; pull the deleted users'
    item distribution to uniform."""
    teacher = task.original.eval()

    def loss(student, batch, state):
        retain_users, forget_users = batch["retain"][0], batch["forget"][0]
        retain_term = kl_to_teacher(student(retain_users), teacher_probs(teacher, retain_users, config.temperature), config.temperature)
        return retain_term + config.forget_weight * kl_to_uniform(student(forget_users))

    data = {"retain": task.retain, "forget": Source(task.forget.x, task.forget.y, config.forget_batch)}
    fit(model, data, config.recipe(task), seed=task.seed, loss=loss, checkpoint=task.checkpoint, description="kl")
    return model
