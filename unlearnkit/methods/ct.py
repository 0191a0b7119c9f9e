import torch
from pydantic import Field
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, searched
from unlearnkit.train import fit


class CTConfig(FitConfig):
    """Defaults: one pass over the retain set at lr 0.2, finetune's validated rate (the write-up
    trains 3 epochs at 1e-3; one of our preset's 9 epochs keeps the method within 0.2× the
    retrain's time). Not yet tuned for this method: `unlearnkit tune ct`."""

    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="peak learning rate (cosine decay)")


@register_method("ct", CTConfig)
def conv_transpose(model, task, config: CTConfig):
    """Erase then repair, the NeurIPS 2023 unlearning challenge's 5th place ("CT", one of the two
    best methods of the Deep Unlearn benchmark, Cadet et al. 2024): transpose every convolution
    kernel spatially, which keeps each filter's weights and norm but scrambles what it detects,
    then train on the retain set with cross-entropy."""
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] == m.kernel_size[1] and m.kernel_size[0] > 1]
    if not convolutions:
        raise UnlearnkitError("ct needs square convolution kernels larger than 1x1 to transpose; this model has none")
    with torch.no_grad():
        for conv in convolutions:
            conv.weight.copy_(conv.weight.transpose(-1, -2).clone())
    fit(model, task.retain, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, description="ct")
    return model
