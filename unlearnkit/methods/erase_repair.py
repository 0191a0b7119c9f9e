"""erase-repair: unlearnkit's own method, the default of `unlearnkit forget`.

Reference: none — unlearnkit's own method. What the evidence said about the others
(docs/results.md): the methods that look best on population attacks are the easiest to spot
example by example, because they move every forget example the same way on every seed, while a
retrained model's output on an example it never saw varies from seed to seed; the challenge
winners that do best erase first and then repair on the retain set. Its ingredients:
(1) erase where the forget set lives: re-draw the `reset` share of each weight tensor whose
diagonal-Fisher importance to the forget set most exceeds its importance to a retain sample of
the same size (the importances of SSD, Foster et al. 2024); (2) perturb every weight with
seed-dependent noise, optionally shrinking it first (Ash & Adams' shrink-and-perturb, 2020),
so that unlearned models spread across seeds as retrained ones do; (3) distil from the original
on the held-out validation images, which it never trained on (kde's phase, the challenge's 6th
place); (4) repair on the retain set with a convex mix of cross-entropy and distillation from
the original; (5) add seed-dependent noise to the classifier head's weights (noisy published
weights, as in Descent-to-Delete and certified removal); optionally (6) give the head the
original's class rates on held-out images (`match_prior`).

Departures from the reference (each with its reason):
- none: there is no reference; the rule above is ours.

Options of ours (off by default): `reset_head` — re-draw the whole classifier head from the
seed before the repair; `match_prior` — shift the head's bias to the original's class rates on
validation images at the end.
"""

import torch
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, distillation_loss, reset, searched
from unlearnkit.methods.ssd import importances
from unlearnkit.models.interface import head
from unlearnkit.train import Source, fit, predict_logits


class EraseRepairConfig(FitConfig):
    """Defaults: 2% of each tensor re-drawn, noise 0.2, no shrink; one pass of distillation on
    the validation images, then one pass of repair at lr 0.2 with 0.85 distillation, and noise of
    0.5 of the head's spread on the head's weights at the end: the best of the variants screened
    by the NeurIPS score on the default preset, within 0.2× the retrained model's time there.
    Evidence: docs/results.md, sections "The own method against the per-example evidence: nine
    variants of erase-repair" (the erasure, the distillation share, the validation phase), "The
    own method's new defaults: noise on the head after the repair" (`final_noise`, `distill`) and
    "Two tests of what stops the own method" (`match_prior`). On a small plain CNN with small
    batches (the contract's foreign model) the repair needs lr 0.03: at 0.2 it diverged."""

    epochs: float = Field(1.0, gt=0, description="passes of repair over the retain set")
    lr: float = Field(0.2, json_schema_extra=searched(0.05, 0.3, log=True), gt=0, description="peak learning rate of the repair (cosine decay)")
    reset: float = Field(0.02, json_schema_extra=searched(0.0, 0.05), ge=0, lt=1, description="share of each weight tensor re-drawn: the entries most important to forget relative to retain")
    shrink: float = Field(1.0, json_schema_extra=searched(0.8, 1.0), gt=0, le=1, description="factor every weight is multiplied by before the noise")
    noise: float = Field(0.2, json_schema_extra=searched(0.0, 0.4), ge=0, description="std of the Gaussian noise added to every weight tensor, in units of that tensor's std")
    distill: float = Field(0.85, json_schema_extra=searched(0.0, 0.95), ge=0, le=1, description="share of distillation from the original in the repair loss, the rest cross-entropy")
    temperature: float = Field(2.0, gt=0, description="softening of the original's outputs in the distillation")
    score_sample: int = Field(1024, ge=1, description="forget images, and as many retain images, whose gradients rank the weights")
    reset_head: bool = Field(False, description="re-draw the whole classifier head from the seed before the repair")
    final_noise: float = Field(0.5, json_schema_extra=searched(0.0, 0.8), ge=0, description="std of Gaussian noise added to the head's weights after the repair, in units of their std")
    match_prior: bool = Field(False, description="at the end, shift the head's bias to the original's mean class probabilities on up to 1024 validation images")
    val_epochs: float = Field(1.0, ge=0, description="passes of distillation from the original on the validation images before the repair (0: none)")


