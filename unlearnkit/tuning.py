"""`unlearnkit tune METHOD`: Optuna's TPE over the search ranges that the method's config
declares on its fields (`methods.common.searched`), with the same trial budget for every
method, scored on the validation split only (never test): the distance to the retrained model,
|Δ forget accuracy| + |Δ val accuracy| + |Δ MIA|, where the attack compares forget losses
with validation losses. A trial that takes longer than the time budget (by default 0.2× the
retrained model's training time, the budget the methods are compared at) is infeasible: TPE
steers away from it (an Optuna constraint) and it is never chosen as the best while any trial
kept to the budget.

The study lives in a database (SQLite by default, any SQLAlchemy URL such as PostgreSQL
works), so a killed search started again goes on where it stopped: trials that were running
when it died are marked failed and asked again, and the budget counts finished trials only.
With `--workers`/`--address`, each batch of trials runs as Ray jobs (`unlearnkit.cluster`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from unlearnkit.cluster import Executor, Job, JobError
from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import atomic_write_bytes, atomic_write_json
from unlearnkit.methods import get_method, make_config
from unlearnkit.presets import get_preset
from unlearnkit.progress import say
from unlearnkit.sweep import make_reference

OPTUNA_HINT = "pip install 'unlearnkit[tune]' (or -e '.[tune]' in a checkout)"


def search_space(method: str, modality: str = "image") -> dict[str, dict]:
    """Field name → {low, high, log, integer} for every field the method's config gives a range."""
    config = get_method(method, modality).config
    space = {}
    for name, info in config.model_fields.items():
        if isinstance(info.json_schema_extra, dict) and "search" in info.json_schema_extra:
            space[name] = {**info.json_schema_extra["search"], "integer": info.annotation is int}
    if not space:
        raise UnlearnkitError(f"method '{method}' declares no search ranges on its config fields; nothing to tune")
    return space


def distributions(space: dict[str, dict]) -> dict:
    from optuna.distributions import FloatDistribution, IntDistribution

    return {
        name: (IntDistribution if spec["integer"] else FloatDistribution)(spec["low"], spec["high"], log=spec["log"])
        for name, spec in space.items()
    }


def val_metrics(outputs) -> dict[str, float]:
    from unlearnkit.evaluate import simple_mia_or_nan

    return {"forget": outputs.accuracy("forget"), "val": outputs.accuracy("val"), "mia": simple_mia_or_nan(outputs.losses("forget"), outputs.losses("val"))}


def distance(found: dict[str, float], reference: dict[str, float]) -> float:
    return float(sum(abs(found[k] - reference[k]) for k in reference if math.isfinite(found[k]) and math.isfinite(reference[k])))


def text_val_metrics(outputs) -> dict[str, float]:
    """A text trial's numbers, on rows the method may see and validation people only: QA on the
    forgotten and on the retained people, and the loss attack's AUC, forget rows vs rows of
    validation people."""
    from unlearnkit.evaluate.stats import score_attack
    from unlearnkit.text.evaluate import text_metrics

    split, metrics = outputs.split, text_metrics(outputs)
    auc = score_attack(outputs.attack_scores(split.forget)["loss"], outputs.attack_scores(split.val)["loss"], resamples=100).values["auc"]
    return {"forget": metrics["qa_forget"], "retain": metrics["qa_retain"], "mia": auc}


def trial_outcome(found: dict[str, float], reference: dict[str, float], seconds: float, retrain_seconds: float, precision: str) -> dict:
    """What a trial records: its distance and measures, the retrained model's, its time, and the
    machine and precision it ran with (results differ between CPU kinds)."""
    from unlearnkit.train import machine_description

    return {"distance": distance(found, reference), **found, "retrain": reference, "seconds": seconds, "time_ratio": seconds / max(retrain_seconds, 1e-9),
            "machine": machine_description(precision)}


def evaluate_text_trial(*, preset: dict, seed: int, forget: str | None, cache: str | None, method: str, config: dict) -> dict:
    from unlearnkit.methods import run_method
    from unlearnkit.text.evaluate import lm_outputs
    from unlearnkit.text.run import prepare_text, text_task, train_language_model

    setup = prepare_text(get_preset(preset), seed, cache, forget)
    original, retrain = (train_language_model(role, setup, seed) for role in ("original", "retrain"))
    reference = text_val_metrics(lm_outputs(retrain.model, setup.data, setup.split))
    result = run_method(method, original.model, text_task(setup, original.model, seed), config, modality="text")
    found = text_val_metrics(lm_outputs(result.model, setup.data, setup.split))
    return trial_outcome(found, reference, result.seconds, retrain.seconds, setup.preset.recipe.precision)


