"""The deletion-request service on a deployed SISA ensemble: registration copies the slice
checkpoints into the ledger, serving deletes exactly (bitwise the shards trained without the
requested images, the other shards untouched), retraining retrains only the affected shards,
and the superseded checkpoints that held a deleted image are purged with its version."""

from __future__ import annotations

import dataclasses
import json
import shutil
import stat
import sys

import numpy as np
import pytest
import torch

from conftest import synthetic_arrays, write_binary
from test_sisa import bitwise_equal, state

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from unlearnkit.errors import UnlearnkitError  # noqa: E402
from unlearnkit.service.db import Action, LogEntry  # noqa: E402
from unlearnkit.service.ledger import Ledger  # noqa: E402
from unlearnkit.service.serving import retrain, serve  # noqa: E402
from unlearnkit.sisa import SisaEnsemble, TrainingImages, deletion_checkpoints, save_ensemble, train_ensemble, train_shard  # noqa: E402
from unlearnkit.store import Store  # noqa: E402
from test_service import all_versions, statuses  # noqa: E402
from unlearnkit.train import Recipe  # noqa: E402

N_TRAIN, N_TEST = 200, 100
TRAINED = np.arange(20, N_TRAIN)  # the ensemble's training ids: images 0..19 are not in it
SPEC = {"factory": "foreign:build_mlp", "kwargs": {"hidden": 32}}
RECIPE = Recipe(epochs=2, batch_size=16, lr=0.05, precision="fp32")
SHARDS, SLICES, SEED = 2, 2, 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """2 shards × 2 slices of a small MLP on 180 of 200 synthetic images, its slice checkpoints in
    a store of its own, saved as `unlearnkit train --copy-to` saves one."""
    from unlearnkit.data import load_dataset

    root = tmp_path_factory.mktemp("sisa-service")
    data = write_binary(root / "data", *synthetic_arrays(N_TRAIN, N_TEST))
    dataset = load_dataset(str(data))
    images = TrainingImages(np.arange(N_TRAIN), torch.from_numpy(dataset.train_x), torch.from_numpy(dataset.train_y), Store(root / "store"), torch.device("cpu"))
    ensemble, _ = train_ensemble(images, TRAINED, SHARDS, SLICES, SPEC, RECIPE, SEED)
    path = save_ensemble(ensemble, root / "ensemble.safetensors", role="original", trained_on=int(TRAINED.size))
    return {"data": data, "path": path, "images": images, "ensemble": ensemble}


@pytest.fixture
def ledger(trained, tmp_path, monkeypatch):
    """A SQLite ledger with the ensemble registered from a copy of its store, and that copy gone:
    the ledger must not depend on the cache it was trained in."""
    monkeypatch.setenv("UNLEARNKIT_LEDGER_DIR", str(tmp_path / "ledger-files"))
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    users = shutil.copytree(trained["images"].store.root, tmp_path / "user-store")
    book = Ledger.open(str(tmp_path / "ledger.db"), create=True)
    book.register_model(trained["path"], str(trained["data"]), "test", sisa_store=users)
    shutil.rmtree(users)
    yield book
    book.engine.dispose()


def checkpoint_keys(ensemble: SisaEnsemble, images: TrainingImages) -> dict[tuple[int, int], str]:
    return {(shard, k): key for shard, k, key in deletion_checkpoints(ensemble, images)}


def in_ledger_store(book: Ledger) -> set[str]:
    return {entry.name for entry in book.path("sisa-store/models").iterdir()}


def shard_runs(monkeypatch) -> list:
    """Record every shard that `sisa.delete` retrains, with the slice it starts from."""
    import unlearnkit.sisa

    runs, real = [], unlearnkit.sisa.train_shard

    def recording(*args, **kwargs):
        model, run = real(*args, **kwargs)
        runs.append((run.shard, run.first_slice))
        return model, run

    monkeypatch.setattr(unlearnkit.sisa, "train_shard", recording)
    return runs


