"""Evidence of forgetting: attack statistics, features, the NeurIPS 2023 ε score and U-LiRA,
checked on cases with known answers."""

import numpy as np
import pytest
from scipy.stats import norm

from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluate import features as F
from unlearnkit.evaluate.attacks import ATTACKS
from unlearnkit.evaluate.epsilon import DELTA, EPSILON_CAP, epsilon_from_rates, epsilons, example_epsilon, neurips_score, points
from unlearnkit.evaluate.stats import score_attack, significantly_above
from unlearnkit.evaluate.ulira import ulira

# ---------------------------------------------------------------- bootstrap statistics


def test_separable_scores_give_auc_one_and_full_tpr_at_low_fpr():
    rng = np.random.default_rng(0)
    result = score_attack(rng.normal(10, 1, 500), rng.normal(0, 1, 2000), resamples=200)
    assert result.values["auc"] == pytest.approx(1.0)
    assert result.values["tpr_at_0.1pct_fpr"] == pytest.approx(1.0)
    assert result.values["tpr_at_1pct_fpr"] == pytest.approx(1.0)
    assert result.values["balanced_accuracy"] == pytest.approx(1.0)


def test_identical_distributions_give_half_within_the_interval():
    rng = np.random.default_rng(1)
    result = score_attack(rng.normal(0, 1, 1000), rng.normal(0, 1, 1000), resamples=500)
    low, high = result.intervals["auc"]
    assert low <= 0.5 <= high
    assert abs(result.values["auc"] - 0.5) < 0.05
    assert result.values["tpr_at_1pct_fpr"] < 0.05


def test_auc_matches_the_mann_whitney_statistic_with_ties():
    members, nonmembers = np.array([3, 2, 2, 1.0]), np.array([2, 1, 0.0])
    pairs = [(m > n) + 0.5 * (m == n) for m in members for n in nonmembers]
    assert score_attack(members, nonmembers, resamples=100).values["auc"] == pytest.approx(np.mean(pairs))


def test_tpr_at_fpr_counts_only_thresholds_within_the_fpr():
    # 1000 non-members; one scores above every member, so at FPR ≤ 0.1% (one false positive allowed) all members are found,
    # but not at zero false positives
    nonmembers = np.r_[np.linspace(-5, 0, 999), 100.0]
    members = np.linspace(1, 2, 50)
    result = score_attack(members, nonmembers, resamples=100)
    assert result.values["tpr_at_0.1pct_fpr"] == pytest.approx(1.0)
    nonmembers[-2] = 99.0  # now two non-members outrank every member
    assert score_attack(members, nonmembers, resamples=100).values["tpr_at_0.1pct_fpr"] == 0.0


def test_bootstrap_interval_covers_the_true_auc_at_least_90_percent_of_the_time():
    d = 0.6
    true_auc = norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(2)
    covered = 0
    repetitions = 100
    for rep in range(repetitions):
        result = score_attack(rng.normal(d, 1, 200), rng.normal(0, 1, 200), resamples=400, seed=rep)
        low, high = result.intervals["auc"]
        covered += low <= true_auc <= high
    assert covered >= 90, f"the 95% interval covered the true AUC in {covered}/{repetitions} repetitions"


def test_with_clustered_examples_only_resampling_whole_groups_keeps_the_coverage():
    """Eight members' and eight non-members' groups of 20 near-copies each (a person's rows in
    the text corpus), drawn from one distribution, so the true AUC is 0.5: drawing rows one by
    one treats 160 copies as 160 witnesses and the interval misses 0.5 most of the time."""
    def covered(grouped: bool) -> int:
        hits = 0
        for rep in range(80):
            rng = np.random.default_rng(rep)
            members, nonmembers = (np.concatenate([rng.normal(0, 1) + rng.normal(0, 0.1, 20) for _ in range(8)]) for _ in range(2))
            low, high = score_attack(members, nonmembers, resamples=300, seed=rep, groups=np.repeat(np.arange(16), 20) if grouped else None).intervals["auc"]
            hits += low <= 0.5 <= high
        return hits

    assert covered(grouped=True) >= 70 and covered(grouped=False) <= 45
    rng = np.random.default_rng(0)
    members, nonmembers = rng.normal(1, 1, 50), rng.normal(0, 1, 60)
    singletons = score_attack(members, nonmembers, resamples=200, groups=np.arange(110))
    assert singletons.intervals == score_attack(members, nonmembers, resamples=200).intervals  # a group per example: the plain bootstrap
    with pytest.raises(UnlearnkitError, match="groups has 3 labels for 110 examples"):
        score_attack(members, nonmembers, groups=[0, 1, 2])


