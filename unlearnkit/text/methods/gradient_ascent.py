"""Gradient ascent (Jang, Yoon, Yang, Cha, Lee, Logeswaran, Seo: "Knowledge Unlearning for
Mitigating Privacy Risks in Language Models", ACL 2023; the TOFU baseline).

Reference: locuslab/tofu @ bdc209e, dataloader.py lines 93-99 (`grad_ascent`: the negated mean
token NLL of the forget rows, nothing else); the same as locuslab/open-unlearning @ d3d7cf9,
src/trainer/unlearn/grad_ascent.py lines 5-14.

Departures from the reference (each with its reason):
- none in the update rule; epochs, learning rate, its cosine schedule and weight decay are
  tuned for our presets.
"""

from unlearnkit.methods import register_method
from unlearnkit.text.methods.common import LMConfig, token_nll
from unlearnkit.train import Source, fit


@register_method("gradient-ascent", LMConfig, modality="text")
def gradient_ascent(model, task, config: LMConfig):
    """Gradient ascent on the forget rows' next-token loss (Jang et al. 2023), nothing else: the
    simplest method, known to wreck the model once the loss climbs."""

    def loss(student, batch, state):
        x, y = batch["forget"]
        return -token_nll(student(x), y)

    data = {"forget": Source(task.forget.x, task.forget.y, config.forget_batch)}
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="gradient-ascent")
    return model