def make_text_reference(*, preset: dict, seed: int, forget: str | None, cache: str | None, role: str, **_) -> dict:
    from unlearnkit.text.run import prepare_text, train_language_model

    ref = train_language_model(role, prepare_text(get_preset(preset), seed, cache, forget), seed)
    return {"role": role, "path": str(ref.path), "cached": ref.cached}


def evaluate_trial(*, preset: dict, data, seed: int, forget: str | None, cache: str | None, method: str, config: dict) -> dict:
    """One trial (a job): the method with `config` on the cached original, scored on val."""
    if get_preset(preset).modality == "text":
        return evaluate_text_trial(preset=preset, seed=seed, forget=forget, cache=cache, method=method, config=config)
    from unlearnkit.evaluate import model_outputs
    from unlearnkit.experiment import prepare
    from unlearnkit.methods import Task, run_method
    from unlearnkit.reference import train_reference

    setup = prepare(data=data, preset=get_preset(preset), seed=seed, cache=cache, forget=forget)
    original, retrain = (train_reference(role, setup.dataset, setup.split, setup.preset, seed, setup.store) for role in ("original", "retrain"))
    reference = val_metrics(model_outputs(retrain.model, setup.dataset, setup.split, retrain.logits_cache(setup.split)))
    task = Task.from_split(setup.dataset, setup.split, original.model, setup.preset.recipe, seed, cache_dir=original.path.parent)
    result = run_method(method, original.model, task, config)
    found = val_metrics(model_outputs(result.model, setup.dataset, setup.split, parts=("forget", "val")))
    return trial_outcome(found, reference, result.seconds, retrain.seconds, setup.preset.recipe.precision)


def open_study(name: str, storage: str, seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.TPESampler(seed=seed), direction="minimize", load_if_exists=True)
    except Exception as error:  # SQLAlchemy and driver errors: a bad URL, an unreachable server
        raise UnlearnkitError(f"cannot open the study database {storage} ({str(error).splitlines()[0]}); give a writable SQLite path or a reachable database URL") from None


def recover(study) -> int:
    """Trials left running by a killed search: marked failed and asked again (enqueued with
    the same values). Returns how many."""
    from optuna.trial import TrialState

    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in orphans:
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={**trial.user_attrs, "retry_of": trial.number}, skip_if_exists=True)
    return len(orphans)


def finished(study) -> list:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and "error" in t.user_attrs)]


