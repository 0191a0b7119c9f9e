"""`unlearnkit run`: the whole experiment. Train or load the original and retrained models,
run each unlearning method on the original, evaluate everything against the retrained
model, and write the table, results.json, the split and the figures."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from unlearnkit.data import load_dataset
from unlearnkit.data.splits import Split
from unlearnkit.eda import class_distribution
from unlearnkit.evaluate import metrics, model_outputs
from unlearnkit.evidence import EvidenceOptions, gather, save_epsilons
from unlearnkit.experiment import Setup, prepare
from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import atomic_write_bytes, atomic_write_json, read_json, remove_temporaries, write_manifest
from unlearnkit.methods import Task, get_method, list_methods, make_config, method_digest, run_method
from unlearnkit.presets import get_preset
from unlearnkit.progress import console, say
from unlearnkit.reference import train_reference
from unlearnkit.evaluate.summary import add_average_gaps, aggregate_rows, positive_control
from unlearnkit.data.scenarios import apply_scenario
from unlearnkit.pages import run_report
from unlearnkit.report import aggregate_table, evidence_figures, relearn_figure, results_table, write_figures
from unlearnkit.robustness import headline as robustness_headline, robustness_audits
from unlearnkit.sisa import SisaEnsemble, check_layout, load_any_model, read_any_sidecar, save_ensemble, train_sisa
from unlearnkit.store import Store, save_model, sidecar_path, versions
from unlearnkit.train import machine_record

DEFAULT_METHODS = ("finetune", "prune-l1", "kl", "dummy-labels")


def resolve_methods(methods: str | list[str] | None, modality: str = "image") -> list[str]:
    if modality == "text":
        from unlearnkit.text.run import resolve_text_methods

        return resolve_text_methods(methods)
    if modality == "recsys":
        from unlearnkit.recsys.run import resolve_recsys_methods

        return resolve_recsys_methods(methods)
    if methods is None:
        return list(DEFAULT_METHODS)
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    if names == ["all"]:
        return list_methods()
    for name in names:
        get_method(name)  # one-line error for an unknown name, before any training
    return names


def finished_model(path: Path, identity: dict) -> dict | None:
    """The sidecar of a method's model that an earlier run into the same folder finished with
    the same method, config, seed, input model, data, split, method code (its digest) and
    versions (unlearnkit, its training engine, torch, Python) — a killed run started again skips
    it — or None. After a method's code changes, it runs again."""
    if not sidecar_path(path).exists():
        return None
    sidecar = read_any_sidecar(path)
    return sidecar if all(sidecar.get(key) == value for key, value in identity.items()) else None


def method_settings(preset, names: list[str], overrides: dict | None) -> dict[str, dict]:
    """Each method's config values: the preset's (`methods`), then `overrides` (--set) on top."""
    chosen = {name: {**preset.methods.get(name, {}), **(overrides or {}).get(name, {})} for name in names}
    for name, values in chosen.items():
        make_config(name, values)  # a bad value in a preset file fails before any training
    return {name: values for name, values in chosen.items() if values}


