import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, searched
from unlearnkit.train import Source, fit, to_float


class BoundaryShrinkConfig(FitConfig):
    epochs: float = Field(1.0, json_schema_extra=searched(0.25, 3.0), gt=0, description="passes over the retain set (over the forget set when with_retain is off)")
    with_retain: bool = Field(True, description="mix retain images into every step; the paper fine-tunes on the relabelled forget set alone, which it built for forgetting whole classes: on a random forget set that alone dragged test accuracy to 26%")
    lr: float = Field(0.05, json_schema_extra=searched(0.005, 0.5, log=True), gt=0, description="peak learning rate (cosine decay); chosen on val from 0.05, 0.1, 0.2 with retain mixed in")
    epsilon: float = Field(8 / 255, gt=0, description="size of the signed-gradient step that finds each image's nearest wrong class")


def nearest_wrong_class(model, x: torch.Tensor, y: torch.Tensor, epsilon: float, batch_size: int = 256) -> torch.Tensor:
    """For each image, the strongest wrong class after one signed-gradient step that raises its
    loss in pixel space: the class across the nearest decision boundary."""
    model.eval()
    labels = []
    for start in range(0, len(x), batch_size):
        xb, yb = to_float(x[start : start + batch_size]).requires_grad_(True), y[start : start + batch_size]
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xb), yb), xb)
        pushed = (xb + epsilon * grad.sign()).clamp(0, 1).detach()
        with torch.no_grad():
            logits = model(pushed).float()
        logits[torch.arange(len(yb)), yb] = -torch.inf
        labels.append(logits.argmax(1))
    return torch.cat(labels)


@register_method("boundary-shrink", BoundaryShrinkConfig)
def boundary_shrink(model, task, config: BoundaryShrinkConfig):
    """Boundary Shrink (Chen et al., "Boundary Unlearning", CVPR 2023): relabel each forget image
    with the nearest wrong class found by an adversarial step, then fine-tune on those labels
    (mixed with retain images unless `with_retain` is off)."""
    labels = nearest_wrong_class(task.original, task.forget.x, task.forget.y, config.epsilon)
    relabelled = Source(task.forget.x, labels, config.forget_batch)
    data = {"retain": task.retain, "forget": relabelled} if config.with_retain else {"forget": relabelled}
    fit(model, data, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, description="boundary-shrink")
    return model
