"""AMUN (Ebrahimpour-Boroojeny et al., "Not All Wrong is Bad: Using Adversarial Examples for
Unlearning", ICML 2025).

Reference: Ali-E/AMUN @ 9e341a9, pgdl2_modified.py lines 19 and 35-130 (the attack: L2 PGD from the
image with the true label, step 1/10 of the radius, 50 steps a radius; each image leaves the
attack at the first step where the prediction differs from its label, keeping that image and
the predicted class; the radius of the images still classified correctly after 50 steps doubles
and the attack goes on from where it stopped, until every image has flipped);
build_advdataset.py lines 62 and 206-234 (the attack on the original model in eval mode, true labels,
first radius 0.04 = PGDL2's default, batches of 128); helper.py lines 110-157 (the adversarial
set: those images, labelled with the adversarial class, not augmented); adversarial_unlearn.py
lines 286-302 and 364 (`amun`: the whole training set D_R ∪ D_F with true labels, concatenated
with the adversarial set and shuffled together in batches of 128), 408-453 (mean cross-entropy,
one loss over the mixed batch), 839-858 (`advonly` trains on D_R instead of D_R ∪ D_F) and 970
(SGD, momentum 0.9, weight decay 5e-4, no Nesterov).

Departures from the reference (each with its reason):
- The retain, forget and adversarial images are drawn in fixed shares of each batch, in
  proportion to the sets' sizes, instead of from one shuffled union: the training loop draws
  each source separately (a retain set read as a stream cannot be concatenated); the expected
  batch and the images seen per pass are the same.
- The doubling of the radius stops after `doublings` (20: the radius is then 0.04 × 2^20,
  beyond any image box) where the reference loops until every image has flipped: an image
  that no perturbation flips would never end; it keeps its last attempt, labelled with the
  class predicted for it.
- No random crop and flip of the retain and forget images (the reference augments them, not
  the adversarial ones): the training loop augments every source of a step alike, and our
  fine-tuning recipe trains unaugmented.
- Cosine decay of the learning rate over the run instead of StepLR (×0.1 after every epoch:
  adversarial_unlearn.py line 983 with LRsteps 1, hyperparam_tune.py line 14), and lr, epochs, batch size and the attack's first radius and steps are
  tuned for our presets. Images stored as floats (not uint8) are clamped to their own range,
  where the reference takes [0, 1].

Options of ours (off by default): `adv_only` — the reference's `advonly` ablation: train on
the retain set and the adversarial examples, without the forget images.
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import MethodConfig, Task, register_method
from unlearnkit.methods.common import require_continuous_inputs, searched
from unlearnkit.train import Recipe, Source, autocast, fit, model_device, to_float


class AMUNConfig(MethodConfig):
    """Defaults: the reference's attack (first radius 0.04 in [0, 1] pixel units, steps of a
    tenth of the radius, 50 steps a radius) and its optimizer, with one pass over the retain,
    forget and adversarial images together. Batches mix the three sets in proportion to
    their sizes: there is no separate forget batch. As the forget images keep their true labels,
    a short run at a low rate barely forgets: on the contract's tiny task (8 passes over 384
    retain images) it takes lr 0.1, where 0.05 leaves the forget set at 0.91-0.97. The search's
    range of `pgd_steps` holds the reference's 50, so that its first trial is the defaults."""

    epochs: float = Field(1.0, json_schema_extra=searched(0.25, 3.0), gt=0, description="passes over the retain set (and with it the forget and adversarial images)")
    lr: float = Field(0.05, json_schema_extra=searched(0.005, 0.5, log=True), gt=0, description="peak learning rate (cosine decay)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (no Nesterov, as the reference)")
    weight_decay: float = Field(5e-4, ge=0, description="SGD weight decay")
    epsilon: float = Field(0.04, json_schema_extra=searched(0.01, 2.0, log=True), gt=0, description="first L2 radius of the attack, in [0, 1] pixel units")
    step_size: float = Field(0.1, gt=0, description="PGD step length as a fraction of the current radius")
    pgd_steps: int = Field(50, json_schema_extra=searched(2, 50), ge=1, description="PGD steps per radius")
    doublings: int = Field(20, ge=0, description="most times the radius doubles for an image not yet flipped")
    adv_only: bool = Field(False, description="train on retain and adversarial images only, without the forget images (the reference's advonly)")

    def recipe(self, task: Task, batch_size: int) -> Recipe:
        return Recipe(
            epochs=self.epochs, batch_size=batch_size, lr=self.lr, momentum=self.momentum, nesterov=False,
            weight_decay=self.weight_decay, schedule="cosine", warmup=0.0, precision=task.recipe.precision,
        )


