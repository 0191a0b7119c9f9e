import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import CLASSES, SHARED_BINARY, write_folders
from unlearnkit.data import cifar, load_dataset
from unlearnkit.errors import UnlearnkitError


def assert_same(ds, arrays):
    train_x, train_y, test_x, test_y = arrays
    np.testing.assert_array_equal(ds.train_x, train_x)
    np.testing.assert_array_equal(ds.train_y, train_y)
    np.testing.assert_array_equal(ds.test_x, test_x)
    np.testing.assert_array_equal(ds.test_y, test_y)


def test_binary_layout(binary_dir, arrays):
    ds = load_dataset(binary_dir)
    assert_same(ds, arrays)
    assert ds.classes == CLASSES and ds.layout == "cifar10-binary"


def test_python_layout_matches_binary(python_dir, binary_dir, arrays):
    py, bin_ = load_dataset(python_dir), load_dataset(binary_dir)
    assert_same(py, arrays)
    assert py.classes == CLASSES and py.fingerprint == bin_.fingerprint


def test_parent_folder_and_env_var_are_found(binary_dir, arrays, monkeypatch):
    assert_same(load_dataset(binary_dir.parent), arrays)
    monkeypatch.setenv("UNLEARNKIT_DATA", str(binary_dir))
    assert_same(load_dataset(), arrays)


def test_official_tarball_is_checked_and_extracted(tmp_path, binary_dir, arrays, monkeypatch):
    tarball = tmp_path / "dl" / "cifar-10-binary.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(binary_dir, arcname="cifar-10-batches-bin")
    digest = hashlib.md5(tarball.read_bytes()).hexdigest()
    with pytest.raises(UnlearnkitError, match="md5 .* expected .*corrupt"):
        load_dataset(tarball.parent)
    name, _, folder = cifar.TARBALLS["binary"]
    monkeypatch.setitem(cifar.TARBALLS, "binary", (name, digest, folder))
    assert_same(load_dataset(tarball.parent), arrays)


def test_offline_download_names_the_flag_and_env_var(cache, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(cifar.urllib.request, "urlopen", offline)
    with pytest.raises(UnlearnkitError, match=r"downloading .* failed .*--data PATH or set UNLEARNKIT_DATA"):
        load_dataset()


def test_image_folders(tmp_path, arrays):
    small = [a[:40] for a in arrays]
    ds = load_dataset(write_folders(tmp_path / "imgs", *small))
    assert ds.layout == "image-folders" and ds.train_x.shape == (40, 3, 32, 32)
    # folders are read class by class: compare as multisets of (label, image)
    key = lambda x, y: sorted((int(l), i.tobytes()) for i, l in zip(x, y))  # noqa: E731
    assert key(ds.train_x, ds.train_y) == key(small[0], small[1])


def test_npz_channels_last_and_float(tmp_path, arrays):
    train_x, train_y, test_x, test_y = arrays
    path = tmp_path / "d.npz"
    np.savez(path, x_train=train_x.transpose(0, 2, 3, 1), y_train=train_y, x_test=test_x.astype(np.float32) / 255, y_test=test_y)
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.train_x, train_x)
    np.testing.assert_array_equal(ds.test_x, test_x)


def test_fingerprint_changes_with_one_pixel(binary_dir, arrays):
    before = load_dataset(binary_dir).fingerprint
    path = binary_dir / "data_batch_1.bin"
    raw = bytearray(path.read_bytes())
    raw[100] ^= 1
    path.write_bytes(bytes(raw))
    assert load_dataset(binary_dir).fingerprint != before


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: (d / "data_batch_3.bin").unlink(), r"missing file .*data_batch_3\.bin"),
        (lambda d: (d / "data_batch_2.bin").write_bytes((d / "data_batch_2.bin").read_bytes()[:-100]), r"data_batch_2\.bin holds \d+ bytes, not a whole number"),
        (lambda d: (d / "test_batch.bin").write_bytes(b""), r"test_batch\.bin holds 0 bytes"),
        (lambda d: (d / "batches.meta.txt").write_text("a\nb\n"), r"label \d is out of range: labels must lie in 0\.\.1 for 2 classes"),
    ],
    ids=["missing-batch", "truncated-batch", "empty-test", "labels-out-of-range"],
)
def test_binary_validation_errors(binary_dir, mutate, message):
    mutate(binary_dir)
    with pytest.raises(UnlearnkitError, match=message):
        load_dataset(binary_dir)


