"""The NeurIPS 2023 Machine Unlearning Challenge's score (Triantafillou et al.; the official
code is google-deepmind/unlearning_evaluation, metric.py), on a CPU.

Given N unlearned and N retrained models, each forget example has two samples of N
logit-scaled confidences. Per example, ε is the best (δ = 1e-5) privacy loss that any rule
of two threshold families achieves in telling the samples apart:
- one threshold: "positive (the sample with the larger median) when confidence ≥ t";
- two thresholds: "the peakier sample (smaller range) when l ≤ confidence ≤ r", with
  r − l within ±2 of the peakier range and r within [its min + range − 2, its max + 2].
A rule with FPR = FNR = 0 gives ε = ∞; a rule where exactly one of them is 0 is discarded
(too few samples to say); otherwise ε = max(log(1−δ−FPR) − log FNR, log(1−δ−FNR) − log FPR).
When one sample's range is under 1% of the other's, ε is the cap (50). ε falls in bins of
width 0.5; bin b (from 1) earns 2 / 2^b points, ε ≥ 6.5 earns 0. F = mean points, and the
score is F × (retain acc U / R) × (test acc U / R).

Where this differs from the official code: it evaluates every threshold that changes a
decision (every cut between observed confidences) instead of a grid of 0.01, so it never
misses a rule the grid steps over; with N ≤ 665 models its 13 bins give the same points as
the official N-dependent number of bins (ε is at most log(N − 1) unless it is infinite).
"""

from __future__ import annotations

import numpy as np

from unlearnkit.errors import UnlearnkitError

DELTA = 1e-5
EPSILON_CAP = 50.0
BIN_WIDTH = 0.5
BINS = 13
BUFFER = 2.0  # the two-threshold rule's slack around the peakier sample's range


