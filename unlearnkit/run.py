"""`unlearnkit run`: the whole experiment. Train or load the original and retrained models,
run each unlearning method on the original, evaluate everything against the retrained
model, and write the table, results.json, the split and the figures."""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from unlearnkit.eda import class_distribution
from unlearnkit.evaluate import metrics, model_outputs
from unlearnkit.experiment import prepare
from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import atomic_write_json, remove_temporaries, write_manifest
from unlearnkit.methods import Task, get_method, list_methods, run_method
from unlearnkit.progress import console, say
from unlearnkit.reference import train_reference
from unlearnkit.report import add_average_gaps, aggregate_rows, aggregate_table, positive_control, results_table, write_figures
from unlearnkit.store import save_model
from unlearnkit.train import Source

DEFAULT_METHODS = ("finetune", "prune-l1", "kl", "dummy-labels")


def resolve_methods(methods: str | list[str] | None) -> list[str]:
    if methods is None:
        return list(DEFAULT_METHODS)
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    if names == ["all"]:
        return list_methods()
    for name in names:
        get_method(name)  # one-line error for an unknown name, before any training
    return names


def sources(dataset, split, device) -> dict[str, Source]:
    return {
        "retain": Source.take(dataset.train_x, dataset.train_y, split.retain, device),
        "forget": Source.take(dataset.train_x, dataset.train_y, split.forget, device),
        "val": Source.take(dataset.test_x, dataset.test_y, split.val, device),
    }


def run_experiment(
    *, preset: str = "default", data=None, methods=None, seed: int = 0, out: str | Path = "runs/latest", cache=None,
    configs: dict | None = None, forget: str | float | None = None, subjects=None,
) -> dict:
    names = resolve_methods(methods)
    out = Path(out)
    remove_temporaries(out)
    started = time.perf_counter()
    setup = prepare(data=data, preset=preset, seed=seed, cache=cache, forget=forget, subjects=subjects)
    dataset, split = setup.dataset, setup.split
    say(f"[bold]unlearnkit run[/bold]: preset {setup.preset.name}, seed {seed}, {split.forget.size} forget / {split.retain.size} retain / {split.test.size} test / {split.val.size} val images, methods {', '.join(names)}")
    original = train_reference("original", dataset, split, setup.preset, seed, setup.store)
    retrain = train_reference("retrain", dataset, split, setup.preset, seed, setup.store)
    device = next(original.model.parameters()).device
    data_sources = sources(dataset, split, device)
    task = Task(
        **data_sources, original=copy.deepcopy(original.model).eval(), num_classes=dataset.num_classes,
        recipe=setup.preset.recipe, seed=seed, cache_dir=original.path.parent, data_key=split.fingerprint,
    )

    rows, outputs = [], {}

    def evaluate(name: str, model, seconds: float, path: Path, config: dict | None = None, cache: Path | None = None):
        say(f"evaluating {name} …")
        outputs[name] = model_outputs(model, dataset, split, cache)
        row = {"name": name, **metrics(outputs[name], seed=seed), "seconds": seconds, "time_ratio": seconds / retrain.seconds, "model": str(path)}
        if config is not None:
            row["config"] = config
        rows.append(row)

    for ref in (original, retrain):
        logits_cache = ref.path.parent / f"logits-{split.fingerprint[:16]}.npz"
        evaluate(ref.role, ref.model, ref.seconds, ref.path, cache=logits_cache)
    for name in names:
        say(f"[bold]{name}[/bold]: unlearning …")
        result = run_method(name, original.model, task, (configs or {}).get(name), checkpoint=out / "models" / f"{name}.checkpoint.safetensors")
        path = save_model(
            result.model, out / "models" / f"{name}.safetensors", role="unlearned", method=name,
            config=result.config.model_dump(), seed=seed, input_model=str(original.path),
            data_fingerprint=dataset.fingerprint, split_fingerprint=split.fingerprint,
            timings={"unlearn_seconds": result.seconds},
        )
        evaluate(name, result.model, result.seconds, path, result.config.model_dump())

    add_average_gaps(rows)
    control = positive_control(rows)
    split.save(out / "split.npz")
    figures = write_figures(rows, outputs, out / "figures") + [class_distribution(dataset, split, out / "figures" / "class-distribution.png")]
    results = {
        "preset": setup.preset.name,
        "seed": seed,
        "data_fingerprint": dataset.fingerprint,
        "split": {
            "spec": split.spec, "forget": int(split.forget.size), "retain": int(split.retain.size), "test": int(split.test.size), "val": int(split.val.size),
            "forget_per_class": np.bincount(dataset.train_y[split.forget], minlength=dataset.num_classes).tolist(),
            "forget_classes": [dataset.classes[c] for c in split.forget_classes],
        },
        "reference_cached": {"original": original.cached, "retrain": retrain.cached},
        "positive_control": control,
        "rows": rows,
        "figures": [str(p.relative_to(out)) for p in figures],
        "seconds_total": time.perf_counter() - started,
    }
    atomic_write_json(out / "results.json", results)
    write_manifest(out)
    Console(width=None if sys.stdout.isatty() else 140).print(results_table(rows, control))
    if not control["passed"]:
        console.print(f"[bold red]positive control failed[/bold red]: {control['note']}")
    say(f"wrote {out / 'results.json'}, {out / 'split.npz'} and {len(figures)} figures under {out / 'figures'} in {results['seconds_total']:.0f}s")
    return results


def run_seeds(*, seeds: list[int], out: str | Path, **kwargs) -> dict:
    """The whole experiment once per seed (each seed draws its own forget set and model
    initializations) under `out/seed<N>/`, then mean ± sd per column in `out/results.json`."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise UnlearnkitError(f"seeds {seeds} are invalid; give one or more distinct integers, e.g. --seeds 0,1,2")
    out = Path(out)
    runs = [run_experiment(seed=seed, out=out / f"seed{seed}", **kwargs) for seed in seeds]
    aggregated = aggregate_rows([run["rows"] for run in runs])
    results = {
        "preset": runs[0]["preset"],
        "seeds": seeds,
        "data_fingerprint": runs[0]["data_fingerprint"],
        "runs": [f"seed{seed}/results.json" for seed in seeds],
        "positive_control_passed": [run["positive_control"]["passed"] for run in runs],
        "aggregate": aggregated,
    }
    atomic_write_json(out / "results.json", results)
    write_manifest(out)
    Console(width=None if sys.stdout.isatty() else 160).print(aggregate_table(aggregated, seeds))
    say(f"wrote {out / 'results.json'} (per-seed results under {out}/seed<N>/)")
    return results
