"""NPO (Zhang, Lin, Bai, Mei: "Negative Preference Optimization: From Catastrophic Collapse to
Effective Unlearning", COLM 2024), with the retain rows' loss (NPO+RT, open-unlearning's NPO).

Reference: locuslab/open-unlearning @ d3d7cf9, src/trainer/unlearn/npo.py lines 12-32 (γ·NPO loss
on the forget rows + α·retain NLL) and src/trainer/utils.py lines 34-44 (`compute_batch_nll`: each
row's summed NLL) and 47-67 (`compute_dpo_loss` with only a losing answer: −(2/β)·log σ(−β·(log π −
log π_ref)), the reference model the frozen original); configs/trainer/NPO.yaml lines 5-9 (β 0.1,
α 1, γ 1: our defaults).

Departures from the reference (each with its reason):
- none in the update rule; epochs, learning rate, its cosine schedule, weight decay and the
  retain rows per step are tuned for our presets (the reference pairs one retain row with each
  forget row; the two terms are separate means, so this changes only the retain term's noise).
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.text.methods.common import LMConfig, both, sequence_logprob, token_nll
from unlearnkit.train import fit


class NPOConfig(LMConfig):
    beta: float = Field(0.1, json_schema_extra=searched(0.02, 1.0, log=True), gt=0, description="inverse temperature β of the preference loss")
    retain_weight: float = Field(1.0, json_schema_extra=searched(0.1, 2.0, log=True), ge=0, description="weight α of the retain rows' next-token loss (0: plain NPO)")


@register_method("npo", NPOConfig, modality="text")
def npo(model, task, config: NPOConfig):
    """Negative Preference Optimization (Zhang et al. 2024): −(2/β)·log σ(−β·log(π/π_ref)) on each
    forget row, the DPO loss with only a rejected answer, which slows down as the row's
    likelihood falls below the original's instead of diverging as gradient ascent does; plus the
    retain rows' loss."""
    reference = task.original.eval()

    def loss(student, batch, state):
        forget_logits, yf, retain_logits, yr = both(student, batch)
        logp, _ = sequence_logprob(forget_logits, yf)
        with torch.no_grad():
            ref_logp, _ = sequence_logprob(reference(batch["forget"][0]), yf)
        forget_loss = -2 / config.beta * F.logsigmoid(-config.beta * (logp - ref_logp)).mean()
        return forget_loss + config.retain_weight * token_nll(retain_logits, yr)

    fit(model, config.sources(task), config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="npo")
    return model
