"""Attack scores with their uncertainty: balanced accuracy, ROC AUC and TPR at low FPR, each
with a 95% bootstrap interval.

The bootstrap resamples members and non-members separately (so both keep their sizes) and is
computed for all resamples at once from one sort of the scores. Its draws depend only on the
seed and on the two group sizes, so two models scored on the same examples get the same
resamples: differences between them (the positive control) are paired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from unlearnkit.errors import UnlearnkitError

FPR_LEVELS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}
METRICS = ("balanced_accuracy", "auc", *FPR_LEVELS)


@dataclass
class AttackScore:
    """Point estimates, 95% intervals and the bootstrap draws (kept for paired comparisons)."""

    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    draws: dict[str, np.ndarray] = field(repr=False)
    members: int
    nonmembers: int
    roc: tuple[np.ndarray, np.ndarray] = field(repr=False)

    def to_json(self) -> dict:
        return {
            **{name: {"value": self.values[name], "ci95": list(self.intervals[name])} for name in self.values},
            "members": self.members,
            "nonmembers": self.nonmembers,
        }


def _curves(scores: np.ndarray, is_member: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted true and false positives (rows = resamples) when calling members every example
    scoring at or above each distinct score, highest first, from the origin (nothing called)."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_members = scores[order], is_member[order]
    # a threshold cannot split tied scores: only the last position of each run of ties counts
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    members_upto = np.r_[0, np.cumsum(sorted_members)[ends]]
    nonmembers_upto = np.r_[0, ends + 1] - members_upto
    zeros = np.zeros((len(weights), 1), dtype=weights.dtype)
    tp = np.concatenate([zeros, np.cumsum(weights[:, order[sorted_members]], axis=1)], axis=1)[:, members_upto]
    fp = np.concatenate([zeros, np.cumsum(weights[:, order[~sorted_members]], axis=1)], axis=1)[:, nonmembers_upto]
    return tp, fp


def _metrics(scores, is_member, predicted, weights) -> dict[str, np.ndarray]:
    tp, fp = _curves(scores, is_member, weights)
    total_pos, total_neg = tp[:, -1], fp[:, -1]
    # trapezoids: a run of tied scores counts half, as in the Mann–Whitney statistic
    auc = (np.diff(fp, axis=1) * (tp[:, 1:] + tp[:, :-1])).sum(axis=1) / (2 * total_pos * total_neg)
    called_members = weights[:, is_member] @ predicted[is_member].astype(weights.dtype)
    called_nonmembers = weights[:, ~is_member] @ (~predicted[~is_member]).astype(weights.dtype)
    out = {"balanced_accuracy": 0.5 * (called_members / total_pos + called_nonmembers / total_neg), "auc": auc}
    for name, level in FPR_LEVELS.items():
        # both curves rise along a row: the last point within the FPR has the highest TPR there
        last = (fp <= level * total_neg[:, None] * (1 + 1e-9)).sum(axis=1) - 1
        out[name] = np.take_along_axis(tp, last[:, None], axis=1)[:, 0] / total_pos
    return {name: values.astype(np.float64) for name, values in out.items()}


@lru_cache(maxsize=4)
def bootstrap_weights(members: int, nonmembers: int, resamples: int, seed: int, groups: tuple[int, ...] | None = None) -> np.ndarray:
    """Counts (resamples × examples) of a stratified bootstrap; row 0 is the sample itself.
    With `groups` (a label per example, members first), whole groups are drawn: examples about
    one person are not independent evidence, and drawing them one by one makes the interval too
    narrow. Shared (read-only) by every attack on the same examples."""
    rng = np.random.default_rng([seed, members, nonmembers])
    weights = np.ones((resamples + 1, members + nonmembers), dtype=np.float32)
    for start, size in ((0, members), (members, nonmembers)):
        label = np.arange(size) if groups is None else np.unique(groups[start : start + size], return_inverse=True)[1]
        count = int(label.max()) + 1
        rows = np.arange(resamples)[:, None] * count
        drawn = np.bincount((rng.integers(0, count, (resamples, count)) + rows).ravel(), minlength=resamples * count)
        weights[1:, start : start + size] = drawn.reshape(resamples, count)[:, label]
    weights.flags.writeable = False
    return weights


def score_attack(member_scores, nonmember_scores, member_predicted=None, nonmember_predicted=None, *, resamples: int = 1000, seed: int = 0,
                 groups=None) -> AttackScore:
    """Evaluate membership scores (higher = more likely a member) and, when given, the attack's
    yes/no predictions (else: the threshold that the ROC's best balanced accuracy picks — only
    for attacks without a fitted threshold). `groups`: who each example is about (members, then
    non-members), when several examples share a subject; the intervals then resample subjects."""
    member_scores, nonmember_scores = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    if min(len(member_scores), len(nonmember_scores)) < 2:
        raise UnlearnkitError(f"an attack needs at least 2 members and 2 non-members (got {len(member_scores)} and {len(nonmember_scores)})")
    if not (np.isfinite(member_scores).all() and np.isfinite(nonmember_scores).all()):
        raise UnlearnkitError("attack scores hold NaN or inf; the model's outputs are not finite")
    if groups is not None and len(groups) != len(member_scores) + len(nonmember_scores):
        raise UnlearnkitError(f"groups has {len(groups)} labels for {len(member_scores) + len(nonmember_scores)} examples; give one per member, then one per non-member")
    scores = np.concatenate([member_scores, nonmember_scores])
    is_member = np.r_[np.ones(len(member_scores), bool), np.zeros(len(nonmember_scores), bool)]
    tp, fp = _curves(scores, is_member, np.ones((1, len(scores)), dtype=np.float32))
    roc = (fp[0] / fp[0, -1], tp[0] / tp[0, -1])
    if member_predicted is None:
        best = np.argmax(roc[1] - roc[0])
        threshold = np.unique(scores)[::-1][best - 1] if best > 0 else np.inf
        predicted = scores >= threshold
    else:
        predicted = np.concatenate([np.asarray(member_predicted, bool), np.asarray(nonmember_predicted, bool)])
    weights = bootstrap_weights(len(member_scores), len(nonmember_scores), resamples, seed, None if groups is None else tuple(int(g) for g in groups))
    draws_all = _metrics(scores, is_member, predicted, weights)
    values = {name: float(draws[0]) for name, draws in draws_all.items()}
    draws = {name: d[1:] for name, d in draws_all.items()}
    intervals = {name: (float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))) for name, d in draws.items()}
    return AttackScore(values, intervals, draws, len(member_scores), len(nonmember_scores), roc)


def significantly_above(higher: AttackScore, lower: AttackScore, metric: str = "auc") -> bool:
    """Is `higher`'s metric above `lower`'s at the 95% level (one-sided, paired bootstrap when
    both were scored on the same examples; otherwise the two intervals must not overlap)?"""
    if (higher.members, higher.nonmembers) == (lower.members, lower.nonmembers) and len(higher.draws[metric]) == len(lower.draws[metric]):
        return bool(np.percentile(higher.draws[metric] - lower.draws[metric], 5) > 0)
    return higher.intervals[metric][0] > lower.intervals[metric][1]


def has_signal(original: AttackScore, baseline: AttackScore | None = None) -> bool:
    """The positive control: the one definition every report uses.

    An attack's scores on an unlearned model prove something only if the attack finds the
    forget set on the *original* model, which did train on it. It has a signal when its AUC
    on the original is above, one-sided at the 95% level, its AUC where the forget images
    really are non-members: on the retrained model when there is one (paired bootstrap over
    the same examples), else chance (the 5th percentile of the original's bootstrap AUCs
    above 0.5). The kit's attack, a cross-validated accuracy without an interval, is
    controlled through `lr-loss`, the same logistic regression on the same loss."""
    if baseline is not None:
        return significantly_above(original, baseline)
    return bool(np.percentile(original.draws["auc"], 5) > 0.5)


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion `hits` / `n`."""
    if n == 0:
        return 0.0, 1.0
    rate = hits / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))
