import torch
from pydantic import Field, model_validator
from torch import nn

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, reset, searched
from unlearnkit.models.interface import head
from unlearnkit.train import fit

NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


class RNIConfig(FitConfig):
    """Defaults: the write-up's 9 stages, the last 4 training everything, 9 tensors a stage and
    noise on 70% of them. Its 9 epochs become one pass over the retain set shared by the stages,
    at lr 0.2, finetune's validated rate, each stage with its own cosine decay, which keeps the
    method within 0.2× the retrain's time. The write-up's noise is absolute (std 0.04); here it
    is relative to each tensor's own spread, so that it means the same on any model (0.04 is
    0.7× to 2× the spread of a ResNet-18's kernels at Kaiming initialization). Not yet tuned:
    `unlearnkit tune rni`."""

    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="peak learning rate of each stage (cosine decay)")
    stages: int = Field(9, ge=1, description="stages the retain passes are split into")
    full_stages: int = Field(4, ge=1, description="last stages, which train every parameter")
    tensors: int = Field(9, json_schema_extra=searched(2, 20), ge=1, description="parameter tensors trained in each earlier stage (norm layers always train)")
    noisy_share: float = Field(0.7, ge=0, le=1, description="share of each stage's tensors that get noise first (not in the first stage, which starts from the reset classifier)")
    noise: float = Field(1.0, json_schema_extra=searched(0.1, 3.0, log=True), ge=0, description="std of that noise, in units of each tensor's own std")

    @model_validator(mode="after")
    def _stages(self):
        if self.full_stages > self.stages:
            raise ValueError(f"full_stages ({self.full_stages}) cannot exceed stages ({self.stages})")
        return self


def norm_parameters(model: nn.Module) -> set[str]:
    return {f"{module_name}.{name}".lstrip(".") for module_name, module in model.named_modules() if isinstance(module, NORMS)
            for name, _ in module.named_parameters(recurse=False)}


@register_method("rni", RNIConfig)
def reset_noise_increment(model, task, config: RNIConfig):
    """Erase then repair, the NeurIPS 2023 unlearning challenge's 7th place: re-initialize the
    classifier; then, stage by stage, train a random few parameter tensors on the retain set
    (norm layers always), most of them first disturbed by Gaussian noise; the last stages
    fine-tune everything."""
    reset(head(model), task.seed)
    params = dict(model.named_parameters())
    norms = norm_parameters(model)
    candidates = [name for name in params if name not in norms]
    generator = torch.Generator().manual_seed(task.seed)
    stage_recipe = config.recipe(task).model_copy(update={"epochs": config.epochs / config.stages})
    for stage in range(config.stages - config.full_stages):
        order = torch.randperm(len(candidates), generator=generator).tolist()
        chosen = [candidates[i] for i in order[: config.tensors]]
        if stage > 0:
            with torch.no_grad():
                for name in chosen[: int(config.noisy_share * len(chosen))]:
                    p = params[name]
                    spread = p.std() if p.numel() > 1 else p.abs()
                    p.add_(torch.randn(p.shape, generator=generator).to(p.device, p.dtype) * spread * config.noise)
        frozen = {name: torch.zeros_like(params[name], dtype=torch.bool) for name in candidates if name not in chosen}
        fit(model, task.retain, stage_recipe, seed=task.seed + stage, mask=frozen, description=f"rni (stage {stage + 1})")
    full = stage_recipe.model_copy(update={"epochs": config.epochs * config.full_stages / config.stages})
    fit(model, task.retain, full, seed=task.seed, checkpoint=task.checkpoint, description="rni")
    return model
