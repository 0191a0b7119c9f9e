"""The training loop: the one loop every model and every unlearning method runs through.

Data stays resident as uint8 tensors on the device; augmentation is batched tensor ops; the
forward pass runs under bf16 autocast with channels_last memory. Methods change what a step
does through hooks instead of writing loops of their own:

- `loss(model, batch, state)`: a custom loss on a batch, where `batch` maps each source name
  to its (images, labels) for this step;
- `mask`: parameter name → boolean tensor of the entries that may change; every other entry
  is held at its value at the start (through weight decay and momentum too);
- several named `Source`s mixed in each step, each with its own batch size;
- `on_step(model, state)`: called after each step; returning True stops training early.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from safetensors import SafetensorError
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import TMP_PREFIX, atomic_write_bytes, sha256_arrays, sha256_json
from unlearnkit.models.interface import logits
from unlearnkit.progress import EpochProgress, say


class Recipe(BaseModel):
    """A training recipe: every hyperparameter explicit, with its unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: float = Field(10, gt=0, description="passes over the first source; fractions allowed")
    batch_size: int = Field(256, ge=1, description="images per step from the first source")
    lr: float = Field(0.1, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "onecycle", "constant", "epoch-cosine"] = Field(
        "onecycle", description="onecycle (warm-up, linear decay), cosine (per step), constant, or epoch-cosine (cosine stepped once per epoch)")
    warmup: float = Field(0.2, ge=0, lt=1, description="fraction of steps spent ramping up the learning rate")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: bool = Field(False, description="random crop (4-pixel padding) and horizontal flip")
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="sgd (momentum, nesterov) or adamw (momentum is beta1, beta2 0.999; decoupled weight decay), the usual choice for vision transformers")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 on a GPU or a CPU with bf16 units, else fp32 (see resolve_precision)")


def tensor_bytes(t: torch.Tensor) -> np.ndarray:
    """A tensor's raw bytes (any dtype, bf16 included) as a uint8 array, for hashing."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


@dataclass
class Source:
    """Images (uint8 NCHW, or float NCHW as the model takes them) and labels, resident on the
    training device."""

    x: torch.Tensor = field(repr=False)
    y: torch.Tensor = field(repr=False)
    batch_size: int | None = None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels at `indices` (a tensor of positions)."""
        indices = indices.to(self.x.device)
        return self.x[indices], self.y[indices]

    def plan(self, order: torch.Tensor | None, cursor: int, batch_size: int) -> None:
        """Told by `fit` the data order of each new pass (None when training ends): resident
        data has nothing to read ahead."""

    def digest(self) -> str:
        """sha256 of every image and label: what a checkpoint of a run on this data must match."""
        return sha256_arrays(tensor_bytes(self.x), tensor_bytes(self.y))

    @classmethod
    def take(cls, x: np.ndarray, y: np.ndarray, indices: np.ndarray, device: torch.device) -> "Source":
        """The images and labels at `indices` of numpy arrays, moved to `device`."""
        return cls(torch.from_numpy(x[indices]).to(device), torch.from_numpy(y[indices]).to(device))


