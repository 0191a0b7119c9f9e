"""A third-party plugin as a package would ship it: one method, one attack, one model."""

import torch
from pydantic import Field
from torch import nn

from unlearnkit.evaluate import features as F
from unlearnkit.evaluate.attacks import LossThreshold, register_attack
from unlearnkit.methods import MethodConfig, register_method
from unlearnkit.models import register_model


class ShrinkConfig(MethodConfig):
    factor: float = Field(0.5, gt=0, le=1, description="multiply every weight by this")


@register_method("plugin-shrink", ShrinkConfig)
def shrink(model, task, config: ShrinkConfig):
    """Scale every parameter down (a plugin's toy method)."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(config.factor)
    return model


@register_attack("plugin-confidence", "confidence above a threshold", (F.confidence,))
def confidence_attack(seed: int):
    return LossThreshold()


@register_model
def plugin_mlp(*, num_classes: int = 10) -> nn.Module:
    """A flat MLP for 32x32 colour images."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))
