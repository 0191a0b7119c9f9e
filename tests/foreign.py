"""A model and data unlearnkit knows nothing about: other layer names, one input channel,
48x48 images, 4 classes; and a variant that returns an output object, as Hugging Face models do."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class GreyNet(nn.Module):
    def __init__(self, classes: int = 4, hidden: int = 8):
        super().__init__()
        self.entry = nn.Conv2d(1, hidden, 3, padding=1, bias=False)
        self.entry_norm = nn.BatchNorm2d(hidden)
        self.down = nn.Conv2d(hidden, 2 * hidden, 3, stride=2, padding=1, bias=False)
        self.down_norm = nn.BatchNorm2d(2 * hidden)
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.mix = nn.Linear(2 * hidden * 36, 32)
        self.decide = nn.Linear(32, classes)

    def forward(self, x):
        x = torch.relu(self.entry_norm(self.entry(x - 0.5)))
        x = torch.relu(self.down_norm(self.down(x)))
        return self.decide(torch.relu(self.mix(self.pool(x).flatten(1))))


@dataclass
class Output:
    logits: torch.Tensor


class WrappedOutputNet(GreyNet):
    def forward(self, x):
        return Output(super().forward(x))


class TupleOutputNet(GreyNet):
    """Returns a tuple as a Hugging Face model called with return_dict=False does."""

    def forward(self, x):
        return (super().forward(x),)


class NoNormNet(nn.Module):
    """No batch norm at all: nothing that pruning methods can find."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 32), nn.ReLU(), nn.Linear(32, classes))

    def forward(self, x):
        return self.body(x)


def build(classes: int = 4, hidden: int = 8) -> GreyNet:
    return GreyNet(classes, hidden)


def grey_data(seed: int = 0, retain: int = 384, forget: int = 32, test: int = 128, noise: float = 60):
    """uint8 NHWC images (one channel): each class a brightness and a stripe direction; the
    forget set outliers (a random pattern of 8x8 blocks each) with random labels."""
    rng = np.random.default_rng(seed)
    levels = np.array([50, 110, 170, 230])

    def rule(n):
        y = rng.integers(0, 4, n)
        stripes = np.where((y % 2)[:, None, None] == 0, np.arange(48)[None, :, None] % 8 < 4, np.arange(48)[None, None, :] % 8 < 4)
        x = levels[y][:, None, None] + 25 * stripes + rng.normal(0, noise, (n, 48, 48))
        return np.clip(x, 0, 255).astype(np.uint8)[..., None], y

    retained, held_out = rule(retain), rule(test)
    blocks = rng.integers(0, 256, (forget, 6, 6)).repeat(8, axis=1).repeat(8, axis=2)
    odd_x = np.clip(blocks + rng.normal(0, noise / 2, (forget, 48, 48)), 0, 255).astype(np.uint8)[..., None]
    return retained, (odd_x, rng.integers(0, 4, forget)), held_out


class SmallRGBNet(nn.Module):
    """A plain CNN for 32x32 colour images, for `unlearnkit forget --model-factory foreign:build_rgb`."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.a, self.a_norm = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.b, self.b_norm = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32)
        self.out = nn.Linear(32, classes)

    def forward(self, x):
        x = torch.relu(self.b_norm(self.b(torch.relu(self.a_norm(self.a(x))))))
        return self.out(x.mean((2, 3)))


def build_rgb(classes: int = 10) -> SmallRGBNet:
    return SmallRGBNet(classes)


class MLP(nn.Module):
    """A one-hidden-layer perceptron for 32x32 colour images: memorizes a few hundred of them in
    a few epochs (tests of memorization)."""

    def __init__(self, classes: int = 10, hidden: int = 256):
        super().__init__()
        self.hidden, self.out = nn.Linear(3 * 32 * 32, hidden), nn.Linear(hidden, classes)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x.flatten(1))))


def build_mlp(classes: int = 10, hidden: int = 256) -> MLP:
    return MLP(classes, hidden)
