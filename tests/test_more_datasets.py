"""CIFAR-100 and MNIST / Fashion-MNIST readers, on synthetic files in the official layouts."""

from __future__ import annotations

import gzip
import pickle
import tarfile

import numpy as np
import pytest

from unlearnkit.data import load_dataset, others
from unlearnkit.errors import UnlearnkitError

FINE = [f"fine{i}" for i in range(100)]
COARSE = [f"coarse{i}" for i in range(20)]


def cifar100_arrays(n_train=120, n_test=40, seed=0):
    rng = np.random.default_rng(seed)
    make = lambda n: (rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 100, n))  # noqa: E731
    return (*make(n_train), *make(n_test))


def write_cifar100_python(folder, train_x, train_y, test_x, test_y):
    folder.mkdir(parents=True)
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": x.reshape(len(x), -1), b"fine_labels": y.tolist(), b"coarse_labels": (y // 5).tolist()}, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [n.encode() for n in FINE], b"coarse_label_names": [n.encode() for n in COARSE]}, f, protocol=2)
    return folder


def write_cifar100_binary(folder, train_x, train_y, test_x, test_y):
    folder.mkdir(parents=True)
    for name, x, y in (("train.bin", train_x, train_y), ("test.bin", test_x, test_y)):
        records = np.concatenate([(y // 5).astype(np.uint8)[:, None], y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
    (folder / "fine_label_names.txt").write_text("\n".join(FINE) + "\n")
    (folder / "coarse_label_names.txt").write_text("\n".join(COARSE) + "\n")
    return folder


@pytest.mark.parametrize("writer", [write_cifar100_python, write_cifar100_binary])
def test_cifar100_in_both_layouts(tmp_path, writer):
    arrays = cifar100_arrays()
    ds = load_dataset(writer(tmp_path / "cifar-100", *arrays))
    np.testing.assert_array_equal(ds.train_x, arrays[0])
    np.testing.assert_array_equal(ds.train_y, arrays[1])
    np.testing.assert_array_equal(ds.test_y, arrays[3])
    assert ds.classes == tuple(FINE) and ds.coarse_classes == tuple(COARSE)
    np.testing.assert_array_equal(ds.coarse_train_y, arrays[1] // 5)


def test_cifar100_tarball_is_md5_checked_then_extracted(tmp_path, monkeypatch):
    write_cifar100_python(tmp_path / "src" / "cifar-100-python", *cifar100_arrays())
    tarball = tmp_path / "data" / "cifar-100-python.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(tmp_path / "src" / "cifar-100-python", arcname="cifar-100-python")
    with pytest.raises(UnlearnkitError, match="expected eb9058c3a382ffc7106e4002c42a8d85: the file is corrupt"):
        load_dataset(tarball.parent)
    import hashlib

    monkeypatch.setattr(others, "CIFAR100_TARBALL", ("cifar-100-python.tar.gz", hashlib.md5(tarball.read_bytes()).hexdigest(), "cifar-100-python"))
    assert load_dataset(tarball.parent).layout == "cifar100-python"


def test_a_cifar100_file_with_a_foreign_object_is_refused(tmp_path):
    folder = write_cifar100_python(tmp_path / "c", *cifar100_arrays())
    (folder / "train").write_bytes(pickle.dumps({"data": __import__("os").getcwd}))
    with pytest.raises(UnlearnkitError, match="train is not a readable CIFAR-100 python file"):
        load_dataset(folder)


def idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.astype(np.uint8).tobytes()


def write_idx(folder, compress: bool, n_train=60, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)), "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)), "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True)
    for name, array in arrays.items():
        payload = idx(array)
        (folder / (name + ".gz" if compress else name)).write_bytes(gzip.compress(payload) if compress else payload)
    return folder, arrays


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files(tmp_path, compress):
    folder, arrays = write_idx(tmp_path / "mnist", compress)
    ds = load_dataset(folder)
    assert ds.train_x.shape == (60, 1, 28, 28) and ds.layout == "mnist-idx" and ds.classes[3] == "3"
    np.testing.assert_array_equal(ds.train_x[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_y, arrays["t10k-labels-idx1-ubyte"])


def test_fashion_mnist_is_named_by_its_folder(tmp_path):
    folder, _ = write_idx(tmp_path / "fashion-mnist", compress=True)
    ds = load_dataset(folder)
    assert ds.layout == "fashion-mnist-idx" and ds.classes[9] == "Ankle boot"


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-10], r"declares shape \(60, 28, 28\) but holds 47030 values: the file is truncated"),
    (lambda b: b"\x00\x00\x09\x03" + b[4:], r"is not an idx file of 3-dimensional uint8 data"),
])
def test_damaged_idx_files_are_one_line(tmp_path, damage, message):
    folder, _ = write_idx(tmp_path / "mnist", compress=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UnlearnkitError, match=message):
        load_dataset(folder)


