"""Model registry: `create_model(name, **kwargs)`, `list_models(pattern)`.

A registered constructor takes keyword arguments only; the name and kwargs are what the
store records, so a saved model can be rebuilt from its sidecar alone.
"""

from __future__ import annotations

import fnmatch
import inspect
from typing import Callable

from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.plugins import load_plugins, refuse_clash

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    name = fn.__name__.replace("_", "-")
    if name in _REGISTRY:
        refuse_clash("model", name, _REGISTRY[name].__module__, fn.__module__)
    _REGISTRY[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    load_plugins("unlearnkit.models")
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def create_model(name: str, **kwargs) -> nn.Module:
    load_plugins("unlearnkit.models")
    if name not in _REGISTRY:
        raise UnlearnkitError(f"unknown model '{name}'; choose one of {', '.join(list_models())}")
    try:
        model = _REGISTRY[name](**kwargs)
    except UnlearnkitError:  # already one line naming the fix (e.g. a missing extra)
        raise
    except (TypeError, ValueError) as error:
        raise UnlearnkitError(f"model '{name}' rejected its arguments {kwargs} ({error})") from None
    model.spec = {"name": name, "kwargs": kwargs}  # what the store records to rebuild it
    return model


def create_model_for(name: str, dataset, **kwargs) -> nn.Module:
    """A registered model sized for `dataset` (an `unlearnkit.data.Dataset`): its classes,
    channels, image size and normalization (the training images' per-channel mean and std), or,
    for rows of a table, their width (`in_features`), passed only where the constructor takes
    them; `kwargs` (the preset's) come on top."""
    load_plugins("unlearnkit.models")
    if name not in _REGISTRY:
        return create_model(name, **kwargs)  # the unknown-name error
    accepted = inspect.signature(_REGISTRY[name]).parameters
    if dataset.is_table:
        if "in_features" not in accepted:
            raise UnlearnkitError(f"model '{name}' is built for images; {dataset.source or 'this dataset'} is table rows, so choose a model that takes in_features (e.g. mlp)")
        fitted = {"num_classes": dataset.num_classes, "in_features": dataset.train_x.shape[1]}
        return create_model(name, **{**{k: v for k, v in fitted.items() if k in accepted}, **kwargs})
    channels, height, width = dataset.image_shape
    mean, std = dataset.channel_stats
    fitted = {"num_classes": dataset.num_classes, "in_channels": channels, "image_size": height, "mean": mean, "std": std, "in_features": channels * height * width}
    return create_model(name, **{**{k: v for k, v in fitted.items() if k in accepted}, **kwargs})


from unlearnkit.models import gpt, hf, mlp, resnet, vgg, vit  # noqa: E402,F401  (registers the models; hf imports transformers only when a model is built)