def test_registering_an_ensemble_copies_its_checkpoints_and_records_its_ids(ledger, trained):
    version = all_versions(ledger)[0]
    assert version.kind == "trained" and version.config["sisa"] | {"checkpoints": None} == {
        "shards": SHARDS, "slices": SLICES, "aggregate": "vote", "seed": SEED, "checkpoints": None}
    assert np.array_equal(ledger.train_ids(version), TRAINED) and version.train_count == TRAINED.size  # its shards' union, not the whole set
    expected = checkpoint_keys(trained["ensemble"], trained["images"])
    assert sorted(version.config["sisa"]["checkpoints"]) == sorted(expected.values()) and in_ledger_store(ledger) == set(expected.values())
    loaded = ledger.load(version)
    assert isinstance(loaded, SisaEnsemble) and loaded.store.root == ledger.path("sisa-store")
    assert bitwise_equal(state(loaded), state(trained["ensemble"]))
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in ledger.path("sisa-store").rglob("*")}
    assert {str(p): oct(m) for p, m in modes.items() if m != (0o700 if p.is_dir() else 0o600)} == {}
    assert ledger.verify()[0] == []


@pytest.mark.slow
def test_serving_deletes_exactly_whatever_the_method_and_deploys(ledger, trained, tmp_path, monkeypatch):
    ensemble = trained["ensemble"]
    doomed = [int(ensemble.layout[0][1][0]), int(ensemble.layout[0][1][1])]  # shard 1's second slice: shard 2 holds neither
    ledger.submit("test", "r1", sample_ids=doomed[:1])
    ledger.submit("test", "r2", sample_ids=[doomed[1], 5])  # image 5 is not in the ensemble
    runs = shard_runs(monkeypatch)
    served = serve(ledger, "test", method="finetune", config={"epochs": 0.05})
    monkeypatch.undo()

    assert served.exact and served.deployed and served.images == 2 and statuses(ledger) == {"r1": "served", "r2": "served"}
    assert served.message.startswith("served exactly by sisa (not finetune: the deployed model is a SISA ensemble): 1 of 2 shards retrained (shard 1 from slice 2)")
    assert runs == [(0, 1)]  # shard 1 alone, from the ledger's own checkpoint of its first slice (the user's store is gone)
    report = json.loads(ledger.path(f"actions/{served.action}/report.json").read_text())
    assert served.verdict["checks"] and "exact by construction" in report["exact"]
    assert report["relearn"]["measured"] > 0 and any(c["check"] == "requested images stay unseen after relearning" for c in served.verdict["checks"])  # the vote's shards are attacked one by one
    versions = all_versions(ledger)
    assert [(v.kind, v.method) for v in versions] == [("trained", None), ("deleted-exactly", "sisa")]
    assert versions[1].verdict in ("pass", "fail") and versions[1].config["retrained_shards"] == [{"shard": 0, "from_slice": 1}]
    with ledger.read() as session:
        assert ledger.deployed(session).id == versions[1].id and session.get(Action, served.action).method == "sisa"

    new = ledger.load(versions[1])
    scratch = dataclasses.replace(trained["images"], store=Store(tmp_path / "empty"))
    kept = [part[~np.isin(part, doomed)] for part in ensemble.layout[0]]
    expected, run = train_shard(scratch, kept, 0, SPEC, RECIPE, SEED)
    assert (run.first_slice, run.trained) == (0, SLICES)  # really from scratch
    assert bitwise_equal(state(new.shards[0]), state(expected)) and not bitwise_equal(state(new.shards[0]), state(ensemble.shards[0]))
    assert bitwise_equal(state(new.shards[1]), state(ensemble.shards[1]))
    assert np.array_equal(ledger.train_ids(versions[1]), np.setdiff1d(TRAINED, doomed))

    ledger.submit("test", "r3", sample_ids=[int(ensemble.layout[1][0][0])])
    later = serve(ledger, "test", method="finetune")
    assert later.exact and later.deployed and statuses(ledger)["r3"] == "served"
    assert [v.purged is not None for v in all_versions(ledger)] == [True, True, False]  # each held a deleted image
    assert not np.isin(doomed, ledger.train_ids(all_versions(ledger)[-1])).any()
    assert ledger.verify()[0] == []


def fail_a_batch(book: Ledger, monkeypatch, request_id: str, sample_ids: list[int]) -> None:
    """Submit a request and serve it in a batch that raises: the request is `failed`."""
    import unlearnkit.forget

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(unlearnkit.forget, "unlearn_and_verify", broken)
    book.submit("test", request_id, sample_ids=sample_ids)
    with pytest.raises(UnlearnkitError, match="its 1 requests are marked failed"):
        serve(book, "test")
    monkeypatch.undo()
    assert statuses(book)[request_id] == "failed"


