"""Fine-tuning on the retained users only: BPR on their interactions, starting from the original.

For matrix factorization this is a weak eraser by construction, and the evidence shows it: a
deleted user's embedding gets no gradient from the retained users' interactions, so it keeps
what it learned (only the items it is scored against move). It is the baseline every other
method should beat.
"""

from __future__ import annotations

from unlearnkit.methods import register_method
from unlearnkit.recsys.methods.common import RecsysFitConfig
from unlearnkit.recsys.training import bpr_loss
from unlearnkit.train import fit


class RecsysFinetuneConfig(RecsysFitConfig):
    """Defaults: two passes at lr 0.005, half the presets' training rate (five passes at 0.01
    moved the deleted users' figures no further on recsys-default: their embeddings get no
    gradient)."""


@register_method("finetune", RecsysFinetuneConfig, modality="recsys")
def finetune(model, task, config: RecsysFinetuneConfig):
    """Continue BPR training on the retained users' interactions only (AdamW, cosine)."""
    fit(model, task.retain, config.recipe(task), seed=task.seed, loss=bpr_loss(task.seed), checkpoint=task.checkpoint, description="finetune")
    return model