def per_image(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.view(-1, *[1] * (ndim - 1))


def nearest_adversarial(model, x: torch.Tensor, y: torch.Tensor, config: AMUNConfig, bounds: tuple[float, float], precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image of `x` (labels `y`), the first image along L2 PGD on the cross-entropy
    whose prediction is not its label, and that prediction. Before each step the images still
    classified as their label are told apart from the flipped ones; a flipped image leaves the
    attack there. The others take a step of `step_size` × their radius along their normalized
    gradient, projected onto the ball of that radius and the image bounds. After `pgd_steps`
    steps the radius of the images still not flipped doubles and the attack goes on from where
    they are. An image not flipped after `doublings` doublings keeps its last attempt."""
    found, label = x.clone(), y.clone()
    active = torch.arange(len(x), device=x.device)
    adv = x.clone()
    radius = torch.full((len(x),), config.epsilon, device=x.device)
    for _ in range(config.doublings + 1):
        for _ in range(config.pgd_steps):
            adv.requires_grad_(True)
            with autocast(x.device, precision):
                logits = model(adv).float()
            predicted = logits.argmax(1)
            holds = predicted == y[active]
            flipped = ~holds
            found[active[flipped]], label[active[flipped]] = adv.detach()[flipped], predicted[flipped]
            if not holds.any():
                return found, label
            # the mean over every image still in the attack, the flipped ones too (their step is then zeroed)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y[active]), adv)
            with torch.no_grad():
                grad = grad / per_image(grad.flatten(1).norm(dim=1) + 1e-10, x.ndim)
                grad[flipped] = 0
                adv = adv.detach() + per_image(config.step_size * radius, x.ndim) * grad
                delta = adv - x[active]
                factor = torch.minimum(radius / delta.flatten(1).norm(dim=1), torch.ones_like(radius))
                adv = (x[active] + delta * per_image(factor, x.ndim)).clamp(*bounds)
            adv, active, radius = adv[holds], active[holds], radius[holds]
            found[active] = adv
        with torch.no_grad(), autocast(x.device, precision):
            predicted = model(adv).argmax(1)
        radius = torch.where(predicted == y[active], radius * 2, radius)
    found[active], label[active] = adv, predicted
    return found, label


def adversarial_examples(model, forget: Source, config: AMUNConfig, precision: str, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest adversarial example of each forget image on `model` (in eval mode), in
    batches of `batch_size` as the reference, and the class the model gives it."""
    device = model_device(model)
    model.eval()
    bounds = (0.0, 1.0) if forget.x.dtype == torch.uint8 else (float(forget.x.min()), float(forget.x.max()))
    xs, labels = [], []
    for start in range(0, len(forget), batch_size):
        x = to_float(forget.x[start : start + batch_size].to(device))
        found, label = nearest_adversarial(model, x, forget.y[start : start + batch_size].to(device), config, bounds, precision)
        xs.append(found)
        labels.append(label)
    return torch.cat(xs), torch.cat(labels)


def proportional_batches(sizes: list[int], batch_size: int) -> list[int]:
    """Images per step from each set, in proportion to the sets' sizes (at least one each), the
    first taking what the others leave of `batch_size`: the expected batch of their union."""
    total = sum(sizes)
    rest = [max(round(batch_size * n / total), 1) for n in sizes[1:]]
    return [max(batch_size - sum(rest), 1), *rest]


@register_method("amun", AMUNConfig)
def adversarial_unlearning(model, task, config: AMUNConfig):
    """AMUN (Ebrahimpour-Boroojeny et al., "Not All Wrong is Bad: Using Adversarial Examples
    for Unlearning", ICML 2025): find the nearest adversarial example of each forget image and
    label it with the class it was pushed to; fine-tuning on those together with the retain
    and forget images lowers the model's confidence on the forget images where it changes the
    decision boundary only near them."""
    require_continuous_inputs(task, "amun", "searches adversarial examples by gradient steps in input space")
    x_adv, y_adv = adversarial_examples(task.original, task.forget, config, task.recipe.precision)
    extra = [("adversarial", x_adv, y_adv)] if config.adv_only else [("forget", task.forget.x, task.forget.y), ("adversarial", x_adv, y_adv)]
    sizes = proportional_batches([len(task.retain), *(len(y) for _, _, y in extra)], task.recipe.batch_size)
    data = {"retain": task.retain, **{name: Source(x, y, size) for (name, x, y), size in zip(extra, sizes[1:])}}
    fit(model, data, config.recipe(task, sizes[0]), seed=task.seed, checkpoint=task.checkpoint, description="amun")
    return model
