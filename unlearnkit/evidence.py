"""How much evidence of forgetting to buy, and buying it.

- `fast`: from the logits of the models an experiment already has — every population attack
  on the forget set and on retained examples, with bootstrap intervals and a positive
  control each, and the divergence to the retrained model's outputs.
- `full`: adds the two per-example measures that need more models:
  - the NeurIPS 2023 score from N unlearned models (the method run with N seeds on the same
    original) and N retrained models (N training seeds on the same retain set);
  - U-LiRA from K shadow originals, K shadow retrained models and K shadow unlearned models
    (the method on each shadow original), optionally narrower (cheaper) than the target.
  Every model goes through the store, so a second evaluation trains nothing; only its logits
  are kept for unlearned models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from unlearnkit.evaluate import Outputs, cached_outputs, mia_skip_reason, model_outputs
from unlearnkit.evaluate.epsilon import neurips_score, score_breakdown
from unlearnkit.evaluate.features import logit_scaled_confidence
from unlearnkit.evaluate.klom import klom_both, klom_floor
from unlearnkit.evaluate.population import (
    AttackEvidence, Probe, divergence, evidence_json, population_attacks, positive_controls,
)
from unlearnkit.evaluate.stats import AttackScore, has_signal
from unlearnkit.evaluate.ulira import ulira
from unlearnkit.experiment import Setup
from unlearnkit.fileio import atomic_save_npz
from unlearnkit.methods import MethodConfig, Task, method_digest, run_method
from unlearnkit.presets import ModelSpec, Preset
from unlearnkit.progress import say
from unlearnkit.reference import Reference, train_reference


class EvidenceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    level: Literal["fast", "full"] = Field("fast", description="fast: population attacks and divergences; full: also the NeurIPS score and U-LiRA")
    n: int = Field(8, ge=2, description="NeurIPS score: unlearned and retrained models per side (512 in the challenge)")
    k: int = Field(4, ge=2, description="U-LiRA: shadow models of each kind (original, retrained, unlearned)")
    shadow_width: int | None = Field(None, ge=1, description="U-LiRA shadow models' width (None: the target's); narrower is cheaper")
    resamples: int = Field(1000, ge=100, description="bootstrap resamples per interval")
    audits: tuple[Literal["relearn", "quantize"], ...] = Field((), description="robustness audits run on every model: relearn (a relearning attack), quantize (int8, int4, 50% pruning)")


@dataclass
class Ledger:
    """Seconds spent buying evidence, and how many models were trained vs found in the store."""

    seconds: float = 0.0
    trained: int = 0
    reused: int = 0

    def add(self, seconds: float, cached: bool) -> None:
        self.seconds += seconds
        self.reused += cached
        self.trained += not cached


@dataclass
class Ensemble:
    forget_confidence: np.ndarray  # [models, forget examples]
    retain_acc: float
    test_acc: float
    forget_acc: float

    @classmethod
    def of(cls, outputs: list[Outputs]) -> "Ensemble":
        mean = lambda part: float(np.mean([o.accuracy(part) for o in outputs]))  # noqa: E731
        return cls(np.stack([forget_confidence(o) for o in outputs]), mean("retain"), mean("test"), mean("forget"))


@dataclass
class Evidence:
    options: EvidenceOptions
    probe: Probe
    attacks: dict[str, dict[str, AttackEvidence]] = field(default_factory=dict)
    signal: dict[str, bool] = field(default_factory=dict)
    per_model: dict[str, dict] = field(default_factory=dict)
    epsilons: dict[str, np.ndarray] = field(default_factory=dict)
    ulira_scores: dict[str, AttackScore] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)
    meta: dict = field(default_factory=dict)

    def headline_attack(self) -> str | None:
        """The population attack with a signal that finds the forget set best on the original."""
        live = [name for name in self.attacks["original"] if self.signal.get(name)]
        return max(live, key=lambda name: self.attacks["original"][name].forget.values["auc"]) if live else None

    def headline(self, name: str) -> dict:
        """Flat numbers for the table and for aggregation over seeds."""
        row = {"js_forget": self.per_model[name]["divergence"]["forget"]["js"]}
        if attack := self.headline_attack():
            score = self.attacks[name][attack].forget
            row.update(attack_auc=score.values["auc"], attack_auc_ci=list(score.intervals["auc"]), attack_tpr_1pct=score.values["tpr_at_1pct_fpr"])
        if name in self.ulira_scores:
            row["ulira_auc"] = self.ulira_scores[name].values["auc"]
            row["ulira_auc_ci"] = list(self.ulira_scores[name].intervals["auc"])
        if "neurips" in self.per_model[name]:
            row["neurips_score"] = self.per_model[name]["neurips"]["score"]
        for key in ("klom", "klom_smoothed"):
            if key in self.per_model[name]:
                row[key] = self.per_model[name][key]["mean"]
        return row

    def summary(self) -> dict:
        return {**self.meta, "headline_attack": self.headline_attack(), "signal": self.signal}


def forget_confidence(outputs: Outputs) -> np.ndarray:
    split = outputs.split
    return logit_scaled_confidence(outputs.train[split.forget], outputs.dataset.train_y[split.forget])


def reference_outputs(role: str, setup: Setup, preset: Preset, seed: int, ledger: Ledger) -> tuple[Reference, Outputs]:
    started = time.perf_counter()
    ref = train_reference(role, setup.dataset, setup.split, preset, seed, setup.store)
    outputs = model_outputs(ref.model, setup.dataset, setup.split, ref.logits_cache(setup.split))
    ledger.add(time.perf_counter() - started, ref.cached)
    return ref, outputs


def unlearned_outputs(method: str, config: MethodConfig, original: Reference, setup: Setup, preset: Preset, seed: int, ledger: Ledger) -> Outputs:
    """The method's output on `original` with `seed`, through the store (only its logits are kept),
    under a key that holds the method's code digest: editing a method makes its models anew.
    sisa deletes from the SISA ensemble of `preset` trained with `seed` instead: deleting from one
    ensemble is deterministic, so its randomness over seeds is the ensemble's training, as the
    retrained models' is theirs."""
    split = setup.split
    given = original
    if method == "sisa":
        from unlearnkit.sisa import train_sisa

        given = train_sisa("original", setup.dataset, split, preset, seed, setup.store, shards=config.shards, slices=config.slices, aggregate=config.aggregate)
    key = setup.store.key(kind="unlearned", original=given.path.parent.name, method=method, code=method_digest(method), config=config.model_dump(), seed=seed, split=split.fingerprint)
    logits_path = setup.store.path(key).parent / "logits.npz"
    started = time.perf_counter()
    if (found := cached_outputs(setup.dataset, split, logits_path)) is not None:
        ledger.add(time.perf_counter() - started, True)
        return found
    with setup.store.lock(key):
        if (found := cached_outputs(setup.dataset, split, logits_path)) is not None:  # made by another process meanwhile
            ledger.add(time.perf_counter() - started, True)
            return found
        task = Task.from_split(setup.dataset, split, original.model, preset.recipe, seed, cache_dir=original.path.parent)
        result = run_method(method, given.model, task, config, checkpoint=logits_path.parent / "checkpoint.safetensors")
        outputs = model_outputs(result.model, setup.dataset, split, logits_path)
    ledger.add(time.perf_counter() - started, False)
    return outputs


