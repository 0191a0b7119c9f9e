"""unlearnkit's own method, the default of `unlearnkit forget`. What the evidence says about the
others (docs/results.md): the methods that look best on population attacks are the easiest to
spot example by example, because they move every forget example the same way on every seed,
while a retrained model's output on an example it never saw varies from seed to seed; the
challenge winners that do best erase first and then repair on the retain set.

So: (1) erase where the forget set lives: re-draw the weights whose Fisher importance to the
forget set most exceeds their importance to a retain sample of the same size; (2) perturb every
weight with seed-dependent noise (optionally shrinking it first, Ash & Adams' shrink-and-perturb),
which gives the unlearned models a spread across seeds, as retrained ones have; (3) distil from the
original on the held-out validation images, which it never trained on (kde's phase): its outputs
there are what it learned without memorizing; (4) repair on the retain set with a mix of
cross-entropy and distillation from the original on retain images; (5) add seed-dependent noise
to the classifier head's weights, so that the unlearned models' outputs on the forget set vary
from seed to seed more as retrained models' do; optionally (6) give the head the original's class
rates on held-out images (`match_prior`).

Measured (docs/results.md): distillation from the original on retain images at a low rate also
brings the forget set back (a repair at lr 0.1 with half distillation left forget accuracy at
96-99%), so the repair runs at a high rate and the erasure must do the forgetting. Per forget
example (`scripts/screen_neurips.py`), the unlearned models' confidences sit near the retrained
models' centre but spread about two thirds as widely; more noise before the repair, less
distillation or a re-drawn head did not widen them (the repair pulls every seed back to nearly the
same function), the distillation on held-out images raised the NeurIPS score, and noise on the
head after the repair widened them to 0.8 of the retrained spread."""

import torch
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, distillation_loss, reset, searched
from unlearnkit.methods.ssd import importances
from unlearnkit.models.interface import head
from unlearnkit.train import Source, fit, predict_logits


class EraseRepairConfig(FitConfig):
    """Defaults: 2% of each tensor re-drawn, noise 0.2, no shrink (the best of seven settings tried
    by hand on the default preset's validation split, seed 0; 5% re-drawn took validation accuracy
    from 74% to 63-64%); one pass of distillation on the validation images, then one pass of repair
    at lr 0.2 with 0.85 distillation and 0.15 cross-entropy, and noise of 0.5 of the head's spread
    on the head's weights at the end: the best of eighteen variants by the NeurIPS score with N = 8
    on the default preset's seed 0 (`scripts/screen_neurips.py`, docs/results.md), 0.149 where the
    former defaults (no noise at the end, 0.7 distillation) scored 0.144; with N = 16, 0.109
    against their 0.096 and kde's 0.105. Within 0.2× the retrained model's time there, the
    teacher's forward passes included. `unlearnkit tune erase-repair` searches around it."""

    epochs: float = Field(1.0, gt=0, description="passes of repair over the retain set (not searched: more would break the 0.2× budget)")
    lr: float = Field(0.2, json_schema_extra=searched(0.05, 0.3, log=True), gt=0, description="peak learning rate of the repair (cosine decay). On a small plain CNN (no residual connections) with small batches (32 retain images a step, as in the contract's foreign model) 0.03: at 0.2 its first steps diverged to NaN at 2 threads on the Intel CPU kind; a ResNet there still needs 0.2 to forget")
    reset: float = Field(0.02, json_schema_extra=searched(0.0, 0.05), ge=0, lt=1, description="share of each weight tensor re-drawn: the entries most important to the forget set relative to the retain set")
    shrink: float = Field(1.0, json_schema_extra=searched(0.8, 1.0), gt=0, le=1, description="every weight is multiplied by this before the noise is added")
    noise: float = Field(0.2, json_schema_extra=searched(0.0, 0.4), ge=0, description="std of the Gaussian noise added to every weight tensor, in units of that tensor's own std")
    distill: float = Field(0.85, json_schema_extra=searched(0.0, 0.95), ge=0, le=1, description="share of the distillation from the original's outputs on retain images in the repair loss, the rest cross-entropy (0: cross-entropy only); 0.25, 0.5, 0.7 and 0.85 scored 0.131, 0.140, 0.144 and 0.143 without the final noise, 0.7, 0.85 and 0.95 with it 0.147, 0.149 and 0.149 (NeurIPS, N = 8)")
    temperature: float = Field(2.0, gt=0, description="softening of the original's outputs in the distillation")
    score_sample: int = Field(1024, ge=1, description="forget images, and as many retain images, whose gradients rank the weights")
    reset_head: bool = Field(False, description="also re-draw the whole classifier head from the seed (as kde does): the repair learns it anew on the features, so each seed reads them differently")
    final_noise: float = Field(0.5, json_schema_extra=searched(0.0, 0.8), ge=0, description="std of seed-dependent Gaussian noise added to the classifier head's weights after the repair, in units of their own std (Descent-to-Delete and certified removal also publish noisy weights): a retrained model's output on an example it never saw varies from seed to seed, and without it the repaired ones spread two thirds as widely. 0.15, 0.3, 0.5 and 0.8 widened them to 0.70, 0.73, 0.80 and 0.93 of the retrained spread (NeurIPS F 0.167 to 0.184, N = 8) and cost 0.1, 0.4, 0.9 and 2.1 test points; 0.8 takes test accuracy more than 1 point under the retrained models'")
    match_prior: bool = Field(False, description="at the end, shift the head's bias so that the model's mean predicted probability of each class over (up to 1024) validation images is the original's there (the original never trained on them). Off by default: on the default preset it raised test accuracy by 0.3 points over 3 seeds (0.8 on the backdoor scenario) but lowered the NeurIPS score from 0.149 to 0.144 (N = 8; it takes back part of the final noise's spread, 0.71 of the retrained spread against 0.80), and the backdoor's success stayed inside the retrain's interval on 1 of 3 seeds: the share of images sent to the target class is an argmax rate, which matched probabilities do not fix")
    val_epochs: float = Field(1.0, ge=0, description="passes of distillation from the original on the validation images between the erasure and the repair (kde's phase): images the original never trained on, whose soft outputs carry what it learned without memorizing; 0: none (with an even mix the NeurIPS score fell from 0.140 to 0.129, N = 8)")


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
