"""Worst-case forget sets: the training images the original memorizes most, and those most
entangled with the retained images in its feature space (`--forget memorized:0.02`,
`--forget entangled:0.02`). Random forget sets hide the failures these expose (Zhao et al.,
"What makes unlearning hard and what to do about it", NeurIPS 2024).

Reference: kairanzhao/RUM @ f593c9d605ca175a6f44ac0b977a18d86f13866e.
- Memorization, `surgical_plugins/cifar_infl_mem_torch.py` lines 254-283 (Feldman & Zhang's
  estimator): mem(x) = mean correctness of the models whose training subset held x minus that of
  the models whose subset did not (`_masked_avg(correctness, mask) - _masked_avg(correctness,
  ~mask)`), over 400 models on 70% subsets. Ours, for the cost of one training: two models on
  complementary halves of the pool (each image has one model with it and one without), and the
  true label's probability in place of 0/1 correctness, since with one model a side 0/1 scores
  tie in thousands. Both models go through the store: a second run reuses them.
- Entanglement, `surgical_plugins/cluster.py` lines 47-81 and 146-176 and `generate_mask.py`
  lines 320-355: the original's penultimate (avgpool) features of every training image, each
  image's Euclidean distance to their centroid, sorted, and the forget set taken as a band of
  that order. Ours takes the band nearest the centroid: the images that sit amid everything the
  model retains. The set's spread is reported as RUM's distance-based score (`get_DES`, lines
  93-116: the mean distance of forget features to the retain centroid and of retain features to
  the forget centroid, averaged), beside that of a random set of the same size.

The original is trained on the whole pool whatever the scenario, so it is the same model (and
the same store entry) as a random scenario's of that pool and seed: ranking by it first and
choosing the forget set after is legitimate.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from unlearnkit.data import Dataset
from unlearnkit.data.splits import Split
from unlearnkit.presets import Preset
from unlearnkit.progress import say
from unlearnkit.store import Store

WORST_CASES = ("memorized", "entangled")


def feldman_memorization(true_label_probability: np.ndarray, trained_on: np.ndarray) -> np.ndarray:
    """mem(x) = mean over models that trained on x − mean over models that did not, per image.
    `true_label_probability` and `trained_on` are (models, images)."""
    inside = trained_on.astype(np.float64)
    outside = 1.0 - inside
    score = true_label_probability.astype(np.float64)
    mean_in = (score * inside).sum(0) / np.maximum(inside.sum(0), 1e-10)
    mean_out = (score * outside).sum(0) / np.maximum(outside.sum(0), 1e-10)
    return mean_in - mean_out


def centrality(features: np.ndarray) -> np.ndarray:
    """Minus each feature vector's Euclidean distance to the centroid of all: highest for the
    images most entangled with the rest."""
    features = features.astype(np.float64)
    return -np.linalg.norm(features - features.mean(0), axis=1)


def distance_entanglement(forget_features: np.ndarray, retain_features: np.ndarray) -> float:
    """RUM's distance-based entanglement (`get_DES`): the mean distance of forget features to the
    retain centroid and of retain features to the forget centroid, averaged. Lower: more entangled."""
    forget_features, retain_features = forget_features.astype(np.float64), retain_features.astype(np.float64)
    to_retain = np.linalg.norm(forget_features - retain_features.mean(0), axis=1).mean()
    to_forget = np.linalg.norm(retain_features - forget_features.mean(0), axis=1).mean()
    return float((to_retain + to_forget) / 2)


def halves(pool: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng([seed, 0x3E3]).permutation(pool)
    return np.sort(order[: pool.size // 2]), np.sort(order[pool.size // 2 :])


def _true_label_probability(model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from unlearnkit.evaluate.features import confidence
    from unlearnkit.train import predict_logits

    return confidence(predict_logits(model, x, precision="fp32").numpy(), y)


def memorization_scores(dataset: Dataset, split: Split, preset: Preset, seed: int, store: Store) -> np.ndarray:
    """Per training image (NaN outside the pool): the two-model Feldman estimate."""
    from unlearnkit.reference import train_reference

    pool = np.sort(np.concatenate([split.forget, split.retain]))
    first, second = halves(pool, seed)
    probabilities, trained_on = [], []
    for part, (held, other) in enumerate(((first, second), (second, first))):
        say(f"memorized: half model {part + 1} of 2 on {held.size} images")
        half_split = dataclasses.replace(split, forget=other, retain=held)
        model = train_reference("subset", dataset, half_split, preset, seed, store).model
        probabilities.append(_true_label_probability(model, dataset.train_x[pool], dataset.train_y[pool]))
        trained_on.append(np.isin(pool, held))
    scores = np.full(len(dataset.train_y), np.nan)
    scores[pool] = feldman_memorization(np.stack(probabilities), np.stack(trained_on))
    return scores


def pool_features(dataset: Dataset, split: Split, preset: Preset, seed: int, store: Store) -> tuple[np.ndarray, np.ndarray]:
    """The pool's indices and the original model's penultimate features of them."""
    from unlearnkit.eda import penultimate_features
    from unlearnkit.reference import train_reference

    pool = np.sort(np.concatenate([split.forget, split.retain]))
    original = train_reference("original", dataset, split, preset, seed, store).model
    return pool, penultimate_features(original, dataset.train_x[pool])


def entanglement_scores(dataset: Dataset, split: Split, preset: Preset, seed: int, store: Store) -> np.ndarray:
    """Per training image (NaN outside the pool): its centrality in the original's feature space."""
    pool, features = pool_features(dataset, split, preset, seed, store)
    scores = np.full(len(dataset.train_y), np.nan)
    scores[pool] = centrality(features)
    return scores


def worst_case_scores(kind: str, dataset: Dataset, split: Split, preset: Preset, seed: int, store: Store) -> np.ndarray:
    """The ranking a worst-case scenario takes its forget set from, highest first; `split` is any
    split of the same pool (its forget/retain division does not matter)."""
    return (memorization_scores if kind == "memorized" else entanglement_scores)(dataset, split, preset, seed, store)
