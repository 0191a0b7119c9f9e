"""Does the forgetting survive compression? The weights as deployment would store them.

Quantization can bring "forgotten" knowledge back: an unlearned model that stays close to the
original in weight space returns to it when its weights are rounded (Zhang et al., ICLR 2025,
"Catastrophic Failure of LLM Unlearning via Quantization": 4-bit weights restored 83% of the
forgotten knowledge). Each transform here is applied to every weight tensor of a convolution or
linear layer (biases and normalization parameters, which deployments keep in higher precision,
are left as they are):

- `int8`: symmetric per-output-channel rounding to 255 levels (what int8 weight quantization
  stores; fake-quantized: the rounded values are computed with in fp32);
- `int4`: the same with 15 levels (a 4-bit weight round trip, as GPTQ/AWQ-style deployments store);
- `prune50`: the half of each tensor's weights with the smallest magnitude set to zero.

The retrained model goes through the identical transform, so each figure is read against it.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}


def transform(name: str):
    def register(function):
        TRANSFORMS[name] = function
        return function

    return register


def _per_channel_round(weight: torch.Tensor, levels: int) -> torch.Tensor:
    """Symmetric rounding of each output channel (first dimension) to `levels` values."""
    flat = weight.reshape(len(weight), -1)
    scale = flat.abs().amax(1, keepdim=True) / (levels // 2)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (torch.round(flat / scale) * scale).reshape(weight.shape)


@transform("int8")
def int8(weight: torch.Tensor) -> torch.Tensor:
    return _per_channel_round(weight, 255)


@transform("int4")
def int4(weight: torch.Tensor) -> torch.Tensor:
    return _per_channel_round(weight, 15)


@transform("prune50")
def prune50(weight: torch.Tensor) -> torch.Tensor:
    keep = weight.abs().flatten().argsort(descending=True)[: weight.numel() - weight.numel() // 2]
    mask = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
    mask[keep] = True
    return weight * mask.reshape(weight.shape)


def compressed(model: nn.Module, name: str) -> nn.Module:
    """A copy of `model` with `TRANSFORMS[name]` applied to every convolution's and linear
    layer's weight; the model given is left as it was."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for module in copied.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                module.weight.copy_(TRANSFORMS[name](module.weight))
    return copied
