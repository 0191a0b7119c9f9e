from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.text.methods.common import LMConfig
from unlearnkit.train import Source, fit


class FinetuneConfig(LMConfig):
    epochs: float = Field(5.0, json_schema_extra=searched(1.0, 10.0), gt=0, description="passes over the retain rows")
    lr: float = Field(3e-3, json_schema_extra=searched(3e-4, 1e-2, log=True), gt=0, description="peak learning rate (cosine decay); on facts-smoke 10 epochs at 3e-3 took QA on the forgotten people from 100% to 35%")


@register_method("finetune", FinetuneConfig, modality="text")
def finetune(model, task, config: FinetuneConfig):
    """Fine-tune on the retain rows only (next-token loss), so that the forgotten people fade as
    the model keeps training without them: the baseline every method must beat."""
    data = Source(task.retain.x, task.retain.y, config.retain_batch)
    fit(model, data, config.recipe(task, config.retain_batch), seed=task.seed, checkpoint=task.checkpoint, description="finetune")
    return model