def as_tensors(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(x), torch.as_tensor(y)


def stack_items(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch from (image, label) items, labels as int64."""
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y).reshape(()) for _, y in items]).long()


class ConvertedItems(torch.utils.data.Dataset):
    """A dataset's (image, label) items passed through `convert`, for the loader's workers."""

    def __init__(self, dataset, convert):
        self.dataset, self.convert = dataset, convert

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, y = self.dataset[index][:2]
        return self.convert(x, y)


class StreamSource(Source):
    """Images and labels read from a `torch.utils.data.Dataset` batch by batch, in the order the
    engine draws (so a run is the same as on resident data, bitwise, when the dataset returns
    the same item for the same index), for data that does not fit in memory.

    With `workers` > 0, worker processes (a `DataLoader` over the engine's own batches, pinned
    memory on CUDA) read ahead the batches of the current pass while the model trains: for
    datasets whose decoding holds the GIL. Otherwise `prefetch` threads read the items of a
    batch in parallel (they overlap file reads and decoding that release the GIL). Randomness
    inside the dataset's `__getitem__` (its own augmentation) makes runs differ — use the
    engine's `augment` instead."""

    def __init__(self, dataset, device: torch.device, batch_size: int | None = None, prefetch: int = 4, convert=None, workers: int = 0):
        from concurrent.futures import ThreadPoolExecutor

        self.dataset, self.device, self.batch_size, self.workers = dataset, torch.device(device), batch_size, workers
        self.items = ConvertedItems(dataset, convert or as_tensors)
        self.pool = ThreadPoolExecutor(max_workers=prefetch) if prefetch > 1 else None
        self.planned: list[list[int]] = []
        self.ahead = None
        self._shape = tuple(self.items[0][0].shape)

    def __repr__(self) -> str:
        return f"StreamSource({type(self.dataset).__name__}, {len(self)} items)"

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def x(self):
        raise AttributeError("a StreamSource holds no resident images; use batch(indices)")

    def plan(self, order: torch.Tensor | None, cursor: int, batch_size: int) -> None:
        self.planned, self.ahead = [], None  # dropping the iterator stops its workers
        if order is None or self.workers <= 0:
            return
        positions = order.tolist()
        self.planned = [positions[i : i + batch_size] for i in range(cursor, len(positions) - batch_size + 1, batch_size)]
        if self.planned:
            loader = torch.utils.data.DataLoader(
                self.items, batch_sampler=self.planned, num_workers=self.workers, collate_fn=stack_items,
                pin_memory=self.device.type == "cuda", prefetch_factor=2,
            )
            self.ahead = iter(loader)
            self.planned = list(reversed(self.planned))

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = indices.cpu().tolist()
        if self.ahead is not None and self.planned and self.planned[-1] == positions:
            self.planned.pop()
            try:
                x, y = next(self.ahead)
                return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            except Exception:  # a worker's error comes wrapped in its traceback: read here to raise it plainly
                self.plan(None, 0, 0)
        items = list(self.pool.map(self.items.__getitem__, positions)) if self.pool else [self.items[i] for i in positions]
        x, y = stack_items(items)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def digest(self) -> str:
        """Length, and every 1/64th item's bytes: reading the whole stream for a checkpoint's
        identity would cost a pass over the data."""
        picked = torch.linspace(0, len(self) - 1, min(64, len(self))).round().long()
        x, y = self.batch(picked)
        return sha256_arrays(tensor_bytes(x), tensor_bytes(y), np.array([len(self)]))


@dataclass
class TrainState:
    step: int
    total_steps: int
    epoch: int
    lr: float
    loss: float = math.nan
    correct: int = 0  # running counts for the progress display; losses may add to them
    seen: int = 0

    def stats(self, images_per_second: float) -> str:
        accuracy = f"  acc {self.correct / self.seen:.3f}" if self.seen else ""
        return f"loss {self.loss:.3f}{accuracy}  {images_per_second:.0f} img/s"


@dataclass
class FitReport:
    steps: int
    images: int
    seconds: float
    final_loss: float
    stopped_early: bool = False

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


CHECKPOINT_FORMAT = "unlearnkit.checkpoint/2"


@dataclass
class Progress:
    """Where a run stands between two steps: saved whole into a checkpoint, loaded whole on
    resume. `cursor` is each source's position in its current data order; the epoch fields
    are the running means the progress display shows."""

    step: int = 0
    cursor: dict[str, int] = field(default_factory=dict)
    images: int = 0
    seconds: float = 0.0
    last_loss: float = math.nan
    epoch_loss: float = 0.0
    epoch_steps: int = 0
    correct: int = 0
    seen: int = 0


@dataclass
class Checkpoint:
    """Where `fit` keeps what it needs to resume after a crash (weights, optimizer state, RNG
    states, data order and position), written atomically every `every` steps and removed when
    training ends. A checkpoint written by a different run (other key, recipe, seed or data
    sizes) is ignored and replaced."""

    path: Path
    key: str = ""
    every: int = 50

    def save(self, identity: str, model: nn.Module, optimizer, generator: torch.Generator, order: dict, progress: Progress) -> None:
        tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        for index, entry in optimizer.state_dict()["state"].items():
            for name, value in entry.items():
                if value is not None:
                    tensors[f"optimizer/{index}/{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        tensors["rng/fit"] = generator.get_state()
        tensors["rng/torch"] = torch.get_rng_state()
        tensors.update({f"order/{name}": o.cpu().contiguous() for name, o in order.items()})
        metadata = {"format": CHECKPOINT_FORMAT, "identity": identity, "progress": json.dumps(dataclasses.asdict(progress))}
        atomic_write_bytes(self.path, safetensors.torch.save(tensors, metadata=metadata))

    def load(self, identity: str) -> tuple[dict, Progress] | None:
        """(tensors, progress) of a checkpoint of this very run, or None. Temporary files that a
        write killed half-way left beside it are removed."""
        for leftover in self.path.parent.glob(f"{TMP_PREFIX}*"):
            leftover.unlink(missing_ok=True)
        if not self.path.is_file():
            return None
        try:
            with safetensors.safe_open(str(self.path), "pt") as f:
                metadata = f.metadata() or {}
                if metadata.get("format") != CHECKPOINT_FORMAT or metadata.get("identity") != identity:
                    say(f"[dim]ignoring {self.path}: it belongs to another run[/dim]")
                    return None
                return {k: f.get_tensor(k) for k in f.keys()}, Progress(**json.loads(metadata["progress"]))
        except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
            say(f"[yellow]ignoring unreadable checkpoint {self.path} ({error}); starting over[/yellow]")
            return None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor]) -> None:
    """Load the per-parameter state that `Checkpoint.save` wrote (momentum, Adam moments)."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    if state:
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


Batch = Mapping[str, tuple[torch.Tensor, torch.Tensor]]
IGNORE_INDEX = -100  # a sequence position without a target (padding)
LossFn = Callable[[nn.Module, Batch, TrainState], torch.Tensor]


def label_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token-level reading of a language model's logits [rows, positions, vocabulary] against its
    labels [rows, positions]: each label's log-probability (0 where there is no label), which
    positions carry a label, and per row whether the top token is the label at every labelled
    position (greedy decoding, teacher-forced, writes the whole answer)."""
    keep = labels != IGNORE_INDEX
    logprob = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0] * keep
    whole = ((logits.argmax(-1) == labels) | ~keep).all(dim=-1)
    return logprob, keep, whole


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Inputs as the model takes them: uint8 images → float in [0, 1]; float images unchanged
    (the user's own scaling); integer token ids (int32/int64) unchanged. 4-D batches in
    channels_last, the layout convolutions run fastest in."""
    if x.dtype in (torch.int32, torch.int64):
        return x
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


@functools.cache
def cpuinfo() -> str:
    """/proc/cpuinfo's text ("" where there is none)."""
    try:
        return open("/proc/cpuinfo").read()
    except OSError:
        return ""


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX). Without it, bf16 kernels
    are emulated: measured on an AVX2-only AMD EPYC, ResNet-18 width 16 trained at 16 img/s in
    bf16 against 122 in fp32. ATen's kernels capped below AVX-512 (`ATEN_CPU_CAPABILITY=avx2`)
    do not use the bf16 units either, so they count as without."""
    has_units = bool(set(cpuinfo().split()) & {"avx512_bf16", "amx_bf16"})
    return has_units and torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2")


def processor_name() -> str:
    """The CPU's model name ("Intel(R) Xeon(R) Processor", "AMD EPYC 9R45 ..."), for records."""
    names = (line.split(":", 1)[1].strip() for line in cpuinfo().splitlines() if line.startswith("model name"))
    return next(names, platform.processor() or platform.machine())


