"""KLoM (Georgiev et al., "Attribute-to-Delete: Machine Unlearning via Datamodel Matching",
ICLR 2025): per example, the KL divergence between the distribution of its margin over the
unlearned models and over the retrained models. The margin is the correct class's logit minus
the log-sum-exp of the others, the statistic that the NeurIPS score's ensembles already hold.
0 means the unlearned models are, on that example, distributed as retraining makes them.

Reference: RoyRin/data-unlearning-bench @ eb261f9c652aa1daae62c7f23f4e56286edf745c,
unlearning_bench/eval.py lines 80-130 (`compute_binned_KL_div`) and 133-153 (`kl_from_margins`);
EasyDUB's copy is the same. The `published` estimator is that code, vectorized over examples:
- margins clipped to [-100, 100];
- 20 equal-width bins from the pooled minimum to the pooled maximum of the example's two
  samples (`np.linspace`, a width of 1 when they are all equal);
- a sample goes to bin i where edge[i-1] ≤ x < edge[i] (`np.digitize`), so samples equal to
  the pooled maximum fall past the last bin and are not counted, as in the reference;
- q floored at 1e-5 in the bins where p > 0, both histograms renormalized, Σ p·log(p/q)
  (`scipy.stats.entropy`). An example whose unlearned samples all sit at the pooled maximum
  has no counted sample: its value is NaN, as the reference's; the summaries count them apart.
No departures.

Option of ours: the `smoothed` estimator, for a handful of models: ⌈√(2N)⌉ bins and 0.5
pseudo-counts in every bin, so that an empty bin does not dominate. At N = 8 identical
distributions score about 0.3 with it against about 6 with the published one; its values are
not comparable with published KLoM figures, so it is reported under its own name.
`klom_floor` gives each estimator's noise floor at the ensemble size: half the retrained
models against the other half.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy.special import rel_entr

from unlearnkit.errors import UnlearnkitError

Estimator = Literal["published", "smoothed"]
ESTIMATORS = ("published", "smoothed")
PUBLISHED_BINS, PUBLISHED_CLIP, PUBLISHED_FLOOR = 20, 100.0, 1e-5


def default_bins(models: int) -> int:
    """The smoothed estimator's bins for `models` per side."""
    return max(2, math.ceil(math.sqrt(2 * models)))


def checked(unlearned, retrained) -> tuple[np.ndarray, np.ndarray]:
    unlearned, retrained = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    if unlearned.ndim != 2 or retrained.ndim != 2 or unlearned.shape[1] != retrained.shape[1]:
        raise UnlearnkitError(f"KLoM needs margins as [models, examples] on both sides with the same examples, got {unlearned.shape} and {retrained.shape}")
    if min(len(unlearned), len(retrained)) < 2:
        raise UnlearnkitError("KLoM needs at least 2 models on each side")
    return unlearned, retrained


def published_klom(unlearned: np.ndarray, retrained: np.ndarray) -> np.ndarray:
    unlearned = np.clip(unlearned, -PUBLISHED_CLIP, PUBLISHED_CLIP)
    retrained = np.clip(retrained, -PUBLISHED_CLIP, PUBLISHED_CLIP)
    start = np.minimum(unlearned.min(axis=0), retrained.min(axis=0))
    end = np.maximum(unlearned.max(axis=0), retrained.max(axis=0))
    end = np.where(start >= end, start + 1, end)
    edges = np.linspace(start, end, PUBLISHED_BINS + 1, axis=0)  # [bins + 1, examples]

    def probabilities(sample: np.ndarray) -> np.ndarray:
        index = (sample[None, :, :] >= edges[:, None, :]).sum(axis=0)  # np.digitize: edges ≤ x, 1-based
        counts = np.stack([(index == i).sum(axis=0) for i in range(1, PUBLISHED_BINS + 1)]).astype(np.float64)
        total = counts.sum(axis=0)
        return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)

    p, q = probabilities(unlearned), probabilities(retrained)
    q = np.where(p > 0, np.maximum(q, PUBLISHED_FLOOR), q)
    with np.errstate(invalid="ignore", divide="ignore"):
        p, q = p / p.sum(axis=0), q / q.sum(axis=0)
        return rel_entr(p, q).sum(axis=0)


def smoothed_klom(unlearned: np.ndarray, retrained: np.ndarray, bins: int | None, smoothing: float) -> np.ndarray:
    bins = bins or default_bins(min(len(unlearned), len(retrained)))
    both = np.concatenate([unlearned, retrained])
    low, high = both.min(axis=0), both.max(axis=0)
    span = np.where(high - low > 1e-12, high - low, 1.0)

    def histogram(sample: np.ndarray) -> np.ndarray:
        index = np.clip(((sample - low) / span * bins).astype(int), 0, bins - 1)  # the maximum falls in the last bin
        counts = np.zeros((bins, sample.shape[1]))
        np.add.at(counts, (index, np.arange(sample.shape[1])[None, :].repeat(len(sample), 0)), 1)
        counts += smoothing
        return counts / counts.sum(axis=0)

    p, q = histogram(unlearned), histogram(retrained)
    return (p * np.log(p / q)).sum(axis=0)


def klom(unlearned, retrained, estimator: Estimator = "published", *, bins: int | None = None, smoothing: float = 0.5) -> np.ndarray:
    """KL(unlearned ‖ retrained) per example, in nats: margins [models, examples] on each side →
    [examples]. `estimator="published"` is the authors' code exactly (NaN where it is undefined);
    `"smoothed"` is ours (`bins`, `smoothing` apply to it alone)."""
    if estimator not in ESTIMATORS:
        raise UnlearnkitError(f"unknown KLoM estimator '{estimator}'; choose from {', '.join(ESTIMATORS)}")
    unlearned, retrained = checked(unlearned, retrained)
    if estimator == "published":
        return published_klom(unlearned, retrained)
    return smoothed_klom(unlearned, retrained, bins, smoothing)


def klom_summary(values: np.ndarray) -> dict:
    """Mean, median and 95th percentile over the examples where the value is defined, and how
    many were not (the published estimator's NaN)."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[np.isfinite(values)]
    if defined.size == 0:
        return {"mean": None, "median": None, "p95": None, "examples": int(values.size), "undefined": int(values.size)}
    return {
        "mean": float(defined.mean()), "median": float(np.median(defined)), "p95": float(np.percentile(defined, 95)),
        "examples": int(values.size), "undefined": int(values.size - defined.size),
    }


def klom_both(unlearned, retrained) -> dict[str, dict]:
    """The summaries of both estimators, under the names results.json uses: `klom` (published)
    and `klom_smoothed`."""
    return {"klom": klom_summary(klom(unlearned, retrained)), "klom_smoothed": klom_summary(klom(unlearned, retrained, "smoothed"))}


def klom_floor(retrained) -> dict[str, dict]:
    """Each estimator's noise floor at this ensemble size: the first half of the retrained models
    scored as if unlearned against the second half (the smoothed one with the bins that the full
    ensemble gets)."""
    retrained = np.asarray(retrained, dtype=np.float64)
    half = len(retrained) // 2
    first, second = retrained[:half], retrained[half : 2 * half]
    return {
        "klom": {**klom_summary(klom(first, second)), "models_per_side": half},
        "klom_smoothed": {**klom_summary(klom(first, second, "smoothed", bins=default_bins(len(retrained)))), "models_per_side": half},
    }