def tune(
    method: str, *, preset: str = "default", data=None, seed: int = 0, forget: str | None = None, cache: str | None = None,
    trials: int = 20, storage: str | None = None, export: str | Path | None = "runs/tune", write_preset: str | Path | None = None,
    executor: Executor | None = None, hold: dict | None = None, max_time_ratio: float | None = 0.2,
) -> dict:
    """Run the search until `trials` trials have finished (counting those of earlier runs of
    the same study), then export it and return the best config. `hold` (field → value) keeps
    fields out of the search at those values, e.g. `{"epochs": 1}` for an equal-compute
    comparison; the study's name records them. A new study's first trial is the method's
    defaults (where they lie in the ranges), so the best found is never worse than them on val
    (among the trials within `max_time_ratio` × the retrained model's time; None: no limit)."""
    try:
        import optuna
    except ImportError:
        raise UnlearnkitError(f"unlearnkit tune needs Optuna, which is not installed; {OPTUNA_HINT}") from None
    if trials < 1:
        raise UnlearnkitError(f"--trials {trials} is invalid; give 1 or more")
    if max_time_ratio is not None and not max_time_ratio > 0:
        raise UnlearnkitError(f"--max-time-ratio {max_time_ratio} is invalid; give a positive share of the retrained model's training time, e.g. 0.2")
    chosen = get_preset(preset)
    modality = chosen.modality
    hold = dict(hold or {})
    make_config(method, hold, modality)  # an unknown field or bad value fails here, before any work
    space = {k: v for k, v in search_space(method, modality).items() if k not in hold}
    if not space:
        raise UnlearnkitError(f"--set holds every field that {method} searches ({', '.join(hold)}); leave at least one free")
    executor = executor or Executor()
    name = study_name(method, chosen.name, seed, forget, hold)
    if storage is None:
        Path("runs/tune").mkdir(parents=True, exist_ok=True)
        storage = "sqlite:///runs/tune/studies.db"
    study = open_study(name, storage, seed)
    if recovered := recover(study):
        say(f"[yellow]{name}: {recovered} trial(s) were running when an earlier search stopped; asking them again[/yellow]")
    common = {"preset": chosen.model_dump(), "data": None if data is None else str(data), "seed": seed, "forget": forget, "cache": None if cache is None else str(cache)}
    started = time.perf_counter()
    say(f"[bold]unlearnkit tune[/bold] {method}: {trials} trials over {', '.join(space)} ({executor.describe()}); study '{name}' in {storage}")
    reference = make_text_reference if modality == "text" else make_reference
    executor.map([Job(f"{role} seed {seed}", reference, {**common, "role": role, "model_seed": seed}) for role in ("original", "retrain")], "reference models")
    fixed = {**chosen.methods.get(method, {}), **hold}
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(default_params(method, fixed, space, modality), user_attrs={"defaults": True})
    while (left := trials - len(finished(study))) > 0:
        asked = [study.ask(distributions(space)) for _ in range(min(executor.slots, left))]
        configs = [{**fixed, **trial.params} for trial in asked]
        for config in configs:
            make_config(method, config, modality)
        outcomes = executor.map([Job(f"trial {t.number}", evaluate_trial, {**common, "method": method, "config": c}) for t, c in zip(asked, configs)],
                                f"{method}: trials {trials - left + 1}–{trials - left + len(asked)} of {trials}", tolerate_errors=True)
        for trial, outcome in zip(asked, outcomes):
            if isinstance(outcome, JobError):  # a config the method cannot run with (a diverging learning rate): a finished, failed trial
                trial.set_user_attr("error", outcome.message)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                say(f"[yellow]trial {trial.number} {trial.params}: failed: {outcome.message}[/yellow]")
                continue
            for key, value in outcome.items():
                trial.set_user_attr(key, value)
            if max_time_ratio is not None:
                trial.set_constraint("time_ratio", outcome["time_ratio"] - max_time_ratio)
            study.tell(trial, outcome["distance"])
            shown = ", ".join(f"{key} {outcome[key]:.3f}" for key in metric_keys(modality))
            say(f"trial {trial.number} {format_params(trial.params)}: distance {outcome['distance']:.3f} ({shown}, {outcome['seconds']:.0f}s)")
    summary = {**summarize(study, method, space, trials, storage, time.perf_counter() - started, executor.describe(), fixed, modality, max_time_ratio), "held": hold}
    if not summary["best"]["within_budget"]:
        say(f"[yellow]no trial of {method} kept within {max_time_ratio}× the retrained model's time; the best is over that budget[/yellow]")
    if export is not None:
        export_study(summary, Path(export))
    if write_preset is not None:
        write_preset_file(chosen, method, summary["best"]["config"], Path(write_preset), summary)
    return summary


OBJECTIVES = {
    "image": "validation split only: |Δ forget acc| + |Δ val acc| + |Δ MIA (forget vs val losses)| to the retrained model",
    "text": "validation people only: |Δ QA forget| + |Δ QA retain| + |Δ loss-attack AUC (forget rows vs validation people's rows)| to the retrained model",
}


def metric_keys(modality: str) -> tuple[str, ...]:
    return ("forget", "retain", "mia") if modality == "text" else ("forget", "val", "mia")


def study_name(method: str, preset: str, seed: int, forget: str | None = None, hold: dict | None = None) -> str:
    """`finetune-default-seed0`, then the forget scenario and each held field, e.g. `-epochs1`."""
    return f"{method}-{preset}-seed{seed}" + (f"-{forget}" if forget else "") + "".join(f"-{k}{v}" for k, v in sorted((hold or {}).items()))


def default_params(method: str, fixed: dict, space: dict[str, dict], modality: str) -> dict:
    """The method's default value of each searched field that lies inside its range."""
    default = make_config(method, fixed, modality).model_dump()
    return {k: default[k] for k, spec in space.items() if default[k] is not None and spec["low"] <= default[k] <= spec["high"]}


