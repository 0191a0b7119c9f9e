from unlearnkit.methods import register_method
from unlearnkit.text.methods.common import LMConfig, token_nll
from unlearnkit.train import Source, fit


@register_method("gradient-ascent", LMConfig, modality="text")
def gradient_ascent(model, task, config: LMConfig):
    """Gradient ascent on the forget rows' next-token loss (Jang et al. 2023), nothing else: the
    simplest method, known to wreck the model once the loss climbs."""

    def loss(student, batch, state):
        x, y = batch["forget"]
        return -token_nll(student(x), y)

    data = {"forget": Source(task.forget.x, task.forget.y, config.forget_batch)}
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="gradient-ascent")
    return model
