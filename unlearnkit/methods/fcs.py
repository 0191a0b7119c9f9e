import math

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, kl_to_uniform, searched
from unlearnkit.train import Recipe, Source, fit


class FCSConfig(FitConfig):
    """Defaults: the write-up's temperature 1.15, uniform pass at lr 0.005 and forget rounds at
    lr 3e-4 against retain rounds at 1e-3 × 256/64 (the ratio 0.075 kept as `forget_scale`).
    Its 8 epochs of alternating rounds become 4 rounds that share one pass over the retain set
    at lr 0.2, finetune's validated rate: with forget rounds of one pass over the forget set in
    batches of 256, that keeps the method within 0.2× the retrain's time. Not yet tuned:
    `unlearnkit tune fcs`."""

    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="peak learning rate of the retain rounds (cosine decay over the whole run)")
    rounds: int = Field(4, json_schema_extra=searched(1, 8), ge=1, description="forget/retain round pairs; the retain rounds share `epochs` passes over the retain set")
    forget_scale: float = Field(0.075, json_schema_extra=searched(0.01, 1.0, log=True), gt=0, description="the forget rounds' step size relative to the retain rounds' (the write-up's 3e-4 against 4e-3)")
    temperature: float = Field(1.15, gt=0, description="temperature of the contrastive forget loss")
    uniform_lr: float = Field(0.005, ge=0, description="learning rate of the first pass over the forget set, toward uniform outputs (0: skip it)")
    forget_batch: int = Field(256, ge=1, description="forget images per step of the uniform pass and the forget rounds")


def contrastive_forget_loss(forget_logits: torch.Tensor, retain_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """−log softmax of every forget output's similarity to every retain output, averaged:
    smallest when each forget output is equally (un)like all retain outputs, so that nothing
    singles out the class it was memorized as."""
    similarity = forget_logits.float() @ retain_logits.float().T / temperature
    return -F.log_softmax(similarity, dim=1).mean()


@register_method("fcs", FCSConfig)
def forget_contrast_strengthen(model, task, config: FCSConfig):
    """Erase then repair, the NeurIPS 2023 unlearning challenge's 1st place: one pass pushing
    the forget images' outputs toward uniform, then rounds that alternate a contrastive forget
    round (each forget output pulled away from every retain output alike) and a retain round of
    cross-entropy. Both kinds of round are one training run, so a crash resumes bitwise."""
    forget = Source(task.forget.x, task.forget.y, config.forget_batch)
    if config.uniform_lr > 0:
        uniform = Recipe(epochs=1, batch_size=config.forget_batch, lr=config.uniform_lr, momentum=0.9, weight_decay=0.0,
                         schedule="constant", warmup=0.0, precision=task.recipe.precision)
        fit(model, forget, uniform, seed=task.seed, loss=lambda model, batch, state: kl_to_uniform(model(batch["data"][0])), description="fcs (uniform)")

    recipe = config.recipe(task)
    retain_steps_per_pass = max(len(task.retain) // min(recipe.batch_size, len(task.retain)), 1)
    forget_steps = math.ceil(len(forget) / min(config.forget_batch, len(forget)))
    retain_steps = max(round(config.epochs * retain_steps_per_pass / config.rounds), 1)
    cycle = forget_steps + retain_steps

    def alternating(model, batch, state):
        x_retain, y_retain = batch["retain"]
        if state.step % cycle < forget_steps:
            with torch.no_grad():
                anchors = model(x_retain)
            return config.forget_scale * contrastive_forget_loss(model(batch["forget"][0]), anchors, config.temperature)
        logits = model(x_retain)
        state.correct += int((logits.argmax(1) == y_retain).sum())
        state.seen += len(y_retain)
        return F.cross_entropy(logits, y_retain)

    # fit counts steps in passes over its first source; these epochs make it take exactly
    # `rounds` cycles of forget and retain steps.
    recipe = recipe.model_copy(update={"epochs": config.rounds * cycle / retain_steps_per_pass})
    fit(model, {"retain": task.retain, "forget": forget}, recipe, seed=task.seed, loss=alternating, checkpoint=task.checkpoint, description="fcs")
    return model
