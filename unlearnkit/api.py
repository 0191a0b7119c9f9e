"""The public Python API for people who bring their own model and data.

    import unlearnkit
    new_model = unlearnkit.unlearn(model, forget=F, retain=R, val=V, method="erase-repair",
                                   config={"epochs": 1}, seed=0)          # model untouched
    report = unlearnkit.audit(new_model, forget=F, test=T, retain=R,
                              original=model, reference=retrained)        # the last three optional
    report.to_dict()
    unlearnkit.list_methods()

Data (`F`, `R`, `V`, `T`) may be a tuple `(x, y)` of tensors or numpy arrays, a
`torch.utils.data.Dataset` yielding `(x, y)`, or a `DataLoader`. `x` may be
- images, NCHW or NHWC (or NHW for one channel), of any size and channel count: uint8 images
  reach the model as floats in [0, 1]; float images reach it unchanged (so a model trained on
  normalized tensors gets them as it was trained);
- rows of a table, float (N, D);
- token ids, integer (N, L), given to the model as they are;
- a dict of tensors, as a Hugging Face tokenizer's `BatchEncoding` or image processor gives
  (`{"input_ids": …, "attention_mask": …}`, `{"pixel_values": …}`): the model is called with
  them as keyword arguments.
The number of classes is read from the model's output, which may be a tensor, an object with
`.logits` (a Hugging Face `ModelOutput`), a dict with "logits" or a tuple led by the logits.
Steps that only make sense for images (pixel-space adversarial examples, noise images) refuse
other inputs in one line naming them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import jsonable
from unlearnkit.estimators import refuse_non_torch
from unlearnkit.models.interface import Classifier, logits

if TYPE_CHECKING:
    from unlearnkit.evaluate.relearn import RelearnOptions

Data = Any  # (x, y) | torch.utils.data.Dataset | torch.utils.data.DataLoader


@dataclass
class Examples:
    """Images (uint8 or float32, NCHW) and int64 labels, resident in memory."""

    x: torch.Tensor
    y: torch.Tensor
    name: str
    keys: tuple = ()  # dataset indices when the data came as a Subset: what identifies an example
    input_names: tuple[str, ...] = ()  # dict inputs: the keyword of each slice of x along dim 1 (one name: x itself)

    def __len__(self) -> int:
        return len(self.y)


def _tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise UnlearnkitError(f"{what} is an array of Python objects; give numbers")
        return torch.from_numpy(np.ascontiguousarray(value))
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError):
        raise UnlearnkitError(f"{what} is a {type(value).__name__}; give a tensor or a numpy array") from None


def _packed(value: Mapping, name: str) -> tuple[torch.Tensor, tuple[str, ...]]:
    """A dict of per-example tensors as one tensor the engine can batch, and the keyword of each
    part: one entry is itself; several (token ids, attention mask, token types: one shape, integer)
    are stacked along dim 1."""
    if not value:
        raise UnlearnkitError(f"{name} inputs are an empty dict; give the tensors the model takes, e.g. {{'input_ids': …, 'attention_mask': …}}")
    names = tuple(str(k) for k in value)
    parts = [_tensor(v, f"{name} input '{k}'") for k, v in value.items()]
    if len(parts) == 1:
        return parts[0], names
    shapes = {tuple(p.shape) for p in parts}
    if len(shapes) > 1:
        described = ", ".join(f"{k} {tuple(p.shape)}" for k, p in zip(names, parts))
        raise UnlearnkitError(f"{name} inputs hold tensors of different shapes ({described}); dict inputs must share one shape (pad them to one length)")
    if any(p.is_floating_point() or p.is_complex() for p in parts):
        described = ", ".join(f"{k} {p.dtype}" for k, p in zip(names, parts))
        raise UnlearnkitError(f"{name} inputs mix dtypes ({described}); several dict inputs must all be integer (ids and masks), or give one tensor")
    return torch.stack([p.long() for p in parts], dim=1), names


def _images(x: torch.Tensor, name: str) -> torch.Tensor:
    if not x.is_floating_point() and x.dtype not in (torch.uint8, torch.bool) and not x.is_complex() and x.ndim >= 2:
        return x.long().contiguous()  # token ids (N, L), or packed dict inputs (N, parts, L): given to the model as they are
    if x.ndim == 2 and x.is_floating_point():  # N, D: rows of a table, features as the model takes them
        x = x.float().contiguous()
        if not torch.isfinite(x).all():
            raise UnlearnkitError(f"{name} rows contain NaN or inf; impute or drop them first")
        return x
    if x.ndim == 3:  # N, H, W: one channel
        x = x[:, None]
    if x.ndim != 4:
        raise UnlearnkitError(f"{name} images have shape {tuple(x.shape)}; expected (N, C, H, W), (N, H, W, C) or (N, H, W) images, (N, D) float table rows or (N, L) integer token ids")
    if x.shape[1] > 4 and x.shape[-1] <= 4:  # channels last
        x = x.permute(0, 3, 1, 2)
    # a fresh copy with canonical strides: a permuted one-channel tensor keeps odd strides on its
    # size-1 dimension, which makes convolutions pick other kernels (other rounding)
    x = x.clone(memory_format=torch.contiguous_format)
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise UnlearnkitError(f"{name} images have dtype {x.dtype}; expected uint8 (0-255) or floating point")
    x = x.float()
    if not torch.isfinite(x).all():
        raise UnlearnkitError(f"{name} images contain NaN or inf; replace them first")
    return x


def _labels(y: torch.Tensor, name: str) -> torch.Tensor:
    if y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise UnlearnkitError(f"{name} labels have dtype {y.dtype} and shape {tuple(y.shape)}; expected a 1-D array of integer class indices")
    return y.long()


def examples(data: Data, name: str) -> Examples:
    """Any accepted form of data → resident `Examples` (the engine's fast path)."""
    keys: tuple = ()
    names: tuple[str, ...] = ()

    def inputs(value) -> torch.Tensor:
        nonlocal names
        if isinstance(value, Mapping):
            value, found = _packed(value, name)
            if names and found != names:
                raise UnlearnkitError(f"the {name} set's inputs change keys from {list(names)} to {list(found)}; give every example the same keys")
            names = found
            return value
        return _tensor(value, f"{name} images")

    if isinstance(data, Mapping):
        bx, by = _pair(data, name)
        x, y = inputs(bx), _tensor(by, f"{name} labels")
    elif isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (tuple, list)):
        x, y = inputs(data[0]), _tensor(data[1], f"{name} labels")
    elif isinstance(data, torch.utils.data.DataLoader):
        batches = [(inputs(bx), _tensor(by, f"{name} labels")) for bx, by in map(lambda batch: _pair(batch, name), data)]
        if not batches:
            raise UnlearnkitError(f"the {name} DataLoader yielded no batch; it needs at least one example")
        x, y = _concatenated([b[0] for b in batches], name), torch.cat([b[1].reshape(-1) for b in batches])
    elif isinstance(data, torch.utils.data.Dataset) or (isinstance(data, list) and data and isinstance(data[0], Mapping)):  # a list of dict rows: a dataset's items
        if isinstance(data, torch.utils.data.Subset):
            keys = (id(data.dataset), *map(int, data.indices))
        items = [_pair(data[i], name) for i in range(len(data))]
        if not items:
            raise UnlearnkitError(f"the {name} set is empty; it needs at least one example")
        x = _concatenated([inputs({k: _tensor(v, f'{name} input {k!r}')[None] for k, v in item[0].items()} if isinstance(item[0], Mapping) else _tensor(item[0], f'{name} images')[None]) for item in items], name)
        y = torch.as_tensor([int(item[1]) for item in items])
    else:
        raise UnlearnkitError(f"{name} is a {type(data).__name__}; give a tuple (images, labels), a torch Dataset or a DataLoader")
    if len(y) == 0:
        raise UnlearnkitError(f"the {name} set is empty; it needs at least one example")
    x, y = _images(x, name), _labels(y, name)
    if len(x) != len(y):
        raise UnlearnkitError(f"the {name} set has {len(x)} inputs but {len(y)} labels; they must match one to one")
    return Examples(x, y, name, keys, names)


