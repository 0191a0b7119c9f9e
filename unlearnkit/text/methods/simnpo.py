import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.text.methods.common import LMConfig, both, sequence_logprob, token_nll
from unlearnkit.train import fit


class SimNPOConfig(LMConfig):
    beta: float = Field(2.5, json_schema_extra=searched(0.5, 5.0, log=True), gt=0, description="inverse temperature")
    gamma: float = Field(0.0, ge=0, description="reward margin")
    retain_weight: float = Field(1.0, json_schema_extra=searched(0.1, 2.0, log=True), ge=0, description="weight of the retain rows' next-token loss")


@register_method("simnpo", SimNPOConfig, modality="text")
def simnpo(model, task, config: SimNPOConfig):
    """SimNPO (Fan et al. 2024): NPO without the reference model, on the length-normalized
    log-likelihood, −(2/β)·log σ(−(β/|y|)·log π − γ), so that short and long rows are forgotten
    alike; plus the retain rows' loss."""

    def loss(student, batch, state):
        forget_logits, yf, retain_logits, yr = both(student, batch)
        logp, length = sequence_logprob(forget_logits, yf)
        forget_loss = -2 / config.beta * F.logsigmoid(-config.beta * logp / length - config.gamma).mean()
        return forget_loss + config.retain_weight * token_nll(retain_logits, yr)

    fit(model, config.sources(task), config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="simnpo")
    return model
