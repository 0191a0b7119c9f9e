"""Contract tests over the method registry: every registered method is tested here without
anyone adding a test for it."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from unlearnkit.methods import Task, get_method, list_methods, make_config, run_method
from unlearnkit.methods.prune_l1 import conv_bn_pairs
from unlearnkit.models import create_model
from unlearnkit.train import Recipe, Source, fit, predict_logits
from unlearnkit.errors import UnlearnkitError

RECIPE = Recipe(epochs=60, batch_size=32, lr=0.05, schedule="onecycle", weight_decay=5e-4)
# The tiny task has 6 steps per pass over the retain set; methods that train get more passes
# and a higher rate than their defaults (sized for 22,500 retain images) to act at all.
TINY_OVERRIDES = {"epochs": 8, "lr": 0.1}
# Gradient ascent steps over the forget set alone: 48 images at its default batch of 64 are a
# single step per pass, so it gets smaller batches here, and its own rate (0.01): at 0.1 it
# overshoots within a step and the retain guard steps back to weights that still remember.
# SSD: the tiny task's forget set is 20% of its training data (10% in the presets), so forget
# importances reach at most about 5x the training importances and the paper's alpha of 10
# selects nothing.
# NegGrad+ likewise needs a gentler rate, and a guard that checks every step.
TINY_METHOD_OVERRIDES = {
    "gradient-ascent": {"forget_batch": 16, "lr": 0.01, "epochs": 16},
    "neggrad-plus": {"forget_weight": 1.0, "lr": 0.02, "epochs": 16, "check_every": 1},
    "ssd": {"alpha": 3},
}


def tiny_config(name, **extra):
    fields = get_method(name).config.model_fields
    values = {**TINY_OVERRIDES, **TINY_METHOD_OVERRIDES.get(name, {}), **extra}
    return {key: value for key, value in values.items() if key in fields}


def coloured_source(rng, centres, n, label_shift):
    """Each class has its own mean colour; `label_shift` 1 labels every image with the next
    class: examples that contradict the rule, which a model can only get right by memorizing."""
    y = rng.integers(0, 10, n)
    x = np.clip(centres[y] + rng.normal(0, 50, size=(n, 3, 16, 16)), 0, 255).astype(np.uint8)
    return Source(torch.from_numpy(x), torch.from_numpy((y + label_shift) % 10))


@pytest.fixture(scope="module")
def memorized():
    """A learnable rule (retain), plus forget examples labelled against it that the original
    memorized: a model retrained without them gets them wrong, as unlearning should."""
    rng = np.random.default_rng(0)
    centres = rng.integers(30, 225, size=(10, 3, 1, 1))
    retain, forget, val = coloured_source(rng, centres, 192, 0), coloured_source(rng, centres, 48, 1), coloured_source(rng, centres, 64, 0)
    torch.manual_seed(0)
    model = create_model("resnet18", width=8).to(memory_format=torch.channels_last)
    fit(model, {"retain": retain, "forget": Source(forget.x, forget.y, 8)}, RECIPE)
    task = Task(retain=retain, forget=forget, val=val, original=copy.deepcopy(model).eval(), num_classes=10, recipe=RECIPE, seed=0)
    return model, task


def accuracy(model, source):
    return (predict_logits(model, source.x).argmax(1) == source.y).float().mean().item()


def test_the_tiny_task_is_memorized(memorized):
    model, task = memorized
    assert accuracy(model, task.forget) >= 0.95 and accuracy(model, task.retain) >= 0.95
    assert accuracy(model, task.val) >= 0.6  # the rule generalizes


@pytest.mark.parametrize("name", list_methods())
def test_method_contract(memorized, name):
    model, task = memorized
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run_method(name, model, task, tiny_config(name))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model was modified"
    assert type(result.model) is type(model) and result.model.spec == model.spec
    assert {k: v.shape for k, v in result.model.state_dict().items()} == {k: v.shape for k, v in before.items()}
    assert all(torch.isfinite(v).all() for v in result.model.state_dict().values() if v.is_floating_point())
    assert accuracy(result.model, task.forget) < accuracy(model, task.forget) - 0.2
    assert result.seconds > 0


@pytest.mark.parametrize("name", list_methods())
def test_method_is_deterministic(memorized, name):
    model, task = memorized
    a = run_method(name, model, task, tiny_config(name, epochs=0.5)).model.state_dict()
    b = run_method(name, model, task, tiny_config(name, epochs=0.5)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["prune-l1", "prune-cosine"])
def test_pruned_filters_are_exactly_zero_after_finetune(memorized, name):
    model, task = memorized
    result = run_method(name, model, task, {"ratio": 0.5, "epochs": 2, "l1": 1e-4})
    zeroed = 0
    for name, conv, bn_name, bn in conv_bn_pairs(result.model):
        dead = conv.weight.flatten(1).abs().sum(1) == 0
        assert dead.sum() == conv.weight.shape[0] // 2, name
        assert torch.all(bn.weight[dead] == 0) and torch.all(bn.bias[dead] == 0)
        zeroed += int(dead.sum())
    assert zeroed > 0


def test_dummy_labels_are_wrong_and_strongest(memorized):
    from unlearnkit.methods.dummy_labels import strongest_wrong_class

    model, task = memorized
    dummy = strongest_wrong_class(model, task.forget.x, task.forget.y)
    assert torch.all(dummy != task.forget.y)
    logits = predict_logits(model, task.forget.x)
    logits[torch.arange(len(dummy)), task.forget.y] = -torch.inf
    assert torch.equal(dummy, logits.argmax(1))


@pytest.mark.parametrize(
    "name, values, message",
    [
        ("finetune", {"lr": -1}, r"method 'finetune' config field 'lr': Input should be greater than 0 \(got -1\)"),
        ("kl", {"temprature": 2}, r"method 'kl' config field 'temprature': Extra inputs are not permitted"),
        ("prune-l1", {"ratio": "half"}, r"method 'prune-l1' config field 'ratio'"),
        ("prune-l1", {"epochs": 0}, r"field 'epochs': Input should be greater than 0"),
        ("nope", {}, r"unknown method 'nope'; choose from"),
    ],
)
def test_bad_configs_are_one_line_errors(name, values, message):
    with pytest.raises(UnlearnkitError, match=message):
        make_config(name, values)


def test_salun_changes_only_salient_weights(memorized):
    from unlearnkit.methods.salun import saliency_mask

    model, task = memorized
    mask = saliency_mask(copy.deepcopy(model), task.forget, 0.2)
    share = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    assert 0.19 <= share <= 0.21
    result = run_method("salun", model, task, {"saliency": 0.2, "epochs": 2, "weight_decay": 0.01})
    after = dict(result.model.named_parameters())
    for name, before in model.named_parameters():
        assert torch.equal(after[name][~mask[name]], before[~mask[name]]), name
    assert any(not torch.equal(after[name][mask[name]], p[mask[name]]) for name, p in model.named_parameters())


def test_random_wrong_labels_are_wrong_and_spread():
    from unlearnkit.methods.common import random_wrong_labels

    y = torch.arange(1000) % 10
    wrong = random_wrong_labels(y, 10, seed=0)
    assert torch.all(wrong != y) and set(wrong.tolist()) == set(range(10))
    assert torch.equal(wrong, random_wrong_labels(y, 10, seed=0))


@pytest.mark.parametrize("name", ["gradient-ascent", "neggrad-plus"])
def test_ascent_stops_at_the_retain_floor(memorized, name):
    model, task = memorized
    floor = 0.95
    try:  # without the guard, retain accuracy collapses, or training diverges and is stopped
        unguarded = run_method(name, model, task, {"epochs": 50, "lr": 0.5, "retain_floor": 0.0})
        assert accuracy(unguarded.model, task.retain) < floor
    except UnlearnkitError as error:
        assert "NaN" in str(error) or "nan" in str(error)
    # the guard samples up to 512 retain images: here, all 192 of them
    guarded = run_method(name, model, task, {"epochs": 50, "lr": 0.5, "retain_floor": floor, "check_every": 1})
    assert accuracy(guarded.model, task.retain) >= floor * accuracy(model, task.retain)


def test_ssd_changes_nothing_when_the_forget_set_is_the_training_data(memorized):
    """Invariant: with forget = all training data, both importances are the same estimate, so
    no parameter exceeds alpha × its training importance and none is dampened."""
    model, task = memorized
    everything = Source(torch.cat([task.retain.x, task.forget.x]), torch.cat([task.retain.y, task.forget.y]))
    same = Task(retain=Source(everything.x[:0], everything.y[:0]), forget=everything, val=task.val, original=task.original, num_classes=10, recipe=task.recipe)
    result = run_method("ssd", model, same, {"alpha": 1.5})
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), result.model.state_dict().values()))


def test_ssd_caches_training_importances(memorized, tmp_path):
    import dataclasses

    model, task = memorized
    cached = dataclasses.replace(task, cache_dir=tmp_path, data_key="abcdef0123456789")
    first = run_method("ssd", model, cached, {"alpha": 3})
    files = list(tmp_path.glob("ssd-importances-*.safetensors"))
    assert len(files) == 1
    second = run_method("ssd", model, cached, {"alpha": 3})
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))
    uncached = run_method("ssd", model, task, {"alpha": 3})
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), uncached.model.state_dict().values()))


def test_boundary_labels_are_wrong_and_follow_the_adversarial_step(memorized):
    from unlearnkit.methods.boundary_shrink import nearest_wrong_class
    from unlearnkit.methods.dummy_labels import strongest_wrong_class

    model, task = memorized
    labels = nearest_wrong_class(model, task.forget.x, task.forget.y, epsilon=8 / 255)
    assert torch.all(labels != task.forget.y)
    # a vanishing step leaves the image where it was: the strongest wrong class of the original
    tiny_step = nearest_wrong_class(model, task.forget.x, task.forget.y, epsilon=1e-9)
    assert (tiny_step == strongest_wrong_class(model, task.forget.x, task.forget.y)).float().mean() >= 0.95


def test_cosine_criterion_ranks_a_forget_specific_filter_lowest(memorized):
    """A filter made to respond only to the forget images (here: by making them distinct in
    colour) must be the least similar between forget and retain."""
    from unlearnkit.methods.prune_cosine import forget_retain_similarity

    model, task = memorized
    similarity = forget_retain_similarity(model, task, probe=192)
    assert set(similarity) == {name for name, *_ in conv_bn_pairs(model)}
    assert all(s.shape == (conv.weight.shape[0],) and torch.all(s <= 1 + 1e-5) for (_, conv, _, _), s in zip(conv_bn_pairs(model), similarity.values()))
    # the same images on both sides: every filter responds identically
    same = dataclasses.replace(task, forget=task.retain)
    assert all(torch.allclose(s, torch.ones_like(s), atol=1e-4) for s in forget_retain_similarity(model, same, probe=192).values())


def test_synthetic_proxy_never_reads_the_forget_images(memorized):
    model, task = memorized
    blanked = dataclasses.replace(task, forget=Source(torch.zeros_like(task.forget.x), task.forget.y))
    config = tiny_config("synthetic-proxy", epochs=0.5)
    a = run_method("synthetic-proxy", model, task, config).model.state_dict()
    b = run_method("synthetic-proxy", model, blanked, config).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_error_maximizing_noise_raises_the_loss(memorized):
    from unlearnkit.methods.synthetic_proxy import SyntheticProxyConfig, error_maximizing_noise

    model, task = memorized
    labels = task.forget.y
    noise = error_maximizing_noise(model, labels, tuple(task.retain.x.shape[1:]), SyntheticProxyConfig(proxy_steps=30), seed=0)
    assert noise.dtype == torch.uint8 and noise.shape == task.forget.x.shape
    start = (torch.rand(noise.shape, generator=torch.Generator().manual_seed(0)) * 255).round().to(torch.uint8)
    loss = lambda x: torch.nn.functional.cross_entropy(predict_logits(model, x), labels).item()  # noqa: E731
    assert loss(noise) > loss(start) + 1.0


def test_overrides_from_the_command_line():
    from unlearnkit.methods import parse_overrides

    assert parse_overrides(["finetune.lr=0.1", "finetune.epochs=2", "boundary-shrink.with_retain=false"]) == {
        "finetune": {"lr": 0.1, "epochs": 2}, "boundary-shrink": {"with_retain": False}}
    assert parse_overrides(["prune-l1.scope=global"]) == {"prune-l1": {"scope": "global"}}


@pytest.mark.parametrize(
    "items, methods, message",
    [
        (["finetune.lr"], None, r"--set 'finetune.lr' is not METHOD.FIELD=VALUE"),
        (["lr=0.1"], None, r"--set 'lr=0.1' is not METHOD.FIELD=VALUE"),
        (["nope.lr=1"], None, r"unknown method 'nope'"),
        (["finetune.lr=-1"], None, r"method 'finetune' config field 'lr': Input should be greater than 0"),
        (["finetune.speed=3"], None, r"field 'speed': Extra inputs are not permitted"),
        (["kl.forget_weight=1"], ["finetune"], r"names method 'kl', which this run does not include"),
    ],
)
def test_bad_overrides_are_one_line_errors(items, methods, message):
    from unlearnkit.methods import parse_overrides

    with pytest.raises(UnlearnkitError, match=message):
        parse_overrides(items, methods)


class Crash(Exception):
    pass


@pytest.mark.parametrize("name", [n for n in list_methods() if n != "ssd"])  # ssd does not train
def test_method_resumes_after_a_crash_bitwise(memorized, tmp_path, name):
    """Every method that trains passes the task's checkpoint to fit: killed part-way, the same
    call resumes and ends with the weights of an uninterrupted run."""
    from unlearnkit.train import Checkpoint

    class CrashingCheckpoint(Checkpoint):
        def save(self, *args, **kwargs):
            super().save(*args, **kwargs)
            raise Crash()

    model, task = memorized
    config = tiny_config(name, epochs=1)
    path = tmp_path / "method.checkpoint.safetensors"
    uninterrupted = run_method(name, model, task, config).model.state_dict()
    with pytest.raises(Crash):
        run_method(name, model, task, config, checkpoint=CrashingCheckpoint(path, key=name, every=2))
    assert path.exists(), "the method did not pass task.checkpoint to fit"
    resumed = run_method(name, model, task, config, checkpoint=Checkpoint(path, key=name, every=2)).model.state_dict()
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in resumed)
    assert not path.exists()