def _pair(item, name: str) -> tuple:
    """(inputs, label) from a pair, or from a dict holding the label under "labels" or "label"
    (Hugging Face's convention: the rest are the model's keyword inputs)."""
    if isinstance(item, Mapping):
        label_key = next((k for k in ("labels", "label") if k in item), None)
        if label_key is None:
            raise UnlearnkitError(f"the {name} data is a dict with keys {list(item)} and no 'labels'; add the class labels under 'labels', or give (inputs, labels)")
        return {k: v for k, v in item.items() if k != label_key}, item[label_key]
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise UnlearnkitError(f"the {name} data yields {type(item).__name__}; it must yield (input, label) pairs or dicts with 'labels'")


def _concatenated(parts: list[torch.Tensor], name: str) -> torch.Tensor:
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise UnlearnkitError(f"the {name} set's examples have different shapes ({', '.join(map(str, sorted(shapes)))}); give them one shape (pad token ids to one length)")
    return torch.cat(parts)


def _inspect(model: nn.Module, sample: Examples) -> tuple[int, nn.Module, bool]:
    """From one forward pass on one example: the number of classes (checking that the output
    is (batch, classes)), and the model as a classifier that takes one tensor and returns logits
    — wrapped (True) when its output is an object, dict or tuple holding them, or when it takes
    keyword inputs (dict data)."""
    if not isinstance(model, nn.Module):
        raise UnlearnkitError(f"the model is a {type(model).__module__}.{type(model).__name__}, not a torch.nn.Module; unlearnkit unlearns and audits PyTorch models")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = Classifier(model, sample.input_names).call(_as_input(sample.x[:1]).to(_device(model)))
    except (TypeError, ValueError, RuntimeError, IndexError) as error:
        given = f"keyword inputs {list(sample.input_names)}" if sample.input_names else f"one tensor of shape {tuple(sample.x.shape[1:])} per example ({sample.x.dtype})"
        raise UnlearnkitError(f"the model failed on {given}: {str(error).splitlines()[0] if str(error) else type(error).__name__}; give the inputs its forward takes") from None
    finally:
        model.train(was_training)
    found = logits(out)
    if found.shape[0] != 1:
        raise UnlearnkitError(f"the model's output has shape {tuple(found.shape)} for one example; a classifier must return (batch, classes)")
    wrapped = not isinstance(out, torch.Tensor) or bool(sample.input_names)
    return int(found.shape[1]), Classifier(model, sample.input_names) if wrapped else model, wrapped


