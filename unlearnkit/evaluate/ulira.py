"""U-LiRA (Hayes et al., "Inexact unlearning needs more careful evaluations to avoid a false
sense of privacy"): a per-example likelihood-ratio attack that asks, of one model and one
forget example, "was this model trained on the example and then unlearned, or retrained
without it?".

Per example, Gaussians are fitted to its logit-scaled confidence under K shadow unlearned
models (each unlearned from its own shadow original) and under K shadow retrained models.
A target model's score is the log-likelihood ratio of its confidence under the two. The
attack is scored on the target unlearned model (positives) against a target retrained
model it has not seen (negatives), over the same forget examples: 0.5 AUC means the
unlearned model is, example by example, indistinguishable from retraining.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluate.stats import AttackScore, score_attack

# with few shadow models, per-example variances are too noisy: LiRA's "global variance"
PER_EXAMPLE_VARIANCE_FROM = 16


def fit_gaussians(confidences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and standard deviation over models ([models, examples] in)."""
    mean = confidences.mean(axis=0)
    if len(confidences) >= PER_EXAMPLE_VARIANCE_FROM:
        std = confidences.std(axis=0, ddof=1)
    else:
        std = np.full(confidences.shape[1], (confidences - mean).std(ddof=1) if len(confidences) > 1 else 1.0)
    return mean, np.maximum(std, 1e-3)


def likelihood_ratio(confidence: np.ndarray, unlearned: tuple, retrained: tuple) -> np.ndarray:
    return norm.logpdf(confidence, *unlearned) - norm.logpdf(confidence, *retrained)


def ulira(target_unlearned: np.ndarray, target_retrained: np.ndarray, shadow_unlearned: np.ndarray, shadow_retrained: np.ndarray, *, resamples: int = 1000, seed: int = 0) -> AttackScore:
    """Confidences of the forget examples: targets [examples], shadows [K, examples]."""
    shadow_unlearned, shadow_retrained = np.atleast_2d(shadow_unlearned), np.atleast_2d(shadow_retrained)
    if min(len(shadow_unlearned), len(shadow_retrained)) < 2:
        raise UnlearnkitError(f"U-LiRA needs at least 2 shadow models of each kind (got {len(shadow_unlearned)} unlearned, {len(shadow_retrained)} retrained); raise K")
    unlearned, retrained = fit_gaussians(shadow_unlearned), fit_gaussians(shadow_retrained)
    positive = likelihood_ratio(np.asarray(target_unlearned, float), unlearned, retrained)
    negative = likelihood_ratio(np.asarray(target_retrained, float), unlearned, retrained)
    return score_attack(positive, negative, positive > 0, negative > 0, resamples=resamples, seed=seed)
