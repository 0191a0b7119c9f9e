"""UNSIR (Tarun, Chundawat, Mandal and Kankanhalli, "Fast Yet Effective Machine Unlearning",
IEEE TNNLS 2023): error-maximizing noise, then an impair pass and a repair pass.

Reference: vikram2000b/Fast-Machine-Unlearning @ 252bc9287a511774ab857d1f682845f28584eb25,
"Machine Unlearning.ipynb" cell 17 (`Noise`: a batch of images drawn from torch.randn, a parameter)
and cell 24 (per forget class: Adam at lr 0.1 on the noise, 5 × 8 steps, each on
−cross-entropy(model(noise), class) + 0.1 × the mean over noise images of their summed squared
values, the model in train mode as built); cell 10 (batch 256: the noise images per class);
cell 20 (retain samples: the first 1000 images of each retained class); cell 26 (impair: the
noise batch repeated 20 times, plus the retain samples, one shuffled loader of batch 256; Adam at
lr 0.02; 1 epoch of cross-entropy, train mode); cell 30 (repair: the retain samples alone, a new
Adam at lr 0.01, 1 epoch). The noise is the model's input, which there is normalized images.

Departures from the reference (each with its reason):
- the noise lives in the model's normalized input space: our models take pixels in [0, 1] and
  normalize inside (their `mean` and `std` buffers), so the image fed is mean + std × noise, on
  which the model computes what the reference's computes on the noise itself (a model without
  those buffers takes the noise as it is).
- each class's noise is labelled with that class; the notebook labels all noise 0 (`class_num`
  is never updated), which agrees for its first class only. vikram2000b/bad-teaching-unlearning
  @ f1aa988, unlearn.py lines 118-134, labels it with its class.
- retain samples come from every class of the retain set (with class forgetting, the retained
  classes), so that random forgetting has them too.
- each pass drops its last partial batch (fit's passes hold whole batches): the training loop is
  shared by every method.
- none in the update rule otherwise; the learning rates and the numbers of images and steps are
  tuned for our presets. The method reads the forget set's labels, never its images.
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit.methods import MethodConfig, register_method
from unlearnkit.methods.bad_teacher import Mixture, labels_of
from unlearnkit.methods.common import require_continuous_inputs, searched
from unlearnkit.train import Recipe, Source, autocast, fit, model_device


class SyntheticProxyConfig(MethodConfig):
    """UNSIR's hyperparameters (the reference's values)."""

    noise_per_class: int = Field(256, ge=1, description="error-maximizing noise images per class of the forget set")
    noise_steps: int = Field(40, ge=1, description="Adam steps on each class's noise")
    noise_lr: float = Field(0.1, gt=0, description="Adam learning rate of the noise")
    noise_l2: float = Field(0.1, ge=0, description="weight of the noise images' mean summed squared (normalized) pixel values")
    noise_repeats: int = Field(20, ge=1, description="copies of each noise image in the impair set")
    retain_per_class: int = Field(1000, ge=1, description="retain images per class (the first ones) in the impair and repair sets")
    impair_lr: float = Field(0.02, json_schema_extra=searched(0.001, 0.05, log=True), gt=0, description="Adam learning rate of the impair pass (constant)")
    repair_lr: float = Field(0.01, json_schema_extra=searched(0.001, 0.05, log=True), gt=0, description="Adam learning rate of the repair pass (constant)")
    impair_epochs: float = Field(1.0, gt=0, description="passes over the impair set")
    repair_epochs: float = Field(1.0, gt=0, description="passes over the repair set")


def input_normalization(model, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (mean, std) by which the model normalizes its input inside (buffers `mean` and `std`
    of shape (1, channels, 1, 1)); (0, 1) for a model without them."""
    device = model_device(model)
    buffers = dict(model.named_buffers())
    mean, std = buffers.get("mean"), buffers.get("std")
    if mean is None or std is None or mean.shape != (1, channels, 1, 1) or std.shape != mean.shape:
        return torch.zeros((1, channels, 1, 1), device=device), torch.ones((1, channels, 1, 1), device=device)
    return mean.detach().float(), std.detach().float()