def _as_input(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255) if x.dtype == torch.uint8 else x


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        raise UnlearnkitError(f"{type(model).__name__} has no parameters; there is nothing to unlearn") from None


def _check_labels(data: Examples, classes: int) -> None:
    low, high = int(data.y.min()), int(data.y.max())
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise UnlearnkitError(f"{data.name} label {bad} is out of range: the model predicts {classes} classes, so labels must lie in 0..{classes - 1}")


def _image_shape(sets: list[Examples]) -> None:
    if len({s.input_names for s in sets}) > 1:
        described = ", ".join(f"{s.name} {list(s.input_names) or 'one tensor'}" for s in sets)
        raise UnlearnkitError(f"the sets give the model different inputs ({described}); give them all the same keys")
    shapes = {tuple(s.x.shape[1:]) for s in sets}
    if len(shapes) > 1:
        described = ", ".join(f"{s.name} {tuple(s.x.shape[1:])}" for s in sets)
        raise UnlearnkitError(f"the sets hold inputs of different shapes ({described}); give them all one shape (pad token ids to one length)")


def _disjoint(forget: Examples, retain: Examples) -> None:
    """A forget example also in retain would be trained on again: refused where identifiable
    (Subsets of one dataset by index; otherwise identical image and label)."""
    if forget.keys and retain.keys and forget.keys[0] == retain.keys[0]:
        shared = sorted(set(forget.keys[1:]) & set(retain.keys[1:]))
        if shared:
            raise UnlearnkitError(f"dataset index {shared[0]} is in both forget and retain ({len(shared)} shared); an example to forget must not be retained")
        return

    def fingerprints(data: Examples) -> dict[bytes, int]:
        flat = data.x.reshape(len(data), -1)
        return {hashlib.sha1(flat[i].numpy().tobytes() + data.y[i].numpy().tobytes()).digest(): i for i in range(len(data))}

    retained = fingerprints(retain)
    for digest, i in fingerprints(forget).items():
        if digest in retained:
            raise UnlearnkitError(f"forget example {i} is also retain example {retained[digest]} (same image and label); an example to forget must not be retained")


STREAM_ABOVE_BYTES = 4 * 2**30  # `stream=None`: a retain set larger than this is streamed


