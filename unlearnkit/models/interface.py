"""What structure-aware methods may ask of a classifier, for any `nn.Module`.

- `logits(output)`: the (batch, classes) tensor, whether the model returns it, an object with
  `.logits` (Hugging Face) or a dict with "logits";
- `head(model)`: the classifier head, an `nn.Linear`;
- `features(model, x)`: what the head reads (penultimate features);
- `prunable_groups(model)`: layers whose output units can be removed, each with the norm that
  follows it.

A model declares them by defining `classifier_head()`, `features(x)` and `prunable_groups()`
(the built-in models do); otherwise they are discovered from the module graph where that is
unambiguous — the last `nn.Linear` registered is the head, its input the features, and each
convolution registered right before a batch norm of as many channels is prunable. What cannot
be found is a one-line `UnlearnkitError` naming what is missing: no method silently does
something else.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError


def logits(output: Any) -> torch.Tensor:
    """The logits in a model's output: a tensor, `.logits`, `["logits"]`, or the first element of
    a tuple (a Hugging Face model called with `return_dict=False`, given no labels)."""
    if isinstance(output, torch.Tensor):
        found = output
    elif isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        found = output[0]
    elif isinstance(output, dict) and "logits" in output:
        found = output["logits"]
    elif hasattr(output, "logits"):
        found = output.logits
    else:
        raise UnlearnkitError(f"the model returned {type(output).__name__}; a classifier must return logits: a tensor, an object with .logits, a dict with 'logits' or a tuple whose first element is the logits")
    if not isinstance(found, torch.Tensor) or found.ndim != 2:
        raise UnlearnkitError(f"the model's logits have shape {tuple(getattr(found, 'shape', ()))}; a classifier must return (batch, classes)")
    return found


class Classifier(nn.Module):
    """Wraps a model so that it takes one tensor and returns logits: its output may hold them (see
    `logits`), and with `input_names` it takes keyword inputs, which arrive packed along dim 1
    (one name: the tensor itself)."""

    def __init__(self, model: nn.Module, input_names: tuple[str, ...] = ()):
        super().__init__()
        self.model = model
        self.input_names = tuple(input_names)

    def call(self, x: torch.Tensor):
        """The wrapped model's own output for packed inputs `x`."""
        if not self.input_names:
            return self.model(x)
        if len(self.input_names) == 1:
            return self.model(**{self.input_names[0]: x})
        return self.model(**{name: x[:, i] for i, name in enumerate(self.input_names)})

    def forward(self, x):
        return logits(self.call(x))


def unwrapped(model: nn.Module) -> nn.Module:
    """The user's own model inside a `Classifier` wrapper (or the model itself)."""
    return model.model if isinstance(model, Classifier) else model


def model_name(model: nn.Module) -> str:
    """The class name of the user's model, for messages (not the wrapper's)."""
    return type(unwrapped(model)).__name__


def declares(model: nn.Module, name: str) -> bool:
    return inspect.isfunction(getattr(type(model), name, None))


def head(model: nn.Module) -> nn.Linear:
    if declares(model, "classifier_head"):
        return model.classifier_head()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UnlearnkitError(f"{model_name(model)} has no nn.Linear to take as its classifier head; define classifier_head() on it")
    return linears[-1]


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features: the model's own `features(x)`, else the input of its head."""
    if declares(model, "features"):  # a method; torchvision's `.features` submodules are not penultimate
        return model.features(x)
    captured = []
    handle = head(model).register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    try:
        model(x)
    finally:
        handle.remove()
    if not captured:
        raise UnlearnkitError(f"{model_name(model)}'s forward pass did not use its last nn.Linear; define features(x) on it")
    return captured[-1].flatten(1)


@dataclass(frozen=True)
class PrunableGroup:
    """A layer whose output units (conv filters, linear rows) can be removed, with the norm
    that follows it (scale and shift removed too) when there is one."""

    name: str
    layer: nn.Conv2d | nn.Linear
    norm_name: str | None
    norm: nn.Module | None

    @property
    def units(self) -> int:
        return self.layer.weight.shape[0]


def prunable_groups(model: nn.Module) -> list[PrunableGroup]:
    if declares(model, "prunable_groups"):
        return model.prunable_groups()
    modules = list(model.named_modules())
    groups = []
    for (name, module), (next_name, following) in zip(modules, modules[1:]):
        if isinstance(module, nn.Conv2d) and isinstance(following, nn.BatchNorm2d) and following.num_features == module.out_channels:
            groups.append(PrunableGroup(name, module, next_name, following))
    return groups


def require_prunable(model: nn.Module, method: str) -> list[PrunableGroup]:
    if not (groups := prunable_groups(model)):
        raise UnlearnkitError(f"{method} needs prunable groups (a convolution followed by a batch norm of as many channels) and found none in {model_name(model)}; define prunable_groups() on the model or choose another method")
    return groups


def reinitialized(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture with fresh weights: every submodule's own `reset_parameters()`."""
    import copy

    fresh = copy.deepcopy(model)
    torch.manual_seed(seed)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return fresh
