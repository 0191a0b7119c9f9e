"""A multilayer perceptron for rows of a table (float (N, D), standardized by the dataset):
`depth` hidden layers of `width` units with ReLU, then a linear classifier. Anything else it is
given is flattened to (N, D) first, so it also takes small images (D = C·H·W)."""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import register_model
from unlearnkit.models.interface import PrunableGroup


class MLP(nn.Module):
    def __init__(self, num_classes: int, in_features: int, width: int, depth: int):
        super().__init__()
        self.in_features = in_features
        layers, cin = [], in_features
        for _ in range(depth):
            layers += [nn.Linear(cin, width), nn.ReLU()]
            cin = width
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise UnlearnkitError(f"mlp was built for {self.in_features} features per row, got {x.shape[1]}; build it with in_features={x.shape[1]}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def classifier_head(self) -> nn.Linear:
        return self.classifier

    def prunable_groups(self) -> list[PrunableGroup]:
        """Each hidden layer's units (rows of its weight); no norm follows them."""
        return [PrunableGroup(f"body.{i}", layer, None, None) for i, layer in enumerate(self.body) if isinstance(layer, nn.Linear)]


@register_model
def mlp(*, num_classes: int = 2, in_features: int = 30, width: int = 64, depth: int = 1) -> MLP:
    """An MLP; `in_features` is the row width (taken from the data), `width` the hidden units per layer, `depth` the hidden layers."""
    if in_features < 1 or width < 1 or depth < 1:
        raise ValueError(f"in_features, width and depth must be ≥ 1, got {in_features}, {width}, {depth}")
    return MLP(num_classes, in_features, width, depth)