def should_stream(data: Data, stream: bool | None) -> bool:
    """Stream `data` from its Dataset rather than hold it in memory: as asked, or (None) when
    it is a Dataset or DataLoader whose estimated size passes `STREAM_ABOVE_BYTES`."""
    dataset = data.dataset if isinstance(data, torch.utils.data.DataLoader) else data
    if not isinstance(dataset, torch.utils.data.Dataset):
        if stream:
            raise UnlearnkitError(f"stream=True needs retain as a torch Dataset or DataLoader, got {type(data).__name__}")
        return False
    if stream is not None:
        return stream
    item = _tensor(dataset[0][0], "retain images")
    return len(dataset) * item.numel() * item.element_size() > STREAM_ABOVE_BYTES


def stream_source(data: Data, classes: int, device: torch.device, prefetch: int, workers: int = 0):
    """A StreamSource over `data`'s Dataset, converting and checking each item as it is read."""
    from unlearnkit.train import StreamSource

    dataset = data.dataset if isinstance(data, torch.utils.data.DataLoader) else data

    def convert(x, y):
        image = _images(_tensor(x, "retain images")[None], "retain")[0]
        label = int(y)
        if not 0 <= label < classes:
            raise UnlearnkitError(f"retain label {label} is out of range: the model predicts {classes} classes, so labels must lie in 0..{classes - 1}")
        return image, torch.tensor(label)

    return StreamSource(dataset, device, prefetch=prefetch, convert=convert, workers=workers)


def unlearn(
    model: nn.Module, *, forget: Data, retain: Data, val: Data | None = None, method: str = "erase-repair",
    config: dict | None = None, seed: int = 0, batch_size: int = 256, precision: str = "fp32",
    stream: bool | None = None, prefetch: int = 4, workers: int = 0, lr_backoff: int = 2,
) -> nn.Module:
    """A copy of `model` with the influence of `forget` removed by `method` (see
    `list_methods()`; `config` sets its hyperparameters). `model` is left untouched. `retain` is
    what the model must keep knowing; `val` is handed to methods that look at held-out data.
    `batch_size` is the retain images per step; `precision` "bf16" is faster on CPUs with bf16
    units ("auto" picks it where the CPU has them), "fp32" (the default) gives the same result on every CPU. A `retain` Dataset too large
    for memory (or any, with `stream=True`) is read batch by batch in the engine's order, by
    `prefetch` threads or, with `workers` > 0, by that many worker processes reading ahead
    (pinned memory on CUDA), and gives the same model as resident data.

    The methods' default learning rates were tuned for our ResNet-18; on another model they may
    wreck it. When the model comes back collapsed (`unlearnkit.health`: retain or val accuracy near
    chance) and `config` did not set `lr`, the method runs again at a tenth of the rate, up to
    `lr_backoff` times (0: never), and a warning says which rate was kept."""
    import warnings

    from unlearnkit.health import UnlearnkitWarning
    from unlearnkit.methods import make_config, run_method

    refuse_non_torch("unlearn", model=model)
    settings = make_config(method, config)  # a bad method or config fails before any data is read
    working, wrapped, task = _task(model, forget, retain, val, seed, batch_size, precision, stream, prefetch, workers)
    done = run_method(method, working, task, settings)
    tried = []
    while done.collapsed and len(tried) < lr_backoff and "lr" in type(settings).model_fields and "lr" not in (config or {}):
        tried.append(settings.lr)
        settings = settings.model_copy(update={"lr": settings.lr / 10})
        done = run_method(method, working, task, settings)
    for message in done.warnings:
        warnings.warn(message, UnlearnkitWarning, stacklevel=2)
    if tried:
        outcome = f"still collapsed at lr {settings.lr:g}" if done.collapsed else f"kept the model at lr {settings.lr:g}"
        warnings.warn(f"{method} collapsed the model at lr {', '.join(f'{lr:g}' for lr in tried)}; it {outcome}; set config={{'lr': …}} or use unlearnkit.tune to choose", UnlearnkitWarning, stacklevel=2)
    result = done.model
    return result.model if wrapped else result