def test_a_missing_idx_file_is_named(tmp_path):
    folder, _ = write_idx(tmp_path / "mnist", compress=False)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UnlearnkitError, match="missing file .*t10k-labels-idx1-ubyte"):
        load_dataset(folder)


@pytest.mark.slow
def test_a_one_channel_dataset_runs_end_to_end_with_a_model_sized_for_it(tmp_path):
    """MNIST-like 28x28 grey images: the model is built with one input channel and the data's
    own normalization (no silent broadcast to three channels, no CIFAR constants)."""
    from unlearnkit import load_model
    from unlearnkit.run import run_experiment

    folder, arrays = write_idx(tmp_path / "mnist", compress=True, n_train=300, n_test=100)
    results = run_experiment(preset="smoke", data=folder, out=tmp_path / "out", cache=tmp_path / "cache", seed=0, methods="finetune")
    model = load_model(tmp_path / "out" / results["rows"][2]["model"])
    assert model.conv1.in_channels == 1
    mean = arrays["train-images-idx3-ubyte"].mean() / 255
    assert float(model.mean.flatten()[0]) == pytest.approx(mean, abs=1e-3)


def test_cifar100_read_as_superclasses_keeps_the_fine_labels_as_subclasses(tmp_path):
    arrays = cifar100_arrays()
    folder = write_cifar100_python(tmp_path / "cifar-100", *arrays)
    coarse = load_dataset(f"{folder}#coarse")
    np.testing.assert_array_equal(coarse.train_y, arrays[1] // 5)
    np.testing.assert_array_equal(coarse.subclass_train_y, arrays[1])
    np.testing.assert_array_equal(coarse.subclass_test_y, arrays[3])
    assert coarse.classes == tuple(COARSE) and coarse.subclasses == tuple(FINE)
    assert coarse.fingerprint != load_dataset(folder).fingerprint


def test_only_cifar100_has_superclasses(tmp_path):
    folder, _ = write_idx(tmp_path / "mnist", compress=False)
    with pytest.raises(UnlearnkitError, match=r"has no coarse labels; only CIFAR-100"):
        load_dataset(f"{folder}#coarse")


@pytest.mark.slow
def test_the_subclass_scenario_forgets_one_fine_class_of_a_superclass_model(tmp_path):
    """Train on the 20 superclasses, forget every pool image of one fine class: the split holds
    exactly those images, its test comparison uses that sub-class's test images, and the run
    reports their accuracy apart."""
    from unlearnkit.run import run_experiment

    rng = np.random.default_rng(1)
    train_y, test_y = np.repeat(np.arange(100), 6), np.repeat(np.arange(100), 2)
    arrays = (rng.integers(0, 256, (600, 3, 32, 32), dtype=np.uint8), train_y, rng.integers(0, 256, (200, 3, 32, 32), dtype=np.uint8), test_y)
    folder = write_cifar100_python(tmp_path / "cifar-100", *arrays)
    results = run_experiment(preset="smoke", data=f"{folder}#coarse", forget="subclass:fine7", out=tmp_path / "out", cache=tmp_path / "cache", seed=0, methods="finetune")
    split = results["split"]
    assert split["forget_subclasses"] == ["fine7"] and split["forget_classes"] == []
    from unlearnkit.data.splits import Split

    saved = Split.load(tmp_path / "out" / "split.npz")
    assert (train_y[saved.forget] == 7).all() and not (train_y[saved.retain] == 7).any()  # every pool image of fine7, and only those
    assert split["forget"] >= 4 and split["forget_per_class"][1] == split["forget"]  # fine7 lies in coarse1
    assert saved.forget_subclasses == (7,)
    assert all("forget_class_test_acc" in row for row in results["rows"])


@pytest.mark.parametrize("spec, data_suffix, message", [
    ("subclass:fine7", "", r"needs data with sub-classes; read CIFAR-100 as its 20 superclasses with --data PATH#coarse"),
    ("subclass:nosuch", "#coarse", r"unknown class 'nosuch'"),
    ("subclass:fine7:2", "#coarse", r"the part of a class must be a fraction"),
])
def test_bad_subclass_specs_are_one_line(tmp_path, spec, data_suffix, message):
    from unlearnkit.experiment import prepare

    folder = write_cifar100_python(tmp_path / "cifar-100", *cifar100_arrays())
    with pytest.raises(UnlearnkitError, match=message):
        prepare(data=f"{folder}{data_suffix}", preset="smoke", forget=spec, cache=tmp_path / "cache")
