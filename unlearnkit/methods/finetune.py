from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig
from unlearnkit.train import fit


class FinetuneConfig(FitConfig):
    """Defaults: one pass over the retain set at lr 0.05 with cosine decay. The kit ran 5 epochs
    of its 30-epoch recipe (1/6 of training); one of our preset's 10 is the same order of cost."""


@register_method("finetune", FinetuneConfig)
def finetune(model, task, config: FinetuneConfig):
    """Continue training on the retain set only (the NeurIPS 2023 kit's baseline)."""
    fit(model, task.retain, config.recipe(task), seed=task.seed, description="finetune")
    return model
