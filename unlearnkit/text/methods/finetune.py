"""Fine-tuning on the retain rows only (the FT baseline of the unlearning literature, e.g. Jia et
al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023).

Reference: OPTML-Group/Unlearn-Simple @ f1a355d, TOFU/dataloader.py lines 157-162 (`fine_tuned`:
the retain rows' mean token NLL, nothing else).

Departures from the reference (each with its reason):
- none in the update rule. `epochs` counts passes over the retain rows and a step takes
  `retain_batch` of them, where the reference draws one random retain row per forget row and
  counts passes over the forget rows: a budget unit; the budget, learning rate, its cosine
  schedule and weight decay are tuned for our presets.
"""

from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.text.methods.common import LMConfig
from unlearnkit.train import Source, fit


class FinetuneConfig(LMConfig):
    """On facts-smoke, 10 epochs at lr 3e-3 took QA on the forgotten people from 100% to 35%."""

    epochs: float = Field(5.0, json_schema_extra=searched(1.0, 10.0), gt=0, description="passes over the retain rows")
    lr: float = Field(3e-3, json_schema_extra=searched(3e-4, 1e-2, log=True), gt=0, description="peak learning rate (cosine decay)")


@register_method("finetune", FinetuneConfig, modality="text")
def finetune(model, task, config: FinetuneConfig):
    """Fine-tune on the retain rows only (next-token loss), so that the forgotten people fade as
    the model keeps training without them: the baseline every method must beat."""
    data = Source(task.retain.x, task.retain.y, config.retain_rows)
    fit(model, data, config.recipe(task, config.retain_rows), seed=task.seed, checkpoint=task.checkpoint, description="finetune")
    return model
