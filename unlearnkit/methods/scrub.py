import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, kl_to_teacher, searched, teacher_probs
from unlearnkit.train import Source, fit


class ScrubConfig(FitConfig):
    max_fraction: float = Field(0.5, json_schema_extra=searched(0.1, 0.9), ge=0, le=1, description="share of the run in which every other step is a max-step on forget")
    alpha: float = Field(0.001, json_schema_extra=searched(0.0001, 0.1, log=True), ge=0, description="weight of the KL to the teacher in min-steps (the SCRUB paper's 0.001)")
    gamma: float = Field(0.99, ge=0, description="weight of the cross-entropy in min-steps (the paper's 0.99)")
    temperature: float = Field(4.0, gt=0, description="distillation temperature (the paper's 4)")
    lr: float = Field(0.002, json_schema_extra=searched(0.0005, 0.02, log=True), gt=0, description="peak learning rate; chosen on val from 0.05, 0.01, 0.005, 0.002 (0.005 and up collapse the model)")


@register_method("scrub", ScrubConfig)
def scrub(model, task, config: ScrubConfig):
    """SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): a student
    started from the original alternates max-steps (move away from the teacher on forget) and
    min-steps (stay close to the teacher on retain, plus cross-entropy); max-steps stop after
    the first part of the run."""
    teacher = task.original.eval()

    def loss(student, batch, state):
        if state.step < config.max_fraction * state.total_steps and state.step % 2 == 0:
            x, _ = batch["forget"]
            return -kl_to_teacher(student(x), teacher_probs(teacher, x, config.temperature), config.temperature)
        x, y = batch["retain"]
        logits = student(x)
        return config.alpha * kl_to_teacher(logits, teacher_probs(teacher, x, config.temperature), config.temperature) + config.gamma * F.cross_entropy(logits, y)

    data = {"retain": task.retain, "forget": Source(task.forget.x, task.forget.y, config.forget_batch)}
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="scrub")
    return model
