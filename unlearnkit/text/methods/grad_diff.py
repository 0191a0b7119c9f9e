from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.text.methods.common import LMConfig, both, token_nll
from unlearnkit.train import fit


class GradDiffConfig(LMConfig):
    forget_weight: float = Field(1.0, json_schema_extra=searched(0.1, 2.0, log=True), ge=0, description="weight of the ascended forget loss against the descended retain loss")


@register_method("grad-diff", GradDiffConfig, modality="text")
def grad_diff(model, task, config: GradDiffConfig):
    """Gradient difference (Liu et al. 2022, a TOFU baseline): ascend the forget rows' loss while
    descending the retain rows' loss."""

    def loss(student, batch, state):
        forget_logits, yf, retain_logits, yr = both(student, batch)
        return token_nll(retain_logits, yr) - config.forget_weight * token_nll(forget_logits, yf)

    fit(model, config.sources(task), config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="grad-diff")
    return model
