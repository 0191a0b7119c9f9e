import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import register_method
from unlearnkit.methods.cfw import class_weights
from unlearnkit.methods.common import FitConfig, searched
from unlearnkit.train import fit


class PRMQConfig(FitConfig):
    """Defaults: one pass over the retain set at lr 0.2, finetune's validated rate (the write-up
    trains about 3 epochs; one of our preset's 9 epochs keeps the method within 0.2× the
    retrain's time). Not yet tuned: `unlearnkit tune prmq`."""

    lr: float = Field(0.2, json_schema_extra=searched(0.01, 0.5, log=True), gt=0, description="peak learning rate (cosine decay)")
    prune: float = Field(0.99, json_schema_extra=searched(0.5, 0.995), gt=0, lt=1, description="share of convolution and linear weights, smallest |w| over the whole network, re-initialized")
    entropy_weight: float = Field(1.0, json_schema_extra=searched(0.01, 10.0, log=True), ge=0, description="weight of the MSE between the model's and the original's output entropy on retain images")


def entropy(logits: torch.Tensor) -> torch.Tensor:
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


@register_method("prmq", PRMQConfig)
def prune_reinit_match_quantize(model, task, config: PRMQConfig):
    """Erase then repair, the NeurIPS 2023 unlearning challenge's 4th place ("PRMQ"): global L1
    pruning of the convolution and linear weights, the pruned ones randomly re-initialized (Kaiming
    uniform, as a fresh layer is); training on the retain set with class-weighted cross-entropy
    plus an MSE that keeps each image's output entropy at the original's; then a round trip of
    every weight through fp16."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        raise UnlearnkitError("prmq needs convolution or linear layers to prune; this model has none")
    generator = torch.Generator().manual_seed(task.seed)
    magnitudes = torch.cat([layer.weight.detach().abs().flatten().cpu() for layer in layers])
    # the k-th smallest magnitude: kthvalue is exact where quantile would interpolate
    threshold = magnitudes.kthvalue(max(1, int(config.prune * magnitudes.numel()))).values
    with torch.no_grad():
        for layer in layers:
            fresh = torch.empty(layer.weight.shape)
            bound = 1 / max(1, layer.weight[0].numel()) ** 0.5  # nn.init.kaiming_uniform_(a=√5), the layers' own init
            fresh.uniform_(-bound, bound, generator=generator)
            pruned = layer.weight.abs() <= threshold.to(layer.weight.device)
            layer.weight.copy_(torch.where(pruned, fresh.to(layer.weight.device), layer.weight))
    weights = class_weights(task.retain, task.num_classes).to(next(model.parameters()).device)
    original = task.original

    def matched(model, batch, state):
        x, y = batch["data"]
        logits = model(x)
        state.correct += int((logits.argmax(1) == y).sum())
        state.seen += len(y)
        with torch.no_grad():
            target = entropy(original(x))
        return F.cross_entropy(logits, y, weight=weights) + config.entropy_weight * F.mse_loss(entropy(logits), target)

    fit(model, task.retain, config.recipe(task), seed=task.seed, loss=matched, checkpoint=task.checkpoint, description="prmq")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.half().float())
    return model
