"""The `unlearnkit` command: thin wrappers that parse, call the library, and print."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from unlearnkit.cli_values import parse_json_object
from unlearnkit.errors import UnlearnkitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Machine unlearning for image classifiers, measured against retraining.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(data_app, name="data")


def _service_commands() -> None:
    from unlearnkit.service.cli import ledger_app, requests_app, serve_api

    app.add_typer(ledger_app, name="ledger")
    app.add_typer(requests_app, name="requests")
    app.command("serve-api")(serve_api)


_service_commands()


def show_version(value: bool) -> None:
    if value:
        from unlearnkit import __version__

        typer.echo(f"unlearnkit {__version__}")
        raise typer.Exit()


@app.callback()
def common(version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, help="print the version and exit")):
    """Machine unlearning for image classifiers, measured against retraining."""
out = Console(soft_wrap=True)

DATA_HELP = "dataset location (CIFAR-10/100 batches or tarball, MNIST idx, image folders or .npz; CIFAR-100 with #coarse: its 20 superclasses as labels), or sklearn:breast_cancer|wine|iris (a table bundled with scikit-learn); default: the preset's data, $UNLEARNKIT_DATA, then the cache"
PRESET_HELP = "recipe preset: smoke, default, paper, tabular-default, or a .toml file (model, recipe, train_pool, forget, data)"
FORGET_HELP = "what to forget: random:0.1 | random:2500 | class:cat[,dog][:0.5] | subclass:rocket[:0.5] (data PATH#coarse) | skewed:animals=3:0.1 | file:REQUESTS.csv (default: the preset's random:0.1)"
SUBJECTS_HELP = "CSV mapping subject_id to sample_id, for request files that list subject_id"


class Evidence(str, Enum):
    fast = "fast"
    full = "full"


# shared by `run` and `evaluate`, which buy evidence the same way
EVIDENCE_OPTION = typer.Option(Evidence.fast, help="fast: population attacks with intervals and divergences (no extra models); full: also the NeurIPS 2023 score (N) and U-LiRA (K shadows), training those models through the store")
N_OPTION = typer.Option(8, help="--evidence full: unlearned and retrained models per side for the NeurIPS score (the challenge used 512)")
K_OPTION = typer.Option(4, help="--evidence full: U-LiRA shadow models of each kind (original, retrained, unlearned)")
SHADOW_WIDTH_OPTION = typer.Option(None, help="--evidence full: width of the U-LiRA shadow models (default: the preset's; narrower is cheaper, recorded in the results)")
RESAMPLES_OPTION = typer.Option(1000, help="bootstrap resamples per confidence interval")
AUDIT_OPTION = typer.Option(None, "--audit", help="robustness audits on every model, comma-separated: relearn (a relearning attack), quantize (int8, int4, 50% pruning)")


def evidence_options(level: "Evidence", n: int, k: int, shadow_width: int | None, resamples: int, audit: str | None = None):
    from pydantic import ValidationError

    from unlearnkit.evidence import EvidenceOptions
    from unlearnkit.robustness import parse_audits

    try:
        return EvidenceOptions(level=level.value, n=n, k=k, shadow_width=shadow_width, resamples=resamples, audits=parse_audits(audit))
    except ValidationError as error:
        first = error.errors()[0]
        field = {"n": "--n", "k": "--k", "shadow_width": "--shadow-width", "resamples": "--resamples"}.get(str(first["loc"][0]), str(first["loc"][0]))
        raise UnlearnkitError(f"{field} {first.get('input')!r}: {first['msg']}") from None


class Role(str, Enum):
    original = "original"
    retrain = "retrain"


class Aggregation(str, Enum):
    vote = "vote"
    mean = "mean"


@app.command()
def train(
    role: Role = typer.Option(..., help="original: all training images; retrain: from scratch on the retain set"),
    preset: str = typer.Option("default", help=PRESET_HELP),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    seed: int = typer.Option(0, help="seed of the split and of the model's training"),
    forget: Optional[str] = typer.Option(None, help=FORGET_HELP),
    subjects: Optional[str] = typer.Option(None, help=SUBJECTS_HELP),
    cache: Optional[str] = typer.Option(None, help="model store folder (default: $UNLEARNKIT_CACHE/store)"),
    copy_to: Optional[str] = typer.Option(None, help="also write the model (weights + sidecar) to this .safetensors file, e.g. to deploy it"),
    write_train_ids: Optional[str] = typer.Option(None, help="write the training images it saw as a sample_id CSV (for `unlearnkit ledger register --train-ids`)"),
    shards: int = typer.Option(1, help="SISA: train this many shard models, each on its own part of the images (1 shard and 1 slice: one model, as without SISA)"),
    slices: int = typer.Option(1, help="SISA: cut each shard into this many slices, its weights kept after each, so that a deletion retrains from the slice that held the image"),
    aggregate: Aggregation = typer.Option(Aggregation.vote, help="SISA: how the shards answer: vote (the share of shards predicting each class) or mean (their mean probabilities)"),
):
    """Train (or load from the cache) a reference model, or a SISA ensemble (--shards, --slices), and print where it is stored."""
    import shutil

    from unlearnkit.experiment import prepare
    from unlearnkit.fileio import atomic_write_bytes
    from unlearnkit.reference import train_reference
    from unlearnkit.store import sidecar_path

    setup = prepare(data=data, preset=preset, seed=seed, cache=cache, forget=forget, subjects=subjects)
    sisa = (shards, slices) != (1, 1)
    if sisa:
        from unlearnkit.sisa import train_sisa

        ref = train_sisa(role.value, setup.dataset, setup.split, setup.preset, seed, setup.store, shards=shards, slices=slices, aggregate=aggregate.value)
    else:
        ref = train_reference(role.value, setup.dataset, setup.split, setup.preset, seed, setup.store)
    if write_train_ids:
        seen = np.sort(np.concatenate([setup.split.forget, setup.split.retain]) if role == Role.original else setup.split.retain)
        atomic_write_bytes(Path(write_train_ids), ("sample_id\n" + "".join(f"{i}\n" for i in seen)).encode())
        out.print(f"  wrote its {seen.size} training sample ids to {write_train_ids}")
    if copy_to:
        target = Path(copy_to)
        if target.suffix != ".safetensors":
            raise UnlearnkitError(f"--copy-to {copy_to} must end in .safetensors (its sidecar goes beside it as .json)")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ref.path, target)
        shutil.copyfile(sidecar_path(ref.path), sidecar_path(target))
        out.print(f"  copied to {target}")
    metrics, timings = ref.meta["metrics"], ref.meta["timings"]
    status = "loaded from cache" if ref.cached else f"trained in {timings['train_seconds']:.0f}s"
    if sisa:
        metrics = metrics[aggregate.value]
        layout = f"{shards} shard{'s' * (shards != 1)} × {slices} slice{'s' * (slices != 1)}"
        out.print(f"{role.value} SISA ensemble ({setup.preset.name}, seed {seed}, {layout}, {aggregate.value}): {status}")
    else:
        out.print(f"{role.value} model ({setup.preset.name}, seed {seed}): {status}")
    out.print(f"  train accuracy {metrics['train_acc']:.4f}   test accuracy {metrics['test_acc']:.4f}")
    out.print(f"  stored at {ref.path}")


@app.command()
def run(
    preset: str = typer.Option("default", help=PRESET_HELP),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    methods: Optional[str] = typer.Option(None, help="comma-separated method names, or 'all' (default: finetune,prune-l1,kl,dummy-labels)"),
    seed: int = typer.Option(0, help="seed of the split, the models and the methods"),
    seeds: Optional[str] = typer.Option(None, help="repeat over these seeds (e.g. 0,1,2) and report mean ± sd; overrides --seed"),
    forget: Optional[str] = typer.Option(None, help=FORGET_HELP),
    subjects: Optional[str] = typer.Option(None, help=SUBJECTS_HELP),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a method's hyperparameter: METHOD.FIELD=VALUE (repeatable)"),
    out: Optional[str] = typer.Option(None, help="output folder (default: runs/<preset>-seed<seed>, or runs/<preset>-seeds<a-b-c>)"),
    cache: Optional[str] = typer.Option(None, help="model store folder (default: $UNLEARNKIT_CACHE/store)"),
    evidence: Evidence = EVIDENCE_OPTION,
    n: int = N_OPTION,
    k: int = K_OPTION,
    shadow_width: Optional[int] = SHADOW_WIDTH_OPTION,
    resamples: int = RESAMPLES_OPTION,
    audit: Optional[str] = AUDIT_OPTION,
):
    """The whole experiment: original and retrained models, unlearning methods, evaluation against retrain."""
    from unlearnkit.methods import parse_overrides
    from unlearnkit.run import resolve_methods, run_experiment, run_seeds

    from unlearnkit.presets import get_preset

    options = evidence_options(evidence, n, k, shadow_width, resamples, audit)
    modality = get_preset(preset).modality
    scenario = {"forget": forget, "subjects": subjects, "configs": parse_overrides(set_, resolve_methods(methods, modality), modality), "evidence": options}

    if seeds is not None:
        try:
            seed_list = [int(s) for s in seeds.split(",")]
        except ValueError:
            raise UnlearnkitError(f"--seeds {seeds!r} is not a comma-separated list of integers, e.g. 0,1,2") from None
        run_seeds(seeds=seed_list, preset=preset, data=data, methods=methods, cache=cache,
                  out=out or f"runs/{Path(preset).stem}-seeds{'-'.join(map(str, seed_list))}", **scenario)
        return
    run_experiment(preset=preset, data=data, methods=methods, seed=seed, out=out or f"runs/{Path(preset).stem}-seed{seed}", cache=cache, **scenario)


WORKERS_OPTION = typer.Option(None, help="start a local Ray cluster with this many workers and run the jobs there (needs unlearnkit[ray]); default: in this process")
ADDRESS_OPTION = typer.Option(None, help="join the Ray cluster at HOST:PORT (default: $RAY_ADDRESS); its workers must reach --data and --cache (a shared filesystem)")
CPUS_OPTION = typer.Option(1, help="CPUs (and torch threads) per job, in this process and on Ray alike, so that results are the same")


@app.command()
def sweep(
    preset: str = typer.Option("default", help=PRESET_HELP),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    methods: Optional[str] = typer.Option(None, help="comma-separated method names, or 'all' (default: finetune,prune-l1,kl,dummy-labels)"),
    seeds: str = typer.Option("0", help="seeds: 0-4, 0,1,2 or a mix"),
    forget: Optional[str] = typer.Option(None, help="forget scenarios, comma-separated (e.g. random:0.1,class:cat); see `unlearnkit run --help`"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="a method's hyperparameter over a list of values: METHOD.FIELD=V1,V2 (repeatable; the grid is their product)"),
    out: Optional[str] = typer.Option(None, help="output folder (default: runs/sweep-<preset>)"),
    cache: Optional[str] = typer.Option(None, help="model store folder, shared by every worker (default: $UNLEARNKIT_CACHE/store)"),
    evidence: Evidence = EVIDENCE_OPTION,
    n: int = N_OPTION,
    k: int = K_OPTION,
    shadow_width: Optional[int] = SHADOW_WIDTH_OPTION,
    resamples: int = RESAMPLES_OPTION,
    workers: Optional[int] = WORKERS_OPTION,
    address: Optional[str] = ADDRESS_OPTION,
    cpus_per_task: int = CPUS_OPTION,
):
    """Methods × seeds × forget scenarios × --set value lists: one run folder per cell, mean ± sd and 95% intervals over seeds."""
    from unlearnkit.cluster import Executor
    from unlearnkit.sweep import sweep as run_sweep

    options = evidence_options(evidence, n, k, shadow_width, resamples)
    executor = Executor(workers=workers, address=address, cpus_per_task=cpus_per_task)
    run_sweep(preset=preset, data=data, methods=methods, seeds=seeds, forget=forget, sets=set_, out=out or f"runs/sweep-{Path(preset).stem}",
              cache=cache, evidence=options, executor=executor)


@app.command()
def tune(
    method: str = typer.Argument(..., help="the method to tune (see `unlearnkit methods`)"),
    preset: str = typer.Option("default", help=PRESET_HELP),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    seed: int = typer.Option(0, help="seed of the split and the reference models (and of the sampler)"),
    forget: Optional[str] = typer.Option(None, help=FORGET_HELP),
    trials: int = typer.Option(20, help="finished trials in all (earlier runs of the same study count): the same budget for every method"),
    max_time_ratio: float = typer.Option(0.2, help="time budget of a trial, × the retrained model's training time: a trial over it is infeasible to the sampler and not chosen while any kept to it"),
    storage: Optional[str] = typer.Option(None, help="study database URL: sqlite:///PATH.db or postgresql://... (default: sqlite:///runs/tune/studies.db)"),
    export: str = typer.Option("runs/tune", help="folder for the study's JSON and Markdown (the project keeps its studies in docs/tune)"),
    write_preset: Optional[str] = typer.Option(None, help="write the preset with the best config under [methods.METHOD] to this .toml file"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="hold a field out of the search: METHOD.FIELD=VALUE (repeatable), e.g. --set finetune.epochs=1 for an equal-compute comparison"),
    cache: Optional[str] = typer.Option(None, help="model store folder, shared by every worker (default: $UNLEARNKIT_CACHE/store)"),
    workers: Optional[int] = WORKERS_OPTION,
    address: Optional[str] = ADDRESS_OPTION,
    cpus_per_task: int = CPUS_OPTION,
):
    """Search a method's hyperparameters with Optuna (TPE) on the validation split, resumable; trials as Ray jobs with --workers/--address."""
    from unlearnkit.cluster import Executor
    from unlearnkit.methods import parse_overrides
    from unlearnkit.presets import get_preset
    from unlearnkit.tuning import format_params
    from unlearnkit.tuning import tune as run_tune

    hold = parse_overrides(set_, [method], get_preset(preset).modality).get(method, {})
    executor = Executor(workers=workers, address=address, cpus_per_task=cpus_per_task)
    summary = run_tune(method, preset=preset, data=data, seed=seed, forget=forget, cache=cache, trials=trials, storage=storage,
                       export=export, write_preset=write_preset, executor=executor, hold=hold, max_time_ratio=max_time_ratio)
    best = summary["best"]
    out.print(f"best of {len(summary['trials'])} trials: {format_params(best['config'])} (val distance {best['distance']:.4f}; exported to {export}/{summary['study']}.json)")