def error_maximizing_noise(model, classes: list[int], image_shape: tuple[int, ...], config: SyntheticProxyConfig, seed: int, precision: str = "auto") -> torch.Tensor:
    """`noise_per_class` images for each class in `classes`, in that order: noise from a normal
    distribution (in the model's normalized input space) optimized by Adam to maximize the
    model's cross-entropy on the class, less `noise_l2` × its mean summed square. The model runs
    in train mode, as in the reference (batch statistics; its running statistics move)."""
    device = model_device(model)
    if len(image_shape) == 3:
        mean, std = input_normalization(model, image_shape[0])
    else:  # table rows or other inputs: the noise lives in the input space as given
        mean, std = torch.zeros((), device=device), torch.ones((), device=device)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    images = []
    for label in classes:
        noise = torch.randn((config.noise_per_class, *image_shape), generator=generator).to(device).requires_grad_(True)
        optimizer = torch.optim.Adam([noise], lr=config.noise_lr)
        labels = torch.full((config.noise_per_class,), label, device=device)
        for _ in range(config.noise_steps):
            with autocast(device, precision):
                logits = model(mean + std * noise)
            loss = -F.cross_entropy(logits.float(), labels) + config.noise_l2 * noise.pow(2).sum(dim=tuple(range(1, noise.ndim))).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        images.append((mean + std * noise).detach())
    for p in model.parameters():
        p.grad = None
    return torch.cat(images)


def first_per_class(labels: torch.Tensor, count: int) -> torch.Tensor:
    """Positions of the first `count` examples of each class (classes in increasing order)."""
    labels = labels.cpu()
    return torch.cat([(labels == c).nonzero().flatten()[:count] for c in labels.unique().tolist()])


@register_method("synthetic-proxy", SyntheticProxyConfig)
def synthetic_proxy(model, task, config: SyntheticProxyConfig):
    """UNSIR (Tarun et al., "Fast Yet Effective Machine Unlearning", TNNLS 2023): for each class
    of the forget set, noise images that maximize the model's error on the class; an impair pass
    (train on that noise, labelled with its class, mixed with retain samples), then a repair pass
    on the retain samples. The method reads the forget set's labels, never its images."""
    require_continuous_inputs(task, "synthetic-proxy", "learns noise inputs by gradient ascent")
    classes = task.forget.y.cpu().unique().tolist()
    noise = error_maximizing_noise(model, classes, task.retain.image_shape, config, task.seed, task.recipe.precision)
    noise_labels = torch.tensor(classes).repeat_interleave(config.noise_per_class)
    retain_labels = labels_of(task.retain).cpu()
    retain_rows = first_per_class(retain_labels, config.retain_per_class)
    repeated = torch.arange(len(noise)).view(len(classes), 1, config.noise_per_class).expand(-1, config.noise_repeats, -1).flatten()
    impair = Mixture(
        [(Source(noise, noise_labels.to(noise.device)), repeated), (task.retain, retain_rows)],
        torch.cat([noise_labels[repeated], retain_labels[retain_rows]]),
    )
    repair = Mixture([(task.retain, retain_rows)], retain_labels[retain_rows])
    for name, data, lr, epochs in (("impair", impair, config.impair_lr, config.impair_epochs), ("repair", repair, config.repair_lr, config.repair_epochs)):
        recipe = Recipe(
            epochs=epochs, batch_size=task.recipe.batch_size, lr=lr, momentum=0.9, weight_decay=0.0, optimizer="adamw",
            schedule="constant", warmup=0.0, precision=task.recipe.precision,
        )
        adam = torch.optim.Adam(model.parameters(), lr=lr)
        fit(model, data, recipe, seed=task.seed, checkpoint=task.checkpoint, optimizer=adam, description=f"synthetic-proxy {name}")
    return model