@pytest.mark.parametrize(
    "arrays_override, message",
    [
        ({"x_train": np.zeros((4, 32, 32), np.uint8)}, r"train images have shape \(4, 32, 32\); expected 4 dimensions"),
        ({"x_train": np.zeros((4, 3, 32, 32), np.int32)}, r"train images have dtype int32"),
        ({"x_train": np.full((4, 3, 32, 32), np.nan, np.float32)}, r"train images contain NaN or inf"),
        ({"x_train": np.full((4, 3, 32, 32), 2.0, np.float32)}, r"float images span 2\.\.2; float pixels must lie in \[0, 1\]"),
        ({"y_train": np.array([0, 1, 2], np.int64)}, r"train has 4 images but 3 labels"),
        ({"y_train": np.array([0, 1, -1, 2], np.int64)}, r"train label -1 is out of range"),
        ({"y_train": np.array([0.0, 1.0, 2.0, 3.0])}, r"y_train has shape \(4,\) and dtype float64; labels must be a 1-D integer array"),
        ({"x_test": np.zeros((0, 3, 32, 32), np.uint8), "y_test": np.zeros(0, np.int64)}, r"the test split is empty"),
        ({"x_test": np.zeros((2, 3, 16, 16), np.uint8), "y_test": np.zeros(2, np.int64)}, r"train images have shape \(3, 32, 32\) but test images \(3, 16, 16\)"),
    ],
    ids=["ndim", "dtype", "nan", "float-range", "length-mismatch", "negative-label", "float-labels", "empty-split", "shape-mismatch"],
)
def test_npz_validation_errors(tmp_path, arrays_override, message):
    base = {
        "x_train": np.zeros((4, 3, 32, 32), np.uint8),
        "y_train": np.array([0, 1, 2, 3]),
        "x_test": np.zeros((2, 3, 32, 32), np.uint8),
        "y_test": np.array([0, 1]),
        "classes": np.array(CLASSES),
    }
    np.savez(tmp_path / "bad.npz", **{**base, **arrays_override})
    with pytest.raises(UnlearnkitError, match=message):
        load_dataset(tmp_path / "bad.npz")


def test_npz_missing_key_and_not_a_zip(tmp_path):
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((1, 3, 32, 32), np.uint8))
    with pytest.raises(UnlearnkitError, match="lacks array 'y_train'"):
        load_dataset(tmp_path / "partial.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UnlearnkitError, match="not a readable .npz archive"):
        load_dataset(tmp_path / "junk.npz")


def test_missing_and_unrecognised_paths(tmp_path):
    with pytest.raises(UnlearnkitError, match=r"does not exist; pass --data PATH"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnlearnkitError, match="no dataset found in"):
        load_dataset(tmp_path / "empty")


class Payload:
    """A pickle that would create a file if it were ever executed."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_python_batches_refuse_code_in_pickles(python_dir):
    sentinel = python_dir / "PWNED"
    (python_dir / "data_batch_1").write_bytes(pickle.dumps({b"data": Payload(sentinel)}, protocol=2))
    with pytest.raises(UnlearnkitError, match=r"data_batch_1 is not a readable CIFAR-10 python batch .*not allowed"):
        load_dataset(python_dir)
    assert not sentinel.exists()


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_BINARY.exists(), reason=f"real CIFAR-10 not found at {SHARED_BINARY}")
def test_real_cifar10():
    ds = load_dataset(SHARED_BINARY)
    assert ds.classes == CLASSES
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert np.bincount(ds.train_y).tolist() == [5000] * 10
    assert np.bincount(ds.test_y).tolist() == [1000] * 10
    assert ds.train_y[0] == 6 and tuple(ds.train_x[0, :, 0, 0]) == (61, 62, 67)  # the README's frog
    assert ds.fingerprint == EXPECTED_SHARED_FINGERPRINT


EXPECTED_SHARED_FINGERPRINT = "7175725cae2fb85305db6518c9b7373996f9b102ff6fa16972007ef7f8add868"  # measured on the shared copy