def run_experiment(
    *, preset: str = "default", data=None, methods=None, seed: int = 0, out: str | Path = "runs/latest", cache=None,
    configs: dict | None = None, forget: str | float | None = None, subjects=None, evidence: EvidenceOptions | None = None,
) -> dict:
    chosen_preset = get_preset(preset) if isinstance(preset, (str, dict)) else preset
    if chosen_preset.modality == "text":
        if data is not None:
            raise UnlearnkitError(f"preset {chosen_preset.name} generates its own corpus; drop --data")
        from unlearnkit.text.run import run_text_experiment

        return run_text_experiment(preset=chosen_preset, methods=methods, seed=seed, out=out, cache=cache, configs=configs, forget=forget, evidence=evidence)
    if chosen_preset.modality == "recsys":
        if data is not None or subjects is not None:
            raise UnlearnkitError(f"preset {chosen_preset.name} generates its own interaction log and names users with --forget (0.05, 10, users:3,17 or file:REQUESTS.csv with a user_id column); drop --{'data' if data is not None else 'subjects'}")
        from unlearnkit.recsys.run import run_recsys_experiment

        return run_recsys_experiment(preset=chosen_preset, methods=methods, seed=seed, out=out, cache=cache, configs=configs, forget=forget, evidence=evidence)
    names = resolve_methods(methods)
    out = Path(out)
    remove_temporaries(out)
    started = time.perf_counter()
    setup = prepare(data=data, preset=chosen_preset, seed=seed, cache=cache, forget=forget, subjects=subjects)
    dataset, split = setup.dataset, setup.split
    configs = method_settings(setup.preset, names, configs)
    if "sisa" in names:
        sisa_config = make_config("sisa", configs.get("sisa"))
        check_layout(split.forget.size + split.retain.size, sisa_config.shards, sisa_config.slices)  # before any training
    say(f"[bold]unlearnkit run[/bold]: preset {setup.preset.name}, seed {seed}, {split.forget.size} forget / {split.retain.size} retain / {split.test.size} test / {split.val.size} val {'rows' if dataset.is_table else 'images'}, methods {', '.join(names)}")
    original = train_reference("original", dataset, split, setup.preset, seed, setup.store)
    retrain = train_reference("retrain", dataset, split, setup.preset, seed, setup.store)
    task = Task.from_split(dataset, split, original.model, setup.preset.recipe, seed, cache_dir=original.path.parent)

    rows, outputs, method_configs = [], {}, {}
    refused = {}  # --methods all: a method that cannot work on this model or data, and its one-line reason

    def evaluate(name: str, model, seconds: float, path: Path, config: dict | None = None, cache: Path | None = None, warnings: list[str] = ()):
        say(f"evaluating {name} …")
        outputs[name] = model_outputs(model, dataset, split, cache)
        row = {"name": name, **metrics(outputs[name], seed=seed), "seconds": seconds, "time_ratio": seconds / retrain.seconds, "model": str(path)}
        if config is not None:
            row["config"] = config
        if warnings:  # unlearnkit.health: the model collapsed or did not move
            row["warnings"] = list(warnings)
        rows.append(row)

    for ref in (original, retrain):
        evaluate(ref.role, ref.model, ref.seconds, ref.path, cache=ref.logits_cache(split))
    for name in names:
        config = make_config(name, (configs or {}).get(name))
        path = out / "models" / f"{name}.safetensors"
        given = original
        if name == "sisa":  # sisa deletes from a SISA ensemble of the same pool, not from the single original
            given = train_sisa("original", dataset, split, setup.preset, seed, setup.store, shards=config.shards, slices=config.slices, aggregate=config.aggregate)
        identity = {"role": "unlearned", "method": name, "method_code": method_digest(name)[:16], "config": config.model_dump(mode="json"), "seed": seed, "input_model": str(given.path),
                    "data_fingerprint": dataset.fingerprint, "split_fingerprint": split.fingerprint}
        if (finished := finished_model(path, {**identity, "versions": versions()})) is not None:
            say(f"[bold]{name}[/bold]: finished by an earlier run into {out}, loaded")
            model, seconds = load_any_model(path, next(original.model.parameters()).device), finished["timings"]["unlearn_seconds"]
            warnings = finished.get("warnings", [])
        else:
            say(f"[bold]{name}[/bold]: unlearning …")
            try:
                result = run_method(name, given.model, task, config, checkpoint=out / "models" / f"{name}.checkpoint.safetensors")
            except UnlearnkitError as refusal:
                if methods not in ("all", ["all"]):
                    raise
                refused[name] = str(refusal)
                say(f"[yellow]--methods all: {name} refused ({refusal})[/yellow]")
                continue
            model, seconds, warnings = result.model, result.seconds, result.warnings
            (save_ensemble if isinstance(model, SisaEnsemble) else save_model)(model, path, **identity, timings={"unlearn_seconds": seconds}, warnings=warnings)
        evaluate(name, model, seconds, path, config.model_dump(), warnings=warnings)
        method_configs[name] = config
    return report_run(out, setup, seed, original, retrain, rows, outputs, method_configs, evidence, started, refused)


