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
    alpha: float | None = Field(None, gt=0, description="selection: dampen parameters whose forget importance exceeds alpha × their training-data importance (the paper's 10); None: chosen from the data, see `select`")
    select: float = Field(0.03, json_schema_extra=searched(0.005, 0.3, log=True), gt=0, lt=1, description="with alpha None, alpha is the (1 − select) quantile of the importance ratios, so this share of the parameter entries is dampened whatever the rounding of the CPU's kernels. A forget set that the model fits with near-zero loss (small, or memorized outliers) carries little gradient and ranks few parameters well: there it took 0.1 to forget (the contract task)")
    lam: float | None = Field(None, gt=0, description="dampening: multiply by min(lam × training importance / forget importance, 1) (the paper's 1 with its alpha of 10); None: lam = alpha / 10, the paper's proportion, so a parameter at the selection edge keeps a tenth of its value")
    batch_size: int = Field(64, ge=1, description="batch size of the gradient estimates; the same for both importances")


def importances(model, sources: list[Source], batch_size: int, precision: str = "auto") -> dict[str, torch.Tensor]:
    """Diagonal Fisher information estimate: the mean over batches of the squared gradient of
    the cross-entropy, per parameter (eval mode, so batch-norm statistics stay fixed)."""
    model.eval()
    device = model_device(model)
    total = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in model.named_parameters()}
    batches = 0
    for source in sources:
        for start in range(0, len(source), batch_size):
            x, y = source.batch(torch.arange(start, min(start + batch_size, len(source))))
            model.zero_grad(set_to_none=True)
            with autocast(device, precision):
                loss = F.cross_entropy(model(to_float(x)), y)
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
    path = Path(task.cache_dir) / f"ssd-importances-{task.data_key[:16]}-b{batch_size}-{task.recipe.precision}.safetensors"
    if path.is_file():
        return {k: v.to(model_device(model)) for k, v in safetensors.torch.load_file(str(path)).items()}
    values = importances(model, [task.retain, task.forget], batch_size, task.recipe.precision)
    atomic_write_bytes(path, safetensors.torch.save({k: v.cpu().contiguous() for k, v in values.items()}))
    return values


PAPER_ALPHA_OVER_LAMBDA = 10.0  # the paper's alpha = 10, lambda = 1


def data_alpha(forget: dict[str, torch.Tensor], full: dict[str, torch.Tensor], select: float) -> float:
    """The α that selects the `select` share of parameter entries with the largest ratio of
    forget to training importance. A fixed α is knife-edge: the ratios' scale moves with the
    forget set's share of the training data and with the kernels' rounding, so one α
    dampened nothing on one CPU and most of the network on another."""
    ratios = torch.cat([(forget[name] / full[name].clamp_min(1e-30)).flatten() for name in forget])
    return float(torch.quantile(ratios.double()[torch.randperm(len(ratios), generator=torch.Generator().manual_seed(0))[:1_000_000]], 1 - select))


@register_method("ssd", SSDConfig)
def ssd(model, task, config: SSDConfig):
    """Selective Synaptic Dampening (Foster et al., AAAI 2024): no training. Parameters far more
    important to the forget set than to the training data (forget importance > alpha × training
    importance) are scaled down in proportion to that ratio. By default alpha is chosen from the
    data (the share `select` of parameter entries with the largest ratios) and lambda keeps the
    paper's proportion to it."""
    full = cached_importances(model, task, config.batch_size)
    forget = importances(model, [task.forget], config.batch_size, task.recipe.precision)
    alpha = config.alpha or data_alpha(forget, full, config.select)
    lam = config.lam or alpha / PAPER_ALPHA_OVER_LAMBDA
    with torch.no_grad():
        for name, p in model.named_parameters():
            selected = forget[name] > alpha * full[name]
            factor = (lam * full[name] / forget[name].clamp_min(1e-30)).clamp(max=1.0)
            p.mul_(torch.where(selected, factor, torch.ones_like(factor)).to(p.dtype))
    return model
