"""Selective Synaptic Dampening (Foster, Schoepf and Brintrup, "Fast Machine Unlearning Without
Retraining Through Selective Synaptic Dampening", AAAI 2024).

Reference: if-loops/selective-synaptic-dampening @ cdfdc0e35c1908e032a6e150d882b0fa17833f85,
src/ssd.py lines 151-180 (`calc_importance`: the squared gradient of the batch-mean cross-entropy,
summed over the loader's batches and divided by their number) and lines 182-217 (`modify_weight`:
where forget importance > selection_weighting × full importance, multiply the parameter by
min(dampening_constant × full importance / forget importance, 1)); src/forget_random_strategies.py
lines 311-345 (`ssd_tuning`: lower_bound 1, exponent 1, model in eval mode, forget importances
then full-training-set importances); src/forget_random_main.py lines 120-148 (the full training set
is the retain set followed by the forget set in one unshuffled loader of batch 128; forget loader
batch 128; dampening_constant λ = 1, selection_weighting α = 10).

Departures from the reference (each with its reason):
- none in the update rule. The training-data importances are cached per original model and data
  (they depend on nothing else), which changes no value.

Options of ours (off by default): `select` — choose α from the data (a quantile of the importance
ratios) instead of the fixed α, with λ scaled by the same factor.
"""

from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.fileio import atomic_write_bytes
from unlearnkit.methods import MethodConfig, register_method
from unlearnkit.methods.common import searched
from unlearnkit.train import Source, autocast, model_device, to_float


class SSDConfig(MethodConfig):
    """SSD's hyperparameters. A fixed α is knife-edge on small or memorized forget sets (the
    ratios' scale moves with the forget set's share of the data and with the kernels' rounding):
    `select` picks α as a quantile of the ratios instead."""

    alpha: float = Field(10.0, json_schema_extra=searched(1.0, 100.0, log=True), gt=0, description="selection weighting α: dampen entries whose forget importance exceeds α × their training importance")
    lam: float = Field(1.0, gt=0, description="dampening constant λ: scale a selected entry by min(λ × training importance / forget importance, 1)")
    batch_size: int = Field(128, ge=1, description="images per gradient of both importance estimates")
    select: float | None = Field(None, gt=0, lt=1, description="ours, off (None): α = the (1 − select) quantile of the importance ratios and λ × α/10")


def importances(model, sources: list[Source], batch_size: int, precision: str = "auto") -> dict[str, torch.Tensor]:
    """Diagonal Fisher information estimate: the squared gradient of the batch-mean cross-entropy,
    summed over batches of `batch_size` taken in order from the concatenation of `sources` (a
    batch may straddle two sources, as in the reference's ConcatDataset loader) and divided by
    the number of batches. Eval mode: batch-norm statistics stay fixed."""
    model.eval()
    device = model_device(model)
    total = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in model.named_parameters()}
    sizes = [len(source) for source in sources]
    count, batches = sum(sizes), 0
    for start in range(0, count, batch_size):
        xs, ys, offset = [], [], 0
        for source, size in zip(sources, sizes):
            low, high = max(start - offset, 0), min(start + batch_size - offset, size)
            if low < high:
                x, y = source.batch(torch.arange(low, high))
                xs.append(to_float(x))
                ys.append(y)
            offset += size
        model.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = F.cross_entropy(model(torch.cat(xs)), torch.cat(ys))
        loss.backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                total[name] += p.grad.detach().float() ** 2
        batches += 1
    model.zero_grad(set_to_none=True)
    return {name: value / max(batches, 1) for name, value in total.items()}


def cached_importances(model, task, batch_size: int) -> dict[str, torch.Tensor]:
    """Training-data importances depend only on the original model, the data and the batch
    size: computed once, then read from the original model's store folder."""
    if task.cache_dir is None or not task.data_key:
        return importances(model, [task.retain, task.forget], batch_size, task.recipe.precision)
    path = Path(task.cache_dir) / f"ssd-importances-{task.data_key[:16]}-b{batch_size}-concat-{task.recipe.precision}.safetensors"
    if path.is_file():
        return {k: v.to(model_device(model)) for k, v in safetensors.torch.load_file(str(path)).items()}
    values = importances(model, [task.retain, task.forget], batch_size, task.recipe.precision)
    atomic_write_bytes(path, safetensors.torch.save({k: v.cpu().contiguous() for k, v in values.items()}))
    return values


PAPER_ALPHA = 10.0  # the reference's selection weighting, to which its λ of 1 belongs


def data_alpha(forget: dict[str, torch.Tensor], full: dict[str, torch.Tensor], select: float) -> float:
    """The α that selects the `select` share of parameter entries with the largest ratio of
    forget to training importance."""
    ratios = torch.cat([(forget[name] / full[name].clamp_min(1e-30)).flatten() for name in forget])
    return float(torch.quantile(ratios.double()[torch.randperm(len(ratios), generator=torch.Generator().manual_seed(0))[:1_000_000]], 1 - select))


@register_method("ssd", SSDConfig)
def ssd(model, task, config: SSDConfig):
    """Selective Synaptic Dampening (Foster et al., AAAI 2024): no training. Parameter entries
    far more important to the forget set than to the training data (forget importance > α ×
    training importance) are scaled by min(λ × training importance / forget importance, 1)."""
    forget = importances(model, [task.forget], config.batch_size, task.recipe.precision)
    full = cached_importances(model, task, config.batch_size)
    alpha, lam = config.alpha, config.lam
    if config.select is not None:
        alpha = data_alpha(forget, full, config.select)
        lam = config.lam * alpha / PAPER_ALPHA
    with torch.no_grad():
        for name, p in model.named_parameters():
            selected = forget[name] > alpha * full[name]
            factor = (lam * full[name] / forget[name].clamp_min(1e-30)).clamp(max=1.0)
            p.mul_(torch.where(selected, factor, torch.ones_like(factor)).to(p.dtype))
    return model
