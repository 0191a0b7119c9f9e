"""A tiny GPT (after karpathy/nanoGPT): byte-level tokens, learned positions, pre-norm blocks of
causal self-attention and an MLP, the output layer tied to the token embedding. Read top to
bottom; the default size (width 128, 4 blocks, 4 heads, context 128) has about 0.8M parameters.

Input: int64 token ids (batch, time); output: logits (batch, time, vocab) predicting each next
token. `blocks` is public: representation methods (RMU) read a block's output through a hook.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import register_model


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, width = x.shape
        q, k, v = self.qkv(x).view(batch, time, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(batch, time, width))


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class GPT(nn.Module):
    def __init__(self, vocab_size: int = 256, context: int = 128, width: int = 128, depth: int = 4, heads: int = 4):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.context = context
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2's scaling of the residual projections by depth
            for layer in (block.attention.out, block.fc2):
                nn.init.normal_(layer.weight, std=0.02 / math.sqrt(2 * depth))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise UnlearnkitError(f"gpt-tiny takes int64 token ids (batch, time), got {ids.dtype} {tuple(ids.shape)}")
        if ids.shape[1] > self.context:
            raise UnlearnkitError(f"gpt-tiny has a context of {self.context} tokens, got sequences of {ids.shape[1]}")
        x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.tokens.weight.T


@register_model
def gpt_tiny(*, vocab_size: int = 256, context: int = 128, width: int = 128, depth: int = 4, heads: int = 4) -> GPT:
    """A byte-level causal language model (nanoGPT-style): width 128, 4 blocks of 4 heads, context 128 (about 0.8M parameters)."""
    return GPT(vocab_size, context, width, depth, heads)