def report_run(out: Path, setup, seed: int, original, retrain, rows: list[dict], outputs: dict, method_configs: dict, evidence: EvidenceOptions | None, started: float,
               refused: dict[str, str] | None = None) -> dict:
    """Evidence, table, results.json, figures and manifest of a run whose models are evaluated."""
    dataset, split = setup.dataset, setup.split
    add_average_gaps(rows)
    options = evidence or EvidenceOptions()
    found = gather(setup, seed, original, outputs, method_configs, options)
    control = positive_control(rows, found.signal)
    for row in rows:
        row.update(found.headline(row["name"]), evidence=found.per_model[row["name"]])
    robust = {}
    if options.audits:
        device = next(original.model.parameters()).device
        models = {row["name"]: {"original": original.model, "retrain": retrain.model}.get(row["name"]) or load_any_model(row["model"], device) for row in rows}
        robust = robustness_audits(models, dataset, split, seed, options.audits)
        for row in rows:
            row.update(robustness_headline(robust, row["name"]))
    split.save(out / "split.npz")
    save_epsilons(found, out / "epsilon.npz")
    figures = write_figures(rows, outputs, out / "figures") + [class_distribution(dataset, split, out / "figures" / "class-distribution.png")]
    figures += evidence_figures(found, outputs, out / "figures")
    if "relearn" in robust:
        figures.append(relearn_figure(robust["relearn"], out / "figures" / "relearn.png"))
    results = {
        "preset": setup.preset.name,
        "preset_config": setup.preset.model_dump(),  # the whole preset: the run folder alone can reproduce it
        "seed": seed,
        "machine": machine_record(setup.preset.recipe.precision),
        "data_fingerprint": dataset.fingerprint,
        "split": {
            "spec": split.spec, "forget": int(split.forget.size), "retain": int(split.retain.size), "test": int(split.test.size), "val": int(split.val.size),
            "forget_per_class": np.bincount(dataset.train_y[split.forget], minlength=dataset.num_classes).tolist(),
            "forget_classes": [dataset.classes[c] for c in split.forget_classes],
            "forget_subclasses": [dataset.subclasses[c] for c in split.forget_subclasses],
        },
        "reference_cached": {"original": original.cached, "retrain": retrain.cached},
        "positive_control": control,
        "evidence": found.summary(),
        **({"robustness": robust} if robust else {}),
        "rows": rows,
        **({"refused": refused} if refused else {}),
        "figures": [str(p.relative_to(out)) for p in figures],
        "seconds_total": time.perf_counter() - started,
    }
    atomic_write_json(out / "results.json", results)
    atomic_write_bytes(out / "report.html", run_report(results, figures).encode())
    write_manifest(out)
    Console(width=None if sys.stdout.isatty() else 180).print(results_table(rows, control, found.summary()))
    if not control["passed"]:
        console.print(f"[bold red]positive control failed[/bold red]: {control['note']}")
    for name, reason in (refused or {}).items():
        console.print(f"[bold yellow]refused[/bold yellow]: {name}: {reason}", markup=True, highlight=False)
    for row in rows:
        for warning in row.get("warnings", []):
            console.print(f"[bold yellow]warning[/bold yellow]: {warning}", markup=True, highlight=False)
    say(f"wrote {out / 'results.json'}, {out / 'report.html'}, {out / 'split.npz'} and {len(figures)} figures under {out / 'figures'} in {results['seconds_total']:.0f}s")
    return results