def test_paired_comparison_finds_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(3)
    nonmembers = rng.normal(0, 1, 800)
    strong = score_attack(rng.normal(1.0, 1, 400), nonmembers, resamples=300)
    weak = score_attack(rng.normal(0.0, 1, 400), nonmembers, resamples=300)
    assert significantly_above(strong, weak)
    assert not significantly_above(weak, strong)
    assert not significantly_above(weak, weak)


def test_attack_statistics_reject_tiny_or_non_finite_inputs():
    with pytest.raises(UnlearnkitError, match="at least 2 members"):
        score_attack([1.0], [0.0, 1.0])
    with pytest.raises(UnlearnkitError, match="NaN or inf"):
        score_attack([1.0, np.nan], [0.0, 1.0])


# ---------------------------------------------------------------- features


def test_features_match_their_definitions_on_a_worked_example():
    logits = np.array([[2.0, 0.5, -1.0]])
    label = np.array([0])
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert F.confidence(logits, label)[0] == pytest.approx(p[0])
    assert F.loss(logits, label)[0] == pytest.approx(-np.log(p[0]))
    assert F.entropy(logits)[0] == pytest.approx(-(p * np.log(p)).sum())
    # modified entropy uses log(1 − p_i) for the wrong classes (the SalUn bug used log p_i)
    expected = -(1 - p[0]) * np.log(p[0]) - p[1] * np.log(1 - p[1]) - p[2] * np.log(1 - p[2])
    assert F.modified_entropy(logits, label)[0] == pytest.approx(expected)
    assert F.logit_scaled_confidence(logits, label)[0] == pytest.approx(np.log(p[0]) - np.log(1 - p[0]))


def test_features_stay_finite_and_ordered_for_extreme_logits():
    logits = np.array([[80.0, 0.0, 0.0], [0.0, 80.0, 0.0]])
    labels = np.array([0, 0])  # first: confidently right; second: confidently wrong
    for feature in (F.loss, F.confidence, F.entropy, F.modified_entropy, F.logit_scaled_confidence):
        assert np.isfinite(feature(logits, labels)).all(), feature.__name__
    confident = F.logit_scaled_confidence(logits, labels)
    assert confident[0] == pytest.approx(80 - np.log(2), rel=1e-6) and confident[1] < -70
    mentr = F.modified_entropy(logits, labels)
    assert mentr[0] < 1e-10 < 10 < mentr[1]  # a confident wrong answer is not "low entropy" here


# ---------------------------------------------------------------- population attacks (contract over the registry)


def _logits_for(confidence_of_label: np.ndarray, labels: np.ndarray, k: int = 10) -> np.ndarray:
    logits = np.zeros((len(labels), k))
    logits[np.arange(len(labels)), labels] = confidence_of_label
    return logits


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_separates_separable_members_and_not_identical_ones(name):
    attack = ATTACKS[name]
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 10, 1000)

    def feats(margin):
        return attack.featurize(_logits_for(margin, labels), labels)

    high, low, same = feats(rng.normal(12, 1, 1000)), feats(rng.normal(0, 1, 1000)), feats(rng.normal(0, 1, 1000))

    def fit_then_score(members, nonmembers):
        fitted = attack.make(0).fit(members[:500], nonmembers[:500])
        members, nonmembers = members[500:], nonmembers[500:]
        return score_attack(fitted.score(members), fitted.score(nonmembers), fitted.predict(members), fitted.predict(nonmembers), resamples=300)

    separable, identical = fit_then_score(high, low), fit_then_score(same, low)
    assert separable.values["auc"] > 0.99 and separable.values["tpr_at_0.1pct_fpr"] > 0.95
    assert separable.values["balanced_accuracy"] > 0.95
    low_ci, high_ci = identical.intervals["auc"]
    assert low_ci <= 0.5 <= high_ci, identical.intervals


# ---------------------------------------------------------------- the NeurIPS 2023 ε score


def test_epsilon_of_rates_follows_the_definition():
    assert epsilon_from_rates(0.25, 0.25) == pytest.approx(np.log(0.75 - DELTA) - np.log(0.25))
    assert np.isinf(epsilon_from_rates(0.0, 0.0))  # perfect separation
    assert np.isnan(epsilon_from_rates(0.0, 0.5))  # one error rate zero: discarded
    assert epsilon_from_rates(0.5, 0.5) == 0.0  # no better than chance: clipped at 0


