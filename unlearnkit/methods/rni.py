"""RNI: Reset, Noise, Increment (NeurIPS 2023 Machine Unlearning Challenge, 7th place; as
reimplemented in Deep Unlearn, Cadet et al., "Deep Unlearn: Benchmarking Machine Unlearning",
arXiv 2024).

Reference: xcadet/deepunlearn @ 6830ff6e5fd72f4793890ee31904814892625acf,
munl/unlearning/kgltop7.py lines 207-218 (re-initialize the classifier), 165-195
(select_optim_keys: each stage before the last 4 trains 9 random parameter tensors without "bn"
in their name, plus every one with it; the last 4 train everything), 131-163
(noise_optimize_group: from the second stage on, int(0.7 × 9) of the stage's tensors are picked
and those not trained in an earlier stage get Gaussian noise of absolute std 0.04), 104-129 and
220-246 (each stage a new SGD, momentum 0.9, no Nesterov, over the stage's tensors, at a constant
rate, one pass over the retain set).

Departures from the reference (each with its reason):
- none in the update rule; the budget is tuned for our presets: the stages share `epochs` passes
  over the retain set (the reference's each make one), all at lr 0.2 (the reference's 2e-4, and
  2e-4, 2e-4, 2e-4, 1e-3 in its last 4). The draws come from a generator seeded by the task's seed.

Options of ours (off by default): `relative_noise` — the noise std in units of each tensor's own
std; `norms_by_type` — every norm layer's parameters always train, found by type, not by name.
"""

import torch
from pydantic import Field, model_validator
from torch import nn

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, reset, searched
from unlearnkit.models.interface import head
from unlearnkit.train import Recipe, fit

NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


class RNIConfig(FitConfig):
    """Defaults: the reference's 9 stages, the last 4 training everything, 9 tensors a stage and
    noise of std 0.04 on 70% of them. Its 9 epochs become one pass over the retain set shared by
    the stages, at lr 0.2, finetune's validated rate, which keeps the method within 0.2× the
    retrain's time. Not yet tuned: `unlearnkit tune rni`."""

    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="learning rate of every stage (constant; a new optimizer each stage)")
    stages: int = Field(9, ge=1, description="stages the retain passes are split into")
    full_stages: int = Field(4, ge=1, description="last stages, which train every parameter")
    tensors: int = Field(9, json_schema_extra=searched(2, 20), ge=1, description="parameter tensors trained in each earlier stage (norm layers always train)")
    noisy_share: float = Field(0.7, ge=0, le=1, description="share of `tensors` picked for noise in each earlier stage but the first; those trained before get none")
    noise: float = Field(0.04, json_schema_extra=searched(0.005, 0.2, log=True), ge=0, description="std of that Gaussian noise")
    relative_noise: bool = Field(False, description="noise std in units of each tensor's own std (ours), not absolute")
    norms_by_type: bool = Field(False, description="always train every norm layer's parameters, found by type (ours), not those with 'bn' in their name")

    @model_validator(mode="after")
    def _stages(self):
        if self.full_stages > self.stages:
            raise ValueError(f"full_stages ({self.full_stages}) cannot exceed stages ({self.stages})")
        return self

    def recipe(self, task) -> Recipe:
        return super().recipe(task).model_copy(update={"nesterov": False, "schedule": "constant", "epochs": self.epochs / self.stages})


def always_trained(model: nn.Module, by_type: bool) -> set[str]:
    """The parameters every stage trains: those with "bn" in their name (the reference), or
    those of the norm layers."""
    if not by_type:
        return {name for name, _ in model.named_parameters() if "bn" in name}
    return {f"{module_name}.{name}".lstrip(".") for module_name, module in model.named_modules() if isinstance(module, NORMS)
            for name, _ in module.named_parameters(recurse=False)}


def stage_plan(candidates: list[str], config: RNIConfig, generator: torch.Generator) -> list[tuple[list[str], list[str]]]:
    """(tensors trained, tensors given noise first) of each stage before the full ones: a random
    `tensors` of the candidates; from the second stage on, int(`noisy_share` × `tensors`) of them
    picked, less those trained in an earlier stage."""
    plan, trained_before = [], set()
    for stage in range(config.stages - config.full_stages):
        chosen = [candidates[i] for i in torch.randperm(len(candidates), generator=generator)[: config.tensors].tolist()]
        noisy = []
        if stage > 0:
            picks = min(int(config.noisy_share * config.tensors), len(chosen))
            noisy = [chosen[i] for i in torch.randperm(len(chosen), generator=generator)[:picks].tolist() if chosen[i] not in trained_before]
        plan.append((chosen, noisy))
        trained_before |= set(chosen)
    return plan


@register_method("rni", RNIConfig)
def reset_noise_increment(model, task, config: RNIConfig):
    """Erase then repair, the NeurIPS 2023 unlearning challenge's 7th place: re-initialize the
    classifier; then, stage by stage, train a random few parameter tensors on the retain set
    (norm layers always), those not trained before first disturbed by Gaussian noise; the last
    stages fine-tune everything."""
    reset(head(model), task.seed)
    params = dict(model.named_parameters())
    norms = always_trained(model, config.norms_by_type)
    candidates = [name for name in params if name not in norms]
    generator = torch.Generator().manual_seed(task.seed)
    recipe = config.recipe(task)
    for stage, (chosen, noisy) in enumerate(stage_plan(candidates, config, generator)):
        with torch.no_grad():
            for name in noisy:
                p = params[name]
                spread = (p.std() if p.numel() > 1 else p.abs()) if config.relative_noise else 1.0
                p.add_(torch.randn(p.shape, generator=generator).to(p.device, p.dtype) * (config.noise * spread))
        frozen = {name: torch.zeros_like(params[name], dtype=torch.bool) for name in candidates if name not in chosen}
        fit(model, task.retain, recipe, seed=task.seed + stage, mask=frozen, checkpoint=task.checkpoint, description=f"rni (stage {stage + 1})")
    first_full = config.stages - config.full_stages
    for stage in range(first_full, config.stages):
        # each stage checkpoints under its own identity; started again after a crash, the stages
        # run again from the start as they did (seeded), so the result is the same bitwise
        fit(model, task.retain, recipe, seed=task.seed + stage, checkpoint=task.checkpoint, description=f"rni (stage {stage + 1})")
    return model