@app.command()
def evaluate(
    run_dir: str = typer.Argument(..., help="a folder written by `unlearnkit run` (one seed, or --seeds: every seed, then the aggregate)"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    cache: Optional[str] = typer.Option(None, help="model store folder (default: $UNLEARNKIT_CACHE/store)"),
    evidence: Evidence = EVIDENCE_OPTION,
    n: int = N_OPTION,
    k: int = K_OPTION,
    shadow_width: Optional[int] = SHADOW_WIDTH_OPTION,
    resamples: int = RESAMPLES_OPTION,
    audit: Optional[str] = AUDIT_OPTION,
):
    """Evaluate the models of an existing run again (e.g. with --evidence full), rewriting its results and figures."""
    from unlearnkit.run import evaluate_run

    if not Path(run_dir).is_dir():
        raise UnlearnkitError(f"run folder {run_dir} does not exist; give a folder written by `unlearnkit run`")
    evaluate_run(run_dir, data=data, cache=cache, evidence=evidence_options(evidence, n, k, shadow_width, resamples, audit))


@app.command()
def forget(
    model: str = typer.Option(..., help="the deployed model: .safetensors with its unlearnkit sidecar, or any model's weights with --model-factory"),
    model_factory: Optional[str] = typer.Option(None, help="package.module:function that builds the model's architecture (for a model unlearnkit did not save)"),
    model_kwargs: Optional[str] = typer.Option(None, help="--model-factory's keyword arguments as a JSON object, e.g. '{\"num_classes\": 10}'"),
    requests: str = typer.Option(..., help="deletion-request CSV: a sample_id column, or subject_id with --subjects"),
    method: str = typer.Option("erase-repair", help="unlearning method (see `unlearnkit methods`); default erase-repair, unlearnkit's own"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a hyperparameter of the method: METHOD.FIELD=VALUE (repeatable)"),
    subjects: Optional[str] = typer.Option(None, help=SUBJECTS_HELP),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    seed: int = typer.Option(0, help="seed of the method and of the test/val halving"),
    out: str = typer.Option("runs/forget", help="output folder: model.safetensors + sidecar, report.json, report.md"),
):
    """Serve a deletion request: unlearn the requested images from a model and verify what changed."""
    from unlearnkit.forget import auc_cell, forget_request, score_cell
    from unlearnkit.methods import parse_overrides

    from unlearnkit.store import read_sidecar, sidecar_path

    modality = read_sidecar(model).get("modality", "image") if sidecar_path(model).is_file() else "image"
    config = parse_overrides(set_, [method], modality).get(method)
    kwargs = parse_json_object(model_kwargs, "--model-kwargs") if model_kwargs else None
    report = forget_request(model=model, requests=requests, method=method, data=data, subjects=subjects, out=out, seed=seed, config=config,
                            model_factory=model_factory, model_kwargs=kwargs)
    if modality == "text":
        from unlearnkit.text.forget import markdown

        Console(width=None if sys.stdout.isatty() else 160).print(markdown(report))
        return
    table = Table(title=f"{report['requests']['images']} images forgotten with {method} in {report['unlearn_seconds']:.1f}s", title_justify="left")
    for column in ("measure", "before", "after"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for title, key in (("forget accuracy", "forget_acc"), (f"retain accuracy ({report['retain_sample']} sampled)", "retain_acc"), ("test accuracy", "test_acc")):
        table.add_row(title, f"{100 * report['before'][key]:.1f}%", f"{100 * report['after'][key]:.1f}%")
    table.add_row("membership attack (forget vs test)", score_cell(report["before"]["mia"]), score_cell(report["after"]["mia"]))
    for name, attack in report["attacks"].items():
        table.add_row(f"{name} AUC, 95% interval" + ("" if attack["signal"] else " (NO SIGNAL before)"), auc_cell(attack["before"]), auc_cell(attack["after"]))
    out_console = Console(width=None if sys.stdout.isatty() else 120)
    out_console.print(table)
    out_console.print(f"positive control: {report['positive_control']['note']}")
    for reason in report["skipped"]:
        out_console.print(f"not computed: {reason}")
    out_console.print(f"[dim]{report['what_this_shows']}[/dim]")
    out_console.print(f"wrote {report['output_model']} and {Path(out) / 'report.md'}")


@app.command()
def eda(
    preset: str = typer.Option("default", help=PRESET_HELP),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    forget: Optional[str] = typer.Option(None, help=FORGET_HELP),
    subjects: Optional[str] = typer.Option(None, help=SUBJECTS_HELP),
    seed: int = typer.Option(0, help="seed of the split and of the samples"),
    tsne: bool = typer.Option(True, help="t-SNE of the original model's features (trains the original if it is not cached)"),
    out: str = typer.Option("runs/eda", help="output folder; figures go under OUT/figures"),
    cache: Optional[str] = typer.Option(None, help="model store folder (default: $UNLEARNKIT_CACHE/store)"),
):
    """Exploratory figures of a forget scenario: class distribution, mean images, t-SNE, samples."""
    from unlearnkit.eda import write_eda
    from unlearnkit.experiment import prepare
    from unlearnkit.reference import train_reference

    setup = prepare(data=data, preset=preset, seed=seed, cache=cache, forget=forget, subjects=subjects)
    model = train_reference("original", setup.dataset, setup.split, setup.preset, seed, setup.store).model if tsne else None
    paths = write_eda(setup.dataset, setup.split, Path(out) / "figures", model=model, seed=seed)
    forget_counts = np.bincount(setup.dataset.train_y[setup.split.forget], minlength=setup.dataset.num_classes)
    print(f"{setup.split.spec}: {setup.split.forget.size} forget / {setup.split.retain.size} retain {'rows' if setup.dataset.is_table else 'images'}; forget per class: "
          + ", ".join(f"{name} {count}" for name, count in zip(setup.dataset.classes, forget_counts)))
    for path in paths:
        print(f"wrote {path}")


@app.command()
def verify(folder: str = typer.Argument(..., help="a folder written by `unlearnkit run` or `unlearnkit forget`")):
    """Check every artifact of a run against the sha256 its manifest recorded."""
    from unlearnkit.fileio import verify_folder

    count = verify_folder(folder)
    out.print(f"{folder}: all {count} files match their recorded sha256")


@app.command("methods")
def methods_list(modality: str = typer.Option("image", help="image (classifier methods) or text (language-model methods, for the facts presets)")):
    """List the registered unlearning methods and their hyperparameters."""
    from unlearnkit.methods import MODALITIES, get_method, list_methods

    if modality not in MODALITIES:
        raise UnlearnkitError(f"--modality {modality!r} is unknown; choose from {', '.join(MODALITIES)}")
    for name in list_methods(modality=modality):
        method = get_method(name, modality)
        def shown(key, field) -> str:
            search = (field.json_schema_extra or {}).get("search") if isinstance(field.json_schema_extra, dict) else None
            tuned = f" (tune: {search['low']:g}–{search['high']:g}{', log' if search['log'] else ''})" if search else ""
            return f"{key}={field.default}{tuned}"

        fields = ", ".join(shown(key, field) for key, field in method.config.model_fields.items())
        out.print(f"[bold]{name}[/bold]: {method.summary}\n  {fields}")


@data_app.command("info")
def data_info(data: Optional[str] = typer.Option(None, help=DATA_HELP)):
    """Counts per class, per-channel mean and std, and the dataset fingerprint."""
    from unlearnkit.data import load_dataset

    ds = load_dataset(data)
    out.print(f"source: {ds.source}  (layout: {ds.layout})")
    out.print(f"fingerprint: {ds.fingerprint}")
    table = Table(title=f"{len(ds.train_y)} train / {len(ds.test_y)} held-out {'rows' if ds.is_table else 'images'}, shape {ds.image_shape}")
    table.add_column("class")
    table.add_column("train", justify="right")
    table.add_column("held-out", justify="right")
    train_counts = np.bincount(ds.train_y, minlength=ds.num_classes)
    test_counts = np.bincount(ds.test_y, minlength=ds.num_classes)
    for i, name in enumerate(ds.classes):
        table.add_row(f"{i} {name}", str(train_counts[i]), str(test_counts[i]))
    out.print(table)
    if ds.is_table:
        for split, x in (("train", ds.train_x), ("held-out", ds.test_x)):
            mean, std = x.mean(axis=0, dtype=np.float64), x.std(axis=0, dtype=np.float64)
            out.print(f"{split:9s} {x.shape[1]} features: means {mean.min():.3f}..{mean.max():.3f}   stds {std.min():.3f}..{std.max():.3f}")
        return
    for split, x in (("train", ds.train_x), ("held-out", ds.test_x)):
        pixels = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)
        mean = pixels.mean(axis=1, dtype=np.float64) / 255
        std = np.array([c.std(dtype=np.float64) for c in pixels]) / 255
        out.print(f"{split:9s} mean {' '.join(f'{m:.4f}' for m in mean)}   std {' '.join(f'{s:.4f}' for s in std)}")


@app.command("facts")
def facts_export(
    tofu: str = typer.Option(..., help="write the corpus as TOFU-format JSON lines (full, forgetXX / retainYY, their perturbed files, heldout) to this folder"),
    preset: str = typer.Option("facts-default", help="the facts preset whose corpus is written"),
    forget: str = typer.Option("10", help="forget percentages of the trained people, comma-separated (TOFU's: 1,5,10)"),
):
    """Write a facts preset's corpus in TOFU's format, for `unlearn_lm` / `audit_lm` or TOFU's own code."""
    from unlearnkit.presets import get_preset
    from unlearnkit.text.facts import generate
    from unlearnkit.text.tofu import write_tofu

    chosen = get_preset(preset)
    if chosen.corpus is None:
        raise UnlearnkitError(f"preset '{chosen.name}' has no facts corpus; choose a facts preset (facts-smoke, facts-default, hf-facts-smoke)")
    try:
        percents = tuple(int(p) for p in forget.split(","))
    except ValueError:
        raise UnlearnkitError(f"--forget {forget!r} is not whole percentages separated by commas, e.g. 1,5,10") from None
    for name, path in write_tofu(generate(chosen.corpus), tofu, percents).items():
        out.print(f"{name}: {path}")


@app.command("models")
def models_list():
    """List the registered model architectures."""
    from unlearnkit.models import list_models

    for name in list_models():
        out.print(name)


def main() -> None:
    try:
        app()
    except UnlearnkitError as error:
        Console(stderr=True).print(f"error: {error}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; nothing half-written was left behind")
        sys.exit(130)


if __name__ == "__main__":
    main()
