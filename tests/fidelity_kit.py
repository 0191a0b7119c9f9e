"""What the fidelity tests share: a tiny ResNet-18 with fixed weights, fixed small batches, a
task around them, and a one-step setting of the training loop.

A fidelity test runs one update of our method (or its erase step, its loss, its
re-initialization statistics) and an independent transcription of the authors' code, written in
the test from their file, and compares the two in fp32. It never calls our method's helpers for
the reference side: only torch.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from unlearnkit.methods import Task
from unlearnkit.models import create_model
from unlearnkit.train import Recipe, Source

CLASSES = 4
RETAIN, FORGET, VAL = 16, 8, 8
# fp32 everywhere: the tests must not depend on the CPU kind's bf16 kernels or the thread count
RECIPE = Recipe(epochs=1, batch_size=RETAIN, lr=0.1, schedule="constant", warmup=0.0, precision="fp32")
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def tiny_model(seed: int = 0) -> nn.Module:
    """A width-4 ResNet-18 for 8x8 images, with batch-norm statistics that are not the defaults."""
    torch.manual_seed(seed)
    model = create_model("resnet18", width=4, num_classes=CLASSES)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.8, 1.2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    return model.eval()


def images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` uint8 8x8 images and labels from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=generator, dtype=torch.uint8)
    y = torch.randint(0, CLASSES, (n,), generator=generator)
    return x, y


def tiny_task(model: nn.Module, *, recipe: Recipe = RECIPE, seed: int = 0) -> Task:
    """The task of `model` (its frozen copy as the original) on fixed retain / forget / val sets."""
    return Task(
        retain=Source(*images(RETAIN, 1)), forget=Source(*images(FORGET, 2)), val=Source(*images(VAL, 3)),
        original=copy.deepcopy(model).eval(), num_classes=CLASSES, recipe=recipe, seed=seed,
    )


def as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images as the model takes them (floats in [0, 1]), as the training loop feeds them."""
    return x.float() / 255


def assert_same_weights(ours: nn.Module, theirs: nn.Module, **tolerance) -> None:
    """Every parameter and buffer equal within fp32 tolerance, naming the first that is not."""
    tolerance = tolerance or TOLERANCE
    theirs_state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        expected = theirs_state[name]
        if value.is_floating_point():
            torch.testing.assert_close(value, expected, **tolerance, msg=lambda m, name=name: f"{name}: {m}")
        else:
            assert torch.equal(value, expected), name
