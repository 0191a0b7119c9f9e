"""Unlearning methods: one file each, one registry.

Every method is `unlearn(model, task, config) -> model`, registered with its pydantic config
class. The input model is never modified: `run_method` hands the method a copy. Methods
train through `unlearnkit.train.fit` and its hooks; none writes a loop of its own.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import fnmatch
import functools
import importlib
import importlib.util
import json
import pkgutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import sha256_arrays, sha256_json
from unlearnkit.plugins import load_plugins, refuse_clash
from unlearnkit.progress import say
from unlearnkit.train import Checkpoint, Recipe, Source, tensor_bytes


class MethodConfig(BaseModel):
    """Base of every method's hyperparameters: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Task:
    """What a method may use: the data it is allowed to touch, the original model, a seed.

    `retain`, `forget` and `val` hold uint8 images and labels on the training device.
    `original` is a frozen copy of the model before unlearning (a teacher for distillation
    methods). `recipe` is the preset's training recipe, for methods that scale to it.
    `cache_dir` (the original model's store folder) and `data_key` (the split's fingerprint)
    let a method keep what depends only on the original model and the data between runs.
    `checkpoint`, set by `run_method`, is where the method's training resumes from after a crash:
    every method passes it to `fit`. `forget_ids` and `retain_ids` (set by `from_split`) are the
    training-set ids of the forget and retain images, row for row, for methods that address
    training examples by id (sisa).
    """

    retain: Source
    forget: Source
    val: Source
    original: nn.Module
    num_classes: int
    recipe: Recipe
    seed: int = 0
    cache_dir: Path | None = None
    data_key: str = ""
    checkpoint: Checkpoint | None = None
    refusals: Source | None = None  # text tasks: the forget rows with each personal value replaced by a refusal
    forget_ids: np.ndarray | None = None
    retain_ids: np.ndarray | None = None

    @classmethod
    def from_split(cls, dataset, split, original: nn.Module, recipe: Recipe, seed: int, *, cache_dir: Path | None = None) -> "Task":
        """The task of a split of a `Dataset`: its retain, forget and val images on the original
        model's device, around a frozen copy of the original. Its `data_key` is the split's
        fingerprint, so that what a method keeps between runs is tied to the data it saw."""
        device = next(original.parameters()).device
        take = lambda x, y, rows: Source.take(x, y, rows, device)  # noqa: E731
        return cls(
            retain=take(dataset.train_x, dataset.train_y, split.retain),
            forget=take(dataset.train_x, dataset.train_y, split.forget),
            val=take(dataset.test_x, dataset.test_y, split.val),
            original=copy.deepcopy(original).eval(), num_classes=dataset.num_classes, recipe=recipe, seed=seed,
            cache_dir=cache_dir, data_key=split.fingerprint, forget_ids=split.forget, retain_ids=split.retain,
        )


@dataclass(frozen=True)
class Method:
    name: str
    fn: Callable[[nn.Module, Task, MethodConfig], nn.Module]
    config: type[MethodConfig]
    summary: str
    modality: str = "image"


# modality ("image": classifiers; "text": language models; "recsys": recommenders) → name → method. The same name may
# mean different things for a classifier and a language model (finetune, gradient-ascent, kl).
_REGISTRY: dict[str, dict[str, Method]] = {"image": {}, "text": {}, "recsys": {}}
MODALITIES = tuple(_REGISTRY)


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph on one line: the summary `unlearnkit methods` prints."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def register_method(name: str, config: type[MethodConfig], modality: str = "image"):
    """Register `unlearn(model, task, config)` as method `name` for `modality` ("image" for
    classifiers, "text" for language models)."""
    if modality not in _REGISTRY:
        raise UnlearnkitError(f"method '{name}': unknown modality '{modality}'; choose from {', '.join(_REGISTRY)}")

    def decorate(fn):
        if name in _REGISTRY[modality]:
            refuse_clash("method", name, _REGISTRY[modality][name].fn.__module__, fn.__module__)
        _REGISTRY[modality][name] = Method(name, fn, config, first_paragraph(fn.__doc__), modality)
        return fn

    return decorate


def _load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    import unlearnkit.text.methods  # noqa: F401  (registers the language-model methods)
    import unlearnkit.recsys.methods  # noqa: F401  (registers the recommender methods)

    load_plugins("unlearnkit.methods")


def list_methods(pattern: str = "*", modality: str = "image") -> list[str]:
    _load_all()
    return [name for name in _REGISTRY[modality] if fnmatch.fnmatch(name, pattern)]


def get_method(name: str, modality: str = "image") -> Method:
    _load_all()
    if name not in _REGISTRY[modality]:
        kind = "" if modality == "image" else f"{modality} "
        raise UnlearnkitError(f"unknown {kind}method '{name}'; choose from {', '.join(_REGISTRY[modality])}")
    return _REGISTRY[modality][name]


def imported_modules(tree: ast.Module, package: str) -> set[str]:
    """The absolute module names of `package` that `tree` imports (`from a.b import c` may name
    a module `a.b.c` or a name in `a.b`: both are tried)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.split(".")[0] == package}


def module_source(module: str) -> Path | None:
    """The .py file of `module`, or None where `module` is a name inside a module, not a module."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # `a.b.c` where `a.b` is a module and `c` a name in it
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


