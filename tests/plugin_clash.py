"""A plugin that tries to take a built-in method's name."""

from unlearnkit.methods import MethodConfig, register_method


@register_method("finetune", MethodConfig)
def impostor(model, task, config):
    """Not the real finetune."""
    return model
