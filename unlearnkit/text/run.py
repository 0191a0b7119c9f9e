"""`unlearnkit run --preset facts-…`: the text experiment. Train (or load) the original and the
retrained language models, run each language-model method on the original, and measure every
model against the retrained one: QA, extraction, membership attacks with their positive
control, and with `--evidence full` the NeurIPS ε score and KLoM over N models per side."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluate.epsilon import neurips_score
from unlearnkit.evaluate.klom import klom_both, klom_floor
from unlearnkit.evaluate.stats import AttackScore
from unlearnkit.evidence import EvidenceOptions
from unlearnkit.fileio import atomic_write_bytes, atomic_write_json, remove_temporaries, sha256_arrays, write_manifest
from unlearnkit.methods import MethodConfig, Task, get_method, list_methods, make_config, run_method
from unlearnkit.models import create_model
from unlearnkit.presets import Preset
from unlearnkit.progress import say
from unlearnkit.reference import Reference
from unlearnkit.store import Store, load_model, read_sidecar, save_model
from unlearnkit.text.data import TextData, TextSplit, split_people, text_data
from unlearnkit.text.evaluate import TextOutputs, lm_outputs, membership_attacks, positive_controls, text_metrics
from unlearnkit.text.facts import generate
from unlearnkit.train import Checkpoint, Source, default_device, fit, machine_record, resolve_precision

TEXT_METHODS = ("finetune", "gradient-ascent", "grad-diff", "npo", "simnpo", "kl", "idk", "rmu")


def resolve_text_methods(methods: str | list[str] | None) -> list[str]:
    if methods is None:
        return list(TEXT_METHODS)
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    if names == ["all"]:
        return list_methods(modality="text")
    for name in names:
        get_method(name, "text")
    return names


@dataclass
class TextSetup:
    data: TextData
    preset: Preset
    split: TextSplit
    store: Store


def prepare_text(preset: Preset, seed: int, cache=None, forget: float | str | None = None, subjects: list[str] | None = None) -> TextSetup:
    """The corpus of a facts preset as rows, and the people split: `forget` a fraction or count
    of trained people (default: the preset's), or `subjects` the people a request names."""
    context = preset.model.kwargs.get("context", 128)
    data = text_data(generate(preset.corpus), context - 1)
    if subjects is not None:
        chosen: float | list[str] = subjects
    elif isinstance(forget, str) and forget.startswith("file:"):
        chosen = request_subjects(Path(forget[5:]))
    else:
        try:
            chosen = float(preset.forget if forget is None else forget)
        except ValueError:
            raise UnlearnkitError(f"--forget {forget!r}: a facts preset forgets a fraction (0.1) or a count (5) of its trained people; name people with a request file instead") from None
    return TextSetup(data, preset, split_people(data, chosen, seed), Store(cache) if cache else Store())


def request_subjects(path: Path) -> list[str]:
    """The people a deletion-request CSV names: its subject_id column (a person's index or full name)."""
    from unlearnkit.data.scenarios import column_ids, read_csv_rows

    rows = read_csv_rows(path, "request file")
    if not rows or "subject_id" not in rows[0]:
        raise UnlearnkitError(f"request file {path} needs a subject_id column (a person's index or full name) and at least one row")
    return column_ids(rows, "subject_id", path)


def train_language_model(role: str, setup: TextSetup, seed: int, device: torch.device | None = None) -> Reference:
    """The original (forget + retain rows) or the retrained model (retain rows only), from the
    store when the same inputs made it before."""
    device = device or default_device()
    data, split, preset, store = setup.data, setup.split, setup.preset, setup.store
    rows = np.sort(np.concatenate([split.forget, split.retain])) if role == "original" else split.retain
    key = store.key(data=data.fingerprint, train_indices=sha256_arrays(rows), model=preset.model.model_dump(),
                    recipe={**preset.recipe.model_dump(), "precision": resolve_precision(preset.recipe.precision, device)}, seed=seed)
    if path := store.find(key):
        return Reference(role, load_model(path, device), path, read_sidecar(path), cached=True)
    with store.lock(key):
        if path := store.find(key):
            return Reference(role, load_model(path, device), path, read_sidecar(path), cached=True)
        torch.manual_seed(seed)
        model = create_model(preset.model.name, **preset.model.kwargs).to(device)
        source = Source(torch.from_numpy(data.x[rows]).to(device), torch.from_numpy(data.y[rows]).to(device))
        checkpoint = Checkpoint(store.path(key).parent / "checkpoint.safetensors", key=key)
        report = fit(model, source, preset.recipe, seed=seed, description=f"{role} ({preset.name}, seed {seed})", checkpoint=checkpoint)
        path = save_model(model, store.path(key), role=role, modality="text", preset=preset.name, preset_config=preset.model_dump(), recipe=preset.recipe.model_dump(), seed=seed,
                          data_fingerprint=data.fingerprint, split_fingerprint=split.fingerprint, trained_on=int(rows.size),
                          timings={"train_seconds": report.seconds, "rows_per_second": report.images_per_second, "device": str(device)})
    return Reference(role, model, path, read_sidecar(path), cached=False)


def text_task(setup: TextSetup, original: torch.nn.Module, seed: int) -> Task:
    data, split = setup.data, setup.split
    device = next(original.parameters()).device
    take = lambda x, y, rows: Source(torch.from_numpy(x[rows]).to(device), torch.from_numpy(y[rows]).to(device))  # noqa: E731
    return Task(
        retain=take(data.x, data.y, split.retain), forget=take(data.x, data.y, split.forget), val=take(data.x, data.y, split.val),
        original=copy.deepcopy(original).eval(), num_classes=256, recipe=setup.preset.recipe, seed=seed, data_key=split.fingerprint,
        refusals=take(data.refusal_x, data.refusal_y, split.forget),
    )


def unlearned_outputs(method: str, config: MethodConfig, original: Reference, setup: TextSetup, seed: int) -> TextOutputs:
    """The method's output on the original with `seed` (for the ensembles: only outputs are kept)."""
    result = run_method(method, original.model, text_task(setup, original.model, seed), config, modality="text")
    return lm_outputs(result.model, setup.data, setup.split)


def utility(outputs: TextOutputs) -> tuple[float, float]:
    """(QA on retained people, 1 / perplexity): the two factors the ε score is scaled by."""
    metrics = text_metrics(outputs)
    return metrics["qa_retain"], 1 / metrics["perplexity"]


def ensemble_evidence(setup: TextSetup, seed: int, original: Reference, outputs: dict[str, TextOutputs], configs: dict[str, MethodConfig], n: int) -> tuple[dict, dict]:
    """Per model: the NeurIPS score (ε per forget row over `n` unlearned vs `n` retrained models,
    scaled by QA-on-retain and inverse-perplexity ratios) and KLoM. Also the floors: half the
    retrained models against the other half."""
    say(f"evidence (full): {n} retrained models …")
    retrained = [outputs["retrain"]] + [lm_outputs(train_language_model("retrain", setup, seed + i).model, setup.data, setup.split) for i in range(1, n)]
    forget = setup.split.forget
    retrained_conf = np.stack([o.confidence(forget) for o in retrained])
    retrained_utility = np.mean([utility(o) for o in retrained], axis=0)
    per_model, meta = {}, {"n": n}
    if n >= 4:
        half = n // 2
        floor = neurips_score(retrained_conf[:half], retrained_conf[half : 2 * half], retain_acc=(1, 1), test_acc=(1, 1))
        meta["neurips_retrain_vs_retrain"] = floor["forgetting_quality"]
        floors = klom_floor(retrained_conf)
        meta["klom_retrain_vs_retrain"], meta["klom_smoothed_retrain_vs_retrain"] = floors["klom"]["mean"], floors["klom_smoothed"]["mean"]
    for name in [m for m in outputs if m not in ("original", "retrain")]:
        say(f"evidence (full): {n} runs of {name} …")
        runs = [outputs[name]] + [unlearned_outputs(name, configs[name], original, setup, seed + i) for i in range(1, n)]
        conf = np.stack([o.confidence(forget) for o in runs])
        u = np.mean([utility(o) for o in runs], axis=0)
        score = neurips_score(conf, retrained_conf, retain_acc=(u[0], retrained_utility[0]), test_acc=(u[1], retrained_utility[1]))
        per_model[name] = {"neurips_score": score["score"], "forgetting_quality": score["forgetting_quality"], **{key: summary["mean"] for key, summary in klom_both(conf, retrained_conf).items()}}
    return per_model, meta


def run_text_experiment(
    *, preset: Preset, methods=None, seed: int = 0, out: str | Path = "runs/latest", cache=None, configs: dict | None = None,
    forget: str | float | None = None, subjects: list[str] | None = None, evidence: EvidenceOptions | None = None,
) -> dict:
    names = resolve_text_methods(methods)
    out = Path(out)
    remove_temporaries(out)
    started = time.perf_counter()
    setup = prepare_text(preset, seed, cache, forget, subjects)
    split = setup.split
    chosen = {name: make_config(name, {**preset.methods.get(name, {}), **(configs or {}).get(name, {})}, "text") for name in names}
    say(f"[bold]unlearnkit run[/bold]: preset {preset.name}, seed {seed}, {split.forget_people.size} people forgotten ({split.forget.size} rows) / "
        f"{split.retain.size} retain rows / {split.test_people.size} test and {split.val_people.size} validation people, methods {', '.join(names)}")
    original = train_language_model("original", setup, seed)
    retrain = train_language_model("retrain", setup, seed)
    outputs: dict[str, TextOutputs] = {}
    rows: list[dict] = []

    def evaluate(name: str, model, seconds: float, path: Path, config: dict | None = None):
        outputs[name] = lm_outputs(model, setup.data, split)
        row = {"name": name, **text_metrics(outputs[name]), "seconds": seconds, "time_ratio": seconds / retrain.seconds, "model": str(path)}
        rows.append(row | ({"config": config} if config is not None else {}))

    for ref in (original, retrain):
        evaluate(ref.role, ref.model, ref.seconds, ref.path)
    models = {"original": original.model, "retrain": retrain.model}
    task = text_task(setup, original.model, seed)
    for name in names:
        say(f"[bold]{name}[/bold]: unlearning …")
        result = run_method(name, original.model, task, chosen[name], checkpoint=out / "models" / f"{name}.checkpoint.safetensors", modality="text")
        path = save_model(result.model, out / "models" / f"{name}.safetensors", role="unlearned", method=name, modality="text", preset_config=preset.model_dump(),
                          config=result.config.model_dump(), seed=seed, input_model=str(original.path),
                          data_fingerprint=setup.data.fingerprint, split_fingerprint=split.fingerprint, timings={"unlearn_seconds": result.seconds})
        evaluate(name, result.model, result.seconds, path, result.config.model_dump())
        models[name] = result.model
    return report_text_run(out, setup, seed, original, retrain, rows, outputs, chosen, evidence, started, audit_text_models(models, setup, seed, evidence, rows))


def report_text_run(out: Path, setup: TextSetup, seed: int, original: Reference, retrain: Reference, rows: list[dict], outputs: dict[str, TextOutputs],
                    chosen: dict[str, MethodConfig], evidence: EvidenceOptions | None, started: float, robust: dict | None = None) -> dict:
    """Attacks, positive control, ensembles (with `--evidence full`), table, results.json, figures
    and report of a text run whose models are evaluated."""
    from unlearnkit.text.report import write_text_report

    preset, split = setup.preset, setup.split
    options = evidence or EvidenceOptions()
    attacks = {name: membership_attacks(o, seed, options.resamples) for name, o in outputs.items()}
    signal = positive_controls(attacks["original"], attacks["retrain"])
    live = [a for a in signal if signal[a]]
    headline = max(live, key=lambda a: attacks["original"][a].values["auc"]) if live else None
    control = {"passed": bool(live), "signal": signal, "headline_attack": headline,
               "note": (f"{', '.join(live)} find the forgotten people's rows on the original above the retrained model (paired bootstrap, 95%)" if live
                        else "no attack tells the forgotten people's rows apart on the original better than on the retrained model: the attack AUCs prove nothing here")}
    for row in rows:
        scores: dict[str, AttackScore] = attacks[row["name"]]
        row["attacks"] = {a: s.to_json() for a, s in scores.items()}
        if headline:
            row.update(attack_auc=scores[headline].values["auc"], attack_auc_ci=list(scores[headline].intervals["auc"]),
                       attack_tpr_1pct=scores[headline].values["tpr_at_1pct_fpr"])
    meta = {"level": options.level, "headline_attack": headline, "signal": signal}
    if options.level == "full":
        per_model, ensemble_meta = ensemble_evidence(setup, seed, original, outputs, chosen, options.n)
        meta.update(ensemble_meta)
        for row in rows:
            row.update(per_model.get(row["name"], {}))
    results = {
        "preset": preset.name, "preset_config": preset.model_dump(), "seed": seed, "modality": "text",
        "machine": machine_record(preset.recipe.precision), "data_fingerprint": setup.data.fingerprint,
        "split": {"spec": split.spec, "forget_people": split.forget_people.tolist(), "forget": int(split.forget.size), "retain": int(split.retain.size),
                  "test": int(split.test.size), "val": int(split.val.size), "test_people": split.test_people.tolist()},
        "majority_answer_rate": setup.data.corpus.majority_rate(split.test_people),
        "reference_cached": {"original": original.cached, "retrain": retrain.cached},
        "positive_control": control, "evidence": meta, "rows": rows,
        **({"robustness": robust} if robust else {}),
    }
    split.save(out / "split.npz")
    figures = write_text_report(out, results, outputs, attacks)
    results["figures"] = [str(p.relative_to(out)) for p in figures]
    results["seconds_total"] = time.perf_counter() - started
    atomic_write_json(out / "results.json", results)
    from unlearnkit.pages import run_report

    atomic_write_bytes(out / "report.html", run_report(results, figures).encode())
    write_manifest(out)
    say(f"wrote {out / 'results.json'}, {out / 'report.html'} and {len(figures)} figures under {out / 'figures'} in {results['seconds_total']:.0f}s")
    return results


def evaluate_text_run(run_dir: Path, results: dict, *, cache=None, evidence: EvidenceOptions | None = None) -> dict:
    """`unlearnkit evaluate` on a text run: its models measured again (with `--evidence full`,
    say) on the same split, rewriting results.json, the figures and the report."""
    from unlearnkit.presets import get_preset

    started = time.perf_counter()
    remove_temporaries(run_dir)
    preset, seed = get_preset(results["preset_config"]), int(results["seed"])
    setup = prepare_text(preset, seed, cache)
    setup = TextSetup(setup.data, preset, TextSplit.load(run_dir / "split.npz"), setup.store)
    if setup.data.fingerprint != results.get("data_fingerprint"):
        raise UnlearnkitError(f"{run_dir} was run on a corpus with fingerprint {str(results.get('data_fingerprint'))[:12]}…, which its preset no longer generates")
    say(f"[bold]unlearnkit evaluate[/bold] {run_dir}: preset {preset.name}, seed {seed}, {len(results['rows']) - 2} methods")
    original, retrain = train_language_model("original", setup, seed), train_language_model("retrain", setup, seed)
    rows, outputs, configs, models = [], {}, {}, {}
    for old in results["rows"]:
        name = old["name"]
        model = {"original": original.model, "retrain": retrain.model}.get(name)
        if model is None:
            model = load_model(old["model"], next(original.model.parameters()).device)
            configs[name] = make_config(name, old.get("config"), "text")
        models[name] = model
        outputs[name] = lm_outputs(model, setup.data, setup.split)
        rows.append({"name": name, **text_metrics(outputs[name]), **{k: old[k] for k in ("seconds", "time_ratio", "model", "config") if k in old}})
    return report_text_run(run_dir, setup, seed, original, retrain, rows, outputs, configs, evidence, started, audit_text_models(models, setup, seed, evidence, rows))


def audit_text_models(models: dict, setup: TextSetup, seed: int, evidence: EvidenceOptions | None, rows: list[dict]) -> dict:
    """`--audit` on a text run's models: the audits' results, their columns added to `rows`."""
    if evidence is None or not evidence.audits:
        return {}
    from unlearnkit.evaluate.relearn import RelearnOptions
    from unlearnkit.text.robust import text_headline, text_robustness_audits

    options = RelearnOptions()
    robust = text_robustness_audits(models, setup.data, setup.split, seed, evidence.audits, options)
    for row in rows:
        row.update(text_headline(robust, row["name"], options.margin))
    return robust