def narrower(preset: Preset, width: int | None) -> Preset:
    if width is None or width == preset.model.kwargs.get("width"):
        return preset
    return preset.model_copy(update={"name": f"{preset.name}-width{width}", "model": ModelSpec(name=preset.model.name, kwargs={**preset.model.kwargs, "width": width})})


def retrained_ensemble(setup: Setup, seed: int, n: int, ledger: Ledger, preset: Preset | None = None) -> Ensemble:
    preset = preset or setup.preset
    return Ensemble.of([reference_outputs("retrain", setup, preset, seed + i, ledger)[1] for i in range(n)])


def unlearned_ensemble(method: str, config: MethodConfig, original: Reference, setup: Setup, seed: int, n: int, ledger: Ledger, first: Outputs | None) -> Ensemble:
    return Ensemble.of([first if i == 0 and first is not None else unlearned_outputs(method, config, original, setup, setup.preset, seed + i, ledger) for i in range(n)])


def gather(
    setup: Setup, seed: int, original: Reference, outputs: dict[str, Outputs], configs: dict[str, MethodConfig], options: EvidenceOptions,
) -> Evidence:
    """Evidence for every model in `outputs` (which holds 'original' and 'retrain' and the methods,
    whose configs are in `configs`)."""
    started = time.perf_counter()
    evidence = Evidence(options, Probe.of(outputs["original"], seed))
    attackable = min(len(evidence.probe.forget), len(evidence.probe.test)) >= 2
    if not attackable:
        evidence.meta["note"] = f"{len(evidence.probe.forget)} forget image(s): membership attacks need at least 2 forget and 2 test images, so none was run"
    elif reason := mia_skip_reason(len(evidence.probe.forget), len(evidence.probe.test)):
        evidence.meta["note"] = reason
    for name, out in outputs.items():
        evidence.attacks[name] = population_attacks(out, evidence.probe, seed, options.resamples) if attackable else {}
    evidence.signal = positive_controls(evidence.attacks["original"], evidence.attacks["retrain"])
    for name, out in outputs.items():
        evidence.per_model[name] = {
            "attacks": evidence_json(evidence.attacks[name], evidence.signal, evidence.attacks["original"] if name != "original" else None),
            "divergence": divergence(out, outputs["retrain"], evidence.probe),
        }
    population_seconds = time.perf_counter() - started
    if options.level == "full":
        full_evidence(evidence, setup, seed, original, outputs, configs, attackable)
    evidence.meta = {**evidence.meta,
        "level": options.level, "population_seconds": population_seconds, **({"n": options.n, "k": options.k, "shadow_width": options.shadow_width or setup.preset.model.kwargs.get("width")} if options.level == "full" else {}),
        "models_trained": evidence.ledger.trained, "models_reused": evidence.ledger.reused, "model_seconds": evidence.ledger.seconds,
        "seconds": time.perf_counter() - started,
    }
    if options.level == "full":
        say(f"evidence (full): N = {options.n}, K = {options.k} (width {evidence.meta['shadow_width']}): {evidence.ledger.trained} models trained, {evidence.ledger.reused} from the store, {evidence.meta['seconds']:.0f}s in all")
    return evidence


