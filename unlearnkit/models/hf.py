"""Hugging Face causal language models as the text methods' models: token ids in, logits
(batch, time, vocab) out, like `gpt-tiny`.

`CausalLMLogits` wraps any `transformers` `AutoModelForCausalLM`-style model (its forward takes
`input_ids` and returns an output holding `.logits`; a `peft` model included). The rows the text
methods train on are padded on the right, and a causal model's output at a position depends only
on the tokens up to it, so the positions that carry a target never see the padding: no attention
mask is needed for them (tests/test_hf_lm.py checks the losses there against a masked forward);
the wrapper passes an all-ones mask, which for a causal model means the same as none.
It exposes what the text methods read: `context` (the longest input) and `blocks` (the decoder
layers, found where the architecture has one unambiguous list of them, for RMU's hook).

`hf-gpt2` is a registered model: `GPT2LMHeadModel` from a small random-init config over the byte
vocabulary (256), so that the facts presets run a Hugging Face model end to end
(`unlearnkit run --preset hf-facts-smoke`). `transformers` is imported only when one is built.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import register_model

# where causal LMs keep their decoder layers (GPT-2, GPT-J/Neo: transformer.h; Llama, Mistral, Qwen,
# Phi, Gemma, OPT: model.layers / model.decoder.layers; GPT-NeoX, Pythia: gpt_neox.layers)
LAYER_PATHS = ("transformer.h", "model.layers", "model.decoder.layers", "gpt_neox.layers", "transformer.layers", "transformer.blocks")


def require_transformers():
    """`transformers`, or the one-line error naming the extra that installs it."""
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise UnlearnkitError("Hugging Face models need the transformers package; install with pip install 'unlearnkit[hf]'") from None


def decoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """The one list of decoder layers of a Hugging Face causal LM (looked for under a `peft`
    wrapper too), or None where there is no such list."""
    for root in (model, getattr(model, "base_model", None), getattr(getattr(model, "base_model", None), "model", None)):
        for path in LAYER_PATHS:
            found = root
            for part in path.split("."):
                found = getattr(found, part, None)
            if isinstance(found, nn.ModuleList) and len(found):
                return found
    return None


class CausalLMLogits(nn.Module):
    """A causal LM seen as the text methods see gpt-tiny: `forward(ids)` → logits (batch, time,
    vocab) as a tensor. `model` is the wrapped model (its parameters are this module's)."""

    def __init__(self, model: nn.Module, context: int | None = None):
        super().__init__()
        self.model = model
        config = getattr(model, "config", None)
        self.context = context or next((getattr(config, k) for k in ("n_positions", "max_position_embeddings") if isinstance(getattr(config, k, None), int)), 1 << 30)

    @property
    def blocks(self) -> nn.ModuleList | None:
        return decoder_layers(self.model)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise UnlearnkitError(f"a causal language model takes int64 token ids (batch, time), got {ids.dtype} {tuple(ids.shape)}")
        if ids.shape[1] > self.context:
            raise UnlearnkitError(f"the model has a context of {self.context} tokens, got sequences of {ids.shape[1]}; shorten the rows")
        # an all-ones mask means what no mask means for a causal model (and spares a warning about padding)
        out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
        return out.logits if hasattr(out, "logits") else out["logits"] if isinstance(out, dict) else out[0]


@register_model
def hf_gpt2(*, vocab_size: int = 256, context: int = 128, width: int = 64, depth: int = 2, heads: int = 2, dropout: float = 0.0) -> CausalLMLogits:
    """A Hugging Face GPT2LMHeadModel from a random-init config over the byte vocabulary (256), wrapped to return logits (needs the hf extra)."""
    transformers = require_transformers()
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of heads {heads}")
    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=context, n_embd=width, n_layer=depth, n_head=heads, resid_pdrop=dropout, embd_pdrop=dropout,
        attn_pdrop=dropout, bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=False,  # untied: safetensors keeps no shared tensors
    )
    return CausalLMLogits(transformers.GPT2LMHeadModel(config), context)