def forget_specific_mask(model, task, config: EraseRepairConfig) -> dict[str, torch.Tensor]:
    """Per weight tensor, the `reset` share of entries with the largest ratio of forget to retain
    importance (diagonal Fisher, as in SSD), as boolean masks."""
    generator = torch.Generator().manual_seed(task.seed)
    count = min(config.score_sample, len(task.forget))
    forget = Source(*task.forget.batch(torch.randperm(len(task.forget), generator=generator)[:count]))
    retain = Source(*task.retain.batch(torch.randperm(len(task.retain), generator=generator)[:count]))
    on_forget = importances(model, [forget], config.forget_batch, task.recipe.precision)
    on_retain = importances(model, [retain], config.forget_batch, task.recipe.precision)
    masks = {}
    for name, p in model.named_parameters():
        if p.ndim < 2 or config.reset == 0:
            continue
        ratio = (on_forget[name] / (on_retain[name] + on_retain[name].mean() * 1e-3 + 1e-30)).flatten()
        chosen = max(int(config.reset * ratio.numel()), 1)
        threshold = torch.topk(ratio, chosen).values[-1]
        masks[name] = (ratio >= threshold).reshape(p.shape)
    return masks


def match_prior(model, teacher, task) -> None:
    """Shift the head's bias until the model's mean softmax over a seeded sample of validation
    images equals the teacher's, class by class: the minimum of the convex mean logsumexp(z + b)
    − wanted·b, whose gradient is the difference (the logits are linear in the bias, so the
    model runs once)."""
    linear = head(model)
    if linear.bias is None or len(task.val.y) == 0:
        return
    indices = torch.randperm(len(task.val.y), generator=torch.Generator().manual_seed(task.seed))[:1024]
    x = task.val.batch(indices)[0]
    wanted = torch.softmax(predict_logits(teacher, x, precision=task.recipe.precision), 1).mean(0)
    logits = predict_logits(model, x, precision=task.recipe.precision) - linear.bias.detach().float().cpu()
    bias = linear.bias.detach().float().cpu().clone().requires_grad_(True)
    solver = torch.optim.LBFGS([bias], max_iter=200, tolerance_grad=1e-7, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def objective():
        solver.zero_grad()
        value = torch.logsumexp(logits + bias, 1).mean() - wanted @ bias
        value.backward()
        return value

    with torch.enable_grad():
        solver.step(objective)
    with torch.no_grad():
        linear.bias.copy_(bias.detach().to(linear.bias.dtype))


def erase(model, masks: dict[str, torch.Tensor], shrink: float, noise: float, seed: int) -> None:
    """Re-draw the masked entries and shrink-and-perturb every weight tensor, all from `seed`;
    fresh values and noise take each tensor's own spread, so the same settings mean the same on
    a ResNet, a ViT or a foreign model."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim < 2:
                continue
            spread = p.float().std()
            fresh = torch.randn(p.shape, generator=generator).to(p.device) * spread
            value = p.float()
            if name in masks:
                value = torch.where(masks[name], fresh, value)
            perturbation = torch.randn(p.shape, generator=generator).to(p.device) * spread * noise
            p.copy_((value * shrink + perturbation).to(p.dtype))


@register_method("erase-repair", EraseRepairConfig)
def erase_repair(model, task, config: EraseRepairConfig):
    """unlearnkit's method: re-draw the weights the forget set depends on most, shrink and perturb
    all weights with seed-dependent noise, distil from the original on held-out images, repair on
    the retain set with cross-entropy plus distillation from the original, then perturb the head."""
    erase(model, forget_specific_mask(model, task, config), config.shrink, config.noise, task.seed)
    if config.reset_head:
        reset(head(model), task.seed + 2)
    teacher = task.original.eval()

    if config.val_epochs > 0 and len(task.val.y) > 0:
        phase = config.recipe(task).model_copy(update={"epochs": config.val_epochs})
        fit(model, task.val, phase, seed=task.seed, loss=distillation_loss(teacher, config.temperature, 0.0, 1.0), description="erase-repair (val)")
    # a convex mix: added on top of the cross-entropy, the distillation's T-fold gradient acted as a far higher learning rate
    fit(model, task.retain, config.recipe(task), seed=task.seed, loss=distillation_loss(teacher, config.temperature, 1 - config.distill, config.distill), checkpoint=task.checkpoint, description="erase-repair")
    if config.final_noise > 0:
        erase(head(model), {}, 1.0, config.final_noise, task.seed + 3)
    if config.match_prior:
        match_prior(model, teacher, task)
    return model
