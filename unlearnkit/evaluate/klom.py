"""KLoM (Georgiev et al., "Attribute-to-Delete: Machine Unlearning via Datamodel Matching",
ICLR 2025): per example, the KL divergence between the distribution of its margin over N
unlearned models and over N retrained models. The margin is the correct class's logit minus
the log-sum-exp of the others, the statistic that the NeurIPS score's ensembles already hold.
0 means the unlearned models are, on that example, distributed as retraining makes them.

The two samples of an example share `bins` equal-width bins spanning both; each bin gets
`smoothing` pseudo-counts so that a bin empty on one side does not make the divergence
infinite. With few models the estimate is coarse; `ceiling` gives its noise floor (half the
retrained ensemble against the other half).
"""

from __future__ import annotations

import math

import numpy as np

from unlearnkit.errors import UnlearnkitError


def default_bins(models: int) -> int:
    return max(2, math.ceil(math.sqrt(2 * models)))


def klom(unlearned: np.ndarray, retrained: np.ndarray, bins: int | None = None, smoothing: float = 0.5) -> np.ndarray:
    """KL(unlearned ‖ retrained) per example: arrays [models, examples] → [examples] (nats)."""
    unlearned, retrained = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    if unlearned.ndim != 2 or retrained.ndim != 2 or unlearned.shape[1] != retrained.shape[1]:
        raise UnlearnkitError(f"KLoM needs margins as [models, examples] on both sides with the same examples, got {unlearned.shape} and {retrained.shape}")
    if min(len(unlearned), len(retrained)) < 2:
        raise UnlearnkitError("KLoM needs at least 2 models on each side")
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


def klom_summary(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "median": float(np.median(values)), "p95": float(np.percentile(values, 95)), "examples": int(values.size)}
