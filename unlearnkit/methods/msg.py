import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import register_method
from unlearnkit.methods.common import FitConfig, searched
from unlearnkit.train import Recipe, autocast, fit, model_device, to_float


class MSGConfig(FitConfig):
    """Defaults: one pass over the retain set (the write-up trains 5 epochs at 1e-3 with Adam-
    like rates; one of our preset's 9 epochs keeps the method within 0.2× the retrain's time),
    at lr 0.2, finetune's validated SGD rate, with a linear warm-up over the first tenth. Not yet
    tuned for this method: `unlearnkit tune msg`."""

    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="peak learning rate (linear warm-up, then linear decay)")
    reset: float = Field(0.3, json_schema_extra=searched(0.05, 0.6), gt=0, lt=1, description="fraction of each convolution's weights re-initialized: those with the smallest |gradient|")
    elsewhere: float = Field(0.1, ge=0, le=1, description="gradient scale on the weights that were not re-initialized (1 on those that were)")

    def recipe(self, task) -> Recipe:
        return super().recipe(task).model_copy(update={"schedule": "onecycle", "warmup": 0.1})


def gradient_scores(model: nn.Module, task, convolutions: list[nn.Conv2d], batch_size: int = 256) -> list[torch.Tensor]:
    """|∂(CE on a retain sample the forget set's size − CE on forget)/∂w| for each convolution."""
    model.eval()
    model.zero_grad(set_to_none=True)
    device = model_device(model)
    generator = torch.Generator().manual_seed(task.seed)
    sample = torch.randperm(len(task.retain), generator=generator)[: len(task.forget)]
    for source, indices, sign in ((task.retain, sample, 1.0), (task.forget, torch.arange(len(task.forget)), -1.0)):
        for start in range(0, len(indices), batch_size):
            x, y = source.batch(indices[start : start + batch_size])
            with autocast(device, task.recipe.precision):
                loss = sign * F.cross_entropy(model(to_float(x)), y, reduction="sum") / len(indices)
            loss.backward()
    scores = [conv.weight.grad.detach().abs().float() for conv in convolutions]
    model.zero_grad(set_to_none=True)
    model.train()
    return scores


@register_method("msg", MSGConfig)
def masked_reset(model, task, config: MSGConfig):
    """Erase then repair, the NeurIPS 2023 unlearning challenge's 2nd place ("MSG", one of the
    two best methods of the Deep Unlearn benchmark, Cadet et al. 2024): score every convolution
    weight by the gradient of retain-minus-forget cross-entropy, re-initialize (Kaiming) the
    share with the smallest scores, then train on retain with the gradient of the other weights
    scaled down."""
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise UnlearnkitError("msg needs convolutions to re-initialize; this model has none")
    scores = gradient_scores(model, task, convolutions)
    generator = torch.Generator().manual_seed(task.seed)
    hooks = []
    with torch.no_grad():
        for conv, score in zip(convolutions, scores):
            count = max(int(config.reset * score.numel()), 1)
            threshold = torch.kthvalue(score.flatten().cpu(), count).values.to(score.device)
            chosen = score <= threshold
            fresh = torch.empty(conv.weight.shape)
            fan_in = conv.weight[0].numel()
            fresh.normal_(0, (2.0 / fan_in) ** 0.5, generator=generator)
            conv.weight.copy_(torch.where(chosen, fresh.to(conv.weight.device, conv.weight.dtype), conv.weight))
            scale = torch.where(chosen, 1.0, config.elsewhere).to(conv.weight.dtype)
            hooks.append(conv.weight.register_hook(lambda grad, scale=scale: grad * scale))
    try:
        fit(model, task.retain, config.recipe(task), seed=task.seed, checkpoint=task.checkpoint, description="msg")
    finally:
        for hook in hooks:
            hook.remove()
    return model
