"""A Vision Transformer for small images (Dosovitskiy et al. 2021), sized like ViT-Tiny
(dimension 192, 12 blocks, 3 heads, about 5.4M parameters) with 4x4 patches, so a 32x32
image is 64 tokens plus the class token. Takes float NCHW in [0, 1]; the normalization is a
buffer of the model."""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import register_model
from unlearnkit.models.interface import PrunableGroup
from unlearnkit.models.resnet import CIFAR10_MEAN, CIFAR10_STD


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attention(y, y, y, need_weights=False)[0]
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))


class VisionTransformer(nn.Module):
    def __init__(self, num_classes=10, image_size=32, patch=4, dim=192, depth=12, heads=3, hidden=768, in_channels=3, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of the patch size {patch}")
        self.in_channels, self.image_size = in_channels, image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.patches = nn.Conv2d(in_channels, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.position, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels or x.shape[-1] != self.image_size:
            raise UnlearnkitError(f"vit-tiny was built for {self.in_channels}x{self.image_size}x{self.image_size} images, got {tuple(x.shape[1:])}")
        x = self.patches((x - self.mean) / self.std).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.position
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def classifier_head(self) -> nn.Linear:
        return self.head

    def prunable_groups(self) -> list[PrunableGroup]:
        """The hidden units of each block's MLP: a zeroed row of fc1 outputs GELU(0) = 0."""
        return [PrunableGroup(f"blocks.{i}.fc1", block.fc1, None, None) for i, block in enumerate(self.blocks)]


@register_model
def vit_tiny(*, num_classes: int = 10, image_size: int = 32, patch: int = 4, dim: int = 192, depth: int = 12, heads: int = 3, in_channels: int = 3,
             mean=CIFAR10_MEAN, std=CIFAR10_STD) -> VisionTransformer:
    """ViT-Tiny for small images: 4x4 patches, dimension 192, 12 blocks of 3 heads (about 5.4M parameters)."""
    return VisionTransformer(num_classes, image_size, patch, dim, depth, heads, 4 * dim, in_channels, tuple(mean), tuple(std))
