from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import register_method
from unlearnkit.text.methods.common import LMConfig, both, token_nll
from unlearnkit.train import fit


@register_method("idk", LMConfig, modality="text")
def idk(model, task, config: LMConfig):
    """"I don't know" (the TOFU IDK baseline; the seed's dummy-labels idea for text): train on
    the forget rows with each personal value replaced by a refusal, beside the retain rows, so
    that the model answers questions about the forgotten people without their data."""
    if task.refusals is None:
        raise UnlearnkitError("idk needs the forget rows with their values replaced by refusals (task.refusals); this task has none — use a facts preset")

    def loss(student, batch, state):
        forget_logits, yf, retain_logits, yr = both(student, batch)
        return token_nll(forget_logits, yf) + token_nll(retain_logits, yr)

    fit(model, config.sources(task, task.refusals), config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, description="idk")
    return model
