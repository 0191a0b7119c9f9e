import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, searched
from unlearnkit.train import Source, autocast, fit, model_device, to_float


class AMUNConfig(FitConfig):
    """Defaults: the paper's L2 PGD with a radius doubled until the prediction changes, at 5
    steps where the paper takes 50, then one pass over the retain set mixed with the
    adversarial examples, which keeps the method within 0.2× the
    retrain's time. The radius is in units of [0, 1] pixels. Not yet tuned: `unlearnkit tune amun`."""

    epsilon: float = Field(0.25, json_schema_extra=searched(0.05, 2.0, log=True), gt=0, description="first L2 radius of the attack, doubled for the images whose prediction has not changed")
    doublings: int = Field(6, ge=0, description="how often the radius may double; an image still not flipped then keeps its last attempt")
    pgd_steps: int = Field(5, json_schema_extra=searched(2, 20), ge=1, description="projected gradient steps per radius")
    with_forget: bool = Field(False, description="also train on the forget images with their own labels: a variant that keeps their predictions and only lowers the confidence around them")


def l2_normalized(v: torch.Tensor) -> torch.Tensor:
    return v / v.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *[1] * (v.ndim - 1))


def pgd_l2(model, x: torch.Tensor, y: torch.Tensor, radius: float, steps: int, bounds: tuple[float, float], precision: str) -> torch.Tensor:
    """Untargeted L2 projected gradient ascent on the cross-entropy within `radius` of `x`."""
    step = 2.5 * radius / steps
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(steps):
        with autocast(x.device, precision):
            loss = F.cross_entropy(model(x + delta).float(), y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += step * l2_normalized(grad)
            norms = delta.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1))
            delta *= (radius / norms.clamp(min=1e-12)).clamp(max=1)
            delta.copy_((x + delta).clamp(*bounds) - x)
    return (x + delta).detach()


def adversarial_examples(model, forget: Source, config: AMUNConfig, precision: str, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """For each forget image, the closest adversarial example found at a doubling radius, and
    the class the model gives it."""
    device = model_device(model)
    model.eval()
    xs, labels = [], []
    bounds = (0.0, 1.0) if forget.x.dtype == torch.uint8 else (float(forget.x.min()), float(forget.x.max()))
    for start in range(0, len(forget), batch_size):
        x = to_float(forget.x[start : start + batch_size].to(device))
        y = forget.y[start : start + batch_size].to(device)
        found, predicted = x.clone(), y.clone()
        pending, radius = torch.arange(len(x), device=device), config.epsilon
        for _ in range(config.doublings + 1):
            attempt = pgd_l2(model, x[pending], y[pending], radius, config.pgd_steps, bounds, precision)
            with torch.no_grad(), autocast(device, precision):
                found[pending], predicted[pending] = attempt, model(attempt).argmax(1)
            pending = pending[predicted[pending] == y[pending]]
            if len(pending) == 0:
                break
            radius *= 2
        xs.append(found)
        labels.append(predicted)
    return torch.cat(xs), torch.cat(labels)


@register_method("amun", AMUNConfig)
def adversarial_unlearning(model, task, config: AMUNConfig):
    """AMUN (Ebrahimpour-Boroojeny et al., "Not All Wrong is Bad: Using Adversarial Examples
    for Unlearning", ICML 2025): find the nearest adversarial example of each forget image and
    label it with the class it was pushed to; fine-tuning on those, beside the retain set,
    lowers the model's confidence on the forget images where it changes the decision boundary
    only near them."""
    x_adv, y_adv = adversarial_examples(task.original, task.forget, config, task.recipe.precision)
    x, y = x_adv, y_adv
    if config.with_forget:
        x = torch.cat([to_float(task.forget.x.to(x_adv.device)), x_adv])
        y = torch.cat([task.forget.y.to(y_adv.device), y_adv])
    data = {"retain": task.retain, "adversarial": Source(x, y, config.forget_batch)}
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, description="amun")
    return model