@functools.cache
def method_digest(name: str, modality: str = "image") -> str:
    """sha256 over the syntax trees of the module that defines method `name` and of every module
    of its package that it imports, transitively: a change of the method's code (or of a helper
    it uses) changes it, a change of comments or layout does not. The store and a resumed run
    compare it, so a model made by a method's older code is never taken for the new one's."""
    root = get_method(name, modality).fn.__module__
    package, trees, pending = root.split(".")[0], {}, [root]
    while pending:
        module = pending.pop()
        source = module_source(module) if module not in trees else None
        if source is None:
            continue
        tree = ast.parse(source.read_text(encoding="utf-8"))
        trees[module] = ast.dump(tree)
        pending.extend(imported_modules(tree, package) - trees.keys())
    return sha256_json(trees)


def make_config(name: str, values: dict | None = None, modality: str = "image") -> MethodConfig:
    method = get_method(name, modality)
    try:
        return method.config(**(values or {}))
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "config"
        raise UnlearnkitError(f"method '{name}' config field '{field}': {first['msg']} (got {first.get('input')!r})") from None


def split_setting(item: str, methods: list[str] | None, example: str = "VALUE", scope: str = "run", modality: str = "image") -> tuple[str, str, str]:
    """`METHOD.FIELD=TEXT` → (method, field, text), the method known and among `methods`."""
    target, equals, text = item.partition("=")
    name, dot, field = target.rpartition(".")
    if not equals or not dot or not name or not field:
        raise UnlearnkitError(f"--set '{item}' is not METHOD.FIELD={example}, e.g. --set finetune.lr={'0.1,0.2' if example != 'VALUE' else '0.1'}")
    get_method(name, modality)
    if methods is not None and name not in methods:
        raise UnlearnkitError(f"--set '{item}' names method '{name}', which this {scope} does not include ({', '.join(methods)})")
    return name, field, text


def parse_value(text: str):
    """A `--set` value: JSON where it parses (numbers, true/false), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(items: list[str] | None, methods: list[str] | None = None, modality: str = "image") -> dict[str, dict]:
    """`METHOD.FIELD=VALUE` strings (from `--set`) → {method: {field: value}}. Values are read
    as JSON where they parse (numbers, true/false), else kept as text; the method's config
    then validates them."""
    overrides: dict[str, dict] = {}
    for item in items or []:
        name, field, text = split_setting(item, methods, modality=modality)
        overrides.setdefault(name, {})[field] = parse_value(text)
    for name, values in overrides.items():
        make_config(name, values, modality)  # a bad field or value fails here, before any training
    return overrides


def run_identity(name: str, model: nn.Module, task: Task, config: MethodConfig) -> str:
    """What a method's checkpoint must match to be resumed: the input model's weights, the
    exact forget / retain / val images and labels, the method, its config and the seed. A
    killed run started again on another model or another request never resumes the old one."""
    return sha256_json({
        "method": name, "config": config.model_dump(), "seed": task.seed,
        "weights": {k: sha256_arrays(tensor_bytes(v)) for k, v in model.state_dict().items()},
        "data": {part: s.digest() for part, s in (("retain", task.retain), ("forget", task.forget), ("val", task.val), ("refusals", task.refusals)) if s is not None},
    })


@dataclass
class MethodResult:
    name: str
    model: nn.Module
    config: MethodConfig
    seconds: float
    warnings: list[str] = dataclasses.field(default_factory=list)  # unlearnkit.health: collapsed or unchanged
    collapsed: tuple[str, ...] = ()  # the sets (retain, val) on which the model collapsed


def run_method(
    name: str, model: nn.Module, task: Task, config: MethodConfig | dict | None = None, checkpoint: Path | Checkpoint | None = None,
    modality: str = "image",
) -> MethodResult:
    """Run a registered method on a copy of `model`; the input model is left untouched. With
    `checkpoint` (a file path), a run killed part-way resumes there when started again."""
    method = get_method(name, modality)
    config = config if isinstance(config, MethodConfig) else make_config(name, config, modality)
    if isinstance(checkpoint, Path):
        checkpoint = Checkpoint(checkpoint, key=run_identity(name, model, task, config), every=25)
    if checkpoint is not None:
        task = dataclasses.replace(task, checkpoint=checkpoint)
    working = copy.deepcopy(model)
    torch.manual_seed(task.seed)
    started = time.perf_counter()
    result = method.fn(working, task, config)
    seconds = time.perf_counter() - started
    warnings, collapsed = [], {}
    if modality in ("image", "text"):  # a recommender's check is its own evidence (recall on the kept users)
        from unlearnkit.health import collapses, health_warnings

        collapsed = collapses(model, result, task)
        warnings = health_warnings(name, model, result, task, collapsed)
        for warning in warnings:
            say(f"[yellow]warning: {warning}[/yellow]")
    return MethodResult(name, result.eval(), config, seconds, warnings, tuple(collapsed))
