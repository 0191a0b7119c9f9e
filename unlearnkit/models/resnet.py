"""ResNet-18 for 32x32 images (He et al. 2016, with the CIFAR stem: one 3x3 convolution,
no max-pool). Takes float NCHW in [0, 1]; the per-channel normalization is a buffer of the
model, so a saved model is self-contained."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import register_model
from unlearnkit.models.interface import PrunableGroup

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class StridedPointwiseConv(nn.Conv2d):
    """A 1x1 convolution with stride s, computed as the 1x1 convolution of every s-th pixel:
    the same function and the same parameters. Why: on AMD Zen 5, oneDNN 3.12's strided 1x1
    kernel (torch 2.13, channels_last) corrupts memory for some shapes, e.g. 8→16 channels at
    batch 115, and crashes the process; the stride-1 kernel is sound."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(cin, cout, 1, 1, bias=False)
        self.step = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x[:, :, :: self.step, :: self.step])


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(StridedPointwiseConv(cin, cout, stride), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks=(2, 2, 2, 2), num_classes=10, width=64, in_channels=3, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for stage, count in enumerate(blocks):
            cout = width * 2**stage
            layers.append(nn.Sequential(*(BasicBlock(cin if i == 0 else cout, cout, 2 if stage and i == 0 else 1) for i in range(count))))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (after global average pooling)."""
        if x.shape[1] != self.conv1.in_channels:  # else the normalization would broadcast 1 channel to 3
            raise UnlearnkitError(f"this resnet18 takes {self.conv1.in_channels}-channel images, got {x.shape[1]} channels; build it with in_channels={x.shape[1]}")
        x = (x - self.mean) / self.std
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def classifier_head(self) -> nn.Linear:
        return self.fc

    def prunable_groups(self) -> list[PrunableGroup]:
        """Each convolution of the residual stages with the batch norm after it. The stem is
        left whole: its few filters feed everything."""
        modules = list(self.named_modules())
        return [
            PrunableGroup(name, module, norm_name, norm)
            for (name, module), (norm_name, norm) in zip(modules, modules[1:])
            if isinstance(module, nn.Conv2d) and name.startswith("layer") and isinstance(norm, nn.BatchNorm2d)
        ]


@register_model
def resnet18(*, num_classes: int = 10, width: int = 64, in_channels: int = 3, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> ResNet:
    """ResNet-18; `width` is the first stage's channel count (64 = the standard model)."""
    if width < 1:
        raise ValueError(f"width must be ≥ 1, got {width}")
    return ResNet((2, 2, 2, 2), num_classes, width, in_channels, tuple(mean), tuple(std))