def test_epsilon_perfect_separation_hits_the_cap_and_scores_nothing():
    eps = example_epsilon([0.0, 1.0, 2.0, 3.0], [10.0, 11.0, 12.0, 13.0])
    assert eps == EPSILON_CAP
    assert points([eps])[0] == 0.0


def test_epsilon_identical_distributions_is_zero_and_scores_a_full_point():
    sample = np.array([0.0, 1.0, 2.0, 3.0])
    assert example_epsilon(sample, sample.copy()) == 0.0
    assert points([0.0])[0] == 1.0


def test_epsilon_of_a_spike_is_the_cap():
    # the unlearned confidences barely vary (range under 1% of the other's): the official rule gives the cap
    assert example_epsilon([1.5, 1.5001, 1.5002, 1.5003], [0.0, 1.0, 2.0, 3.0]) == EPSILON_CAP


def test_epsilon_worked_by_hand():
    # unlearned 0,1,2,3 vs retrained 2.5,3.5,4.5,5.5: no rule has both error rates zero; the best rule with
    # both non-zero ("retrained when ≥ 3") errs once on each side: FPR = FNR = 1/4, so ε = log(0.75 − δ) − log(0.25)
    eps = example_epsilon([0.0, 1.0, 2.0, 3.0], [2.5, 3.5, 4.5, 5.5])
    assert eps == pytest.approx(np.log(0.75 - DELTA) - np.log(0.25))
    assert points([eps])[0] == 0.25  # ε ≈ 1.099 falls in the third bin, [1, 1.5): 2 / 2^3


def test_points_per_bin():
    assert points([0.0, 0.49, 0.5, 1.2, 6.49, 6.5, 50.0]).tolist() == [1.0, 1.0, 0.5, 0.25, 2 / 2**13, 0.0, 0.0]


def test_neurips_score_on_a_small_set_worked_by_hand():
    unlearned = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]])
    retrained = np.array([[0.0, 2.5, 10.0], [1.0, 3.5, 11.0], [2.0, 4.5, 12.0], [3.0, 5.5, 13.0]])
    # per example ε: identical → 0 (1 point); the hand-worked case above (0.25); perfect separation (0)
    result = neurips_score(unlearned, retrained, retain_acc=(0.9, 1.0), test_acc=(0.8, 0.8))
    assert result["epsilon"][0] == 0 and result["epsilon"][2] == EPSILON_CAP
    assert result["forgetting_quality"] == pytest.approx((1 + 0.25 + 0) / 3)
    assert result["score"] == pytest.approx((1.25 / 3) * 0.9 * 1.0)


