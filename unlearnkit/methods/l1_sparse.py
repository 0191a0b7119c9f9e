"""l1-sparse unlearning (Jia, Liu, Ram, Yao, Liu, Liu, Sharma, Liu, "Model Sparsity Can Simplify
Machine Unlearning", NeurIPS 2023).

Reference: OPTML-Group/Unlearn-Sparse @ 80ba55d36d0871465c2d3e3896db26a98070e065,
unlearn/FT.py lines 14-18 (`l1_regularization`: the L1 norm of all parameters, biases and
batch-norm scales included), 84-109 (each step: cross-entropy on a retain batch plus
alpha × (1 - epoch / epochs) × that norm, the weight constant within an epoch; `--no-l1-epochs`
defaults to 0) and 141-143 (`FT_l1`); unlearn/impl.py lines 72-77 (SGD with momentum and weight
decay, no Nesterov) and 97-100, 110-120 (MultiStepLR at epochs 91 and 136: a constant learning
rate over the unlearning epochs). Unlearn-Saliency's Classification/unlearn/FT.py is the same.

Departures from the reference (each with its reason):
- none in the update rule; the penalty's initial weight, the learning rate and the number of
  epochs are ours, set for our presets.
- fit draws whole batches only: the last retain images of a pass that do not fill a batch wait
  for the next pass's shuffle (the training loop's batching).

Options of ours (off by default): `weights_only` — penalize only weight matrices and kernels,
not biases and normalization scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, l1_norm, searched
from unlearnkit.train import Recipe, fit


class L1SparseConfig(FitConfig):
    """Defaults: one epoch at a constant learning rate (our earlier cosine-decayed runs chose 0.2
    on val)."""

    epochs: float = Field(1.0, json_schema_extra=searched(0.25, 3.0), gt=0, description="passes over the retain set")
    l1: float = Field(5e-5, json_schema_extra=searched(1e-06, 0.001, log=True), ge=0, description="initial weight of the L1 penalty; falls linearly to 0 epoch by epoch")
    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="learning rate (constant)")
    weights_only: bool = Field(False, description="ours: penalize only weight matrices and kernels, not biases and normalization scales")

    def recipe(self, task) -> Recipe:
        """The reference's optimizer: SGD with momentum and weight decay, no Nesterov, constant rate."""
        return Recipe(
            epochs=self.epochs, batch_size=task.recipe.batch_size, lr=self.lr, momentum=self.momentum, nesterov=False,
            weight_decay=self.weight_decay, schedule="constant", warmup=0.0, precision=task.recipe.precision,
        )


def all_parameters_l1(model: torch.nn.Module) -> torch.Tensor:
    """Sum of |p| over every parameter, as FT.py's `l1_regularization`."""
    return sum(p.abs().sum() for p in model.parameters())


@register_method("l1-sparse", L1SparseConfig)
def l1_sparse(model, task, config: L1SparseConfig):
    """Fine-tune on the retain set with an L1 penalty on all parameters whose weight falls
    linearly to zero, epoch by epoch (Jia et al., "Model Sparsity Can Simplify Machine
    Unlearning", NeurIPS 2023)."""
    norm = l1_norm if config.weights_only else all_parameters_l1

    def loss(student, batch, state):
        x, y = batch["data"]
        logits = student(x)
        state.correct += int((logits.argmax(1) == y).sum())
        state.seen += len(y)
        weight = config.l1 * (1 - state.epoch / config.epochs)
        return F.cross_entropy(logits, y) + weight * norm(student)

    fit(model, task.retain, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="l1-sparse")
    return model