def epsilon_from_rates(fpr: np.ndarray, fnr: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """ε of each rule; inf for a perfect rule, NaN for rules discarded (one error rate is 0)."""
    fpr, fnr = np.asarray(fpr, float), np.asarray(fnr, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
    eps = np.clip(eps, 0, None)
    eps = np.where((fpr == 0) ^ (fnr == 0), np.nan, eps)
    return np.where((fpr == 0) & (fnr == 0), np.inf, eps)


def _single_threshold_rates(positive: np.ndarray, negative: np.ndarray):
    cuts = np.unique(np.concatenate([positive, negative]))
    tpr = (positive[None, :] >= cuts[:, None]).mean(1)
    fpr = (negative[None, :] >= cuts[:, None]).mean(1)
    return fpr, 1 - tpr


def _double_threshold_rates(positive: np.ndarray, negative: np.ndarray):
    if np.ptp(positive) >= np.ptp(negative):  # as in the official code: positive = the peakier one
        positive, negative = negative, positive
    width = np.ptp(positive)
    values = np.unique(np.concatenate([positive, negative]))
    below = np.r_[-np.inf, values[:-1]]  # keeping values i..j exactly needs below_i < l ≤ value_i
    above = np.r_[values[1:], np.inf]  # ... and value_j ≤ r < above_j: strict where open
    # The rule l ≤ c ≤ r has r in [min + width − BUFFER, max + BUFFER] of the peakier sample and
    # r − l in [width − BUFFER, width + BUFFER]. For a given r, such an l exists in (below_i,
    # value_i] iff r > below_i + width − BUFFER and r ≤ value_i + width + BUFFER. So r must lie
    # in [closed_lo, closed_hi] and strictly inside (open_lo, open_hi):
    closed_lo = np.maximum(values, positive.min() + width - BUFFER)[None, :]
    closed_hi = np.minimum(positive.max() + BUFFER, values + width + BUFFER)[:, None]
    open_lo = (below + width - BUFFER)[:, None]
    open_hi = above[None, :]
    feasible = (
        (np.arange(len(values))[:, None] <= np.arange(len(values))[None, :])
        & (closed_lo <= closed_hi) & (closed_lo < open_hi) & (open_lo < closed_hi) & (open_lo < open_hi)
    )
    i, j = np.nonzero(feasible)
    pos_upto = np.searchsorted(np.sort(positive), values, side="right")
    neg_upto = np.searchsorted(np.sort(negative), values, side="right")
    pos_before = np.r_[0, pos_upto[:-1]]
    neg_before = np.r_[0, neg_upto[:-1]]
    tpr = (pos_upto[j] - pos_before[i]) / len(positive)
    fpr = (neg_upto[j] - neg_before[i]) / len(negative)
    return fpr, 1 - tpr


def example_epsilon(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> float:
    """ε of one forget example from its N unlearned and N retrained confidences."""
    unlearned, retrained = np.asarray(unlearned, float), np.asarray(retrained, float)
    positive, negative = (retrained, unlearned) if np.median(retrained) > np.median(unlearned) else (unlearned, retrained)
    smallest, largest = sorted((np.ptp(positive), np.ptp(negative)))
    if largest == 0:  # both samples constant: the official code divides 0 by 0 here and fails
        return 0.0 if positive[0] == negative[0] else EPSILON_CAP
    if smallest / largest < 0.01:  # one sample is a spike: the official code gives the cap here
        return EPSILON_CAP
    rates = [_single_threshold_rates(positive, negative), _double_threshold_rates(positive, negative)]
    eps = np.concatenate([epsilon_from_rates(fpr, fnr, delta) for fpr, fnr in rates])
    if np.isnan(eps).all():
        raise UnlearnkitError(f"no decision rule is usable with {len(unlearned)} models per side; use at least 2")
    return float(np.clip(np.nanmax(eps), 0, EPSILON_CAP))


def epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Per-example ε from confidences shaped [models, examples] (the same examples in both)."""
    unlearned, retrained = np.asarray(unlearned, float), np.asarray(retrained, float)
    if unlearned.ndim != 2 or unlearned.shape[1] != retrained.shape[1] or retrained.ndim != 2:
        raise UnlearnkitError(f"confidences must be [models, examples] with the same examples; got {unlearned.shape} and {retrained.shape}")
    if min(len(unlearned), len(retrained)) < 2:
        raise UnlearnkitError(f"the NeurIPS score needs at least 2 unlearned and 2 retrained models (got {len(unlearned)} and {len(retrained)})")
    return np.array([example_epsilon(unlearned[:, k], retrained[:, k], delta) for k in range(unlearned.shape[1])])


def points(eps: np.ndarray, bins: int = BINS, width: float = BIN_WIDTH) -> np.ndarray:
    """2 / 2^b for ε in bin b = 1, 2, … (bin 1 is [0, 0.5)); 0 beyond the last bin."""
    index = np.floor(np.asarray(eps, float) / width)
    return np.where(index < bins, 2.0 / 2.0 ** (index + 1), 0.0)


def neurips_score(unlearned_conf, retrained_conf, *, retain_acc: tuple[float, float], test_acc: tuple[float, float]) -> dict:
    """The challenge's score; `retain_acc` and `test_acc` are (unlearned, retrained) mean accuracies."""
    eps = epsilons(unlearned_conf, retrained_conf)
    quality = float(points(eps).mean())
    score = quality * (retain_acc[0] / retain_acc[1]) * (test_acc[0] / test_acc[1])
    return {"score": score, "forgetting_quality": quality, "epsilon": eps, "models_per_side": [len(unlearned_conf), len(retrained_conf)],
            "retain_acc": [float(a) for a in retain_acc], "test_acc": [float(a) for a in test_acc]}


def ensemble_shape(unlearned_conf, retrained_conf) -> dict:
    """Why an ensemble scores as it does, per forget example: where its N unlearned confidences sit
    against the N retrained ones (the offset of their means, in the retrained models' sd) and how
    widely they spread (the ratio of the two sds). An example is told apart when the unlearned
    sample sits off-centre, or when it is far narrower than the retrained one: the two-threshold
    rule then boxes it in. Medians and shares over the forget examples."""
    unlearned, retrained = np.asarray(unlearned_conf, float), np.asarray(retrained_conf, float)
    spread_u, spread_r = unlearned.std(0, ddof=1), retrained.std(0, ddof=1)
    floor = max(float(np.median(spread_r)) * 1e-3, 1e-12)  # an example every retrained model agrees on
    offset = (unlearned.mean(0) - retrained.mean(0)) / np.maximum(spread_r, floor)
    ratio = spread_u / np.maximum(spread_r, floor)
    return {
        "offset_median": float(np.median(offset)),
        "abs_offset_median": float(np.median(np.abs(offset))),
        "above_share": float(np.mean(offset > 0)),
        "spread_ratio_median": float(np.median(ratio)),
        "narrower_share": float(np.mean(ratio < 1)),
    }


def score_breakdown(epsilon: np.ndarray, unlearned_conf, retrained_conf) -> dict:
    """What lies under a score: the median ε, the share of forget examples at the cap (told apart
    perfectly) and the ensembles' shape (`ensemble_shape`)."""
    epsilon = np.asarray(epsilon, float)
    return {"epsilon_median": float(np.median(epsilon)), "at_cap_share": float(np.mean(epsilon >= EPSILON_CAP)), "shape": ensemble_shape(unlearned_conf, retrained_conf)}
