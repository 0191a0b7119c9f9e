"""SISA training (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021): exact deletion by
sharded, sliced training.

The training ids are dealt into S shards, each cut into R slices. Shard s's model trains on
slice 1, then on slices 1..2, …, then on slices 1..R, and its weights are kept in the store after
each slice. Deleting an id retrains only the shard that held it, from the weights kept before the
first slice that held it, on its slices without the id: by construction the result is bitwise
the shard trained from scratch without it. The ensemble answers by the shards' vote or by their
mean probabilities.

Reference: cleverhans-lab/machine-unlearning @ 50a3ada6c777f6882a1764d74a4978bfd61ec6f9
- distribution.py lines 40-47: uniform sharding, `np.split` of the ids into shards of
  nb_train // S (the remainder to the last); lines 184-190: a request is removed from the shard
  that holds it.
- sharded.py lines 23-35 (`getShardHash`): a slice checkpoint is addressed by a hash of the
  shard's ids up to the end of that slice, requests left out; lines 37-59 (`fetchShardBatch`):
  training reads the shard's ids up to `until`, requests left out.
- sisa.py lines 108-112: slice size shard_size // R and `avg_epochs_per_slice` = 2R/(R+1) · E/R;
  lines 115-130: slice by slice, a slice whose checkpoint exists is skipped, the others train
  int((sl+1)·avg) − int(sl·avg) epochs; lines 158-171: training restarts from the previous
  slice's checkpoint; lines 186-193: slice sl trains on slices 0..sl (the last takes the
  remainder); lines 260-264: the weights are saved after each slice.
- sisa.py lines 343-358: a shard's test output is one-hot of its argmax (the default) or its
  softmax; aggregation.py lines 50-53 and 65-69: uniform weights, the class with the largest
  weighted sum (`np.argmax`: a tie goes to the lowest class index).

Departures (each with its reason):
- shards and slices: a seeded permutation of the ids dealt by `np.array_split` (sizes differ by
  at most one) instead of the file order split with the remainder on the last: our ids are a
  split's, not a pre-shuffled file's. PLS-GAP (shards sized for a skewed request distribution)
  and the "models:" / "proportional" weightings are not implemented: uniform only.
- each slice is one call of our training loop (`unlearnkit.train.fit`) with the preset's recipe
  for 2E/(R+1) epochs, no integer rounding (fit takes fractional epochs): over the growing
  slices a shard sees E passes over its images, as in the reference. Its optimizer state and
  learning-rate schedule start afresh each slice; the reference's SGD without momentum at a
  constant rate has none to carry (with Adam its one process would carry it across slices, but
  not across a restart from a checkpoint, so its retrained shards would not be its from-scratch
  ones; ours are).
- batches are drawn by fit's seeded shuffle (and augmentation, where the recipe asks for it)
  instead of the fixed file order; each slice's seed comes from (seed, shard, slice) alone, never
  from the data, so a deletion leaves every seed as it was.
- checkpoints live in our content-addressed store, keyed by each slice's ids and image bytes, the
  model, the recipe, R and the seed; fit's own checkpoint resumes a killed slice (the reference
  checkpoints every epoch).
- the ensemble's output is log-probabilities (log of the mean softmax, or log of the vote
  shares floored at VOTE_FLOOR), so that every evaluation that reads logits reads the
  aggregated prediction: its argmax is the reference's vote.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import atomic_write_bytes, atomic_write_json, read_json, sha256_arrays, sha256_file, sha256_json
from unlearnkit.models.interface import logits
from unlearnkit.progress import say
from unlearnkit.reference import Reference, net_maker, training_indices
from unlearnkit.store import Store, build_model, engine_digest, load_model, model_spec, save_model, sidecar_path, versions
from unlearnkit.train import Checkpoint, Recipe, Source, default_device, fit, predict_logits, resolve_precision, tensor_bytes

FORMAT = "unlearnkit.sisa/1"
VOTE_FLOOR = 1e-4  # a class no shard votes for: log(1e-4), not -inf, so that losses stay finite
AGGREGATES = ("vote", "mean")


def derived_seed(*parts) -> int:
    """A seed from (seed, shard[, slice]) alone: nothing about the data goes in, so a deletion
    leaves every seed as it was."""
    return int(sha256_json(["sisa", *parts])[:8], 16)


def check_layout(images: int, shards: int, slices: int) -> None:
    if shards < 1:
        raise UnlearnkitError(f"--shards {shards}: give 1 or more shards")
    if slices < 1:
        raise UnlearnkitError(f"--slices {slices}: give 1 or more slices per shard")
    if shards > images:
        raise UnlearnkitError(f"--shards {shards} is more than the {images} training images; give at most {images}")
    if images // shards < slices:
        raise UnlearnkitError(f"--slices {slices}: the smallest of {shards} shards holds {images // shards} images, too few to cut into {slices} slices; give at most {images // shards}")


def partition(ids: np.ndarray, shards: int, slices: int, seed: int) -> list[list[np.ndarray]]:
    """The ids in a seeded order, dealt into `shards` shards of near-equal size, each cut into
    `slices` slices (sizes differ by at most one): [shard][slice] → ids."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    check_layout(len(ids), shards, slices)
    order = np.random.default_rng(derived_seed(seed, "partition")).permutation(ids)
    return [[np.ascontiguousarray(part) for part in np.array_split(shard, slices)] for shard in np.array_split(order, shards)]


