"""SimNPO (Fan, Liu, Lin, Jia, Zhang, Chang, Liu: "Simplicity Prevails: Rethinking Negative
Preference Optimization for LLM Unlearning", 2024).

Reference: OPTML-Group/Unlearn-Simple @ f1a355d, TOFU/dataloader.py lines 278-289 (the
`simnpo_grad_diff` loss: npo_coeff·(−(2/β)·log σ(β·(NLL/|y| − γ))).mean() + grad_diff_coeff·retain
NLL) and TOFU/data_module.py lines 280-288 (`get_batch_loss`: each row's summed NLL);
TOFU/config/forget.yaml lines 18-23 (npo_coeff 0.1375, grad_diff_coeff 1.0, β 2.5, γ 0: our
defaults). The same loss is open-unlearning's (locuslab/open-unlearning @ d3d7cf9,
src/trainer/unlearn/simnpo.py lines 13-31; configs/trainer/SimNPO.yaml: β 4.5, coefficient 0.125).

Departures from the reference (each with its reason):
- none in the update rule; epochs, learning rate, its cosine schedule, weight decay and the
  retain rows per step are tuned for our presets (the reference pairs one retain row with each
  forget row; the two terms are separate means, so this changes only the retain term's noise).
"""

import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.text.methods.common import LMConfig, both, sequence_logprob, token_nll
from unlearnkit.train import fit


class SimNPOConfig(LMConfig):
    """Defaults are the authors' TOFU config (Unlearn-Simple TOFU/config/forget.yaml)."""

    beta: float = Field(2.5, json_schema_extra=searched(0.5, 5.0, log=True), gt=0, description="inverse temperature β")
    delta: float = Field(0.0, ge=0, description="margin δ subtracted from each forget row's mean token NLL (the code's γ)")
    forget_weight: float = Field(0.1375, ge=0, description="weight of the forget term (the authors' npo_coeff)")
    retain_weight: float = Field(1.0, json_schema_extra=searched(0.1, 2.0, log=True), ge=0, description="weight of the retain rows' next-token loss (grad_diff_coeff)")


@register_method("simnpo", SimNPOConfig, modality="text")
def simnpo(model, task, config: SimNPOConfig):
    """SimNPO (Fan et al. 2024): NPO without the reference model, on the length-normalized
    negative log-likelihood, −(2/β)·log σ(β·(NLL/|y| − δ)), so that short and long rows are
    forgotten alike; plus the retain rows' loss."""

    def loss(student, batch, state):
        forget_logits, yf, retain_logits, yr = both(student, batch)
        logp, length = sequence_logprob(forget_logits, yf)
        forget_loss = -F.logsigmoid(config.beta * (-logp / length - config.delta)).mean() * 2 / config.beta
        return config.forget_weight * forget_loss + config.retain_weight * token_nll(retain_logits, yr)

    fit(model, config.sources(task), config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="simnpo")
    return model
