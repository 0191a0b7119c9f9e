"""Prune-cosine: the seed study's future work, prune-l1 with a cosine-similarity criterion.

Reference: none — the seed study (an unpublished write-up) proposed it as future work, without
code; this is the seed's own implementation. The rule: for each prunable group's layer, each
filter's mean response (its output map before the batch norm) over the images of each class is
taken on the forget set and on a seeded sample of `probe` retain images; over the classes the
forget set holds, the filter's two [classes × height × width] responses, flattened, give a
cosine similarity. The `ratio` of filters least similar (per layer, or over all layers with
scope "global") are removed and the model recovers on the retain set as in prune-l1.

Departures from the reference (each with its reason):
- none: the rule is the seed's own; the recovery is prune-l1's.
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.methods.prune_l1 import PruneL1Config, conv_bn_pairs, filters_to_keep, prune_and_recover
from unlearnkit.train import Source, autocast, model_device, to_float


class PruneCosineConfig(PruneL1Config):
    """Defaults: `ratio` 0.5, chosen on val from 0.3 and 0.5."""

    ratio: float = Field(0.5, json_schema_extra=searched(0.1, 0.8), ge=0, lt=1, description="fraction of filters removed, those least similar between forget and retain responses")
    probe: int = Field(2500, ge=10, description="retain images (a seeded sample) whose responses the forget set's are compared with")


@torch.no_grad()
def class_mean_responses(model, source: Source, num_classes: int, batch_size: int = 500, precision: str = "auto") -> dict[str, torch.Tensor]:
    """For each prunable layer, the mean output of each unit over the images of each class:
    name → [classes, units, ...] (a conv's maps; a linear layer's outputs, averaged over tokens)."""
    model.eval()
    device = model_device(model)
    pairs = conv_bn_pairs(model, "prune-cosine")
    sums: dict[str, torch.Tensor] = {}
    counts = torch.bincount(source.y.cpu(), minlength=num_classes).float()
    labels: torch.Tensor | None = None

    def hook(name):
        def record(module, inputs, output):
            if isinstance(module, torch.nn.Linear):  # units last ([batch, tokens, units]): bring them to dim 1
                output = output.movedim(-1, 1)
            per_class = torch.zeros((num_classes, *output.shape[1:]), dtype=torch.float32, device=output.device)
            per_class.index_add_(0, labels, output.float())
            sums[name] = sums[name] + per_class if name in sums else per_class
        return record

    handles = [conv.register_forward_hook(hook(name)) for name, conv, _, _ in pairs]
    try:
        for start in range(0, len(source), batch_size):
            labels = source.y[start : start + batch_size]
            with autocast(device, precision):
                model(to_float(source.x[start : start + batch_size]))
    finally:
        for handle in handles:
            handle.remove()
    return {name: (total.cpu() / counts.clamp_min(1).view(num_classes, *[1] * (total.ndim - 1))) for name, total in sums.items()}


def forget_retain_similarity(model, task, probe: int) -> dict[str, torch.Tensor]:
    """Per filter, the cosine similarity between its class-wise mean responses on forget images
    and on retain images (over the classes the forget set holds): low means forget-specific."""
    generator = torch.Generator().manual_seed(task.seed)
    retain = Source(*task.retain.batch(torch.randperm(len(task.retain), generator=generator)[:probe]))
    on_forget = class_mean_responses(model, task.forget, task.num_classes, precision=task.recipe.precision)
    on_retain = class_mean_responses(model, retain, task.num_classes, precision=task.recipe.precision)
    present = torch.bincount(task.forget.y.cpu(), minlength=task.num_classes) > 0
    similarity = {}
    for name, f in on_forget.items():
        f, r = f[present], on_retain[name][present]  # [classes, filters, h, w]
        similarity[name] = F.cosine_similarity(f.transpose(0, 1).flatten(1), r.transpose(0, 1).flatten(1), dim=1)
    return similarity


@register_method("prune-cosine", PruneCosineConfig)
def prune_cosine(model, task, config: PruneCosineConfig):
    """The seed's future work: prune-l1 with a cosine-similarity criterion. Filters whose
    class-wise mean responses on the forget set are least similar to those on retain images
    are removed, then the model recovers on the retain set as in prune-l1."""
    keep = filters_to_keep(forget_retain_similarity(model, task, config.probe), config.ratio, config.scope)
    return prune_and_recover(model, task, keep, config, "prune-cosine")
