import pytest
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import create_model, list_models


SMALL = {"resnet18": {"width": 4}, "vgg11": {"width": 4}, "vit-tiny": {"dim": 24, "depth": 2, "heads": 2}, "mlp": {"in_features": 3 * 32 * 32}}
LANGUAGE_MODELS = {"gpt-tiny", "hf-gpt2"}  # token ids in, (batch, time, vocab) out: tested below


@pytest.mark.parametrize("name", [name for name in list_models() if name not in LANGUAGE_MODELS])
def test_forward_backward_finite(name):
    model = create_model(name, num_classes=7, **SMALL.get(name, {}))
    x = torch.rand(3, 3, 32, 32, requires_grad=True)
    out = model(x)
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_resnet18_standard_size_and_stem():
    model = create_model("resnet18")
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # the CIFAR ResNet-18
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert model.features(torch.rand(2, 3, 32, 32)).shape == (2, 512)


def test_normalization_lives_in_the_model():
    model = create_model("resnet18", width=4)
    assert {"mean", "std"} <= set(model.state_dict())


def test_unknown_model_and_bad_kwargs():
    with pytest.raises(UnlearnkitError, match="unknown model 'vgg99'; choose one of gpt-tiny, hf-gpt2, .*resnet18"):
        create_model("vgg99")
    with pytest.raises(UnlearnkitError, match="rejected its arguments"):
        create_model("resnet18", depth=3)
    with pytest.raises(UnlearnkitError, match="width must be"):
        create_model("resnet18", width=0)


def test_gpt_tiny_is_causal_and_refuses_images():
    model = create_model("gpt-tiny", width=32, depth=2, heads=2, context=16)
    ids = torch.randint(1, 256, (2, 12))
    out = model(ids)
    assert out.shape == (2, 12, 256) and torch.isfinite(out).all()
    changed = ids.clone()
    changed[:, 8:] = 7
    # a change at position 8 leaves every earlier prediction as it was
    assert torch.allclose(model(changed)[:, :8], out[:, :8], atol=1e-5) and not torch.allclose(model(changed)[:, 8:], out[:, 8:])
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with pytest.raises(UnlearnkitError, match="gpt-tiny takes int64 token ids"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(UnlearnkitError, match="context of 16 tokens"):
        model(torch.randint(0, 256, (1, 17)))
