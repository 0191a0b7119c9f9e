import torch
from pydantic import Field

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import register_method
from unlearnkit.methods.common import searched
from unlearnkit.text.methods.common import LMConfig
from unlearnkit.train import IGNORE_INDEX, fit


class RMUConfig(LMConfig):
    layer: int = Field(1, ge=0, description="the block whose output is steered; only this block and the ones before it change")
    steering: float = Field(20.0, json_schema_extra=searched(2.0, 50.0, log=True), gt=0, description="length of the random direction the forget activations are pushed to")
    retain_weight: float = Field(10.0, json_schema_extra=searched(1.0, 100.0, log=True), ge=0, description="weight of keeping the retain activations where the original had them")


def block_output(model: torch.nn.Module, layer: int, x: torch.Tensor) -> torch.Tensor:
    captured = []
    handle = model.blocks[layer].register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0]


@register_method("rmu", RMUConfig, modality="text")
def rmu(model, task, config: RMUConfig):
    """Representation Misdirection for Unlearning (Li et al. 2024, WMDP): at one block, push the
    forget rows' activations towards a fixed random direction of length `steering` and keep the
    retain rows' activations where the original had them; only the blocks up to that one
    change, so later layers read noise where the forgotten people were."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, torch.nn.ModuleList) or not 0 <= config.layer < len(blocks):
        raise UnlearnkitError(f"rmu steers block {config.layer} of model.blocks; this model has {len(blocks) if isinstance(blocks, torch.nn.ModuleList) else 'no'} blocks")
    reference = task.original.eval()
    width = model.tokens.weight.shape[1] if hasattr(model, "tokens") else blocks[config.layer].norm1.normalized_shape[0]
    generator = torch.Generator().manual_seed(task.seed)
    direction = torch.rand(width, generator=generator)
    target = (config.steering * direction / direction.norm()).to(next(model.parameters()).device)
    steered = {f"blocks.{i}." for i in range(config.layer + 1)}
    mask = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in model.named_parameters() if not any(name.startswith(s) for s in steered)}

    def loss(student, batch, state):
        (xf, yf), (xr, yr) = batch["forget"], batch["retain"]
        forget_h = block_output(student, config.layer, xf)
        retain_h = block_output(student, config.layer, xr)
        with torch.no_grad():
            reference_h = block_output(reference, config.layer, xr)
        keep_f, keep_r = (yf != IGNORE_INDEX)[..., None], (yr != IGNORE_INDEX)[..., None]
        forget_term = (((forget_h.float() - target) ** 2) * keep_f).sum() / (keep_f.sum() * width)
        retain_term = (((retain_h.float() - reference_h.float()) ** 2) * keep_r).sum() / (keep_r.sum() * width)
        return forget_term + config.retain_weight * retain_term

    fit(model, config.sources(task), config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, loss=loss, mask=mask, description="rmu")
    return model
