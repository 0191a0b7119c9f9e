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
    assert not leftover.exists()
