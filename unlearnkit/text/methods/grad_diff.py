"""Gradient difference (Liu, Liu, Stone: "Continual Learning and Private Unlearning", CoLLAs 2022;
the TOFU baseline of Maini, Feng, Schwarzschild, Lipton, Kolter, COLM 2024).

Reference: locuslab/tofu @ bdc209e, dataloader.py lines 101-111 (`grad_diff`: −forget NLL +
retain NLL, each the model's mean token loss); the same as locuslab/open-unlearning @ d3d7cf9,
src/trainer/unlearn/grad_diff.py lines 41-60 (γ·(−forget NLL) + α·retain NLL) with
configs/trainer/GradDiff.yaml lines 5-8 (γ 1, α 1: our defaults).

Departures from the reference (each with its reason):
- none in the update rule; epochs, learning rate, its cosine schedule, weight decay and the
  retain rows per step are tuned for our presets (the reference pairs one retain row with each
  forget row; the two terms are separate means, so this changes only the retain term's noise).
"""

from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.text.methods.common import LMConfig, both, token_nll
from unlearnkit.train import fit


class GradDiffConfig(LMConfig):
    forget_weight: float = Field(1.0, json_schema_extra=searched(0.1, 2.0, log=True), ge=0, description="weight γ of the ascended forget loss (the retain loss has weight 1)")


@register_method("grad-diff", GradDiffConfig, modality="text")
def grad_diff(model, task, config: GradDiffConfig):
    """Gradient difference (Liu et al. 2022, a TOFU baseline): ascend the forget rows' loss while
    descending the retain rows' loss."""

    def loss(student, batch, state):
        forget_logits, yf, retain_logits, yr = both(student, batch)
        return token_nll(retain_logits, yr) - config.forget_weight * token_nll(forget_logits, yf)

    fit(model, config.sources(task), config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="grad-diff")
    return model