def _task(model, forget, retain, val, seed: int, batch_size: int, precision: str, stream, prefetch: int, workers: int):
    """The checked data as a method's task around a frozen copy of `model`: (the model to
    unlearn, whether it was wrapped to return logits, the task)."""
    from unlearnkit.methods import Task
    from unlearnkit.train import Recipe, Source

    if precision not in ("fp32", "bf16", "auto"):
        raise UnlearnkitError(f"precision '{precision}' is not one of fp32, bf16, auto")
    streamed = should_stream(retain, stream)
    sets = [examples(forget, "forget")] + ([] if streamed else [examples(retain, "retain")]) + ([examples(val, "val")] if val is not None else [])
    _image_shape(sets)
    forget_set = sets[0]
    classes, working, wrapped = _inspect(model, forget_set)
    for data in sets:
        _check_labels(data, classes)
    device = _device(model)
    source = lambda data: Source(data.x.to(device), data.y.to(device))  # noqa: E731
    if streamed:
        retain_source = stream_source(retain, classes, device, prefetch, workers)
        if isinstance(retain, torch.utils.data.Subset):  # overlap by index is checkable without reading
            _disjoint(forget_set, Examples(forget_set.x[:0], forget_set.y[:0], "retain", (id(retain.dataset), *map(int, retain.indices))))
        if retain_source.image_shape != tuple(forget_set.x.shape[1:]):
            raise UnlearnkitError(f"the sets hold images of different shapes (forget {tuple(forget_set.x.shape[1:])}, retain {retain_source.image_shape}); give them all one shape")
    else:
        _disjoint(forget_set, sets[1])
        retain_source = source(sets[1])
    val_source = source(sets[-1]) if val is not None else Source(forget_set.x[:0].to(device), forget_set.y[:0].to(device))
    recipe = Recipe(batch_size=batch_size, precision=precision)
    original = _frozen_copy(working)
    task = Task(retain=retain_source, forget=source(forget_set), val=val_source, original=original, num_classes=classes, recipe=recipe, seed=seed)
    return working, wrapped, task


@dataclass
class TuneResult:
    """What `tune` found: the best config, its figures, and every trial (config, figures,
    distance, seconds) in the order run."""

    method: str
    best: dict
    trials: list[dict]


def tune(
    model: nn.Module, *, forget: Data, retain: Data, val: Data, method: str = "erase-repair", trials: int = 12, seed: int = 0,
    fixed: dict | None = None, batch_size: int = 256, precision: str = "fp32",
) -> TuneResult:
    """Search `method`'s hyperparameters on your own model and data (Optuna's TPE over the ranges
    its config declares; the method's defaults are the first trial). Without a model retrained
    without `forget`, a trial is scored by how far it is from what retraining would give, as far
    as the data can tell: the forget set's accuracy should fall to the val set's (unseen images),
    and retain and val accuracy should stay the original's. The distance is the sum of those three
    absolute differences (accuracies measured on `forget`, on a sample of up to 2,000 `retain`
    images and on `val`). `fixed` holds config values not searched. Needs Optuna (the `tune` extra)."""
    from unlearnkit.methods import make_config, run_method
    from unlearnkit.tuning import OPTUNA_HINT, default_params, distributions, search_space

    refuse_non_torch("tune an unlearning method on", model=model)
    try:
        import optuna
    except ImportError:
        raise UnlearnkitError(f"unlearnkit.tune needs Optuna, which is not installed; {OPTUNA_HINT}") from None
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UnlearnkitError(f"trials={trials!r} must be a whole number ≥ 1")
    fixed = dict(fixed or {})
    space = {k: v for k, v in search_space(method).items() if k not in fixed}
    make_config(method, fixed)  # a bad method or fixed value fails before any data is read
    working, wrapped, task = _task(model, forget, retain, val, seed, batch_size, precision, None, 4, 0)
    rows = np.sort(np.random.default_rng([seed, 0x70E]).permutation(len(task.retain))[:2000])
    probe = {"forget": (task.forget.x, task.forget.y), "retain": task.retain.batch(torch.from_numpy(rows)), "val": (task.val.x, task.val.y)}

    def figures(candidate: nn.Module) -> dict[str, float]:
        from unlearnkit.train import accuracy

        return {part: accuracy(candidate, x, y, "fp32") for part, (x, y) in probe.items()}

    before = figures(working)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(default_params(method, fixed, space, "image"))
    found = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for _ in range(trials):
        trial = study.ask(distributions(space))
        config = make_config(method, {**fixed, **trial.params})
        done = run_method(method, working, task, config)
        after = figures(done.model)
        distance = abs(after["forget"] - after["val"]) + abs(after["retain"] - before["retain"]) + abs(after["val"] - before["val"])
        study.tell(trial, distance)
        found.append({"config": config.model_dump(), "figures": after, "distance": distance, "seconds": done.seconds, "warnings": done.warnings})
    best = min(found, key=lambda row: row["distance"])
    return TuneResult(method, {**best, "before": before}, found)


