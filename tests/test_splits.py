import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from unlearnkit.data.splits import Split, make_split
from unlearnkit.errors import UnlearnkitError

LABELS = np.arange(1000) % 10


def test_deterministic_and_seed_dependent():
    a, b = make_split(LABELS, 200, seed=3), make_split(LABELS, 200, seed=3)
    c = make_split(LABELS, 200, seed=4)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.forget.size == 100 and a.retain.size == 900 and a.test.size == a.val.size == 100


@settings(max_examples=30, deadline=None)
@given(n=st.integers(10, 500), heldout=st.integers(2, 100), amount=st.floats(0.01, 0.99), seed=st.integers(0, 10**6))
def test_disjoint_and_covering(n, heldout, amount, seed):
    labels = np.arange(n) % 10
    try:
        split = make_split(labels, heldout, forget=amount, seed=seed)
    except UnlearnkitError:
        assert round(amount * n) in (0, n)  # rejected only when nothing or everything is selected
        return
    assert np.intersect1d(split.forget, split.retain).size == 0
    assert np.array_equal(np.sort(np.concatenate([split.forget, split.retain])), np.arange(n))
    assert np.array_equal(np.sort(np.concatenate([split.test, split.val])), np.arange(heldout))


def test_count_and_pool():
    split = make_split(LABELS, 10, forget=25, seed=0, pool=300)
    assert split.forget.size == 25 and split.pool_size == 300
    pool = np.concatenate([split.forget, split.retain])
    assert np.bincount(LABELS[pool]).tolist() == [30] * 10  # class-balanced


def test_save_load_roundtrip(tmp_path):
    split = make_split(LABELS, 200, seed=1, data_fingerprint="abc")
    loaded = Split.load(split.save(tmp_path / "split.npz"))
    assert loaded.fingerprint == split.fingerprint and loaded.seed == 1 and loaded.data_fingerprint == "abc"


@pytest.mark.parametrize(
    "amount, message",
    [(0, "forget amount 0 is invalid"), (-0.2, "forget amount -0.2 is invalid"), (2.5, "forget amount 2.5 is invalid"),
     (1000, "selects 1000 of 1000 .* leave at least one"), (0.0001, "selects 0 of 1000")],
)
def test_bad_forget_amounts(amount, message):
    with pytest.raises(UnlearnkitError, match=message):
        make_split(LABELS, 10, forget=amount)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(forget=np.array([0, 0, 1])), "forget indices contain duplicates"),
        (dict(forget=np.array([-1, 2])), "forget index -1 is outside the training set of 10"),
        (dict(forget=np.array([2, 12])), "forget index 12 is outside"),
        (dict(forget=np.array([1, 2]), retain=np.arange(2, 10)), "forget and retain share 1 images"),
        (dict(forget=np.array([1]), retain=np.arange(3, 10)), "cover 8 of the 10 training images"),
        (dict(forget=np.array([], dtype=np.int64), retain=np.arange(10)), "the forget set is empty"),
    ],
)
def test_check_rejects_bad_splits(change, message):
    base = dict(forget=np.array([0, 1]), retain=np.arange(2, 10), test=np.array([0, 1]), val=np.array([2, 3]), seed=0, data_fingerprint="")
    with pytest.raises(UnlearnkitError, match=message):
        Split(**{**base, **change}).check(10, 4)
