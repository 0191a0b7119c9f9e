import numpy as np
import torch.nn.functional as F
import torch

from unlearnkit.evaluate import per_example_loss, simple_mia


def test_per_example_loss_matches_torch():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 5, size=(50, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 50)
    expected = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction="none").numpy()
    np.testing.assert_allclose(per_example_loss(logits, labels), expected, rtol=1e-5, atol=1e-6)


def test_mia_perfectly_separable():
    rng = np.random.default_rng(0)
    assert simple_mia(rng.uniform(0, 0.1, 500), rng.uniform(1, 3, 800)) >= 0.95


def test_mia_identical_distributions_is_chance():
    rng = np.random.default_rng(1)
    score = simple_mia(rng.exponential(1, 2000), rng.exponential(1, 2000))
    assert abs(score - 0.5) <= 0.05


def test_mia_subsamples_the_larger_group():
    rng = np.random.default_rng(2)
    # balanced classes after subsampling: an attack always saying "member" scores 0.5, not 0.9
    assert simple_mia(rng.exponential(1, 90), rng.exponential(1, 10_000)) < 0.7


def test_cached_logits_are_reused_for_their_split_and_recomputed_when_damaged(arrays, tmp_path, monkeypatch):
    from unlearnkit import evaluate
    from unlearnkit.data import Dataset
    from unlearnkit.data.splits import make_split
    from unlearnkit.evaluate import model_outputs
    from unlearnkit.models import create_model

    train_x, train_y, test_x, test_y = arrays
    dataset = Dataset(train_x, train_y, test_x, test_y, classes=tuple(str(c) for c in range(10)))
    split = make_split(train_y, len(test_y), forget=0.2, seed=0)
    model = create_model("resnet18", num_classes=10, width=4).eval()
    cache = tmp_path / "logits.npz"
    first = model_outputs(model, dataset, split, cache)
    assert cache.is_file()
    np.testing.assert_array_equal(model_outputs(None, dataset, split, cache).heldout, first.heldout)  # no model needed: read back
    other = make_split(train_y, len(test_y), forget=0.2, seed=1)
    forward_passes = []
    real_predict = evaluate.predict_logits
    monkeypatch.setattr(evaluate, "predict_logits", lambda *a, **k: forward_passes.append(1) or real_predict(*a, **k))
    model_outputs(model, dataset, split, cache)
    assert forward_passes == []  # the same split: read back
    model_outputs(model, dataset, other, cache)
    assert forward_passes == [1]  # another split: computed again, and the cache now holds it
    with np.load(cache) as saved:
        assert str(saved["split"]) == other.fingerprint
    cache.write_bytes(cache.read_bytes()[:50])  # a truncated file is computed again, not a crash
    np.testing.assert_allclose(model_outputs(model, dataset, other, cache).heldout, model_outputs(model, dataset, other).heldout)


def test_outputs_of_some_parts_match_the_full_pass_there_and_predict_nothing_else(arrays, monkeypatch):
    from unlearnkit import evaluate
    from unlearnkit.data import Dataset
    from unlearnkit.data.splits import make_split
    from unlearnkit.evaluate import model_outputs
    from unlearnkit.models import create_model

    train_x, train_y, test_x, test_y = arrays
    dataset = Dataset(train_x, train_y, test_x, test_y, classes=tuple(str(c) for c in range(10)))
    split = make_split(train_y, len(test_y), forget=0.2, seed=0)
    model = create_model("resnet18", num_classes=10, width=4).eval()
    full = model_outputs(model, dataset, split)
    predicted_rows = []
    real_predict = evaluate.predict_logits
    monkeypatch.setattr(evaluate, "predict_logits", lambda model, x, **k: predicted_rows.append(len(x)) or real_predict(model, x, **k))
    some = model_outputs(model, dataset, split, parts=("forget", "val"))
    assert predicted_rows == [split.forget.size + split.val.size]
    for part in ("forget", "val"):
        assert some.accuracy(part) == full.accuracy(part)
        np.testing.assert_allclose(some.losses(part), full.losses(part), rtol=1e-5)
    assert np.isnan(some.losses("retain")).all() and np.isnan(some.losses("test")).all()
