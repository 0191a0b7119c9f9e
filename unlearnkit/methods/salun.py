import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, random_wrong_labels, searched
from unlearnkit.train import Source, autocast, fit, model_device, to_float


class SalUnConfig(FitConfig):
    lr: float = Field(0.3, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="peak learning rate (cosine decay); chosen on val from 0.05, 0.1, 0.2, 0.3, 0.4")
    saliency: float = Field(0.5, json_schema_extra=searched(0.1, 0.9), gt=0, le=1, description="fraction of weights that may change: those with the largest forget-loss gradient magnitude")


def saliency_mask(model, forget: Source, fraction: float, batch_size: int = 512, precision: str = "auto") -> dict[str, torch.Tensor]:
    """True for the `fraction` of entries (across all parameters) whose gradient of the
    forget-set loss is largest in magnitude."""
    model.eval()
    model.zero_grad(set_to_none=True)
    device = model_device(model)
    for start in range(0, len(forget), batch_size):
        x, y = forget.x[start : start + batch_size], forget.y[start : start + batch_size]
        with autocast(device, precision):
            loss = F.cross_entropy(model(to_float(x)), y, reduction="sum") / len(forget)
        loss.backward()
    grads = {name: p.grad.detach().abs().float() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    scores = torch.cat([g.flatten() for g in grads.values()])
    keep = max(int(fraction * scores.numel()), 1)
    threshold = torch.topk(scores, keep, sorted=False).values.min()
    return {name: g >= threshold for name, g in grads.items()}


@register_method("salun", SalUnConfig)
def salun(model, task, config: SalUnConfig):
    """Weight saliency (Fan et al., SalUn, ICLR 2024): only the weights most salient to the
    forget loss change, under random-label unlearning (forget with random wrong labels, mixed
    with retain); every other weight is held exactly through weight decay and momentum."""
    mask = saliency_mask(model, task.forget, config.saliency, precision=task.recipe.precision)
    relabelled = Source(task.forget.x, random_wrong_labels(task.forget.y, task.num_classes, task.seed), config.forget_batch)
    fit(model, {"retain": task.retain, "forget": relabelled}, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, mask=mask, description="salun")
    return model
