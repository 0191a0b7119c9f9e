import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.text.methods.common import LMConfig, both, token_nll
from unlearnkit.train import IGNORE_INDEX, fit


class KLConfig(LMConfig):
    forget_weight: float = Field(1.0, json_schema_extra=searched(0.1, 2.0, log=True), ge=0, description="weight of the ascended forget loss against the retain KL")


@register_method("kl", KLConfig, modality="text")
def kl(model, task, config: KLConfig):
    """Gradient ascent on the forget rows with, on retain rows, the KL divergence from the
    original's next-token distribution to the model's (the TOFU KL baseline): forget the people
    while predicting everything else as the original did."""
    reference = task.original.eval()

    def loss(student, batch, state):
        forget_logits, yf, retain_logits, yr = both(student, batch)
        with torch.no_grad():
            ref = F.log_softmax(reference(batch["retain"][0]).float(), dim=-1)
        keep = (yr != IGNORE_INDEX)[..., None]
        divergence = (ref.exp() * (ref - F.log_softmax(retain_logits.float(), dim=-1)) * keep).sum() / keep.sum()
        return divergence - config.forget_weight * token_nll(forget_logits, yf)

    fit(model, config.sources(task), config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="kl")
    return model
