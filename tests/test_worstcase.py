"""Worst-case forget sets (`memorized:`, `entangled:`): the estimators against transcriptions of
RUM's code, and planted effects end to end through `prepare`."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_arrays, write_binary

from unlearnkit.data.scenarios import parse_forget
from unlearnkit.data.splits import make_split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.experiment import prepare
from unlearnkit.presets import ModelSpec, get_preset
from unlearnkit.reference import train_reference
from unlearnkit.train import Recipe
from unlearnkit.worstcase import distance_entanglement, feldman_memorization, pool_features

CLASSES = tuple(str(c) for c in range(10))


def rum_memorization(trainset_correctness, trainset_mask):
    """kairanzhao/RUM @ f593c9d, surgical_plugins/cifar_infl_mem_torch.py lines 264-277, transcribed."""
    inv_mask = np.logical_not(trainset_mask)

    def _masked_avg(x, mask, axis=0, esp=1e-10):
        return (np.sum(x * mask, axis=axis) / np.maximum(np.sum(mask, axis=axis), esp)).astype(np.float32)

    return _masked_avg(trainset_correctness, trainset_mask) - _masked_avg(trainset_correctness, inv_mask)


def rum_des(f_features, r_features):
    """kairanzhao/RUM @ f593c9d, surgical_plugins/cluster.py lines 99-110 (`get_DES`), transcribed."""
    r_centroid = np.mean(r_features, axis=0)
    f_distances = np.linalg.norm(f_features - r_centroid, axis=1)
    f_distance_avg = np.mean(f_distances)
    f_centroid = np.mean(f_features, axis=0)
    r_distances = np.linalg.norm(r_features - f_centroid, axis=1)
    r_distance_avg = np.mean(r_distances)
    return (f_distance_avg + r_distance_avg) / 2


def test_the_memorization_estimate_is_feldmans_as_rum_computes_it():
    rng = np.random.default_rng(0)
    mask = rng.random((6, 40)) < 0.7
    correctness = rng.random((6, 40))
    ours = feldman_memorization(correctness, mask)
    np.testing.assert_allclose(ours, rum_memorization(correctness, mask), atol=1e-6)
    assert np.ptp(ours) > 0.1  # not a constant that would match by accident


def test_the_entanglement_figure_is_rums_distance_score():
    rng = np.random.default_rng(1)
    forget, retain = rng.normal(0.5, 1, (7, 16)), rng.normal(0, 1, (90, 16))
    assert distance_entanglement(forget, retain) == pytest.approx(rum_des(forget, retain), rel=1e-12)


def test_worst_case_specs_parse_and_refuse_a_split_made_without_the_original():
    scenario = parse_forget("memorized:0.02", CLASSES)
    assert (scenario.kind, scenario.amount, scenario.ranked) == ("memorized", 0.02, True)
    assert not parse_forget("random:0.02", CLASSES).ranked
    with pytest.raises(UnlearnkitError, match="forget amount 0 is invalid"):
        parse_forget("entangled:0", CLASSES)
    labels = np.arange(100) % 10
    with pytest.raises(UnlearnkitError, match="ranks the pool by the original model; make the split through unlearnkit.experiment.prepare"):
        make_split(labels, 20, forget="entangled:5")
    scores = np.arange(100.0)
    split = make_split(labels, 20, forget="memorized:5", scores=scores)
    assert split.forget.tolist() == [95, 96, 97, 98, 99]


@pytest.fixture
def outliers(tmp_path, cache):
    """Synthetic images whose every 20th training image is a unique black-and-white block pattern
    (labels unchanged): a model can only get those right by memorizing them."""
    train_x, train_y, test_x, test_y = synthetic_arrays(n_train=250, noise=40)
    planted = np.arange(0, 250, 20)
    blocks = np.random.default_rng(5).integers(0, 2, size=(planted.size, 3, 8, 8)) * 255
    train_x[planted] = np.kron(blocks, np.ones((1, 1, 4, 4))).astype(np.uint8)
    folder = write_binary(tmp_path / "cifar-10-batches-bin", train_x, train_y, test_x, test_y)
    # a perceptron memorizes such images in a few epochs, where the smoke preset's narrow ResNet does not
    preset = get_preset("smoke").model_copy(update={
        "recipe": Recipe(epochs=20, batch_size=32, lr=0.02, schedule="onecycle", precision="fp32"), "model": ModelSpec(factory="foreign:build_mlp"),
    })
    return str(folder), preset, planted


def test_the_memorized_scenario_forgets_the_planted_outliers(outliers):
    data, preset, planted = outliers
    setup = prepare(data=data, preset=preset, forget=f"memorized:{planted.size}")
    assert setup.split.forget.size == planted.size
    assert np.isin(planted, setup.split.forget).sum() >= planted.size - 2  # a random set of 13 of 250 holds 0.7 of them on average
    assert setup.split.spec == f"memorized:{planted.size}"
    again = prepare(data=data, preset=preset, forget=f"memorized:{planted.size}")
    assert np.array_equal(again.split.forget, setup.split.forget)


def test_the_entangled_scenario_is_more_entangled_than_random_and_shares_the_original(outliers):
    data, preset, planted = outliers
    entangled = prepare(data=data, preset=preset, forget=f"entangled:{planted.size}")
    random = prepare(data=data, preset=preset, forget=f"random:{planted.size}")
    assert train_reference("original", random.dataset, random.split, preset, 0, random.store).cached  # ranked by the same original
    pool, features = pool_features(random.dataset, random.split, preset, 0, random.store)
    score = {}
    for name, setup in (("entangled", entangled), ("random", random)):
        inside = np.isin(pool, setup.split.forget)
        score[name] = distance_entanglement(features[inside], features[~inside])
    assert score["entangled"] < 0.9 * score["random"]
    assert np.isin(planted, entangled.split.forget).sum() <= 2  # the outliers lie far from the rest
