import pytest
import torch
import torch.nn.functional as F

from conftest import synthetic_arrays
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import create_model
from unlearnkit.train import Recipe, Source, augment, fit, lr_factor, predict_logits

FAST = Recipe(epochs=10, batch_size=16, lr=0.05, schedule="onecycle")


def tiny(seed=0, n=160):
    x, y, _, _ = synthetic_arrays(n, 10, seed=seed, noise=15)
    return Source(torch.from_numpy(x), torch.from_numpy(y))


def fresh(seed=0):
    torch.manual_seed(seed)
    return create_model("resnet18", width=4).to(memory_format=torch.channels_last)


def mean_loss(model, source):
    return F.cross_entropy(predict_logits(model, source.x), source.y).item()


def test_training_drives_loss_down():
    data, model = tiny(), fresh()
    before = mean_loss(model, data)
    report = fit(model, data, FAST)
    assert report.steps == 10 * (160 // 16) and report.images == 10 * 160
    assert mean_loss(model, data) < 0.5 * before


def test_same_seed_same_weights_other_seed_differs():
    weights = []
    for seed in (0, 0, 1):
        model = fresh(0)
        fit(model, tiny(), Recipe(epochs=1, batch_size=32, augment=True), seed=seed)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_fractional_epochs_and_mixed_sources():
    seen = []

    def loss(model, batch, state):
        seen.append({name: len(x) for name, (x, _) in batch.items()})
        x = torch.cat([x for x, _ in batch.values()])
        y = torch.cat([y for _, y in batch.values()])
        return F.cross_entropy(model(x), y)

    report = fit(fresh(), {"retain": tiny(0), "forget": tiny(1, 40)}, Recipe(epochs=0.5, batch_size=32), loss=loss)
    extra = {"retain": 32, "forget": 32}
    assert report.steps == 2 and seen == [extra, extra]


def test_mask_holds_entries_through_weight_decay_and_momentum():
    model = fresh()
    name = "layer1.0.conv1.weight"
    weight = dict(model.named_parameters())[name]
    mask = torch.zeros_like(weight, dtype=torch.bool)
    mask[: weight.shape[0] // 2] = True
    frozen = weight.detach().clone()
    fit(model, tiny(), Recipe(epochs=2, batch_size=32, weight_decay=0.1, momentum=0.9), mask={name: mask})
    assert torch.equal(weight[~mask], frozen[~mask])
    assert not torch.equal(weight[mask], frozen[mask])


def test_on_step_can_stop_early():
    report = fit(fresh(), tiny(), FAST, on_step=lambda model, state: state.step >= 3)
    assert report.steps == 3 and report.stopped_early


def test_divergence_is_caught_within_one_step():
    def exploding(model, batch, state):
        out = model(batch["data"][0]).float().sum()
        return out * (float("nan") if state.step == 2 else 1.0)

    with pytest.raises(UnlearnkitError, match=r"unit: the loss became nan at step 3 \(learning rate .*\); lower the learning rate"):
        fit(fresh(), tiny(), FAST, loss=exploding, description="unit")


def test_augment_keeps_shape_and_content():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    # each output image is a 32x32 window of its zero-padded input, flipped or not
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    windows = {(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)}
    offsets = []
    for i in range(len(x)):
        found = [w for w in windows if torch.equal(out[i], (lambda c: c.flip(2) if w[2] else c)(padded[i, :, w[0] : w[0] + 32, w[1] : w[1] + 32]))]
        assert found, f"image {i} is not a crop of its padded input"
        offsets.append(found[0])
    assert len(set(offsets)) > 10  # and the windows are random, not one fixed crop
    centred = augment(x[:1], torch.Generator().manual_seed(0), pad=0)
    assert torch.equal(centred, x[:1]) or torch.equal(centred, x[:1].flip(3))


def test_schedules():
    assert lr_factor("constant", 0.2, 50, 100) == 1
    assert lr_factor("onecycle", 0.2, 19, 100) == pytest.approx(1.0)
    assert lr_factor("onecycle", 0.2, 99, 100) < 0.02
    assert lr_factor("cosine", 0.0, 50, 100) == pytest.approx(0.5)


@pytest.mark.parametrize("bad, field", [(dict(lr=-0.1), "lr"), (dict(epochs=0), "epochs"), (dict(bogus=1), "bogus"), (dict(schedule="step"), "schedule")])
def test_recipe_rejects_bad_values(bad, field):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        Recipe(**bad)


def test_auto_precision_is_bf16_only_where_the_hardware_has_it(monkeypatch):
    from unlearnkit import train

    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    assert train.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert train.resolve_precision("bf16", torch.device("cpu")) == "bf16"  # asked for: given
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    assert train.resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert train.resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert train.resolve_precision("fp32", torch.device("cuda")) == "fp32"