def slice_recipe(recipe: Recipe, slices: int) -> Recipe:
    """One slice's recipe: 2E/(R+1) epochs over the slices so far (the reference's
    `avg_epochs_per_slice`), so that a shard sees E passes over its images in all."""
    return recipe.model_copy(update={"epochs": 2 * recipe.epochs / (slices + 1)})


@dataclass
class TrainingImages:
    """The training images and labels by id (row i holds id `ids[i]`, ids sorted), the device
    that trains on them and the store that keeps the slice checkpoints."""

    ids: np.ndarray
    x: torch.Tensor
    y: torch.Tensor
    store: Store
    device: torch.device

    @classmethod
    def of(cls, ids: np.ndarray, x: torch.Tensor, y: torch.Tensor, store: Store, device: torch.device) -> "TrainingImages":
        order = np.argsort(ids, kind="stable")
        picked = torch.from_numpy(order).to(x.device)
        return cls(np.asarray(ids, dtype=np.int64)[order], x[picked], y[picked.to(y.device)], store, torch.device(device))

    def take(self, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels of `ids`, in their order."""
        rows = np.minimum(np.searchsorted(self.ids, ids), max(len(self.ids) - 1, 0))
        if len(ids) and (len(self.ids) == 0 or not np.array_equal(self.ids[rows], ids)):
            raise UnlearnkitError(f"{np.setdiff1d(ids, self.ids).size} training ids of the ensemble have no image here; give the images it was trained on")
        rows = torch.from_numpy(rows)
        return self.x[rows.to(self.x.device)], self.y[rows.to(self.y.device)]

    def source(self, ids: np.ndarray) -> Source:
        x, y = self.take(ids)
        return Source(x.to(self.device), y.to(self.device))

    def digest(self, ids: np.ndarray) -> str:
        """sha256 of the ids, their images and their labels: what a slice checkpoint is keyed by."""
        x, y = self.take(ids)
        return sha256_arrays(np.asarray(ids, dtype=np.int64), tensor_bytes(x), tensor_bytes(y))


@dataclass
class ShardRun:
    shard: int
    first_slice: int  # the first slice trained (from 0); the weights of the slices before it came from the store
    trained: int  # slices trained
    seconds: float


def new_net(spec: dict, seed: int, shard: int, device: torch.device) -> nn.Module:
    torch.manual_seed(derived_seed(seed, shard))
    return build_model(spec).to(device, memory_format=torch.channels_last)


def slice_keys(images: TrainingImages, layout: list[np.ndarray], shard: int, spec: dict, recipe: Recipe, seed: int) -> list[str]:
    """The store keys of shard `shard`'s slice checkpoints: slice k's covers the ids and images of
    slices 1..k, the model, the recipe (its precision as resolved on the images' device), the
    layout, the seed and this module's code."""
    digests = [images.digest(part) for part in layout]
    made_by = {"model": spec, "recipe": {**recipe.model_dump(), "precision": resolve_precision(recipe.precision, images.device)},
               "slices": len(layout), "seed": seed, "shard": shard, "code": engine_digest(modules=("sisa.py",))[:16]}
    return [images.store.key(kind="sisa-slice", data=digests[: k + 1], **made_by) for k in range(len(layout))]


def train_shard(images: TrainingImages, layout: list[np.ndarray], shard: int, spec: dict, recipe: Recipe, seed: int) -> tuple[nn.Module, ShardRun]:
    """Shard `shard` trained slice by slice on `layout` (its slices' ids), its weights kept in the
    store after each slice. Training starts after the last slice whose weights the store holds
    (the same ids, images, model, recipe and seeds): a deletion finds every slice before the
    first one it touches there."""
    per_slice = slice_recipe(recipe, len(layout))
    keys = slice_keys(images, layout, shard, spec, recipe, seed)
    model = new_net(spec, seed, shard, images.device)
    done = next((k for k in reversed(range(len(layout))) if images.store.find(keys[k])), -1)
    if done >= 0:
        model.load_state_dict(load_model(images.store.path(keys[done])).state_dict())
    started = time.perf_counter()
    for k in range(done + 1, len(layout)):
        so_far = np.concatenate(layout[: k + 1])
        with images.store.lock(keys[k]):
            if path := images.store.find(keys[k]):  # another process trained it meanwhile
                model.load_state_dict(load_model(path).state_dict())
                continue
            if so_far.size:  # every slice so far emptied by deletions: nothing to train on yet
                torch.manual_seed(derived_seed(seed, shard, k))
                checkpoint = Checkpoint(images.store.path(keys[k]).parent / "checkpoint.safetensors", key=keys[k])
                fit(model, images.source(so_far), per_slice, seed=derived_seed(seed, shard, k), checkpoint=checkpoint,
                    description=f"shard {shard + 1} slice {k + 1}/{len(layout)}")
            save_model(model, images.store.path(keys[k]), role="sisa-slice", shard=shard, slice=k, slices=len(layout), seed=seed, trained_on=int(so_far.size))
    return model, ShardRun(shard, done + 1, len(layout) - done - 1, time.perf_counter() - started)


def combine(shard_logits: torch.Tensor, how: str) -> torch.Tensor:
    """(shards, batch, classes) logits → the ensemble's (batch, classes) log-probabilities.
    "mean": log of the shards' mean softmax. "vote": log of the share of shards whose argmax is
    each class, floored at VOTE_FLOOR; tied classes get the same value, and argmax then takes the
    lowest class index, as the reference's np.argmax does."""
    if how == "mean":
        return torch.logsumexp(F.log_softmax(shard_logits, -1), 0) - math.log(len(shard_logits))
    if how == "vote":
        votes = F.one_hot(shard_logits.argmax(-1), shard_logits.shape[-1]).float().mean(0)
        return votes.clamp_min(VOTE_FLOOR).log()
    raise UnlearnkitError(f"--aggregate {how!r}: choose vote or mean")


class SisaEnsemble(nn.Module):
    """S shard models and, per shard, the training ids of each of its slices. Its output is the
    shards' aggregated prediction as log-probabilities (see `combine`)."""

    def __init__(self, shards: list[nn.Module], layout: list[list[np.ndarray]], *, spec: dict, recipe: Recipe, seed: int, aggregate: str = "vote"):
        super().__init__()
        if aggregate not in AGGREGATES:
            raise UnlearnkitError(f"--aggregate {aggregate!r}: choose vote or mean")
        self.shards = nn.ModuleList(shards)
        self.layout, self.spec, self.recipe, self.seed, self.aggregate = layout, spec, recipe, seed, aggregate
        self.store: Store | None = None  # where the slice checkpoints are (set by whoever trained or loaded it)

    @property
    def members(self) -> list[nn.Module]:
        """The shard models: what an attack that fine-tunes the ensemble trains (evaluate/relearn.py)."""
        return list(self.shards)

    @property
    def ids(self) -> np.ndarray:
        return np.sort(np.concatenate([part for slices in self.layout for part in slices]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return combine(torch.stack([logits(shard(x)).float() for shard in self.shards]), self.aggregate)


def train_ensemble(images: TrainingImages, ids: np.ndarray, shards: int, slices: int, spec: dict, recipe: Recipe, seed: int,
                   aggregate: str = "vote") -> tuple[SisaEnsemble, list[ShardRun]]:
    layout = partition(ids, shards, slices, seed)
    trained = [train_shard(images, parts, shard, spec, recipe, seed) for shard, parts in enumerate(layout)]
    ensemble = SisaEnsemble([model for model, _ in trained], layout, spec=spec, recipe=recipe, seed=seed, aggregate=aggregate)
    ensemble.store = images.store
    return ensemble.eval(), [run for _, run in trained]


@dataclass
class Deletion:
    removed: int  # ids the ensemble held that are gone now
    runs: list[ShardRun]  # the shards retrained; every other shard is untouched
    seconds: float


def delete(ensemble: SisaEnsemble, ids: np.ndarray, images: TrainingImages) -> Deletion:
    """Remove `ids` from `ensemble` exactly, in place: each shard that holds one is retrained from
    the weights kept before the first slice that holds one, on its slices without them. Ids the
    ensemble does not hold are ignored."""
    started = time.perf_counter()
    ids = np.asarray(ids, dtype=np.int64)
    runs, removed = [], 0
    for shard, parts in enumerate(ensemble.layout):
        hits = [np.isin(part, ids) for part in parts]
        if not any(hit.any() for hit in hits):
            continue
        kept = [np.ascontiguousarray(part[~hit]) for part, hit in zip(parts, hits)]
        model, run = train_shard(images, kept, shard, ensemble.spec, ensemble.recipe, ensemble.seed)
        ensemble.shards[shard].load_state_dict(model.state_dict())
        ensemble.layout[shard] = kept
        removed += sum(int(hit.sum()) for hit in hits)
        runs.append(run)
    return Deletion(removed, runs, time.perf_counter() - started)


def restarts(layout: list[list[np.ndarray]], ids: np.ndarray) -> list[tuple[int, int]]:
    """(shard, first slice holding one of `ids`) for each shard that a deletion of `ids` retrains,
    from that slice on."""
    found = []
    for shard, parts in enumerate(layout):
        touched = [k for k, part in enumerate(parts) if np.isin(part, ids).any()]
        if touched:
            found.append((shard, touched[0]))
    return found


def deletion_checkpoints(ensemble: SisaEnsemble, images: TrainingImages) -> list[tuple[int, int, str]]:
    """(shard, slice, store key) of every slice checkpoint a deletion may restart from: each
    shard's slices but its last (whose weights are the shard's own, in the ensemble)."""
    return [(shard, k, key) for shard, parts in enumerate(ensemble.layout)
            for k, key in enumerate(slice_keys(images, parts, shard, ensemble.spec, ensemble.recipe, ensemble.seed)[:-1])]


def save_ensemble(ensemble: SisaEnsemble, path: str | Path, **metadata) -> Path:
    """Weights and slice ids as safetensors, then the JSON sidecar (each atomically), as
    `unlearnkit.store.save_model` writes a single model."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in ensemble.state_dict().items()}
    tensors |= {f"ids.{s}.{k}": torch.from_numpy(np.ascontiguousarray(part, dtype=np.int64)) for s, parts in enumerate(ensemble.layout) for k, part in enumerate(parts)}
    atomic_write_bytes(path, safetensors.torch.save(tensors))
    sidecar = {
        "format": FORMAT, "model": ensemble.spec, "shards": len(ensemble.layout), "slices": len(ensemble.layout[0]),
        "aggregate": ensemble.aggregate, "seed": ensemble.seed, "recipe": ensemble.recipe.model_dump(),
        "weights": {"file": path.name, "sha256": sha256_file(path)}, "versions": versions(), **metadata,
    }
    atomic_write_json(sidecar_path(path), sidecar)
    return path


def read_any_sidecar(path: str | Path) -> dict:
    """The sidecar of a saved model or ensemble."""
    meta = read_json(sidecar_path(path), "is missing; a model needs its .json sidecar beside the .safetensors file", "the sidecar is damaged")
    if not isinstance(meta, dict):
        raise UnlearnkitError(f"{sidecar_path(path)} is not an unlearnkit sidecar")
    return meta


def load_ensemble(path: str | Path, device: str | torch.device = "cpu", store: Store | None = None) -> SisaEnsemble:
    """A saved ensemble, its weights verified against the sidecar's sha256; `store` is where its
    slice checkpoints are looked for when it deletes (default: the cache's)."""
    path = Path(path)
    meta = read_any_sidecar(path)
    if meta.get("format") != FORMAT:
        raise UnlearnkitError(f"{path} is not a SISA ensemble (format {meta.get('format')!r}); train one with `unlearnkit train --role original --shards S --slices R`")
    if (actual := sha256_file(path)) != meta["weights"]["sha256"]:
        raise UnlearnkitError(f"{path} has sha256 {actual[:12]}…, its sidecar records {meta['weights']['sha256'][:12]}…: the weights file was changed or damaged")
    try:
        state = safetensors.torch.load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UnlearnkitError(f"{path} is not a readable safetensors file ({error})") from None
    layout = [[state[f"ids.{s}.{k}"].numpy() for k in range(meta["slices"])] for s in range(meta["shards"])]
    ensemble = SisaEnsemble([build_model(meta["model"]) for _ in layout], layout, spec=meta["model"], recipe=Recipe(**meta["recipe"]),
                            seed=meta["seed"], aggregate=meta["aggregate"])
    ensemble.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    ensemble.store = store or Store()
    return ensemble.to(device, memory_format=torch.channels_last).eval()


def load_any_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A saved model, or a saved SISA ensemble."""
    if sidecar_path(path).is_file() and read_any_sidecar(path).get("format") == FORMAT:
        return load_ensemble(path, device)
    return load_model(path, device)


def ensemble_accuracies(ensemble: SisaEnsemble, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy under each aggregation, from one forward pass per shard."""
    outputs = torch.stack([predict_logits(shard, x, precision=ensemble.recipe.precision) for shard in ensemble.shards])
    return {how: float((combine(outputs, how).argmax(1) == torch.as_tensor(y)).double().mean()) for how in AGGREGATES}


def train_sisa(role: str, dataset, split, preset, seed: int, store: Store, *, shards: int, slices: int, aggregate: str = "vote",
               device: torch.device | None = None) -> Reference:
    """The SISA ensemble of a reference role (original: forget + retain; retrain: retain only),
    loaded from the store when the same inputs made it before, trained otherwise. Its sidecar's
    `metrics` hold train and test accuracy under each aggregation."""
    device = device or default_device()
    ids = training_indices(role, split)
    check_layout(len(ids), shards, slices)
    factory = preset.model.factory
    spec = model_spec(net_maker(preset, dataset)(), factory, preset.model.kwargs if factory else None)
    key = store.key(kind="sisa", data=dataset.fingerprint, train_indices=sha256_arrays(ids), model=spec, shards=shards, slices=slices, seed=seed,
                    recipe={**preset.recipe.model_dump(), "precision": resolve_precision(preset.recipe.precision, device)},
                    code=engine_digest(modules=("sisa.py",))[:16])

    def cached(path: Path) -> Reference:
        ensemble = load_ensemble(path, device, store)
        ensemble.aggregate = aggregate
        return Reference(role, ensemble, path, read_any_sidecar(path), cached=True)

    if path := store.find(key):
        return cached(path)
    with store.lock(key):
        if path := store.find(key):
            return cached(path)
        say(f"{role}: training {shards} shards × {slices} slices (SISA) …")
        images = TrainingImages(np.arange(len(dataset.train_y)), torch.from_numpy(dataset.train_x), torch.from_numpy(dataset.train_y), store, device)
        ensemble, runs = train_ensemble(images, ids, shards, slices, spec, preset.recipe, seed, aggregate)
        train, test = (ensemble_accuracies(ensemble, x[rows], y[rows]) for x, y, rows in
                       ((dataset.train_x, dataset.train_y, ids), (dataset.test_x, dataset.test_y, split.test)))
        path = save_ensemble(
            ensemble, store.path(key), role=role, preset=preset.name, data_fingerprint=dataset.fingerprint, split_fingerprint=split.fingerprint,
            trained_on=int(ids.size), metrics={how: {"train_acc": train[how], "test_acc": test[how]} for how in AGGREGATES},
            timings={"train_seconds": sum(run.seconds for run in runs), "device": str(device)},
        )
    return Reference(role, ensemble, path, read_any_sidecar(path), cached=False)
