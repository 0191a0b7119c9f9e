"""Population membership-inference attacks, as small scikit-learn-style objects:
`fit(members, nonmembers)` on examples whose membership the attacker knows, then `score(x)`
(higher = more likely a member) and `predict(x)` on the examples under test.

Every attack is fitted on a sample of retain images (members) against the validation split
(non-members), then applied to the forget set against the test split: the protocol of
SalUn's and l1-sparse's "MIA-efficacy". (The NeurIPS 2023 kit's own protocol — logistic
regression cross-validated on forget vs test — stays the `mia` column; its pooled out-of-fold
scores are biased below 0.5 AUC when members and non-members look alike, so they are not used
for ROC curves.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from unlearnkit.evaluate import features as F
from unlearnkit.errors import UnlearnkitError
from unlearnkit.plugins import load_plugins, refuse_clash


class LossThreshold:
    """Member when the loss is below a threshold, chosen for the best balanced accuracy on the fitting examples."""

    def fit(self, members: np.ndarray, nonmembers: np.ndarray) -> "LossThreshold":
        scores = -np.concatenate([members, nonmembers])[:, 0]
        is_member = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
        order = np.argsort(-scores)
        tpr = np.cumsum(is_member[order]) / len(members)
        fpr = np.cumsum(~is_member[order]) / len(nonmembers)
        best = np.argmax(tpr - fpr)
        self.threshold_ = scores[order][best]
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return -x[:, 0]

    def predict(self, x: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        return (self.score(x) if scores is None else scores) >= self.threshold_


class Classifier:
    """A scikit-learn classifier over standardized features; its decision function is the score."""

    def __init__(self, make: Callable[[], object], max_per_side: int | None = None, seed: int = 0):
        self.make, self.max_per_side, self.seed = make, max_per_side, seed

    def fit(self, members: np.ndarray, nonmembers: np.ndarray) -> "Classifier":
        rng = np.random.default_rng(self.seed)
        if self.max_per_side:  # an RBF SVC costs O(n²): fit on a capped, balanced sample
            members = members[rng.permutation(len(members))[: self.max_per_side]]
            nonmembers = nonmembers[rng.permutation(len(nonmembers))[: self.max_per_side]]
        x = np.concatenate([members, nonmembers])
        y = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
        # imported where used: scikit-learn takes about a second to import, which every command would pay
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model_ = make_pipeline(StandardScaler(), self.make()).fit(x, y)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.model_.decision_function(x)

    def predict(self, x: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        return (self.score(x) if scores is None else scores) > 0  # the classifiers' own decision rule


@dataclass(frozen=True)
class PopulationAttack:
    name: str
    summary: str
    features: tuple[Callable, ...]
    make: Callable[[int], object]

    def featurize(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.stack([f(logits, labels) for f in self.features], axis=1)


ATTACKS: dict[str, PopulationAttack] = {}


def register_attack(name: str, summary: str, features: tuple[Callable, ...]):
    """Register `make(seed) -> attack` (an object with fit / score / predict) under `name`,
    reading `features` (functions of logits and labels) of each example. Plugins use it too."""

    def decorate(make: Callable[[int], object]):
        if name in ATTACKS:
            refuse_clash("attack", name, ATTACKS[name].make.__module__, make.__module__)
        ATTACKS[name] = PopulationAttack(name, summary, tuple(features), make)
        return make

    return decorate


def all_attacks() -> dict[str, PopulationAttack]:
    """Every registered attack, plugins (entry points `unlearnkit.attacks`) included."""
    load_plugins("unlearnkit.attacks")
    return ATTACKS


@register_attack("lr-loss", "the NeurIPS 2023 kit's attack, logistic regression on the loss, fitted on retain vs validation images", (F.loss,))
def lr_loss(seed: int):
    from sklearn.linear_model import LogisticRegression

    return Classifier(lambda: LogisticRegression(class_weight="balanced"))


@register_attack("loss-threshold", "loss below a threshold fitted on retain vs validation images", (F.loss,))
def loss_threshold(seed: int):
    return LossThreshold()


@register_attack(
    "svc-entropy", "SalUn's MIA-efficacy: an RBF SVC on confidence, entropy and modified entropy, fitted on retain vs validation images",
    (F.confidence, F.entropy, F.modified_entropy),
)
def svc_entropy(seed: int):
    from sklearn.svm import SVC

    return Classifier(lambda: SVC(C=3, gamma="auto", kernel="rbf"), max_per_side=1000, seed=seed)


# The kit's attack (the `mia` column) has no interval; this attack is its twin (the same
# logistic regression on the same loss) and carries its positive control.
KIT_ATTACK_TWIN = "lr-loss"


def get_attack(name: str) -> PopulationAttack:
    if name not in all_attacks():
        raise UnlearnkitError(f"unknown attack '{name}'; choose from {', '.join(ATTACKS)}")
    return ATTACKS[name]
