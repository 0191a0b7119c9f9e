import torch

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig
from unlearnkit.train import Source, fit, predict_logits


class DummyLabelsConfig(FitConfig):
    """Defaults: one pass over the retain set, each step mixing 64 forget images with dummy labels."""


@torch.no_grad()
def strongest_wrong_class(model, x: torch.Tensor, y: torch.Tensor, precision: str = "auto") -> torch.Tensor:
    logits = predict_logits(model, x, precision=precision).to(y.device)
    logits[torch.arange(len(y)), y] = -torch.inf
    return logits.argmax(dim=1)


@register_method("dummy-labels", DummyLabelsConfig)
def dummy_labels(model, task, config: DummyLabelsConfig):
    """The seed's two-step method: relabel each forget image with the original model's
    highest-scoring wrong class, then fine-tune on those mixed with retain images."""
    dummy = strongest_wrong_class(task.original, task.forget.x, task.forget.y, task.recipe.precision)
    data = {"retain": task.retain, "forget": Source(task.forget.x, dummy, config.forget_batch)}
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, description="dummy-labels")
    return model
