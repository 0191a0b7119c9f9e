"""VGG-11 with batch norm for small images (Simonyan and Zisserman 2015), as used across the
unlearning literature on CIFAR: eight 3x3 convolutions, five max-pools, one linear
classifier on the 1x1 map of a 32x32 image. `width` scales every layer (64 = the standard)."""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import register_model
from unlearnkit.models.resnet import CIFAR10_MEAN, CIFAR10_STD

LAYOUT = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")  # channels in units of width / 64 × 64


class VGG(nn.Module):
    def __init__(self, num_classes=10, width=64, in_channels=3, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        layers, cin = [], in_channels
        for item in LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: images under 32x32 keep a 1x1 map
            else:
                cout = item * width
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise UnlearnkitError(f"vgg11 was built for {self.in_channels}-channel images, got {x.shape[1]} channels")
        x = self.body((x - self.mean) / self.std)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def classifier_head(self) -> nn.Linear:
        return self.classifier


@register_model
def vgg11(*, num_classes: int = 10, width: int = 64, in_channels: int = 3, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> VGG:
    """VGG-11 with batch norm; `width` is the first layer's channel count (64 = the standard model)."""
    if width < 1:
        raise ValueError(f"width must be ≥ 1, got {width}")
    return VGG(num_classes, width, in_channels, tuple(mean), tuple(std))
