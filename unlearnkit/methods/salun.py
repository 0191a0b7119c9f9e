"""SalUn: saliency unlearning (Fan, Liu, Zhang, Wei, Wong, Liu, "SalUn: Empowering Machine
Unlearning via Gradient-based Weight Saliency in Both Image Classification and Generation",
ICLR 2024).

Reference: OPTML-Group/Unlearn-Saliency @ a6e89fd17ff737c24c6aa16c9574469a234ffd91,
Classification/generate_mask.py lines 14-82 (the saliency map: the original model in eval mode,
the gradients of the forget set's batch-mean cross-entropy summed over batches, their magnitudes
ranked across all parameters at once, the top fraction kept; README: `with_0.5.pt`, a fraction
of 0.5); Classification/unlearn/RL.py lines 11-35 (gradients masked before each step, masked-out
weights put back after it) and 109-159 (the CIFAR-10 branch: each epoch a pass over the forget
set with labels drawn uniformly over all classes per batch, then a pass over the retain set);
Classification/unlearn/impl.py lines 68-73, 95-97, 102-114 (one SGD optimizer with momentum and
weight decay, no Nesterov, constant learning rate over the unlearning epochs).

Departures from the reference (each with its reason):
- none in the update rule; the learning rate and the number of epochs are ours, set for our presets.
- fit draws whole batches only: the last forget or retain images of a pass that do not fill a
  batch wait for the next pass's shuffle (the training loop's batching).
- ties at the saliency threshold are broken by `torch.topk` instead of `argsort`'s order; the
  count of salient entries is the reference's, int(fraction × parameters).

Options of ours (off by default): `mixed` — our earlier variant: one pass over the retain set,
each step adding `forget_batch` masked forget images with fixed random wrong labels, cosine decay.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.methods.random_labels import RandomLabelsConfig, forget_then_retain, mixed_relabelling
from unlearnkit.train import Source, autocast, model_device, to_float


class SalUnConfig(RandomLabelsConfig):
    """Defaults: the reference's saliency fraction 0.5, one epoch at a constant learning rate.
    `mixed` restores our earlier variant, whose learning rate 0.3 was chosen on val."""

    lr: float = Field(0.3, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="learning rate (constant; peak of a cosine decay when mixed)")
    saliency: float = Field(0.5, json_schema_extra=searched(0.1, 0.9), gt=0, le=1, description="fraction of all weights that may change: those of largest forget-loss gradient magnitude")


def saliency_mask(model, forget: Source, fraction: float, batch_size: int = 256, precision: str = "auto") -> dict[str, torch.Tensor]:
    """True for the int(`fraction` × count) entries, ranked across all parameters at once, whose
    gradient of the forget loss is largest in magnitude: the loss of each batch of `batch_size`
    is its mean cross-entropy and the gradients of the batches are summed, in eval mode, as
    generate_mask.py computes them."""
    model.eval()
    model.zero_grad(set_to_none=True)
    device = model_device(model)
    for start in range(0, len(forget), batch_size):
        x, y = forget.x[start : start + batch_size], forget.y[start : start + batch_size]
        with autocast(device, precision):
            loss = F.cross_entropy(model(to_float(x)), y)
        loss.backward()
    grads = {name: p.grad.detach().abs().float() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    scores = torch.cat([g.flatten() for g in grads.values()])
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    chosen[torch.topk(scores, max(int(fraction * scores.numel()), 1), sorted=False).indices] = True
    mask, start = {}, 0
    for name, g in grads.items():
        mask[name] = chosen[start : start + g.numel()].view_as(g)
        start += g.numel()
    return mask


@register_method("salun", SalUnConfig)
def salun(model, task, config: SalUnConfig):
    """Weight saliency (Fan et al., SalUn, ICLR 2024): random-label unlearning (each epoch a
    forget pass with random labels, then a retain pass) that changes only the weights most
    salient to the forget loss; every other weight is held exactly."""
    mask = saliency_mask(model, task.forget, config.saliency, batch_size=task.recipe.batch_size, precision=task.recipe.precision)
    unlearn = mixed_relabelling if config.mixed else forget_then_retain
    return unlearn(model, task, config, mask=mask, description="salun")