def test_retraining_an_ensemble_retrains_only_the_shards_that_held_the_images(ledger, trained, monkeypatch):
    ensemble = trained["ensemble"]
    doomed = int(ensemble.layout[1][1][3])  # shard 2's second slice
    fail_a_batch(ledger, monkeypatch, "r1", [doomed])

    runs = shard_runs(monkeypatch)
    done = retrain(ledger, "test")
    assert runs == [(1, 1)] and done.shards == [{"shard": 1, "from_slice": 1}] and done.requests == ["r1"]
    assert "deleted exactly from the SISA ensemble, 1 of 2 shards retrained (shard 2 from slice 2)" in done.message
    assert statuses(ledger) == {"r1": "served"}
    version = all_versions(ledger)[-1]
    assert (version.kind, version.method, version.config["retrained_shards"]) == ("retrained", "sisa", [{"shard": 1, "from_slice": 1}])
    assert doomed not in ledger.train_ids(version)
    retrained_model = ledger.load(version)
    assert bitwise_equal(state(retrained_model.shards[0]), state(ensemble.shards[0]))
    with ledger.read() as session:
        assert session.get(Action, done.action).config["retrained_shards"] == [{"shard": 1, "from_slice": 1}]
        event = session.query(LogEntry).filter(LogEntry.event == "retrain.served").one()
        assert json.loads(event.payload)["retrained_shards"] == [{"shard": 1, "from_slice": 1}]
    assert retrain(ledger, "test", every=1).message.startswith("retraining is not needed (1 requests served by unlearning")
    assert ledger.verify()[0] == []


@pytest.mark.slow
def test_retraining_closes_failed_requests_whose_images_a_later_batch_deleted(ledger, trained, monkeypatch):
    doomed = int(trained["ensemble"].layout[0][0][0])
    fail_a_batch(ledger, monkeypatch, "r1", [doomed])
    ledger.submit("test", "r2", sample_ids=[doomed])
    assert serve(ledger, "test").exact  # deletes r1's image too: it awaits retraining
    deployed = all_versions(ledger)[-1].id
    done = retrain(ledger, "test")
    assert (done.requests, done.version, done.shards) == (["r1"], deployed, None) and "nothing to delete" in done.message
    assert statuses(ledger) == {"r1": "served", "r2": "served"} and len(all_versions(ledger)) == 2
    assert ledger.verify()[0] == []


def test_serving_purges_the_checkpoints_that_held_a_deleted_image_and_keeps_the_rest(ledger, trained):
    ensemble, images = trained["ensemble"], trained["images"]
    old = checkpoint_keys(ensemble, images)
    # shard 1 from its second slice (its first slice's checkpoint stays), shard 2 from its first
    doomed = [int(ensemble.layout[0][1][0]), int(ensemble.layout[1][0][0])]
    ledger.submit("test", "r1", sample_ids=doomed)
    assert serve(ledger, "test").deployed
    versions = all_versions(ledger)
    assert versions[0].purged is not None and not ledger.path(versions[0].path).exists()
    new = checkpoint_keys(ledger.load(versions[1]), images)
    assert new[(0, 0)] == old[(0, 0)] and new[(1, 0)] != old[(1, 0)]
    assert in_ledger_store(ledger) == set(new.values()) == set(versions[1].config["sisa"]["checkpoints"])
    assert not ledger.path(f"sisa-store/models/{old[(1, 0)]}").exists()  # trained on a deleted image: gone
    assert ledger.verify()[0] == []
    shutil.rmtree(ledger.path(f"sisa-store/models/{new[(1, 0)]}"))
    assert ledger.verify()[0] == ["1 slice checkpoints of model version 2 (SISA ensemble) are missing from sisa-store/, and it was not purged"]


def test_an_ensemble_whose_checkpoints_are_missing_is_refused_in_one_line(trained, tmp_path, monkeypatch, capsys):
    from unlearnkit import cli

    monkeypatch.setenv("UNLEARNKIT_LEDGER_DIR", str(tmp_path / "ledger-files"))
    book = Ledger.open(str(tmp_path / "ledger.db"), create=True)
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(sys, "argv", ["unlearnkit", "ledger", "register", str(trained["path"]), "--data", str(trained["data"]),
                                      "--cache", str(tmp_path / "empty"), "--ledger", book.location])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(error.strip().splitlines()) == 1 and "Traceback" not in error
    assert "2 of its 2 slice checkpoints are not in the store" in " ".join(error.split()) and "--cache" in error
    assert all_versions(book) == [] and not any(book.path("sisa-store").rglob("*.safetensors"))
