"""Model registry: `create_model(name, **kwargs)`, `list_models(pattern)`.

A registered constructor takes keyword arguments only; the name and kwargs are what the
store records, so a saved model can be rebuilt from its sidecar alone.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

from torch import nn

from unlearnkit.errors import UnlearnkitError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _REGISTRY[fn.__name__.replace("_", "-")] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def create_model(name: str, **kwargs) -> nn.Module:
    if name not in _REGISTRY:
        raise UnlearnkitError(f"unknown model '{name}'; choose one of {', '.join(list_models())}")
    try:
        model = _REGISTRY[name](**kwargs)
    except (TypeError, ValueError) as error:
        raise UnlearnkitError(f"model '{name}' rejected its arguments {kwargs} ({error})") from None
    model.spec = {"name": name, "kwargs": kwargs}  # what the store records to rebuild it
    return model


from unlearnkit.models import resnet  # noqa: E402,F401  (registers the models)
