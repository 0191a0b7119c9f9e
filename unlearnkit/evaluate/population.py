"""Evidence that needs nothing but one model's logits (and the retrained model's): every
population attack on the forget set and on a probe of retained examples, and the output-space
divergence to the retrained model.

The examples each attack sees are drawn once per split and seed (`Probe`), so every model of
an experiment is attacked on the same examples and the bootstrap pairs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax

from unlearnkit.evaluate import Outputs, like_forget
from unlearnkit.evaluate.attacks import PopulationAttack, all_attacks
from unlearnkit.evaluate.stats import AttackScore, has_signal, score_attack, significantly_above

SHADOW_MEMBERS = 5000  # retain images the shadow attacks are fitted on (they know these were trained on)


@dataclass(frozen=True)
class Probe:
    """Indices: `fit_members` (retain, train array) and `fit_nonmembers` (val, held-out array)
    fit the shadow attacks; targets are `forget` vs `test` and `retain` (a retain sample the
    attacks were not fitted on, as large as the forget set) vs `test`."""

    fit_members: np.ndarray
    fit_nonmembers: np.ndarray
    forget: np.ndarray
    retain: np.ndarray
    test: np.ndarray

    @classmethod
    def of(cls, outputs: Outputs, seed: int) -> "Probe":
        split, dataset = outputs.split, outputs.dataset
        rng = np.random.default_rng([seed, 7])
        shuffled = rng.permutation(split.retain)
        fit = np.sort(shuffled[: min(SHADOW_MEMBERS, len(shuffled) // 2)])
        rest = shuffled[len(fit) :]
        probe = np.sort(rest[: min(len(rest), len(split.forget))])
        test = split.test
        if (same_kind := like_forget(dataset, split)) is not None:  # whole (sub-)classes forgotten: compare with the same ones only
            test = test[same_kind]
        return cls(fit, split.val, split.forget, probe, test)


@dataclass
class AttackEvidence:
    forget: AttackScore
    retain: AttackScore
    mia_efficacy: float  # SalUn's: the fraction of forget examples the attack calls non-members


def _features(attack: PopulationAttack, outputs: Outputs, indices: np.ndarray, heldout: bool) -> np.ndarray:
    logits = outputs.heldout if heldout else outputs.train
    labels = outputs.dataset.test_y if heldout else outputs.dataset.train_y
    return attack.featurize(logits[indices], labels[indices])


def run_attack(attack: PopulationAttack, outputs: Outputs, probe: Probe, seed: int, resamples: int) -> AttackEvidence:
    forget = _features(attack, outputs, probe.forget, heldout=False)
    retain = _features(attack, outputs, probe.retain, heldout=False)
    test = _features(attack, outputs, probe.test, heldout=True)
    model = attack.make(seed).fit(_features(attack, outputs, probe.fit_members, False), _features(attack, outputs, probe.fit_nonmembers, True))
    scores = {name: model.score(x) for name, x in (("forget", forget), ("retain", retain), ("test", test))}
    predicted = {name: model.predict(None, scores[name]) for name in scores}
    scored = {name: (scores[name], scores["test"], predicted[name], predicted["test"]) for name in ("forget", "retain")}
    results = {name: score_attack(*values, resamples=resamples, seed=seed) for name, values in scored.items()}
    return AttackEvidence(results["forget"], results["retain"], float(1 - scored["forget"][2].mean()))


def population_attacks(outputs: Outputs, probe: Probe, seed: int = 0, resamples: int = 1000) -> dict[str, AttackEvidence]:
    return {name: run_attack(attack, outputs, probe, seed, resamples) for name, attack in all_attacks().items()}


def divergence(outputs: Outputs, reference: Outputs, probe: Probe) -> dict[str, dict[str, float]]:
    """Mean KL(retrain ‖ model) and Jensen–Shannon divergence (nats) of softmax outputs."""
    result = {}
    for part, rows, heldout in (("forget", probe.forget, False), ("test", probe.test, True)):
        p = log_softmax((reference.heldout if heldout else reference.train)[rows].astype(np.float64), axis=1)
        q = log_softmax((outputs.heldout if heldout else outputs.train)[rows].astype(np.float64), axis=1)
        m = np.log(0.5 * (np.exp(p) + np.exp(q)))
        kl = lambda a, b: (np.exp(a) * (a - b)).sum(axis=1)  # noqa: E731
        result[part] = {"kl": float(kl(p, q).mean()), "js": float((0.5 * kl(p, m) + 0.5 * kl(q, m)).mean())}
    return result


def positive_controls(original: dict[str, AttackEvidence], retrain: dict[str, AttackEvidence]) -> dict[str, bool]:
    """Per attack, its positive control (`stats.has_signal`) against the retrained model."""
    return {name: has_signal(original[name].forget, retrain[name].forget) for name in original}


def evidence_json(attacks: dict[str, AttackEvidence], signal: dict[str, bool], original: dict[str, AttackEvidence] | None) -> dict:
    out = {}
    for name, result in attacks.items():
        entry = {"signal": signal[name], "forget": result.forget.to_json(), "retain": result.retain.to_json(), "mia_efficacy": result.mia_efficacy}
        if original is not None:
            # unlearning can expose retained examples: is their AUC now above the original's?
            entry["retain_exposure_raised"] = significantly_above(result.retain, original[name].retain)
        out[name] = entry
    return out