def format_params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def pick_best(complete: list, max_time_ratio: float | None) -> tuple:
    """The trial with the smallest distance among those within the time budget, and whether
    any was; where none was, the smallest distance of all."""
    within = [t for t in complete if max_time_ratio is None or t.user_attrs.get("time_ratio", 0.0) <= max_time_ratio]
    return min(within or complete, key=lambda t: t.value), bool(within)


def summarize(study, method: str, space: dict, budget: int, storage: str, seconds: float, where: str, fixed: dict, modality: str = "image",
              max_time_ratio: float | None = None) -> dict:
    done = finished(study)
    complete = [t for t in done if t.value is not None]
    if not complete:
        raise UnlearnkitError(f"every trial of {method} failed (first: {done[0].user_attrs.get('error') if done else 'none ran'}); narrow the search ranges")
    best, within_budget = pick_best(complete, max_time_ratio)
    default = make_config(method, fixed, modality).model_dump()
    return {
        "study": study.study_name, "method": method, "budget": budget, "storage": storage, "where": where, "seconds_this_run": seconds,
        "objective": OBJECTIVES[modality], "modality": modality, "metrics": list(metric_keys(modality)),
        "space": space, "defaults_before": {k: default[k] for k in space}, "max_time_ratio": max_time_ratio,
        "best": {"trial": best.number, "distance": best.value, "config": {**fixed, **best.params}, "metrics": dict(best.user_attrs), "within_budget": within_budget},
        "trials": [{"number": t.number, "params": t.params, "distance": t.value, "state": t.state.name, **{k: v for k, v in t.user_attrs.items() if k != "retrain"}} for t in done],
    }


def export_study(summary: dict, folder: Path) -> None:
    """`<study>.json` (every trial) and `<study>.md` (the best config and the trials, best first)."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / f"{summary['study']}.json", summary)
    best = summary["best"]
    lines = [f"# Tuning {summary['method']} ({summary['study']})", "",
             f"Objective: {summary['objective']}. TPE, budget {summary['budget']} finished trials (the first at the defaults); {summary['where']}."
             + (f" Held out of the search: {format_params(summary['held'])}." if summary.get("held") else "")
             + (f" Time budget: {summary['max_time_ratio']}× the retrained model's training time; a trial over it is chosen only if none kept to it."
                if summary.get("max_time_ratio") else ""), "",
             f"Best (trial {best['trial']}): distance {best['distance']:.4f} with {format_params(best['config'])}; "
             f"the defaults before: {format_params(summary['defaults_before'])}"
             + ("" if best.get("within_budget", True) else "; **no trial kept to the time budget**") + ".", "",
             "| trial | distance | " + " | ".join(k.replace("mia", "MIA") for k in summary.get("metrics", metric_keys("image"))) + " | seconds | × retrain | " + " | ".join(summary["space"]) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(summary["space"])]
    for trial in sorted(summary["trials"], key=lambda t: (t["distance"] is None, t["distance"] or 0)):
        cells = [str(trial["number"]), "failed" if trial["distance"] is None else f"{trial['distance']:.4f}",
                 *[f"{trial[k]:.3f}" if isinstance(trial.get(k), float) else "–" for k in summary.get("metrics", metric_keys("image"))],
                 f"{trial['seconds']:.0f}" if "seconds" in trial else "–", f"{trial['time_ratio']:.3f}" if "time_ratio" in trial else "–",
                 *[f"{trial['params'][k]:.4g}" if k in trial["params"] else "–" for k in summary["space"]]]
        lines.append("| " + " | ".join(cells) + " |")
    atomic_write_bytes(folder / f"{summary['study']}.md", ("\n".join(lines) + "\n").encode())


def write_preset_file(preset, method: str, config: dict, path: Path, summary: dict) -> None:
    """The preset with the best config under `[methods.<method>]`: `unlearnkit run --preset FILE`."""
    import tomli_w

    data = json.loads(preset.model_copy(update={"methods": {**preset.methods, method: config}}).model_dump_json(exclude_none=True))
    header = f"# {preset.name} with {method} tuned by `unlearnkit tune` (study {summary['study']}, best val distance {summary['best']['distance']:.4f})\n"
    atomic_write_bytes(path, (header + tomli_w.dumps(data)).encode())
    say(f"wrote {path}: `unlearnkit run --preset {path}` uses the tuned {method}")
