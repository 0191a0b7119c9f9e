"""Per-example features of a model's logits that membership attacks read, computed stably in
float64 from the logits (never from rounded probabilities)."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, logsumexp


def _log_probs(logits: np.ndarray) -> np.ndarray:
    return log_softmax(np.asarray(logits, dtype=np.float64), axis=1)


def _log_one_minus(logits: np.ndarray) -> np.ndarray:
    """log(1 − p_i) for every class i, as the log of the other classes' total probability."""
    z = np.asarray(logits, dtype=np.float64)
    k = z.shape[1]
    others = np.where(np.eye(k, dtype=bool)[None], -np.inf, z[:, None, :])  # row i: every class but i
    return logsumexp(others, axis=2) - logsumexp(z, axis=1, keepdims=True)


def loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return -_log_probs(logits)[np.arange(len(labels)), labels]


def confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """p_y, the probability of the true class."""
    return np.exp(-loss(logits, labels))


def entropy(logits: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    log_p = _log_probs(logits)
    return -(np.exp(log_p) * log_p).sum(axis=1)


def modified_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Song & Mittal's modified entropy: −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i).
    Low for confident correct predictions, high for confident wrong ones (unlike entropy)."""
    log_p = _log_probs(logits)
    log_q = _log_one_minus(logits)
    rows = np.arange(len(labels))
    p = np.exp(log_p)
    true = -np.exp(log_q[rows, labels]) * log_p[rows, labels]
    wrong = -(p * log_q)
    wrong[rows, labels] = 0.0
    return true + wrong.sum(axis=1)


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y − log(1 − p_y) = z_y − logsumexp_{j≠y} z_j (LiRA's and the NeurIPS 2023 score's statistic)."""
    z = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(labels))
    others = z.copy()
    others[rows, labels] = -np.inf
    return z[rows, labels] - logsumexp(others, axis=1)
