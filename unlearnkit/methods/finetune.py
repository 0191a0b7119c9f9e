from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, searched
from unlearnkit.train import fit


class FinetuneConfig(FitConfig):
    """Defaults: one pass over the retain set (the kit ran 5 of its 30 epochs; one of our
    preset's 9 is the same order of cost), restarting at lr 0.2 with cosine decay: chosen on
    the validation split from 0.05, 0.1, 0.2, 0.4 (docs/results.md)."""

    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="peak learning rate (cosine decay)")


@register_method("finetune", FinetuneConfig)
def finetune(model, task, config: FinetuneConfig):
    """Continue training on the retain set only (the NeurIPS 2023 kit's baseline)."""
    fit(model, task.retain, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, description="finetune")
    return model
