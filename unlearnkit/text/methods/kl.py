"""KL minimization, the TOFU baseline (Maini, Feng, Schwarzschild, Lipton, Kolter: "TOFU: A Task
of Fictitious Unlearning for LLMs", COLM 2024): gradient ascent on the forget rows with the KL
divergence to the original on the retain rows.

Reference: locuslab/tofu @ bdc209e, dataloader.py lines 113-132 (`KL`: −forget NLL +
kl_div(log p_model, log p_original, reduction="batchmean", log_target=True) over the retain
batch's logits flattened to (rows × positions, vocabulary): KL(original ‖ model) summed over every
position, the padding included, divided by rows × positions); the same as
locuslab/open-unlearning @ d3d7cf9, src/trainer/utils.py lines 17-31 (`compute_kl_divergence`)
with src/trainer/unlearn/grad_diff.py lines 25-60 (retain_loss_type KL, γ 1, α 1).

Departures from the reference (each with its reason):
- none in the update rule; the retain batch is padded to its longest row, as open-unlearning's
  collator pads it (TOFU pads every row to 500 tokens: the same sum over more positions); epochs,
  learning rate, its cosine schedule, weight decay and the retain rows per step are tuned for
  our presets.

Options of ours (off by default): `targets_only` — the KL only at positions with a next-token
target, averaged over them, so that padding neither counts nor dilutes it.
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.text.methods.common import LMConfig, both, padded_length, token_nll
from unlearnkit.train import IGNORE_INDEX, fit


class KLConfig(LMConfig):
    forget_weight: float = Field(1.0, json_schema_extra=searched(0.1, 2.0, log=True), ge=0, description="weight of the ascended forget loss (the retain KL has weight 1)")
    targets_only: bool = Field(False, description="KL averaged over the positions with a target instead of over every padded position (ours)")


@register_method("kl", KLConfig, modality="text")
def kl(model, task, config: KLConfig):
    """Gradient ascent on the forget rows with, on retain rows, the KL divergence from the
    original's next-token distribution to the model's (the TOFU KL baseline): forget the people
    while predicting everything else as the original did."""
    reference = task.original.eval()

    def loss(student, batch, state):
        forget_logits, yf, retain_logits, yr = both(student, batch)
        length = padded_length(yr)  # a causal model's outputs up to here do not depend on what follows
        with torch.no_grad():
            ref = F.log_softmax(reference(batch["retain"][0][:, :length]).float(), dim=-1)
        current = F.log_softmax(retain_logits[:, :length].float(), dim=-1)
        if config.targets_only:
            keep = (yr[:, :length] != IGNORE_INDEX)[..., None]
            divergence = (ref.exp() * (ref - current) * keep).sum() / keep.sum()
        else:
            divergence = F.kl_div(current.flatten(0, 1), ref.flatten(0, 1), reduction="batchmean", log_target=True)
        return divergence - config.forget_weight * token_nll(forget_logits, yf)

    fit(model, config.sources(task), config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="kl")
    return model
