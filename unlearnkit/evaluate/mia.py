"""The simple membership-inference attack of the NeurIPS 2023 unlearning kit (and of the seed
study): per-example cross-entropy losses, forget examples labelled 1 and test examples 0
(the larger group subsampled to the size of the smaller), logistic regression, 10-fold
stratified shuffle-split cross-validation; the score is the mean held-out accuracy.
0.5 is chance; compare with the retrained model's score, not with 0.5."""

from __future__ import annotations

import numpy as np

from unlearnkit.errors import UnlearnkitError


def per_example_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each example, computed stably in float64."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return log_norm - shifted[np.arange(len(labels)), labels]


# The kit's 10 shuffle-splits each hold out 10% of the 2n examples, and stratification needs one
# member and one non-member in every held-out part: 0.1 × 2n ≥ 2.
MIA_MIN_PER_SIDE = 10


def mia_skip_reason(members: int, nonmembers: int) -> str | None:
    """Why the kit's attack cannot be run on this many examples, or None when it can."""
    if min(members, nonmembers) >= MIA_MIN_PER_SIDE:
        return None
    return (f"the kit's membership attack needs at least {MIA_MIN_PER_SIDE} forget and {MIA_MIN_PER_SIDE} test images "
            f"(its 10% held-out folds must hold one of each; got {members} and {nonmembers}), so it was not run")


def simple_mia(member_losses: np.ndarray, nonmember_losses: np.ndarray, *, n_splits: int = 10, seed: int = 0) -> float:
    """Mean cross-validated accuracy of a logistic regression telling members from non-members by loss."""
    if reason := mia_skip_reason(len(member_losses), len(nonmember_losses)):
        raise UnlearnkitError(reason)
    rng = np.random.default_rng(seed)
    n = min(len(member_losses), len(nonmember_losses))
    members = rng.choice(member_losses, n, replace=False)
    nonmembers = rng.choice(nonmember_losses, n, replace=False)
    x = np.concatenate([members, nonmembers]).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    # imported here, not at the top: scikit-learn takes about a second to import, which every command would pay
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    cv = StratifiedShuffleSplit(n_splits=n_splits, random_state=seed)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())


def simple_mia_or_nan(member_losses: np.ndarray, nonmember_losses: np.ndarray, *, seed: int = 0) -> float:
    """The kit's attack, or NaN where `mia_skip_reason` says it cannot be run (a deletion
    request of a few images is legitimate; the reports say why the cell is empty)."""
    if mia_skip_reason(len(member_losses), len(nonmember_losses)):
        return float("nan")
    return simple_mia(member_losses, nonmember_losses, seed=seed)