def run_seeds(*, seeds: list[int], out: str | Path, **kwargs) -> dict:
    """The whole experiment once per seed (each seed draws its own forget set and model
    initializations) under `out/seed<N>/`, then mean ± sd per column in `out/results.json`."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise UnlearnkitError(f"seeds {seeds} are invalid; give one or more distinct integers, e.g. --seeds 0,1,2")
    out = Path(out)
    runs = [run_experiment(seed=seed, out=out / f"seed{seed}", **kwargs) for seed in seeds]
    return write_aggregate(out, runs, seeds)


def write_aggregate(out: Path, runs: list[dict], seeds: list[int]) -> dict:
    aggregated = aggregate_rows([run["rows"] for run in runs])
    results = {
        "preset": runs[0]["preset"],
        "seeds": seeds,
        "machine": runs[0].get("machine"),
        "data_fingerprint": runs[0]["data_fingerprint"],
        "runs": [f"seed{seed}/results.json" for seed in seeds],
        "positive_control_passed": [run["positive_control"]["passed"] for run in runs],
        "evidence_signal": [run.get("evidence", {}).get("signal") for run in runs],
        "aggregate": aggregated,
    }
    atomic_write_json(out / "results.json", results)
    write_manifest(out)
    Console(width=None if sys.stdout.isatty() else 160).print(aggregate_table(aggregated, seeds))
    say(f"wrote {out / 'results.json'} (per-seed results under {out}/seed<N>/)")
    return results


def evaluate_run(run_dir: str | Path, *, data=None, cache=None, evidence: EvidenceOptions | None = None) -> dict:
    """Evaluate the models of an existing run folder again (with more evidence, say), rewriting
    its results.json and figures; a multi-seed folder is evaluated seed by seed, then aggregated."""
    run_dir = Path(run_dir)
    results = read_results(run_dir)
    if "runs" in results:
        runs = [evaluate_run(run_dir / Path(rel).parent, data=data, cache=cache, evidence=evidence) for rel in results["runs"]]
        return write_aggregate(run_dir, runs, results["seeds"])
    if results.get("modality") == "text":
        from unlearnkit.text.run import evaluate_text_run

        return evaluate_text_run(run_dir, results, cache=cache, evidence=evidence)
    if results.get("modality") == "recsys":
        raise UnlearnkitError(f"{run_dir} is a recsys run, which measures everything as it runs; run its command again ({results.get('command')}): its reference models come from the store")
    started = time.perf_counter()
    remove_temporaries(run_dir)
    split = Split.load(run_dir / "split.npz")
    data = data if data is not None else results.get("preset_config", {}).get("data")  # a preset that names its data (a table) was run on it
    dataset = apply_scenario(load_dataset(data), split)  # a backdoor or confusion run was made on its poisoned data
    if dataset.fingerprint != results.get("data_fingerprint"):
        raise UnlearnkitError(f"the data given has fingerprint {dataset.fingerprint[:12]}…, but {run_dir} was run on {str(results.get('data_fingerprint'))[:12]}…; pass --data with the same dataset")
    seed = int(results["seed"])
    setup = Setup(dataset, get_preset(results.get("preset_config", results["preset"])), split, Store(cache) if cache else Store())
    say(f"[bold]unlearnkit evaluate[/bold] {run_dir}: preset {setup.preset.name}, seed {seed}, {len(results['rows']) - 2} methods")
    original = train_reference("original", dataset, split, setup.preset, seed, setup.store)
    retrain = train_reference("retrain", dataset, split, setup.preset, seed, setup.store)
    rows, outputs, configs = [], {}, {}
    for old in results["rows"]:
        name = old["name"]
        if name in ("original", "retrain"):
            ref = original if name == "original" else retrain
            model, cache_file = ref.model, ref.logits_cache(split)
        else:
            model, cache_file = load_any_model(old["model"], next(original.model.parameters()).device), None
            configs[name] = make_config(name, old.get("config"))
        say(f"evaluating {name} …")
        outputs[name] = model_outputs(model, dataset, split, cache_file)
        keep = {key: old[key] for key in ("seconds", "time_ratio", "model", "config") if key in old}
        rows.append({"name": name, **metrics(outputs[name], seed=seed), **keep})
    return report_run(run_dir, setup, seed, original, retrain, rows, outputs, configs, evidence, started)


def read_results(run_dir: Path) -> dict:
    path = run_dir / "results.json"
    results = read_json(path, "does not exist; give a folder written by `unlearnkit run`", "run the experiment again")
    if not isinstance(results, dict) or not ("rows" in results or "runs" in results):
        raise UnlearnkitError(f"{path} is not the results of `unlearnkit run` (no rows)")
    return results