def machine_description(precision: str = "auto", device: torch.device | None = None) -> str:
    """Where a measurement ran, e.g. "Intel(R) Xeon(R) Processor, bf16": results computed on
    the two CPU kinds differ (their bf16 kernels round differently), so records say which."""
    device = device or default_device()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else processor_name()
    return f"{where}, {resolve_precision(precision, device)}"


def machine_record(precision: str = "auto") -> str:
    """`machine_description` with the kernels' instruction set and the cores, as results.json
    records it: the CPU kinds we run on round differently and run at different speeds."""
    return f"{machine_description(precision)}, {torch.backends.cpu.get_cpu_capability()} kernels, {os.cpu_count()} cores"


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" → "bf16" on CUDA or a CPU with bf16 units, else "fp32"; others as given."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()) else "fp32"


def autocast(device: torch.device, precision: str = "auto"):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_precision(precision, device) == "bf16")


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding and random horizontal flip, for a whole uint8 batch."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def lr_factor(schedule: str, warmup: float, step: int, total: int, steps_per_epoch: int = 1, epochs: float = 1.0) -> float:
    progress = step / max(total, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "epoch-cosine":
        return 0.5 * (1 + math.cos(math.pi * (step // max(steps_per_epoch, 1)) / epochs))
    if progress < warmup:
        return (progress + 1 / max(total, 1)) / warmup
    rest = (progress - warmup) / max(1 - warmup, 1e-9)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * rest))
    return max(1 - rest, 0.0)


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    """Cross-entropy of (batch, classes) logits, or of (batch, time, vocab) logits of a language
    model against (batch, time) next-token targets, positions marked IGNORE_INDEX left out."""

    def loss(model: nn.Module, batch: Batch, state: TrainState) -> torch.Tensor:
        x = torch.cat([x for x, _ in batch.values()])
        y = torch.cat([y for _, y in batch.values()])
        logits = model(x)
        if logits.ndim == 3:
            logits, y = logits.flatten(0, 1), y.flatten()
        counted = y != IGNORE_INDEX
        state.correct += int(((logits.argmax(1) == y) & counted).sum())
        state.seen += int(counted.sum())
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing, ignore_index=IGNORE_INDEX)

    return loss


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(recipe.momentum, 0.999), weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov and recipe.momentum > 0,
    )