def test_neurips_score_needs_two_models_and_matching_examples():
    with pytest.raises(UnlearnkitError, match="at least 2"):
        epsilons(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(UnlearnkitError, match="same examples"):
        epsilons(np.zeros((4, 3)), np.zeros((4, 2)))


# ---------------------------------------------------------------- U-LiRA


def test_ulira_separates_unlearned_from_retrained_when_they_differ_per_example():
    rng = np.random.default_rng(5)
    base = rng.normal(0, 3, 400)  # each example has its own level; unlearning leaves it 2 higher
    shadow_u, shadow_r = base + 2 + rng.normal(0, 0.3, (8, 400)), base + rng.normal(0, 0.3, (8, 400))
    result = ulira(base + 2 + rng.normal(0, 0.3, 400), base + rng.normal(0, 0.3, 400), shadow_u, shadow_r, resamples=200)
    assert result.values["auc"] > 0.99 and result.values["tpr_at_1pct_fpr"] > 0.9
    # a population threshold cannot: the per-example levels swamp the shift
    assert score_attack(base + 2, base, resamples=100).values["auc"] < 0.8


def test_ulira_is_at_chance_when_unlearning_equals_retraining():
    rng = np.random.default_rng(6)
    base = rng.normal(0, 3, 1000)
    draw = lambda *shape: base + rng.normal(0, 0.5, (*shape, 1000))  # noqa: E731
    result = ulira(draw(1)[0], draw(1)[0], draw(8), draw(8), resamples=300)
    low, high = result.intervals["auc"]
    assert low <= 0.5 <= high


def test_ulira_needs_two_shadows():
    with pytest.raises(UnlearnkitError, match="at least 2 shadow"):
        ulira(np.zeros(3), np.zeros(3), np.zeros((1, 3)), np.zeros((1, 3)))


# ---------------------------------------------------------------- aggregation over seeds


def test_every_number_of_a_row_is_aggregated_over_seeds_including_nested_evidence():
    from unlearnkit.evaluate.summary import aggregate_rows

    def run(auc, js, extra=None):
        row = {"name": "kl", "mia": auc, "config": {"lr": 0.1}, "attack_auc_ci": [0.4, 0.6],
               "evidence": {"attacks": {"svc-entropy": {"signal": True, "forget": {"auc": {"value": auc, "ci95": [0, 1]}}}}, "divergence": {"forget": {"js": js}}}}
        return [{**row, **(extra or {})}]

    aggregated = aggregate_rows([run(0.50, 0.1), run(0.54, 0.3, {"neurips_score": 0.2})])[0]
    assert aggregated["n"] == 2
    assert aggregated["evidence.attacks.svc-entropy.forget.auc.value"] == pytest.approx({"mean": 0.52, "sd": np.std([0.50, 0.54], ddof=1)})
    assert aggregated["evidence.divergence.forget.js"]["mean"] == pytest.approx(0.2)
    assert aggregated["config.lr"] == {"mean": 0.1, "sd": 0.0}
    assert "neurips_score" not in aggregated  # only numbers every seed has
    assert not any("signal" in key or "ci95" in key for key in aggregated)  # flags and lists are not averaged


# The two-threshold rules are l ≤ c ≤ r (closed), so keeping exactly the observed values i..j
# needs r strictly below the next value and l strictly above the previous one.
@pytest.mark.parametrize(
    "unlearned, retrained, expected",
    [
        ([-2.0, 0.0, 1.0], [3.0, 0.0, 0.0], 0.0),  # "keep only 0" would need r in [1, 1)
        ([-4.0, 0.0, -1.0, 1.0], [0.0, 0.0, -4.0, 0.0], np.log((0.5 - DELTA) / 0.25)),  # not log 3
    ],
)
def test_epsilon_counts_no_rule_that_thresholds_cannot_produce(unlearned, retrained, expected):
    assert example_epsilon(unlearned, retrained) == pytest.approx(expected, abs=1e-9)


def test_epsilon_of_two_constant_samples():
    """The official code divides 0 by 0 here; we define it: the same value → 0, different → cap."""
    assert example_epsilon([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]) == 0.0
    assert example_epsilon([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]) == EPSILON_CAP


def brute_force_epsilon(unlearned, retrained, delta=DELTA):
    """ε by trying rules: every threshold at, between and around the observed values, and for
    the two-threshold family every (l, r) with r − l in the allowed band, r taken at each point
    where a bound meets an observed value and between those points."""
    from unlearnkit.evaluate.epsilon import BUFFER

    u, t = np.asarray(unlearned, float), np.asarray(retrained, float)
    pos, neg = (t, u) if np.median(t) > np.median(u) else (u, t)
    values = np.unique(np.r_[u, t])
    fine = lambda points: np.unique(np.r_[points, (points[1:] + points[:-1]) / 2, points - 0.25, points + 0.25])  # noqa: E731
    rules = []
    for cut in fine(values):
        rules.append(((neg >= cut).mean(), (pos < cut).mean()))
    peaky, other = (neg, pos) if np.ptp(pos) >= np.ptp(neg) else (pos, neg)
    width = np.ptp(peaky)
    r_min, r_max = peaky.min() + width - BUFFER, peaky.max() + BUFFER
    r_points = np.r_[values, values + width - BUFFER, values + width + BUFFER, r_min, r_max]
    r_points = np.unique(r_points[(r_points >= r_min) & (r_points <= r_max)])
    r_points = np.unique(np.r_[r_points, (r_points[1:] + r_points[:-1]) / 2])
    for r in r_points:
        l_min, l_max = r - width - BUFFER, r - width + BUFFER
        l_points = np.r_[values[(values >= l_min) & (values <= l_max)], l_min, l_max]
        l_points = np.unique(l_points)
        for l in np.unique(np.r_[l_points, (l_points[1:] + l_points[:-1]) / 2]):
            inside = lambda c: (l <= c) & (c <= r)  # noqa: E731
            rules.append((inside(other).mean(), 1 - inside(peaky).mean()))
    fpr, fnr = np.array(rules).T
    eps = epsilon_from_rates(fpr, fnr, delta)
    return float(np.clip(np.nanmax(eps), 0, EPSILON_CAP))


def test_epsilon_equals_a_brute_force_search_on_tied_discrete_confidences():
    rng = np.random.default_rng(0)
    compared = 0
    while compared < 300:
        n = int(rng.integers(3, 7))
        spread = int(rng.integers(1, 6))
        unlearned, retrained = (rng.integers(-spread, spread + 1, n) * rng.choice([0.5, 1.0, 1.5]) for _ in range(2))
        if min(np.ptp(unlearned), np.ptp(retrained)) < 0.01 * max(np.ptp(unlearned), np.ptp(retrained)):
            continue  # a spike (or two constants): the cap or 0, no search
        expected = brute_force_epsilon(unlearned, retrained)
        assert example_epsilon(unlearned, retrained) == pytest.approx(expected, abs=1e-9), (unlearned, retrained)
        compared += 1


@pytest.mark.parametrize("estimator", ["published", "smoothed"])
def test_klom_is_zero_for_identical_ensembles_and_grows_with_a_shift(estimator):
    from unlearnkit.evaluate.klom import klom

    rng = np.random.default_rng(0)
    retrained = rng.normal(0, 1, size=(16, 200))
    assert np.all(klom(retrained.copy(), retrained, estimator) == 0)
    near = klom(retrained + 0.1, retrained, estimator)
    far = klom(retrained + 5, retrained, estimator)
    assert far.mean() > 1.0 and np.all(far > near)
    # the smoothed estimator barely moves for a tenth of a standard deviation; the published one, with
    # 20 bins for 16 models, is noisy (2.3 here) but still far below a shift of 5 sds (9.7)
    assert near.mean() < (0.2 if estimator == "smoothed" else 0.5 * far.mean())
    # two independent draws from one distribution sit well below a shifted one
    other = rng.normal(0, 1, size=(16, 200))
    assert klom(other, retrained, estimator).mean() < 0.5 * far.mean()
    # per example: only the shifted columns diverge
    mixed = retrained.copy()
    mixed[:, :50] += 5
    values = klom(mixed, retrained, estimator)
    assert values[:50].min() > values[50:].max()


def test_klom_refuses_mismatched_ensembles():
    from unlearnkit.errors import UnlearnkitError
    from unlearnkit.evaluate.klom import klom

    with pytest.raises(UnlearnkitError, match="same examples"):
        klom(np.zeros((4, 3)), np.zeros((4, 5)))
    with pytest.raises(UnlearnkitError, match="at least 2 models"):
        klom(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(UnlearnkitError, match="unknown KLoM estimator 'binned'"):
        klom(np.zeros((4, 3)), np.zeros((4, 3)), estimator="binned")


def test_ensemble_shape_tells_an_off_centre_ensemble_from_a_narrow_one():
    from unlearnkit.evaluate.epsilon import ensemble_shape

    rng = np.random.default_rng(0)
    retrained = rng.normal(0, 2, size=(16, 300))
    same = ensemble_shape(rng.normal(0, 2, size=(16, 300)), retrained)
    assert abs(same["offset_median"]) < 0.3 and 0.7 < same["spread_ratio_median"] < 1.3
    assert 0.3 < same["above_share"] < 0.7 and 0.3 < same["narrower_share"] < 0.7
    higher = ensemble_shape(rng.normal(3, 2, size=(16, 300)), retrained)  # still remembers: 1.5 sd too confident
    assert 1.2 < higher["offset_median"] < 1.8 and higher["above_share"] > 0.95
    assert 0.7 < higher["spread_ratio_median"] < 1.3
    narrow = ensemble_shape(rng.normal(0, 0.2, size=(16, 300)), retrained)  # the right centre, a tenth of the spread
    assert abs(narrow["offset_median"]) < 0.3 and narrow["spread_ratio_median"] < 0.2 and narrow["narrower_share"] == 1.0
    # the score agrees: a narrow ensemble at the right centre is told apart more easily than a matched one
    matched_eps = epsilons(rng.normal(0, 2, size=(16, 300)), retrained)
    narrow_eps = epsilons(rng.normal(0, 0.2, size=(16, 300)), retrained)
    assert np.median(narrow_eps) > np.median(matched_eps) + 0.5
