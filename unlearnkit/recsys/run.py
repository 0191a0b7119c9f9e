"""`unlearnkit run --preset recsys-…`: the recommender experiment. Generate the preset's
interaction log, delete users, train (or load from the store) the original recommender and the
one retrained without the deleted users, run each recsys method on the original (sisa on a
user-sharded ensemble of it), and measure every model against the retrained one: ranking
utility on the kept users, what it still ranks for the deleted users, and a membership attack
on their interactions (see `unlearnkit.recsys.evaluate`)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.evidence import EvidenceOptions
from unlearnkit.fileio import atomic_write_bytes, atomic_write_json, remove_temporaries, sha256_arrays, write_manifest
from unlearnkit.methods import Task, get_method, list_methods, make_config, method_digest, run_method
from unlearnkit.presets import Preset
from unlearnkit.progress import say
from unlearnkit.recsys.data import InteractionLog, UserSplit, generate, split_users
from unlearnkit.recsys.evaluate import K, RecsysOutputs, add_gaps, evaluate_recommender, positive_control
from unlearnkit.recsys.models import create_recommender, recommender_factory
from unlearnkit.recsys.report import markdown_table, print_table
from unlearnkit.recsys.sisa import UserShards, train_user_shards
from unlearnkit.recsys.training import one_thread, train_recommender
from unlearnkit.reference import Reference
from unlearnkit.store import Store, engine_digest, load_model, read_sidecar, save_model
from unlearnkit.train import Checkpoint, Recipe, default_device, machine_record, resolve_precision

RECSYS_METHODS = ("finetune", "neggrad-plus", "kl", "sisa")
# the code that decides what a recommender the store keeps is: a change to it trains again
RECSYS_ENGINE = ("recsys/data.py", "recsys/models.py", "recsys/training.py", "recsys/sisa.py")


def resolve_recsys_methods(methods: str | list[str] | None) -> list[str]:
    if methods is None:
        return list(RECSYS_METHODS)
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    if names == ["all"]:
        return list_methods(modality="recsys")
    for name in names:
        get_method(name, "recsys")
    return names


@dataclass
class RecsysSetup:
    log: InteractionLog
    preset: Preset
    split: UserSplit
    store: Store


def prepare_recsys(preset: Preset, seed: int, cache=None, forget: float | str | None = None) -> RecsysSetup:
    """The preset's log and the deleted users: `forget` a fraction or count of users drawn with
    `seed`, "users:3,17" or "file:REQUESTS.csv" (default: the preset's `forget`)."""
    log = generate(preset.interactions)
    return RecsysSetup(log, preset, split_users(log, preset.forget if forget is None else forget, seed), Store(cache) if cache else Store())


def recommender_spec(setup: RecsysSetup) -> dict:
    """The factory spec of the preset's recommender, sized for the log."""
    model = setup.preset.model
    return recommender_factory(model.name, setup.log.num_users, setup.log.num_items, **model.kwargs)


def stored(setup: RecsysSetup, role: str, key: str, train: Callable[[Checkpoint], tuple[nn.Module, float]], device: torch.device, **metadata) -> Reference:
    """The model the store keeps under `key`, or `train`ed (resuming from a checkpoint after a
    crash), saved there, and returned."""
    store = setup.store
    if path := store.find(key):
        say(f"[dim]{role}: loaded from the cache ({path})[/dim]")
        return Reference(role, load_model(path, device), path, read_sidecar(path), cached=True)
    with store.lock(key):
        if path := store.find(key):
            return Reference(role, load_model(path, device), path, read_sidecar(path), cached=True)
        model, seconds = train(Checkpoint(store.path(key).parent / "checkpoint.safetensors", key=key))
        path = save_model(model, store.path(key), role=role, modality="recsys", preset=setup.preset.name, data_fingerprint=setup.log.fingerprint,
                          split_fingerprint=setup.split.fingerprint, timings={"train_seconds": seconds, "device": str(device)}, **metadata)
    return Reference(role, model, path, read_sidecar(path), cached=False)


def store_key(setup: RecsysSetup, users: np.ndarray, seed: int, device: torch.device, **more) -> str:
    recipe = setup.preset.recipe
    return setup.store.key(kind="recsys", data=setup.log.fingerprint, train_users=sha256_arrays(users), model=recommender_spec(setup),
                           recipe={**recipe.model_dump(), "precision": resolve_precision(recipe.precision, device)}, seed=seed,
                           code=engine_digest(modules=RECSYS_ENGINE)[:16], **more)


def train_reference_recommender(role: str, setup: RecsysSetup, seed: int, device: torch.device | None = None) -> Reference:
    """The original (every user) or the retrained recommender (the kept users only), from the
    store when the same inputs made it before."""
    device = device or default_device()
    users = np.arange(setup.log.num_users) if role == "original" else setup.split.retain_users

    def train(checkpoint: Checkpoint) -> tuple[nn.Module, float]:
        torch.manual_seed(seed)
        model = create_recommender(setup.preset.model.name, setup.log.num_users, setup.log.num_items, **setup.preset.model.kwargs).to(device)
        report = train_recommender(model, setup.log.source(users, device), setup.preset.recipe, seed=seed, checkpoint=checkpoint,
                                   description=f"{role} ({setup.preset.name}, seed {seed})")
        return model, report.seconds

    return stored(setup, role, store_key(setup, users, seed, device), train, device, seed=seed, trained_on_users=int(users.size))


def train_sharded_original(setup: RecsysSetup, seed: int, shards: int, device: torch.device | None = None) -> Reference:
    """The user-sharded ensemble of the original (every user), for sisa to delete from."""
    device = device or default_device()
    users = np.arange(setup.log.num_users)

    def train(checkpoint: Checkpoint) -> tuple[nn.Module, float]:  # a shard trains in seconds: no checkpoint
        say(f"original: training {shards} user shards (SISA) …")
        return train_user_shards(recommender_spec(setup), setup.log.source(users, device), shards, setup.preset.recipe, seed, device)

    return stored(setup, "original", store_key(setup, users, seed, device, shards=shards), train, device, seed=seed, shards=shards)


def recsys_task(log: InteractionLog, split: UserSplit, original: nn.Module, recipe: Recipe, seed: int) -> Task:
    """The deletion as a method sees it: the kept and deleted users' training pairs (x users,
    y items), the kept users' held-out pairs as `val` (no recsys method reads them), the
    catalogue size as `num_classes`, the original's training `recipe`, the deleted and kept user ids."""
    device = next(original.parameters()).device
    return Task(
        retain=log.source(split.retain_users, device), forget=log.source(split.forget_users, device), val=log.source(split.retain_users, device, "test"),
        original=copy.deepcopy(original).eval(), num_classes=log.num_items, recipe=recipe, seed=seed, data_key=split.fingerprint,
        forget_ids=split.forget_users, retain_ids=split.retain_users,
    )


def refuse_evidence(evidence: EvidenceOptions | None) -> None:
    if evidence is not None and evidence.level == "full":
        raise UnlearnkitError("--evidence full trains ensembles of classifiers and language models; a recsys run measures ranking and a membership attack with intervals — drop --evidence full")
    if evidence is not None and evidence.audits:
        raise UnlearnkitError(f"--audit {','.join(evidence.audits)} runs on classifiers and language models so far, not on recommenders; drop --audit")


def reproducing_command(preset: Preset, names: list[str], seed: int, out: Path, forget) -> str:
    forget_flag = f" --forget {forget}" if forget is not None else ""
    return f"unlearnkit run --preset {preset.name} --methods {','.join(names)} --seed {seed}{forget_flag} --out {out}"


def run_recsys_experiment(
    *, preset: Preset, methods=None, seed: int = 0, out: str | Path = "runs/latest", cache=None, configs: dict | None = None,
    forget: str | float | None = None, evidence: EvidenceOptions | None = None,
) -> dict:
    with one_thread():
        return run_recsys(preset, methods, seed, Path(out), cache, configs, forget, evidence)


def run_recsys(preset: Preset, methods, seed: int, out: Path, cache, configs: dict | None, forget, evidence: EvidenceOptions | None) -> dict:
    refuse_evidence(evidence)
    names = resolve_recsys_methods(methods)
    remove_temporaries(out)
    started = time.perf_counter()
    setup = prepare_recsys(preset, seed, cache, forget)
    log, split = setup.log, setup.split
    chosen = {name: make_config(name, {**preset.methods.get(name, {}), **(configs or {}).get(name, {})}, "recsys") for name in names}
    say(f"[bold]unlearnkit run[/bold]: preset {preset.name}, seed {seed}, {split.forget_users.size} of {log.num_users} users deleted "
        f"({log.rows(split.forget_users)[0].size} interactions) / {log.train_users.size} training and {log.test_users.size} held-out interactions, "
        f"{log.num_items} items, methods {', '.join(names)}")
    original = train_reference_recommender("original", setup, seed)
    retrain = train_reference_recommender("retrain", setup, seed)
    resamples = evidence.resamples if evidence is not None else 1000
    outputs: dict[str, RecsysOutputs] = {}
    rows: list[dict] = []

    def evaluate(name: str, model: nn.Module, seconds: float, path: Path, **extra):
        say(f"evaluating {name} …")
        outputs[name] = evaluate_recommender(model, log, split, seed=seed, resamples=resamples)
        attack = outputs[name].attack
        rows.append({"name": name, **outputs[name].figures, "attack_auc_ci": list(attack.intervals["auc"]),
                     "attack_tpr_1pct": attack.values["tpr_at_1pct_fpr"], "seconds": seconds, "time_ratio": seconds / retrain.seconds,
                     "model": str(path), **extra})

    for ref in (original, retrain):
        evaluate(ref.role, ref.model, ref.seconds, ref.path)
    task = recsys_task(log, split, original.model, preset.recipe, seed)
    for name in names:
        given = original
        if name == "sisa":
            given = train_sharded_original(setup, seed, chosen[name].shards)
        say(f"[bold]{name}[/bold]: unlearning …")
        result = run_method(name, given.model, task, chosen[name], checkpoint=out / "models" / f"{name}.checkpoint.safetensors", modality="recsys")
        path = save_model(result.model, out / "models" / f"{name}.safetensors", role="unlearned", method=name, modality="recsys", method_code=method_digest(name, "recsys")[:16],
                          config=result.config.model_dump(), seed=seed, input_model=str(given.path), data_fingerprint=log.fingerprint,
                          split_fingerprint=split.fingerprint, timings={"unlearn_seconds": result.seconds})
        extra = {"config": result.config.model_dump()}
        if isinstance(given.model, UserShards):
            touched = int(given.model.holds[:, torch.from_numpy(split.forget_users)].any(1).sum())
            extra.update(shards_retrained=touched, shards=len(given.model.models), ensemble_train_seconds=given.seconds)
        evaluate(name, result.model, result.seconds, path, **extra)
    add_gaps(rows)
    control = positive_control(outputs["original"].attack, outputs["retrain"].attack)
    results = {
        "preset": preset.name, "preset_config": preset.model_dump(), "seed": seed, "modality": "recsys",
        "command": reproducing_command(preset, names, seed, out, forget),
        "machine": machine_record(preset.recipe.precision), "data_fingerprint": log.fingerprint, "k": K,
        "split": {"spec": split.spec, "forget_users": split.forget_users.tolist(), "retain_users": int(split.retain_users.size),
                  "forget_interactions": int(log.rows(split.forget_users)[0].size), "retain_interactions": int(log.rows(split.retain_users)[0].size)},
        "reference_cached": {"original": original.cached, "retrain": retrain.cached},
        "positive_control": control, "rows": rows,
    }
    split.save(out / "split.npz")
    table = markdown_table(results)
    atomic_write_bytes(out / "table.md", table.encode())
    results["seconds_total"] = time.perf_counter() - started
    atomic_write_json(out / "results.json", results)
    write_manifest(out)
    print_table(results)
    say(f"wrote {out / 'results.json'} and {out / 'table.md'} in {results['seconds_total']:.0f}s")
    return results