class Orders:
    """Each source's shuffled order and the position in it, drawn from the run's generator
    when a pass over the source ends. A source that reads ahead (`StreamSource`) is told each
    new order, so that its workers can load the coming batches while the model trains."""

    def __init__(self, sources: Mapping[str, Source], batch_sizes: Mapping[str, int], generator: torch.Generator, device: torch.device):
        self.sources, self.batch_sizes, self.generator, self.device = sources, batch_sizes, generator, device
        self.order = {name: torch.empty(0, dtype=torch.long) for name in sources}
        self.cursor = {name: 0 for name in sources}

    def restore(self, tensors: Mapping[str, torch.Tensor], cursor: Mapping[str, int]) -> None:
        self.order = {name: tensors[f"order/{name}"] for name in self.sources}
        self.cursor = dict(cursor)
        for name in self.sources:
            self.sources[name].plan(self.order[name], self.cursor[name], self.batch_sizes[name])

    def next(self, name: str) -> torch.Tensor:
        size = self.batch_sizes[name]
        if self.cursor[name] + size > len(self.order[name]):
            self.order[name], self.cursor[name] = torch.randperm(len(self.sources[name]), generator=self.generator), 0
            self.sources[name].plan(self.order[name], 0, size)
        picked = self.order[name][self.cursor[name] : self.cursor[name] + size]
        self.cursor[name] += size
        return picked.to(self.device)

    def batch(self, augment_images: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        batch = {}
        for name, source in self.sources.items():
            x, y = source.batch(self.next(name))
            batch[name] = (to_float(augment(x, self.generator) if augment_images else x), y)
        return trim_padding(batch)


def trim_padding(batch: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Token rows with (batch, time) targets: cut the trailing positions where no row of any
    source has a target. A causal model's outputs before them do not depend on them, so the loss
    is the same, for a fifth less compute on the facts corpus (rows of 45 bytes on average,
    padded to 71). Image batches pass unchanged."""
    if not all(x.ndim == 2 and x.dtype in (torch.int32, torch.int64) and y.shape == x.shape for x, y in batch.values()):
        return batch
    used = max((y != IGNORE_INDEX).any(dim=0).nonzero().max().item() + 1 if (y != IGNORE_INDEX).any() else 1 for _, y in batch.values())
    return {name: (x[:, :used], y[:, :used]) for name, (x, y) in batch.items()}


def masked(mask: Mapping[str, torch.Tensor], params: Mapping[str, nn.Parameter], description: str):
    """(mask on the parameters' device, the held values of the masked parameters)."""
    if unknown := sorted(set(mask) - set(params)):
        raise UnlearnkitError(f"{description}: mask names unknown parameter '{unknown[0]}'")
    mask = {name: m.to(device=params[name].device, dtype=torch.bool) for name, m in mask.items()}
    return mask, {name: params[name].detach().clone() for name in mask}


def fit(
    model: nn.Module,
    data: Source | Mapping[str, Source],
    recipe: Recipe,
    *,
    seed: int = 0,
    loss: LossFn | None = None,
    mask: Mapping[str, torch.Tensor] | None = None,
    on_step: Callable[[nn.Module, TrainState], bool | None] | None = None,
    description: str = "train",
    checkpoint: Checkpoint | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> FitReport:
    """Train `model` in place on `data` with `recipe`. Deterministic for a seed on one device.
    With `checkpoint`, a run killed at any point and started again with the same arguments
    resumes and ends with bitwise the same weights as an uninterrupted run.

    `optimizer` (over the model's parameters) continues an optimizer of an earlier `fit`, its
    momentum or Adam moments kept, for methods whose reference runs several phases through one
    optimizer (SCRUB's max and min passes); the recipe still sets its learning rate each step."""
    sources = {"data": data} if isinstance(data, Source) else dict(data)
    if not sources or any(len(s) == 0 for s in sources.values()):
        raise UnlearnkitError(f"{description}: a data source is empty; every source needs at least one image")
    device = model_device(model)
    batch_sizes = {name: min(s.batch_size or recipe.batch_size, len(s)) for name, s in sources.items()}
    primary = next(iter(sources))
    steps_per_epoch = max(len(sources[primary]) // batch_sizes[primary], 1)
    total_steps = max(round(recipe.epochs * steps_per_epoch), 1)
    loss_fn = loss or cross_entropy_loss(recipe.label_smoothing)
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    mask, held = masked(mask or {}, params, description)
    optimizer = optimizer or make_optimizer(model, recipe)
    orders = Orders(sources, batch_sizes, generator, device)
    identity = sha256_json({
        "key": checkpoint.key if checkpoint else "", "recipe": recipe.model_dump(), "seed": seed, "description": description,
        "sources": {name: [len(s), batch_sizes[name]] for name, s in sources.items()},
        "parameters": {name: list(p.shape) for name, p in params.items()}, "mask": sorted(mask),
    })
    done = Progress(cursor=dict(orders.cursor))
    if checkpoint is not None and (found := checkpoint.load(identity)) is not None:
        tensors, done = found
        model.load_state_dict({k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")})
        restore_optimizer(optimizer, tensors)
        generator.set_state(tensors["rng/fit"])
        torch.set_rng_state(tensors["rng/torch"])
        orders.restore(tensors, done.cursor)
        say(f"[dim]{description}: resuming from step {done.step} of {total_steps} ({checkpoint.path})[/dim]")

    def one_step(state: TrainState) -> float:
        state.lr = recipe.lr * lr_factor(recipe.schedule, recipe.warmup, state.step, total_steps, steps_per_epoch, recipe.epochs)
        for group in optimizer.param_groups:
            group["lr"] = state.lr
        batch = orders.batch(recipe.augment)
        with autocast(device, recipe.precision):
            value = loss_fn(model, batch, state)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        loss_value = float(value.detach())
        if not math.isfinite(loss_value):
            raise UnlearnkitError(
                f"{description}: the loss became {loss_value} at step {state.step + 1} "
                f"(learning rate {state.lr:.3g}); lower the learning rate — no model was written"
            )
        for name, m in mask.items():
            if params[name].grad is not None:
                params[name].grad.mul_(m)
        optimizer.step()
        with torch.no_grad():
            for name, m in mask.items():
                params[name].copy_(torch.where(m, params[name], held[name]))
        state.step += 1
        state.loss = loss_value
        done.images += sum(len(y) for _, y in batch.values())
        return loss_value

    model.train()
    started, stopped = time.perf_counter() - done.seconds, False
    speed = lambda: done.images / (time.perf_counter() - started)  # noqa: E731
    state = TrainState(step=done.step, total_steps=total_steps, epoch=0, lr=recipe.lr)
    resumed_in_epoch = state.step % steps_per_epoch > 0
    with EpochProgress(description, steps_per_epoch, math.ceil(total_steps / steps_per_epoch)) as display:
        for epoch in range(state.step // steps_per_epoch, math.ceil(total_steps / steps_per_epoch)):
            display.start_epoch(epoch)
            state.epoch = epoch
            if not resumed_in_epoch:
                done.epoch_loss, done.epoch_steps, done.correct, done.seen = 0.0, 0, 0, 0
            resumed_in_epoch = False
            state.correct, state.seen = done.correct, done.seen
            for _ in range(min(steps_per_epoch * (epoch + 1), total_steps) - state.step):
                done.last_loss = one_step(state)
                done.step, done.epoch_loss, done.epoch_steps = state.step, done.epoch_loss + done.last_loss, done.epoch_steps + 1
                done.correct, done.seen = state.correct, state.seen
                display.step(state.stats(speed()))
                if on_step is not None and on_step(model, state):
                    stopped = True
                    break
                if checkpoint is not None and state.step % checkpoint.every == 0 and state.step < total_steps:
                    done.cursor, done.seconds = dict(orders.cursor), time.perf_counter() - started
                    checkpoint.save(identity, model, optimizer, generator, orders.order, done)
            state.loss = done.epoch_loss / max(done.epoch_steps, 1)
            display.end_epoch(epoch, state.stats(speed()))
            if stopped or state.step >= total_steps:
                break
    for source in sources.values():
        source.plan(None, 0, 0)
    check_finite(model, description)
    if checkpoint is not None:
        checkpoint.remove()
    model.eval()
    return FitReport(state.step, done.images, time.perf_counter() - started, done.last_loss, stopped)


def check_finite(model: nn.Module, description: str) -> None:
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UnlearnkitError(f"{description}: parameter {name} holds NaN or inf; lower the learning rate — no model was written")


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor | np.ndarray, batch_size: int = 1024, precision: str = "auto") -> torch.Tensor:
    """Float32 logits of `model` in eval mode (its output a tensor, or holding `logits`) for
    NCHW images (see `to_float`), on the CPU."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    x = torch.as_tensor(x)
    outputs = []
    for start in range(0, len(x), batch_size):
        chunk = to_float(x[start : start + batch_size].to(device, non_blocking=True))
        with autocast(device, precision):
            outputs.append(logits(model(chunk)).float().cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)


def accuracy(model: nn.Module, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, precision: str = "auto") -> float:
    """Fraction of images whose top-scoring class is the label (eval mode)."""
    predicted = predict_logits(model, x, precision=precision).argmax(1)
    return float((predicted == torch.as_tensor(y).cpu()).double().mean())