def _frozen_copy(model: nn.Module) -> nn.Module:
    import copy

    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def list_methods() -> list[str]:
    """The names of the registered unlearning methods (plugins included)."""
    from unlearnkit.methods import list_methods as registered

    return registered()


@dataclass
class AuditReport:
    """What `audit` found. `to_dict()` is JSON-serializable (NaN as None)."""

    sizes: dict[str, int]
    models: dict[str, dict] = field(default_factory=dict)
    attacks: dict[str, dict] = field(default_factory=dict)
    positive_control: dict[str, Any] = field(default_factory=dict)
    divergence: dict[str, dict] = field(default_factory=dict)
    gaps: dict[str, dict] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    relearn: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return jsonable({
            "sizes": self.sizes, "models": self.models, "attacks": self.attacks, "positive_control": self.positive_control,
            "divergence": self.divergence, "gaps": self.gaps, "skipped": self.skipped, "relearn": self.relearn,
        })


@dataclass(frozen=True)
class _Labels:
    """What evaluation reads of a dataset: the labels of the 'train' rows (forget, then retain)
    and of the 'held-out' rows (test), and the number of classes."""

    train_y: np.ndarray
    test_y: np.ndarray
    num_classes: int


def audit(
    model: nn.Module, *, forget: Data, test: Data, retain: Data | None = None, original: nn.Module | None = None,
    reference: nn.Module | None = None, seed: int = 0, resamples: int = 1000, relearn: bool | RelearnOptions = False,
) -> AuditReport:
    """Evidence of how far `model` has forgotten `forget`: accuracy on every set given, the
    kit's membership attack (forget vs test), and, when `retain` is given, every population
    attack (fitted on retain vs half of `test`, applied to forget vs the other half) with AUC,
    TPR at 1% and 0.1% FPR and 95% intervals. With `original` (the model before unlearning),
    each attack's positive control; with `reference` (a model retrained without `forget`), the
    divergence of the outputs and the gaps to it. With `relearn` (True or `RelearnOptions`), the
    relearning attack on `model` and on `reference` (both needed, with `retain`): whether the
    forget set comes back after a few fine-tuning steps more than it does for the retrained model
    (`evaluate/relearn.py`). What cannot be computed is said, with why."""
    from unlearnkit.data.splits import Split
    from unlearnkit.evaluate import Outputs
    from unlearnkit.evaluate.mia import mia_skip_reason
    from unlearnkit.evaluate.population import Probe, divergence, population_attacks
    from unlearnkit.evaluate.stats import has_signal

    refuse_non_torch("audit", model=model, original=original, reference=reference)
    forget_set, test_set = examples(forget, "forget"), examples(test, "test")
    retain_set = examples(retain, "retain") if retain is not None else None
    sets = [s for s in (forget_set, test_set, retain_set) if s is not None]
    _image_shape(sets)
    models = {"unlearned": model, "original": original, "reference": reference}
    models = {name: m for name, m in models.items() if m is not None}
    inspected = {name: _inspect(m, forget_set) for name, m in models.items()}
    classes = {name: found[0] for name, found in inspected.items()}
    if len(set(classes.values())) > 1:
        raise UnlearnkitError(f"the models predict different numbers of classes ({classes}); audit models of one task")
    num_classes = classes["unlearned"]
    for data in sets:
        _check_labels(data, num_classes)
    if retain_set is not None:
        _disjoint(forget_set, retain_set)

    n_forget, n_retain, n_test = len(forget_set), len(retain_set) if retain_set is not None else 0, len(test_set)
    train_x = torch.cat([forget_set.x, retain_set.x]) if retain_set is not None else forget_set.x
    train_y = torch.cat([forget_set.y, retain_set.y]) if retain_set is not None else forget_set.y
    labels = _Labels(train_y.numpy(), test_set.y.numpy(), num_classes)
    rng = np.random.default_rng([seed, 11])
    order = rng.permutation(n_test)
    halves = (np.sort(order[n_test // 2 :]), np.sort(order[: n_test // 2])) if retain_set is not None else (np.arange(n_test), np.arange(0))
    split = Split(forget=np.arange(n_forget), retain=np.arange(n_forget, n_forget + n_retain), test=halves[0], val=halves[1], seed=seed, data_fingerprint="")
    report = AuditReport(sizes={"forget": n_forget, "retain": n_retain, "test": n_test, "classes": num_classes})

    outputs = {}
    for name in models:
        net = inspected[name][1]
        outputs[name] = Outputs(_predict(net, train_x), _predict(net, test_set.x), labels, split)
        report.models[name] = _accuracies(outputs[name], n_forget, retain_set is not None, seed)

    if reason := mia_skip_reason(n_forget, n_test):
        report.skipped.append(reason)
    attacks = {}
    if retain_set is None:
        report.skipped.append("population attacks: they are fitted on known members, so they need `retain`")
    elif n_forget < 2:
        report.skipped.append(f"population attacks: {n_forget} forget example; they need at least 2 members")
    elif len(split.val) < 2 or len(split.test) < 2:
        report.skipped.append(f"population attacks: {n_test} test examples; they need at least 4 (half to fit, half to score)")
    else:
        probe = Probe.of(outputs["unlearned"], seed)
        attacks = {name: population_attacks(out, probe, seed, resamples) for name, out in outputs.items()}
        report.attacks = {
            name: {attack: {"forget": result.forget.to_json(), "retain": result.retain.to_json(), "mia_efficacy": result.mia_efficacy} for attack, result in found.items()}
            for name, found in attacks.items()
        }
        if "original" in attacks:
            baseline = attacks.get("reference")
            report.positive_control = {
                "against": "reference" if baseline else "chance",
                "signal": {a: has_signal(r.forget, baseline[a].forget if baseline else None) for a, r in attacks["original"].items()},
            }
        else:
            report.skipped.append("positive control: it needs `original`, the model before unlearning")
    if "reference" in outputs:
        if attacks:
            report.divergence = divergence(outputs["unlearned"], outputs["reference"], Probe.of(outputs["unlearned"], seed))
        reference_row = report.models["reference"]
        report.gaps = {
            name: {key: row[key] - reference_row[key] for key in row if isinstance(row[key], float)}
            for name, row in report.models.items() if name != "reference"
        }
        for name, found in attacks.items():
            if name != "reference":
                for attack, result in found.items():
                    report.gaps[name][f"{attack}_auc"] = result.forget.values["auc"] - attacks["reference"][attack].forget.values["auc"]
    else:
        report.skipped.append("divergence and gaps to retraining: they need `reference`, a model retrained without the forget set")
    if relearn:
        from unlearnkit.evaluate.relearn import RelearnOptions, relearn_audit

        if reference is None or retain_set is None:
            report.skipped.append("relearning attack: it needs `reference` (its figure is the gap to the retrained model under the same attack) and `retain` (the neighbours)")
        else:
            chosen = relearn if isinstance(relearn, RelearnOptions) else RelearnOptions()
            nets = {"unlearned": inspected["unlearned"][1], "reference": inspected["reference"][1]}
            report.relearn = relearn_audit(nets, forget_set.x, forget_set.y, retain_set.x, retain_set.y, chosen, seed, reference="reference")
    return report


def _accuracies(outputs, n_forget: int, with_retain: bool, seed: int) -> dict:
    """Accuracy on forget, retain and all of test, and the kit's attack (forget vs all of test)."""
    from unlearnkit.evaluate.mia import per_example_loss, simple_mia_or_nan

    labels = outputs.dataset
    correct = lambda logits, y: float((logits.argmax(1) == y).mean())  # noqa: E731
    row = {"forget_acc": correct(outputs.train[:n_forget], labels.train_y[:n_forget]), "test_acc": correct(outputs.heldout, labels.test_y)}
    if with_retain:
        row["retain_acc"] = correct(outputs.train[n_forget:], labels.train_y[n_forget:])
    forget_loss = per_example_loss(outputs.train[:n_forget], labels.train_y[:n_forget])
    row["mia"] = simple_mia_or_nan(forget_loss, per_example_loss(outputs.heldout, labels.test_y), seed=seed)
    return row


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    from unlearnkit.train import predict_logits

    return predict_logits(model, x, batch_size=batch_size, precision="fp32").numpy()