def full_evidence(evidence: Evidence, setup: Setup, seed: int, original: Reference, outputs: dict[str, Outputs], configs: dict[str, MethodConfig], attackable: bool) -> None:
    options, ledger = evidence.options, evidence.ledger
    say(f"evidence (full): {options.n} retrained models for the NeurIPS score …")
    retrained = retrained_ensemble(setup, seed, options.n, ledger)
    if options.n >= 4:
        # the score's ceiling: half the retrained models scored as if "unlearned" against the other half
        half = options.n // 2
        ceiling = neurips_score(retrained.forget_confidence[:half], retrained.forget_confidence[half : 2 * half], retain_acc=(1, 1), test_acc=(1, 1))
        evidence.meta["neurips_retrain_vs_retrain"] = {"forgetting_quality": ceiling["forgetting_quality"], "models_per_side": half}
        # KLoM's noise floor at this N, for the published estimator and our smoothed one
        floors = klom_floor(retrained.forget_confidence)
        evidence.meta["klom_retrain_vs_retrain"], evidence.meta["klom_smoothed_retrain_vs_retrain"] = floors["klom"], floors["klom_smoothed"]
    shadow = narrower(setup.preset, options.shadow_width)
    say(f"evidence (full): {options.k} shadow originals and retrained models ({shadow.name}) for U-LiRA …")
    shadow_originals = [reference_outputs("original", setup, shadow, seed + 1 + i, ledger) for i in range(options.k)]
    shadow_retrained = np.stack([forget_confidence(reference_outputs("retrain", setup, shadow, seed + 1 + i, ledger)[1]) for i in range(options.k)])
    target_retrained = forget_confidence(outputs["retrain"])

    def u_lira(name: str, target: np.ndarray, shadows: np.ndarray) -> None:
        if attackable:
            evidence.ulira_scores[name] = ulira(target, target_retrained, shadows, shadow_retrained, resamples=options.resamples, seed=seed)
            evidence.per_model[name]["u_lira"] = evidence.ulira_scores[name].to_json()

    u_lira("original", forget_confidence(outputs["original"]), np.stack([forget_confidence(o) for _, o in shadow_originals]))
    if attackable:
        evidence.signal["u-lira"] = has_signal(evidence.ulira_scores["original"])
    for name, out in outputs.items():
        if name in ("original", "retrain"):
            continue
        method_started = time.perf_counter()
        say(f"evidence (full): {name}: {options.n} unlearned models (NeurIPS score), {options.k} shadow unlearned models (U-LiRA) …")
        unlearned = unlearned_ensemble(name, configs[name], original, setup, seed, options.n, ledger, first=out)
        score = neurips_score(unlearned.forget_confidence, retrained.forget_confidence, retain_acc=(unlearned.retain_acc, retrained.retain_acc), test_acc=(unlearned.test_acc, retrained.test_acc))
        evidence.epsilons[name] = score.pop("epsilon")
        shadow_unlearned = np.stack([
            forget_confidence(unlearned_outputs(name, configs[name], ref, setup, shadow, seed + 1 + i, ledger)) for i, (ref, _) in enumerate(shadow_originals)
        ])
        u_lira(name, forget_confidence(out), shadow_unlearned)
        evidence.per_model[name]["neurips"] = {
            **score, "epsilon_mean": float(evidence.epsilons[name].mean()),
            **score_breakdown(evidence.epsilons[name], unlearned.forget_confidence, retrained.forget_confidence),
        }
        evidence.per_model[name].update(klom_both(unlearned.forget_confidence, retrained.forget_confidence))
        evidence.per_model[name]["evidence_seconds"] = time.perf_counter() - method_started


def save_epsilons(evidence: Evidence, path) -> None:
    if evidence.epsilons:
        atomic_save_npz(path, **{name.replace("-", "_"): eps for name, eps in evidence.epsilons.items()})
