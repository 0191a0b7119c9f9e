"""Prune-L1: the seed study's "CNN pruning" method.

Reference: none — the seed study (an unpublished write-up, see docs/results.md "Against the
seed study's table") published no code; this is the seed's own implementation of its
description, filter pruning by L1 norm (Li et al., "Pruning Filters for Efficient ConvNets",
ICLR 2017) followed by an L1-penalized recovery on the retain set (as in l1-sparse, Jia et al.,
"Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023). The rule: in each prunable
group (a convolution and the batch norm after it; a ResNet's stem is left whole), the `ratio`
of filters with the smallest L1 norm (scope "layer"; with scope "global", the smallest mean |w|
over all layers) get their kernel, bias and the batch norm's scale and shift set to zero and held
there; then cross-entropy + `l1` × Σ|w| over the weight matrices and kernels trains the rest on
the retain set.

Departures from the reference (each with its reason):
- none: the rule is the seed's own; the kit's SGD (Nesterov momentum) with cosine decay.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, l1_norm, searched
from unlearnkit.models.interface import require_prunable
from unlearnkit.train import fit


class PruneL1Config(FitConfig):
    """Defaults: `ratio` 0.5, chosen on val from 0.3 and 0.5."""

    ratio: float = Field(0.5, json_schema_extra=searched(0.1, 0.8), ge=0, lt=1, description="fraction of filters removed")
    scope: Literal["layer", "global"] = Field("layer", description="rank filters within each layer, or across all layers by mean |w|")
    l1: float = Field(5e-5, json_schema_extra=searched(1e-06, 0.001, log=True), ge=0, description="weight of the L1 penalty (sum of |w| over weight matrices and kernels) in the recovery")


def conv_bn_pairs(model: nn.Module, method: str = "pruning") -> list[tuple[str, nn.Module, str | None, nn.Module | None]]:
    """The model's prunable groups (`unlearnkit.models.interface`) as (name, layer, norm name,
    norm); a model without any is refused in one line."""
    return [(g.name, g.layer, g.norm_name, g.norm) for g in require_prunable(model, method)]


def filters_to_keep(scores: dict[str, torch.Tensor], ratio: float, scope: str) -> dict[str, torch.Tensor]:
    """Per filter, True unless its score is among the lowest `ratio` of its layer (scope
    "layer") or of all layers together (scope "global")."""
    if scope == "global":
        threshold = torch.quantile(torch.cat([s.flatten() for s in scores.values()]).float(), ratio)
        return {name: s > threshold for name, s in scores.items()}
    keep = {}
    for name, s in scores.items():
        mask = torch.ones_like(s, dtype=torch.bool)
        mask[torch.argsort(s)[: int(ratio * s.numel())]] = False
        keep[name] = mask
    return keep


def mean_abs_weight(pairs) -> dict[str, torch.Tensor]:
    """The L1 norm of each filter over its size, so that layers compare in the global scope."""
    return {name: conv.weight.detach().abs().flatten(1).mean(1) for name, conv, _, _ in pairs}


def prune_and_recover(model, task, keep: dict[str, torch.Tensor], config: PruneL1Config, description: str):
    """Zero the filters that `keep` drops (conv weights and the following batch-norm scale and
    shift), then fine-tune on the retain set with an L1 penalty, holding them at zero."""
    mask = {}
    with torch.no_grad():
        for name, layer, norm_name, norm in conv_bn_pairs(model, description):
            units = keep[name].to(layer.weight.device)
            layer.weight[~units] = 0
            mask[f"{name}.weight"] = units.view(-1, *[1] * (layer.weight.ndim - 1)).expand_as(layer.weight)
            if layer.bias is not None:
                layer.bias[~units] = 0
                mask[f"{name}.bias"] = units
            if norm is not None:
                norm.weight[~units], norm.bias[~units] = 0, 0
                mask[f"{norm_name}.weight"], mask[f"{norm_name}.bias"] = units, units

    def loss(student, batch, state):
        x, y = batch["data"]
        return F.cross_entropy(student(x), y) + config.l1 * l1_norm(student)

    fit(model, task.retain, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, mask=mask, description=description)
    return model


@register_method("prune-l1", PruneL1Config)
def prune_l1(model, task, config: PruneL1Config):
    """The seed's method: remove the filters with the smallest L1 norm (weights and the following
    batch-norm scale and shift set to zero), then fine-tune on the retain set with an L1 penalty,
    holding the removed filters at zero."""
    keep = filters_to_keep(mean_abs_weight(conv_bn_pairs(model, "prune-l1")), config.ratio, config.scope)
    return prune_and_recover(model, task, keep, config, "prune-l1")
