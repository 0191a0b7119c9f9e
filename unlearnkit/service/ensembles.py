"""SISA ensembles in the ledger (`unlearnkit.sisa`): a deletion retrains only the shards that
held a deleted image, from the slice checkpoint kept before the first slice that held one, and
is exact by construction.

The ledger keeps its own copy of the slice checkpoints a deletion restarts from, in
`sisa-store/` (a content-addressed `Store`), so that it never depends on the cache the ensemble
was trained in. A version made of an ensemble records its layout and the keys of its
checkpoints in its config (`{"sisa": {...}}`, covered by the audit chain); a checkpoint is
deleted with the last version that lists it, and one trained on a deleted image is listed by no
version made after the deletion.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from sqlalchemy import select

from unlearnkit.errors import UnlearnkitError

STORE = "sisa-store"
EXACT_KIND = "deleted-exactly"  # a version made by serving a deletion from an ensemble


def is_ensemble_file(weights: Path) -> bool:
    from unlearnkit.sisa import FORMAT, read_any_sidecar
    from unlearnkit.store import sidecar_path

    return sidecar_path(weights).is_file() and read_any_sidecar(weights).get("format") == FORMAT


def layout_of(version) -> dict | None:
    """The version's SISA layout and checkpoint keys, or None for a single model."""
    return version.config.get("sisa") if isinstance(version.config, dict) else None


def method_config(version) -> dict | None:
    """The `sisa` method's config for the version's ensemble, or None for a single model."""
    layout = layout_of(version)
    return None if layout is None else {k: layout[k] for k in ("shards", "slices", "aggregate")}


def ledger_store(ledger):
    from unlearnkit.store import Store

    return Store(ledger.private_folder(STORE))


def training_images(ledger, dataset):
    """The data's training images by id, on the training device, with the ledger's store."""
    import torch

    from unlearnkit.sisa import TrainingImages
    from unlearnkit.train import default_device

    return TrainingImages(np.arange(len(dataset.train_y)), torch.from_numpy(dataset.train_x), torch.from_numpy(dataset.train_y),
                          ledger_store(ledger), default_device())


def version_config(ensemble, dataset, ledger) -> dict:
    """What a version of `ensemble` records: its layout and the keys of the checkpoints a deletion
    may restart from (all in the ledger's store, made private)."""
    from unlearnkit.sisa import deletion_checkpoints

    keys = [key for *_, key in deletion_checkpoints(ensemble, training_images(ledger, dataset))]
    if missing := [key for key in keys if not checkpoint_file(ledger, key).is_file()]:
        raise UnlearnkitError(f"{len(missing)} slice checkpoints of the new ensemble are not in {ledger.path(STORE)}; it cannot be registered")
    make_private(ledger)
    return {"sisa": {"shards": len(ensemble.layout), "slices": len(ensemble.layout[0]), "aggregate": ensemble.aggregate, "seed": ensemble.seed,
                     "checkpoints": keys}}


def import_checkpoints(ledger, ensemble, dataset, source, weights: Path) -> None:
    """Copy the slice checkpoints a deletion from `ensemble` may restart from, out of the store
    `source` it was trained in, into the ledger's store; refuse (copying nothing) when one is
    missing."""
    from unlearnkit.sisa import deletion_checkpoints
    from unlearnkit.store import sidecar_path

    needed = deletion_checkpoints(ensemble, training_images(ledger, dataset))
    missing = [(shard, k) for shard, k, key in needed if source.find(key) is None]
    if missing:
        shard, k = missing[0]
        raise UnlearnkitError(f"SISA ensemble {weights}: {len(missing)} of its {len(needed)} slice checkpoints are not in the store {source.root} "
                              f"(the first: shard {shard + 1}, slice {k + 1}); give the store it was trained in with --cache, on a machine of the same kind")
    for _, _, key in needed:
        found = source.find(key)
        for path in (found, sidecar_path(found)):
            ledger.write_file(f"{STORE}/models/{key}/{path.name}", path.read_bytes())


def checkpoint_file(ledger, key: str) -> Path:
    return ledger.path(f"{STORE}/models/{key}/model.safetensors")


def listed_keys(session, but=None) -> set[str]:
    """The checkpoint keys that versions not purged (other than `but`) list."""
    from unlearnkit.service.db import ModelVersion

    versions = session.scalars(select(ModelVersion).where(ModelVersion.purged.is_(None)))
    return {key for v in versions if v is not but and (layout := layout_of(v)) for key in layout["checkpoints"]}


def owned_checkpoints(ledger, version, session) -> list[Path]:
    """The checkpoint folders of `version` that no other version not purged lists: they go with it."""
    layout = layout_of(version)
    if layout is None:
        return []
    shared = listed_keys(session, but=version)
    return [checkpoint_file(ledger, key).parent for key in layout["checkpoints"] if key not in shared]


def missing_checkpoints(ledger, version) -> list[str]:
    layout = layout_of(version) or {"checkpoints": []}
    return [key for key in layout["checkpoints"] if not checkpoint_file(ledger, key).is_file()]


def sweep(ledger, session) -> None:
    """Remove the checkpoints no version not purged lists: a killed run's, and the last slice's
    weights a deletion wrote (the ensemble holds them). Only the serving lease's holder calls it."""
    folder = ledger.path(f"{STORE}/models")
    if folder.is_dir():
        keep = listed_keys(session)
        for entry in folder.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)


def make_private(ledger) -> None:
    """What training wrote into the ledger's store (checkpoints, locks), its owner's alone."""
    from unlearnkit.service.db import FILE_MODE, FOLDER_MODE

    root = ledger.path(STORE)
    for folder, _, files in os.walk(root):
        os.chmod(folder, FOLDER_MODE)
        for name in files:
            os.chmod(Path(folder) / name, FILE_MODE)


def retrained(layout, ids: np.ndarray) -> list[dict]:
    """Which shards a deletion of `ids` retrains, each from which slice (both from 0)."""
    from unlearnkit.sisa import restarts

    return [{"shard": shard, "from_slice": k} for shard, k in restarts(layout, np.asarray(ids, dtype=np.int64))]


def retrained_text(shards: list[dict], total: int) -> str:
    where = ", ".join(f"shard {s['shard'] + 1} from slice {s['from_slice'] + 1}" for s in shards)
    return f"{len(shards)} of {total} shards retrained ({where})" if shards else f"none of {total} shards retrained"
