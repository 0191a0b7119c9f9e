"""Dummy labels: the seed study's relabelling method.

Reference: none — the seed study (an unpublished write-up whose table docs/results.md quotes in
"Against the seed study's table") published no code; this is the seed's own implementation of
its description: each forget image takes the original model's highest-scoring wrong class as
its label ("dummy label"), then the model is fine-tuned on those together with retain images.
Close to random relabelling (Golatkar et al. 2020's baseline; SalUn's random labels), with the
most confusable class in place of a random one.

Departures from the reference (each with its reason):
- none: the rule is the seed's own. Each step mixes `forget_batch` relabelled forget images
  into a batch of retain images; one cross-entropy over the mixed batch; the kit's SGD (Nesterov
  momentum) with cosine decay.
"""

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
