import json

import pytest
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import create_model
from unlearnkit.store import Store, load_model, save_model


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet18", width=4, num_classes=10)
    path = save_model(model, tmp_path / "m.safetensors", role="original", metrics={"test_acc": 0.5})
    return model, path


def test_round_trip_identical_weights(saved):
    model, path = saved
    loaded = load_model(path)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["role"] == "original" and meta["model"] == {"name": "resnet18", "kwargs": {"width": 4, "num_classes": 10}}
    assert not loaded.training


def test_write_leaves_no_temporaries(saved):
    _, path = saved
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.json", "m.safetensors"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-10]), r"has sha256 .* its sidecar records"),
        (lambda p: p.with_suffix(".json").unlink(), r"m\.json is missing"),
        (lambda p: p.with_suffix(".json").write_text("{"), r"m\.json is not valid JSON"),
        (lambda p: p.with_suffix(".json").write_text('{"format": "other"}'), r"not an unlearnkit model sidecar"),
        (lambda p: p.unlink(), r"model file .*m\.safetensors does not exist"),
    ],
    ids=["truncated", "no-sidecar", "bad-json", "wrong-format", "missing"],
)
def test_damaged_models_are_refused(saved, damage, message):
    _, path = saved
    damage(path)
    with pytest.raises(UnlearnkitError, match=message):
        load_model(path)


def resave_sidecar_hash(path):
    from unlearnkit.fileio import sha256_file

    meta = json.loads(path.with_suffix(".json").read_text())
    meta["weights"]["sha256"] = sha256_file(path)
    path.with_suffix(".json").write_text(json.dumps(meta))


def test_wrong_architecture_and_nan_weights(tmp_path):
    wide = save_model(create_model("resnet18", width=8), tmp_path / "wide.safetensors")
    meta = json.loads(wide.with_suffix(".json").read_text())
    meta["model"]["kwargs"]["width"] = 4
    wide.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(UnlearnkitError, match=r"tensor \S+ has shape \(8.*\) but resnet18 expects \(4.*\)"):
        load_model(wide)

    model = create_model("resnet18", width=4)
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    bad = save_model(model, tmp_path / "nan.safetensors")
    with pytest.raises(UnlearnkitError, match="fc.weight holds NaN or inf"):
        load_model(bad)


def test_random_bytes_are_not_a_model(saved):
    _, path = saved
    path.write_bytes(b"\x00\xff" * 64)
    resave_sidecar_hash(path)
    with pytest.raises(UnlearnkitError, match="not a readable safetensors file"):
        load_model(path)


def test_store_key_and_cleanup(tmp_path):
    store = Store(tmp_path)
    a, b = store.key(seed=0, recipe={"lr": 0.1}), store.key(recipe={"lr": 0.1}, seed=0)
    assert a == b != store.key(seed=1, recipe={"lr": 0.1})
    assert store.find(a) is None
    save_model(create_model("resnet18", width=4), store.path(a))
    assert store.find(a) == store.path(a)
    leftover = store.path(a).parent / ".unlearnkit-tmp-abc"
    leftover.write_bytes(b"partial")
    Store(tmp_path)
    assert leftover.exists()  # opening a store shared by other processes touches nobody's files
    with store.lock(a):  # whoever holds the entry may clear what a killed writer left in it
        assert not leftover.exists()


@pytest.mark.slow
def test_an_entry_is_held_by_one_process_at_a_time(tmp_path):
    """Two workers asking for the same model: the second waits for the first's lock."""
    import subprocess
    import sys
    import time

    store = Store(tmp_path)
    key = store.key(seed=0)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from unlearnkit.store import Store; s = Store(sys.argv[1]);\n"
        "with s.lock(sys.argv[2]):\n print('held', flush=True); time.sleep(3)"), str(tmp_path), key], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.perf_counter()
    with store.lock(key):
        waited = time.perf_counter() - started
    holder.wait(timeout=30)
    assert waited > 1.5


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_permissions_of_an_ordinary_open(tmp_path, umask):
    import os
    import stat

    from unlearnkit.fileio import atomic_write_bytes

    old = os.umask(umask)
    try:
        path = atomic_write_bytes(tmp_path / "artifact.bin", b"data")
        with open(tmp_path / "plain.bin", "w"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode)


def test_the_store_address_follows_the_engine_code(tmp_path):
    """A change to the code that determines the weights changes the address; a comment does not."""
    from unlearnkit.store import engine_digest

    engine = tmp_path / "engine"
    (engine / "models").mkdir(parents=True)
    (engine / "train.py").write_text("LR = 0.1\n")
    (engine / "models" / "net.py").write_text("WIDTH = 4\n")
    modules = ("train.py", "models")
    before = engine_digest(engine, modules)
    (engine / "train.py").write_text("# a comment\nLR = 0.1  # and another\n")
    engine_digest.cache_clear()
    assert engine_digest(engine, modules) == before
    (engine / "models" / "net.py").write_text("WIDTH = 8\n")
    engine_digest.cache_clear()
    assert engine_digest(engine, modules) != before
    engine_digest.cache_clear()


def test_a_model_cached_by_an_older_engine_is_trained_again_and_said_so(tmp_path, monkeypatch, capsys, arrays):
    from unlearnkit import store as store_module
    from unlearnkit.data import Dataset
    from unlearnkit.data.splits import make_split
    from unlearnkit.presets import get_preset
    from unlearnkit.reference import train_reference

    monkeypatch.setenv("UNLEARNKIT_QUIET", "0")
    dataset = Dataset(*arrays, classes=tuple(str(c) for c in range(10)))
    split = make_split(dataset.train_y, len(dataset.test_y), forget=0.2, seed=0)
    store = Store(tmp_path)
    preset = get_preset("smoke").model_copy(update={"recipe": get_preset("smoke").recipe.model_copy(update={"epochs": 0.2})})
    first = train_reference("original", dataset, split, preset, 0, store)
    assert train_reference("original", dataset, split, preset, 0, store).cached
    monkeypatch.setattr(store_module, "engine_digest", lambda: "f" * 64)  # the training code changed
    capsys.readouterr()
    again = train_reference("original", dataset, split, preset, 0, store)
    assert not again.cached and again.path != first.path
    assert "trained by an older engine" in capsys.readouterr().err
