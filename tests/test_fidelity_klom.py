import numpy as np
import pytest
from scipy import stats

from unlearnkit.evaluate.klom import klom, klom_floor, klom_summary


# Transcribed from RoyRin/data-unlearning-bench @ eb261f9c652aa1daae62c7f23f4e56286edf745c,
# unlearning_bench/eval.py lines 80-130 (compute_binned_KL_div) and 133-153 (kl_from_margins).
def reference_binned_kl(p_arr, q_arr, bin_count=20, eps=1e-5, min_val=-100, max_val=100):
    p_arr = np.clip(p_arr, min_val, max_val)
    q_arr = np.clip(q_arr, min_val, max_val)
    bins_start = min(p_arr.min(), q_arr.min())
    bins_end = max(p_arr.max(), q_arr.max())
    if bins_start >= bins_end:
        bins_end = bins_start + 1
    bins = np.linspace(bins_start, bins_end, bin_count + 1)
    p_binned_indices = np.digitize(p_arr, bins)
    q_binned_indices = np.digitize(q_arr, bins)
    p_bin_counts = np.array([np.sum(p_binned_indices == i) for i in range(1, bin_count + 1)])
    q_bin_counts = np.array([np.sum(q_binned_indices == i) for i in range(1, bin_count + 1)])
    p_total = p_bin_counts.sum()
    q_total = q_bin_counts.sum()
    p_bin_probs = p_bin_counts / p_total if p_total > 0 else np.zeros_like(p_bin_counts, dtype=float)
    q_bin_probs = q_bin_counts / q_total if q_total > 0 else np.zeros_like(q_bin_counts, dtype=float)
    q_bin_probs_safe = np.where(p_bin_probs > 0, np.maximum(q_bin_probs, eps), q_bin_probs)
    return stats.entropy(pk=p_bin_probs, qk=q_bin_probs_safe)


def reference_kl_from_margins(all_unlearned_margins, all_oracle_margins):
    return np.stack([reference_binned_kl(all_unlearned_margins[:, s], all_oracle_margins[:, s]) for s in range(all_oracle_margins.shape[1])])


def margins_with_edge_cases(models: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal margins, plus examples that exercise each branch of the reference: ties, values past
    the ±100 clip, one constant value on both sides, and unlearned samples at the pooled maximum."""
    rng = np.random.default_rng(seed)
    retrained = rng.normal(2, 3, size=(models, 300))
    unlearned = rng.normal(2.5, 2, size=(models, 300))
    unlearned[:, 0] = retrained[:, 0] = 7.0  # all equal: the reference widens the range to 1
    unlearned[:, 1], retrained[:, 1] = 250.0, rng.normal(0, 1, models)  # past the clip
    unlearned[:, 2] = np.round(unlearned[:, 2])  # ties on bin edges
    retrained[:, 2] = np.round(retrained[:, 2])
    unlearned[:, 3] = retrained[:, 3].max() + 1  # every unlearned sample at the maximum: not counted
    unlearned[:, 4] = rng.normal(-150, 10, models)  # below the clip
    return unlearned, retrained


@pytest.mark.parametrize("models", [2, 8, 100])
def test_published_klom_is_the_reference_code(models):
    unlearned, retrained = margins_with_edge_cases(models, seed=models)
    ours, theirs = klom(unlearned, retrained, estimator="published"), reference_kl_from_margins(unlearned, retrained)
    assert np.array_equal(np.isnan(ours), np.isnan(theirs))
    assert np.isnan(theirs[3])  # the branch the summaries count apart is reached
    np.testing.assert_allclose(ours[~np.isnan(ours)], theirs[~np.isnan(theirs)], rtol=1e-12, atol=1e-12)


def test_published_is_the_default_and_differs_from_the_smoothed_estimator():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(8, 500)), rng.normal(size=(8, 500))
    assert np.array_equal(klom(a, b), klom(a, b, estimator="published"))
    # at N = 8, two draws of one distribution: the reference's estimate is large, the smoothed one small
    assert klom(a, b).mean() > 5 * klom(a, b, estimator="smoothed").mean()


def test_the_summary_counts_undefined_examples_apart_and_the_floor_has_both_estimators():
    summary = klom_summary(np.array([0.5, np.nan, 1.5]))
    assert summary["mean"] == 1.0 and summary["undefined"] == 1 and summary["examples"] == 3
    retrained = np.random.default_rng(2).normal(size=(8, 100))
    floors = klom_floor(retrained)
    assert floors["klom"]["models_per_side"] == 4
    assert floors["klom"]["mean"] == pytest.approx(float(np.nanmean(reference_kl_from_margins(retrained[:4], retrained[4:]))), rel=1e-12)
    assert floors["klom_smoothed"]["mean"] < floors["klom"]["mean"]
