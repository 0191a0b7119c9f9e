from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, random_wrong_labels, searched
from unlearnkit.train import Source, fit


class RandomLabelsConfig(FitConfig):
    """Defaults: one pass over the retain set, each step mixing 64 forget images with random wrong labels."""

    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="peak learning rate (cosine decay); chosen on val from 0.05, 0.1, 0.2, 0.3, 0.4")


@register_method("random-labels", RandomLabelsConfig)
def random_labels(model, task, config: RandomLabelsConfig):
    """Fine-tune on forget images with uniformly random wrong labels mixed with retain images
    (Golatkar et al. 2020; Graves et al., Amnesiac Machine Learning, 2021)."""
    relabelled = Source(task.forget.x, random_wrong_labels(task.forget.y, task.num_classes, task.seed), config.forget_batch)
    fit(model, {"retain": task.retain, "forget": relabelled}, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, description="random-labels")
    return model
