"""tasks.stats against independent references: scikit-learn, scipy, hand-derived values, brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import average_precision_score

from tasks import stats

# --------------------------------------------------------------------------------------------------
# orientation
# --------------------------------------------------------------------------------------------------


def test_orient_negates_distances_only():
    v = np.array([0.0, 1.5, np.nan])
    np.testing.assert_array_equal(stats.orient(v, True), v)
    np.testing.assert_array_equal(stats.orient(v, False), -v)


def test_resi_flip_formula_and_zero_max_rule():
    # max = 4: (4 - d) / 4
    np.testing.assert_allclose(stats.resi_flip([0.0, 1.0, 4.0, np.nan]), [1.0, 0.75, 0.0, np.nan])
    # all distances 0: max replaced by 5e-5, so (5e-5 - 0) / 5e-5 = 1 for every value
    np.testing.assert_array_equal(stats.resi_flip([0.0, 0.0]), [1.0, 1.0])
    with pytest.raises(ValueError):
        stats.resi_flip([-2.0, -1.0])  # would invert the order


# --------------------------------------------------------------------------------------------------
# AUPRC, prevalence, null
# --------------------------------------------------------------------------------------------------


def test_auprc_hand_computed_five_elements():
    # Scores best first: 0.9(+) 0.8(-) 0.7(+) 0.6(+) 0.5(-). Positives at ranks 1, 3, 4 with
    # precision 1/1, 2/3, 3/4 there; recall steps by 1/3 at each, so
    # AP = (1 + 2/3 + 3/4) / 3 = (12 + 8 + 9) / 36 = 29/36.
    assert stats.auprc([0.9, 0.7, 0.6], [0.8, 0.5]) == pytest.approx(29 / 36, abs=1e-12)


def test_auprc_matches_sklearn_on_hand_examples():
    examples = [
        ([1.0, 0.2], [0.5, 0.4, 0.3]),
        ([0.1], [0.9, 0.8]),  # worst case
        ([0.5, 0.5], [0.5, 0.1]),  # ties between a positive and a negative
    ]
    for within, cross in examples:
        y = np.r_[np.ones(len(within)), np.zeros(len(cross))]
        assert stats.auprc(within, cross) == pytest.approx(average_precision_score(y, within + cross))
    # one tie block holding everything: a single threshold with precision 1/2 at recall 1
    assert stats.auprc([1.0], [1.0]) == pytest.approx(0.5)


def test_auprc_matches_sklearn_on_random_inputs_with_ties():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n_w, n_c = rng.integers(1, 15, size=2)
        values = rng.integers(0, 6, size=n_w + n_c) / 5.0  # coarse values: many ties, across the groups
        y = np.r_[np.ones(n_w), np.zeros(n_c)]
        assert stats.auprc(values[:n_w], values[n_w:]) == pytest.approx(average_precision_score(y, values), abs=1e-12)


def test_auprc_nan_rule_and_distance_orientation():
    assert stats.auprc([0.9, np.nan, 0.7, 0.6], [0.8, np.nan, 0.5]) == pytest.approx(29 / 36)
    assert np.isnan(stats.auprc([np.nan], [0.3, 0.2]))
    assert np.isnan(stats.auprc([0.4], []))
    rng = np.random.default_rng(0)
    within, cross = rng.uniform(0, 1, 10), rng.uniform(0.3, 2, 50)
    # distances: small = similar; the ReSi flip preserves the order of the negated values
    assert stats.auprc(within, cross, higher_is_more_similar=False) == pytest.approx(stats.auprc(-within, -cross))


def test_prevalence_resi_designs():
    assert stats.prevalence(10, 50) == pytest.approx(10 / 60)  # 3 groups of 5
    assert stats.prevalence(10, 25) == pytest.approx(10 / 35)  # 2 groups of 5
    assert stats.prevalence_normalised(10 / 60, 10 / 60) == pytest.approx(0.0)
    assert stats.prevalence_normalised(1.0, 10 / 35) == pytest.approx(1.0)
    np.testing.assert_allclose(stats.prevalence_normalised(np.array([0.5, 1.0]), 0.5), [0.0, 1.0])


def _expected_ap_of_random_ranking(k: int, n: int) -> float:
    # AP = (1/k) sum_j y_j prec@j, prec@j = (sum_{l<=j} y_l) / j. Under a random ranking
    # E[y_j sum_{l<=j} y_l] = k/n + (j - 1) k(k - 1) / (n(n - 1)), hence
    # E[AP] = (1/n) sum_{j=1..n} (1/j) [1 + (j - 1)(k - 1)/(n - 1)].
    j = np.arange(1, n + 1)
    return float(np.sum((1 + (j - 1) * (k - 1) / (n - 1)) / j) / n)


def test_expected_ap_formula_against_sklearn_enumeration():
    # every placement of 2 positives among 6 ranked items, AP by scikit-learn
    n, k = 6, 2
    scores = np.arange(n, 0, -1, dtype=float)
    aps = []
    for positives in itertools.combinations(range(n), k):
        y = np.zeros(n)
        y[list(positives)] = 1
        aps.append(average_precision_score(y, scores))
    assert np.mean(aps) == pytest.approx(_expected_ap_of_random_ranking(k, n), abs=1e-12)


@pytest.mark.parametrize(("n_within", "n_cross"), [(10, 50), (10, 25), (2, 4)])
def test_auprc_null_matches_exact_expectation(n_within, n_cross):
    null = stats.auprc_null(n_within, n_cross, 20_000, seed=3)
    exact = _expected_ap_of_random_ranking(n_within, n_within + n_cross)
    assert null == pytest.approx(exact, abs=3e-3)  # Monte Carlo s.e. is below 6e-4 here
    assert null > stats.prevalence(n_within, n_cross)


def test_auprc_null_is_seeded():
    assert stats.auprc_null(10, 50, 2_000, seed=1) == stats.auprc_null(10, 50, 2_000, seed=1)
    assert stats.auprc_null(10, 50, 2_000, seed=1) != stats.auprc_null(10, 50, 2_000, seed=2)
    with pytest.raises(TypeError):
        stats.auprc_null(10, 50, 10, seed=None)
    assert np.isnan(stats.auprc_null(0, 5, 10, seed=0))


# --------------------------------------------------------------------------------------------------
# conformity and group separation
# --------------------------------------------------------------------------------------------------


def test_conformity_rate_against_double_loop_with_ties():
    within = [0.9, 0.5, 0.5, 0.2]
    cross = [0.5, 0.1, 0.3, 0.5, 0.9]
    violations = sum(w <= c for w in within for c in cross)  # ties count as violations
    assert stats.conformity_rate(within, cross) == pytest.approx(1 - violations / 20)
    assert stats.conformity_rate([0.4, 0.4], [0.4]) == 0.0
    # distances: d = 1 - s gives the same order
    assert stats.conformity_rate(1 - np.array(within), 1 - np.array(cross), False) == pytest.approx(1 - violations / 20)


def _block_design(n_groups: int, per_group: int = 5):
    return np.repeat(np.arange(n_groups), per_group)


def _reference_lists(s, groups, g, ordered):
    pairs = itertools.permutations(range(len(groups)), 2) if ordered else itertools.combinations(range(len(groups)), 2)
    within, cross = [], []
    for a, b in pairs:
        if groups[a] == g and groups[b] == g:
            within.append(s[a, b])
        elif (groups[a] == g) != (groups[b] == g):
            cross.append(s[a, b])
    return np.array(within), np.array(cross)


@pytest.mark.parametrize("n_groups", [2, 3])
def test_group_separation_counts_and_prevalence_of_resi_designs(n_groups):
    rng = np.random.default_rng(n_groups)
    x = rng.standard_normal((5 * n_groups, 5 * n_groups))
    s = x + x.T
    res = stats.group_separation(s, _block_design(n_groups))
    assert set(res.n_within.values()) == {10}
    assert set(res.n_cross.values()) == {25 * (n_groups - 1)}
    assert res.prevalence == pytest.approx(10 / 60 if n_groups == 3 else 10 / 35)


def test_group_separation_perfect_separation():
    groups = _block_design(3)
    same = groups[:, None] == groups[None, :]
    s = np.where(same, 0.9, 0.1) + 0.01 * np.random.default_rng(0).uniform(size=(15, 15))
    s = (s + s.T) / 2
    res = stats.group_separation(s, groups)
    assert res.auprc == pytest.approx(1.0)
    assert res.auprc_normalised == pytest.approx(1.0)
    assert res.conformity_rate == pytest.approx(1.0)


def test_group_separation_symmetric_against_brute_force():
    rng = np.random.default_rng(1)
    groups = np.array(["p0", "p50", "p75"]).repeat(5)
    x = rng.standard_normal((15, 15))
    s = x + x.T + 1.5 * (groups[:, None] == groups[None, :])
    res = stats.group_separation(s, groups)
    assert res.groups == ("p0", "p50", "p75")
    aps, confs = [], []
    for g in res.groups:
        within, cross = _reference_lists(s, groups, g, ordered=False)
        y = np.r_[np.ones(within.size), np.zeros(cross.size)]
        aps.append(average_precision_score(y, np.r_[within, cross]))
        confs.append(np.mean([w > c for w in within for c in cross]))
        assert res.auprc_by_group[g] == pytest.approx(aps[-1])
    assert res.auprc == pytest.approx(np.mean(aps))
    assert res.conformity_rate == pytest.approx(np.mean(confs))
    # a distance with the same order gives the same statistics (ReSi flip for the AUPRC)
    dist = stats.group_separation(s.max() - s, groups, higher_is_more_similar=False)
    assert dist.auprc == pytest.approx(res.auprc)
    assert dist.conformity_rate == pytest.approx(res.conformity_rate)


def test_group_separation_asymmetric_uses_both_orders():
    rng = np.random.default_rng(2)
    groups = _block_design(2)
    s = rng.standard_normal((10, 10)) + (groups[:, None] == groups[None, :])
    res = stats.group_separation(s, groups)
    assert res.n_within == {0: 20, 1: 20} and res.n_cross == {0: 50, 1: 50}
    assert res.prevalence == pytest.approx(10 / 35)
    within, cross = _reference_lists(s, groups, 0, ordered=True)
    y = np.r_[np.ones(within.size), np.zeros(cross.size)]
    assert res.auprc_by_group[0] == pytest.approx(average_precision_score(y, np.r_[within, cross]))


def test_group_separation_nan_rules():
    rng = np.random.default_rng(3)
    groups = _block_design(3)
    x = rng.standard_normal((15, 15))
    s = x + x.T
    full = stats.group_separation(s, groups)
    # a symmetric measure stored once per pair (other triangle NaN) gives the same result
    once = np.where(np.triu(np.ones((15, 15), bool), 1), s, np.nan)
    half = stats.group_separation(once, groups)
    assert half.auprc == pytest.approx(full.auprc) and half.n_within == full.n_within
    # one failed within pair is dropped
    s1 = s.copy()
    s1[0, 1] = s1[1, 0] = np.nan
    assert stats.group_separation(s1, groups).n_within[0] == 9
    # a group without any usable within pair makes the experiment NaN (ReSi's rule)
    s2 = s.copy()
    block = np.ix_(range(5), range(5))
    s2[block] = np.nan
    res = stats.group_separation(s2, groups)
    assert np.isnan(res.auprc_by_group[0]) and np.isfinite(res.auprc_by_group[1])
    assert np.isnan(res.auprc) and np.isnan(res.conformity_rate)


# --------------------------------------------------------------------------------------------------
# correlation test: pairings and Mantel nulls
# --------------------------------------------------------------------------------------------------


def _symmetric(rng, n):
    x = rng.uniform(size=(n, n))
    s = x + x.T
    np.fill_diagonal(s, 0)
    return s


_SCIPY_STATISTICS = {
    "spearman": lambda x, y: sps.spearmanr(x, y).statistic,
    "pearson": lambda x, y: sps.pearsonr(x, y).statistic,
    "kendall": lambda x, y: sps.kendalltau(x, y).statistic,
}


@pytest.mark.parametrize(
    ("method", "alternative"),
    [("spearman", "two-sided"), ("spearman", "greater"), ("spearman", "less"), ("pearson", "two-sided"),
     ("kendall", "two-sided")],
)
def test_pairing_pvalue_equals_scipy_exhaustive(method, alternative):
    # 4 models -> 6 unordered pairs -> 720 pairings: both tests enumerate every one (exact)
    rng = np.random.default_rng(4)
    rep = _symmetric(rng, 4)
    fun = rep + 0.3 * _symmetric(rng, 4)
    res = stats.correlation_test(rep, fun, method, n_resamples=720, seed=0, alternative=alternative)
    iu = np.triu_indices(4, 1)
    x, y = rep[iu], fun[iu]
    ref = sps.permutation_test(
        (x,),
        lambda x: _SCIPY_STATISTICS[method](x, y),
        permutation_type="pairings",
        n_resamples=np.inf,
        alternative=alternative,
    )
    assert res.exact_pairings and res.n_pairs == 6
    assert res.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert res.pvalue_pairings == pytest.approx(ref.pvalue, abs=1e-12)


def test_pairing_pvalue_agrees_with_scipy_monte_carlo():
    rng = np.random.default_rng(7)
    rep = _symmetric(rng, 10)
    fun = rep + 8 * _symmetric(rng, 10)  # weak relation (rho ~ 0.27): p well inside (0, 1)
    n = 4_999
    res = stats.correlation_test(rep, fun, n_resamples=n, seed=1)
    iu = np.triu_indices(10, 1)
    x, y = rep[iu], fun[iu]
    # scipy's vectorised form of Spearman (no ties here): Pearson's r between rank vectors
    ranks_y = sps.rankdata(y)

    def spearman(x, axis):
        return sps.pearsonr(sps.rankdata(x, axis=axis), ranks_y, axis=axis).statistic

    ref = sps.permutation_test((x,), spearman, permutation_type="pairings", n_resamples=n, vectorized=True, rng=2)
    assert res.n_pairs == 45 and not res.exact_pairings
    assert res.statistic == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    assert 0.02 < ref.pvalue < 0.9
    # two independent Monte Carlo estimates of a two-sided p: s.d. of their difference <= 2 sqrt(2 p(1-p)/n)
    tolerance = 5 * 2 * math.sqrt(2 * ref.pvalue * (1 - ref.pvalue) / n)
    assert abs(res.pvalue_pairings - ref.pvalue) < tolerance


def test_hand_example_models_on_a_line():
    # Four models at positions 0, 1, 2, 3; both matrices are |i - j|: rho = 1.
    # Pairings: the 6 pair values (1, 1, 1, 2, 2, 3) keep rho = 1 only under the 3! 2! = 12 shuffles
    # that permute equal values among themselves: p_greater = 12/720 = 1/60, two-sided 1/30.
    # Mantel: a relabelling keeps rho = 1 only if it keeps every |i - j|, i.e. the identity and the
    # reversal i -> 3 - i: p_greater = 2/24 = 1/12, two-sided 2 * 1/12 = 1/6.
    pos = np.arange(4.0)
    d = np.abs(pos[:, None] - pos[None, :])
    two = stats.correlation_test(d, d, n_resamples=9_999, seed=0)
    greater = stats.correlation_test(d, d, n_resamples=9_999, seed=0, alternative="greater")
    assert two.statistic == pytest.approx(1.0)
    assert two.exact_pairings and two.exact_mantel
    assert greater.pvalue_pairings == pytest.approx(1 / 60)
    assert two.pvalue_pairings == pytest.approx(1 / 30)
    assert greater.pvalue_mantel == pytest.approx(1 / 12)
    assert two.pvalue_mantel == pytest.approx(1 / 6)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_mantel_pvalue_equals_enumeration_of_24_relabellings(alternative):
    rng = np.random.default_rng(6)
    rep = _symmetric(rng, 4)
    fun = rep + 0.5 * _symmetric(rng, 4)
    iu = np.triu_indices(4, 1)
    observed = sps.spearmanr(rep[iu], fun[iu]).statistic
    null = np.array([sps.spearmanr(rep[iu], fun[np.ix_(p, p)][iu]).statistic for p in itertools.permutations(range(4))])
    tol = 1e-12
    p_greater = np.mean(null >= observed - tol)
    p_less = np.mean(null <= observed + tol)
    expected = {"greater": p_greater, "less": p_less, "two-sided": min(1.0, 2 * min(p_less, p_greater))}[alternative]
    res = stats.correlation_test(rep, fun, n_resamples=9_999, seed=0, alternative=alternative)
    assert res.exact_mantel
    assert res.pvalue_mantel == pytest.approx(expected, abs=1e-12)


def test_mantel_with_nan_in_functional_matrix_against_loop():
    rng = np.random.default_rng(7)
    rep = _symmetric(rng, 5)
    fun = rep + 0.5 * _symmetric(rng, 5)
    fun[0, 1] = fun[1, 0] = np.nan  # moves with the labels: the usable pairs differ per relabelling
    res = stats.correlation_test(rep, fun, n_resamples=9_999, seed=0, alternative="greater")
    iu = np.triu_indices(5, 1)

    def rho(f):
        keep = ~np.isnan(f)
        return sps.spearmanr(rep[iu][keep], f[keep]).statistic

    observed = rho(fun[iu])
    null = np.array([rho(fun[np.ix_(p, p)][iu]) for p in itertools.permutations(range(5))])
    assert res.n_pairs == 9 and res.statistic == pytest.approx(observed)
    assert res.pvalue_mantel == pytest.approx(np.mean(null >= observed - 1e-12), abs=1e-12)


def test_correlation_test_monte_carlo_behaviour():
    rng = np.random.default_rng(8)
    rep = _symmetric(rng, 10)
    strong = stats.correlation_test(rep, rep + 0.05 * _symmetric(rng, 10), n_resamples=999, seed=3)
    assert not strong.exact_pairings and not strong.exact_mantel
    # nothing in either null reaches rho: two-sided p = 2 (0 + 1) / (999 + 1)
    assert strong.pvalue_pairings == pytest.approx(2 / 1000)
    assert strong.pvalue_mantel == pytest.approx(2 / 1000)
    unrelated = stats.correlation_test(rep, _symmetric(rng, 10), n_resamples=999, seed=3)
    assert unrelated.pvalue_mantel > 0.01 and unrelated.pvalue_pairings > 0.01


def test_correlation_test_is_seeded_and_handles_nan_and_asymmetry():
    rng = np.random.default_rng(9)
    rep = _symmetric(rng, 10)
    fun = rep + 1.5 * _symmetric(rng, 10)
    a = stats.correlation_test(rep, fun, n_resamples=999, seed=11)
    b = stats.correlation_test(rep, fun, n_resamples=999, seed=np.random.default_rng(11))
    assert a == b
    rep_nan = rep.copy()
    rep_nan[2, 3] = rep_nan[3, 2] = np.nan
    c = stats.correlation_test(rep_nan, fun, n_resamples=999, seed=11)
    iu = np.triu_indices(10, 1)
    keep = ~np.isnan(rep_nan[iu])
    assert c.n_pairs == 44
    assert c.statistic == pytest.approx(sps.spearmanr(rep_nan[iu][keep], fun[iu][keep]).statistic)
    # an asymmetric representational matrix: all 90 ordered pairs
    d = stats.correlation_test(rep + 0.01 * rng.uniform(size=(10, 10)), fun, n_resamples=99, seed=0)
    assert d.n_pairs == 90


# --------------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------------


def _layer_distance(n):
    i = np.arange(n)
    return np.abs(i[:, None] - i[None, :]).astype(float)


def test_layer_monotonicity_perfect_and_reversed():
    n = 6
    sim = 1 / (1 + _layer_distance(n))
    res = stats.layer_monotonicity(sim)
    assert res.score == pytest.approx(1.0)
    assert res.violation_rate == 0.0
    # triples per layer i: C(#forward, 2) + C(#backward, 2)
    assert res.n_triples == sum(math.comb(n - 1 - i, 2) + math.comb(i, 2) for i in range(n))
    assert np.isnan(res.forward[-1]) and np.isnan(res.forward[-2]) and np.isnan(res.backward[0])
    reversed_ = stats.layer_monotonicity(_layer_distance(n))  # "similarity" grows with distance
    assert reversed_.score == pytest.approx(-1.0)
    assert reversed_.violation_rate == 1.0
    # as a distance the same matrix is perfectly monotone
    assert stats.layer_monotonicity(_layer_distance(n), higher_is_more_similar=False).score == pytest.approx(1.0)


def test_layer_monotonicity_ties_are_not_violations():
    res = stats.layer_monotonicity(np.ones((5, 5)))
    assert np.isnan(res.score)  # constant similarities: Spearman undefined everywhere
    assert res.violation_rate == 0.0 and res.n_triples > 0


def test_layer_monotonicity_against_loop_reference():
    rng = np.random.default_rng(10)
    n = 7
    sim = 1 / (1 + _layer_distance(n)) + 0.15 * rng.standard_normal((n, n))
    sim[2, 5] = np.nan
    corrs, violations, triples = [], 0, 0
    for i in range(n):
        for js in (range(i + 1, n), range(i - 1, -1, -1)):  # nearest first
            js = [j for j in js if not np.isnan(sim[i, j])]
            if len(js) >= 2:
                corrs.append(-sps.spearmanr([sim[i, j] for j in js], [abs(j - i) for j in js]).statistic)
            for p, q in itertools.combinations(js, 2):
                triples += 1
                violations += sim[i, p] < sim[i, q]
    res = stats.layer_monotonicity(sim)
    assert res.score == pytest.approx(np.mean(corrs))
    assert res.n_triples == triples and res.n_violations == violations


def test_layer_identification_identity_and_shuffled():
    rng = np.random.default_rng(11)
    n = 6
    sim = 0.5 * np.eye(n) + 0.3 * rng.uniform(size=(n, n))
    assert stats.layer_identification(sim, symmetric_measure=True).accuracy == 1.0
    derangement = np.roll(np.arange(n), 1)
    shuffled = stats.layer_identification(sim[:, derangement], symmetric_measure=True)
    assert shuffled.accuracy == 0.0
    np.testing.assert_array_equal(shuffled.best_match, np.argsort(derangement))
    two_fixed = np.array([0, 1, 3, 4, 5, 2])  # layers 0 and 1 stay in place
    assert stats.layer_identification(sim[:, two_fixed], symmetric_measure=True).accuracy == pytest.approx(2 / 6)
    # a distance: 1 - sim has the same argmin structure
    assert stats.layer_identification(1 - sim, True, higher_is_more_similar=False).accuracy == 1.0


def test_layer_identification_ties_and_nan():
    sim = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.2], [np.nan, np.nan, np.nan]])
    res = stats.layer_identification(sim, symmetric_measure=True)
    np.testing.assert_array_equal(res.per_layer, [0.5, 1.0, np.nan])
    assert res.accuracy == pytest.approx(0.75)  # (0.5 + 1) / 2, the empty row excluded
    assert res.accuracy_strict == pytest.approx(0.5)
    np.testing.assert_array_equal(res.n_tied, [2, 1, 0])


def test_layer_identification_symmetrisation():
    # S[i, j] = m(A_i, B_j) of an asymmetric measure: row 0 alone points at layer 1
    s = np.array([[0.5, 0.6, 0.0], [0.1, 0.9, 0.0], [0.0, 0.0, 1.0]])
    assert stats.layer_identification(s, symmetric_measure=True).accuracy == pytest.approx(2 / 3)
    # S + S^T: row 0 = [1.0, 0.7, 0.0] -> correct
    assert stats.layer_identification(s, symmetric_measure=False).accuracy == 1.0
    # with the reverse direction R[j, i] = m(B_j, A_i): T = S + R^T
    reverse = np.array([[0.0, 0.0, 0.0], [0.9, 0.9, 0.0], [0.0, 0.0, 1.0]])  # T[0] = [0.5, 1.5, 0]
    res = stats.layer_identification(s, False, similarity_reverse=reverse)
    np.testing.assert_array_equal(res.best_match, [1, 1, 2])
    with pytest.raises(ValueError):
        stats.layer_identification(s, True, similarity_reverse=reverse)


# --------------------------------------------------------------------------------------------------
# bootstrap, IQM
# --------------------------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_under_a_seed():
    x = np.random.default_rng(12).standard_normal(20)
    a = stats.bootstrap_ci(x, n_boot=500, seed=7)
    b = stats.bootstrap_ci(x, n_boot=500, seed=np.random.default_rng(7))
    c = stats.bootstrap_ci(x, n_boot=500, seed=8)
    np.testing.assert_array_equal(a.distribution, b.distribution)
    assert (a.low, a.high) == (b.low, b.high)
    assert not np.array_equal(a.distribution, c.distribution)
    assert a.estimate == pytest.approx(x.mean())
    assert a.low < a.estimate < a.high
    with pytest.raises(TypeError):
        stats.bootstrap_ci(x, seed=None)


def test_bootstrap_coverage_on_normal_data():
    rng = np.random.default_rng(13)
    hits = 0
    n_experiments = 250
    for k in range(n_experiments):
        x = rng.normal(loc=2.0, size=40)
        ci = stats.bootstrap_ci(x, n_boot=400, seed=k)
        hits += ci.low <= 2.0 <= ci.high
    # a 95% percentile interval of a mean at n = 40 covers about 93-95%; s.e. of the rate ~1.5%
    assert 0.88 <= hits / n_experiments <= 0.99


def test_bootstrap_dataframe_keeps_units_and_strata():
    # two cells ("tasks"): A has 3 seeds with 2 rows each, B has 5 seeds with 1 row
    df = pd.DataFrame(
        {
            "cell": ["A"] * 6 + ["B"] * 5,
            "seed": [0, 0, 1, 1, 2, 2, 0, 1, 2, 3, 4],
            "value": np.arange(11, dtype=float),
        }
    )

    def shape_of_draw(d: pd.DataFrame) -> np.ndarray:
        rows_per_cell = d.groupby("cell").size().reindex(["A", "B"]).to_numpy()
        a = d[d["cell"] == "A"]
        # a seed's two rows in A always come together: value pairs (2s, 2s + 1)
        whole_units = np.all(a.groupby("seed")["value"].apply(lambda v: (v % 2 == 0).sum() == (v % 2 == 1).sum()))
        return np.r_[rows_per_cell, whole_units]

    res = stats.bootstrap_ci(df, shape_of_draw, n_boot=100, seed=0, unit_col="seed", strata_cols=["cell"])
    assert (res.distribution == np.array([6, 5, 1])).all()
    # without unit_col every row is a unit
    assert (stats.bootstrap_ci(df, len, n_boot=20, seed=0).distribution == 11).all()

    # a Series-valued statistic (mean per cell) gives Series bounds with the same index
    means = stats.bootstrap_ci(df, lambda d: d.groupby("cell")["value"].mean(), n_boot=200, seed=1,
                               unit_col="seed", strata_cols=["cell"])
    assert list(means.low.index) == ["A", "B"]
    assert (means.low <= means.estimate).all() and (means.estimate <= means.high).all()
    assert means.low["B"] >= 5.0 and means.high["A"] <= 5.0  # resampled means stay inside each cell's range


def test_iqm_equals_trim_mean():
    assert stats.iqm(np.arange(1, 9)) == pytest.approx(4.5)  # drop 1, 2 and 7, 8: mean(3, 4, 5, 6)
    x = np.random.default_rng(14).standard_normal((7, 13))
    assert stats.iqm(x) == pytest.approx(sps.trim_mean(x, 0.25, axis=None))
    assert stats.iqm([1.0, np.nan, 2.0, 3.0, 4.0]) == pytest.approx(sps.trim_mean([1.0, 2.0, 3.0, 4.0], 0.25))
    assert np.isnan(stats.iqm([]))


# --------------------------------------------------------------------------------------------------
# ranks
# --------------------------------------------------------------------------------------------------


def _quality_table():
    return pd.DataFrame(
        {
            "test": ["T1"] * 8,
            "cell": ["a"] * 4 + ["b"] * 4,
            "measure": ["m1", "m2", "m3", "m4"] * 2,
            "value": [0.9, 0.9, 0.5, np.nan, 0.1, 0.3, 0.3, 0.2],
        }
    )


def test_resi_ranks_ties_min_and_nan_unranked():
    ranked = stats.resi_ranks(_quality_table(), "value", ["test", "cell"])
    # cell a: 0.9, 0.9 tie for 1; 0.5 -> 3; NaN unranked.  cell b: 0.3, 0.3 -> 1; 0.2 -> 3; 0.1 -> 4
    np.testing.assert_array_equal(ranked["rank"], [1, 1, 3, np.nan, 4, 1, 1, 3])
    low = stats.resi_ranks(_quality_table(), "value", ["test", "cell"], higher_is_better=False)
    # cell a ascending: 0.5 -> 1; 0.9, 0.9 -> 2.  cell b: 0.1 -> 1; 0.2 -> 2; 0.3, 0.3 -> 3
    np.testing.assert_array_equal(low["rank"], [2, 2, 1, np.nan, 1, 3, 3, 2])
    with pytest.raises(ValueError):
        stats.resi_ranks(pd.concat([_quality_table()] * 2), "value", ["test", "cell"])


def test_aggregate_ranks_median_over_cells_then_mean_over_tests():
    rows = []
    # T1: three experiments with one rank per measure
    for cell, (r1, r2, r3) in {"c1": (1, 2, np.nan), "c2": (2, 1, 3), "c3": (1, 2, 3)}.items():
        rows += [("T1", cell, None, "m1", r1), ("T1", cell, None, "m2", r2), ("T1", cell, None, "m3", r3)]
    # T6: one experiment, ranks per model are averaged first
    for model, (r1, r2, r3) in {"s0": (2, 1, 3), "s1": (1, 2, np.nan)}.items():
        rows += [("T6", "d1", model, "m1", r1), ("T6", "d1", model, "m2", r2), ("T6", "d1", model, "m3", r3)]
    ranked = pd.DataFrame(rows, columns=["test", "cell", "model", "measure", "rank"])
    out = stats.aggregate_ranks(ranked, ["cell"]).set_index("measure")
    # m1: T1 median(1, 2, 1) = 1, T6 mean(2, 1) = 1.5 -> (1 + 1.5)/2 = 1.25; pooled [1, 2, 1, 1.5]
    # m2: T1 median(2, 1, 2) = 2, T6 1.5 -> 1.75; pooled [2, 1, 2, 1.5]
    # m3: T1 median(3, 3) = 3 (c1 unranked), T6 mean(3) = 3 -> 3
    assert list(out.index) == ["m1", "m2", "m3"]
    np.testing.assert_allclose(out["rank_score"], [1.25, 1.75, 3.0])
    np.testing.assert_allclose(out["median_rank"], [1.25, 1.75, 3.0])
    np.testing.assert_allclose(out["mean_rank"], [1.375, 1.625, 3.0])
    np.testing.assert_array_equal(out["n_ranked"], [4, 4, 3])
    np.testing.assert_array_equal(out["n_unranked"], [0, 0, 1])


def _ranked_table(n_tests: int, n_cells: int, n_measures: int, seed: int) -> pd.DataFrame:
    """Continuous pseudo-ranks per (test, cell, measure): measure i centred at i + test offset."""
    rng = np.random.default_rng(seed)
    rows = [(f"T{t}", f"c{c}", f"m{m}", m + 0.5 * t + rng.normal(0, 1 + t % 3))
            for t in range(n_tests) for c in range(n_cells) for m in range(n_measures)]
    return pd.DataFrame(rows, columns=["test", "cell", "measure", "rank"])


def test_rank_bootstrap_within_tests_matches_scipy_multi_sample_bootstrap():
    # Tests fixed, cells resampled within each test independently = scipy's bootstrap of several
    # independent samples (paired=False) with statistic "mean over samples of each sample's median".
    ranked = _ranked_table(n_tests=4, n_cells=7, n_measures=3, seed=1)
    out = stats.rank_score_bootstrap(ranked, ["cell"], n_boot=40_000, seed=2, resample_tests=False)
    scores = out.scores.set_index("measure")
    np.testing.assert_allclose(scores["rank_score"], stats.aggregate_ranks(ranked, ["cell"]).set_index("measure")
                               .loc[scores.index, "rank_score"])
    for measure in ["m0", "m1", "m2"]:
        part = ranked[ranked["measure"].eq(measure)]
        samples = [g["rank"].to_numpy() for _, g in part.groupby("test")]
        ref = sps.bootstrap(samples, lambda *s, axis: np.mean([np.median(x, axis=axis) for x in s], axis=0),
                            paired=False, vectorized=True, n_resamples=40_000, method="percentile", rng=3)
        sd = ref.standard_error
        assert out.distribution[measure].std(ddof=1) == pytest.approx(sd, rel=0.03)
        assert scores.loc[measure, "rank_score_ci_low"] == pytest.approx(ref.confidence_interval.low, abs=0.08 * sd)
        assert scores.loc[measure, "rank_score_ci_high"] == pytest.approx(ref.confidence_interval.high, abs=0.08 * sd)


def test_rank_bootstrap_over_tests_matches_scipy_one_sample_bootstrap():
    # One cell per test: resampling tests = scipy's one-sample bootstrap of the per-test ranks' mean.
    ranked = _ranked_table(n_tests=12, n_cells=1, n_measures=2, seed=4)
    out = stats.rank_score_bootstrap(ranked, ["cell"], n_boot=40_000, seed=5)
    scores = out.scores.set_index("measure")
    for measure in ["m0", "m1"]:
        values = ranked.loc[ranked["measure"].eq(measure), "rank"].to_numpy()
        ref = sps.bootstrap((values,), np.mean, n_resamples=40_000, method="percentile", rng=6)
        sd = ref.standard_error
        assert out.distribution[measure].std(ddof=1) == pytest.approx(sd, rel=0.03)
        assert scores.loc[measure, "rank_score_ci_low"] == pytest.approx(ref.confidence_interval.low, abs=0.08 * sd)
        assert scores.loc[measure, "rank_score_ci_high"] == pytest.approx(ref.confidence_interval.high, abs=0.08 * sd)
    # the paired difference: scipy's paired bootstrap of the per-test rank differences
    d = (ranked[ranked["measure"].eq("m0")]["rank"].to_numpy() - ranked[ranked["measure"].eq("m1")]["rank"].to_numpy())
    ref = sps.bootstrap((d,), np.mean, n_resamples=40_000, method="percentile", rng=7)
    row = out.differences.iloc[0]
    assert (row["measure_a"], row["measure_b"]) == ("m0", "m1")
    assert row["difference"] == pytest.approx(d.mean())
    assert row["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=0.08 * ref.standard_error)
    assert row["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=0.08 * ref.standard_error)


def test_rank_bootstrap_two_levels_widens_and_pairwise_significance():
    ranked = _ranked_table(n_tests=6, n_cells=3, n_measures=4, seed=8)
    # m9 is m0 exactly (identical ranks in every cell): never significantly different
    # m8 is m3 ranked 10 places lower in every cell: always significantly worse than m0
    ranked = pd.concat([ranked, ranked[ranked["measure"].eq("m0")].assign(measure="m9"),
                        ranked[ranked["measure"].eq("m3")].assign(measure="m8", rank=lambda d: d["rank"] + 10)],
                       ignore_index=True)
    fixed = stats.rank_score_bootstrap(ranked, ["cell"], n_boot=4000, seed=0, resample_tests=False)
    both = stats.rank_score_bootstrap(ranked, ["cell"], n_boot=4000, seed=0)
    width = lambda r: (r.scores["rank_score_ci_high"] - r.scores["rank_score_ci_low"]).to_numpy()  # noqa: E731
    assert (width(both) > width(fixed)).all()  # tests vary a lot here: resampling them widens every CI
    again = stats.rank_score_bootstrap(ranked, ["cell"], n_boot=4000, seed=0)
    pd.testing.assert_frame_equal(both.scores, again.scores)  # seeded
    diffs = both.differences.set_index(["measure_a", "measure_b"])
    assert len(diffs) == 6 * 5 // 2
    assert diffs.loc[("m0", "m9"), "p_value"] == 1.0 and not diffs.loc[("m0", "m9"), "significant"]
    assert diffs.loc[("m0", "m8"), "significant"] and diffs.loc[("m0", "m8"), "ci_high"] < 0
    # m1 vs m2 (centres 1 and 2, noise sd up to 3 per cell): not distinguishable with 3 cells x 6 tests
    assert not diffs.loc[("m1", "m2"), "significant"]
    # p-values against the replicate counts, and BH against scipy
    d = both.distribution["m0"] - both.distribution["m3"]
    assert diffs.loc[("m0", "m3"), "p_value"] == pytest.approx(
        min(1, 2 * min((d <= 0).sum() + 1, (d >= 0).sum() + 1) / (len(d) + 1)))
    np.testing.assert_allclose(both.differences["p_adjusted"], sps.false_discovery_control(both.differences["p_value"]))
    with pytest.raises(ValueError, match="level"):
        stats.rank_score_bootstrap(ranked, ["cell"], seed=0, level=1.5)
    one = stats.rank_score_bootstrap(ranked[ranked["measure"].eq("m0")], ["cell"], n_boot=100, seed=0)
    assert len(one.scores) == 1 and one.differences.empty  # a single measure: an interval, no pairs


# --------------------------------------------------------------------------------------------------
# dose-response
# --------------------------------------------------------------------------------------------------


def test_dose_response_hand_example():
    levels = [0, 0, 1, 1, 2, 2]
    scores = [1.0, 0.8, 0.6, 0.5, 0.2, 0.0]
    res = stats.dose_response(levels, scores)
    # lowest level mean 0.9, highest 0.1; both groups have SS = 0.02, pooled sd = sqrt(0.04 / 2)
    # d = 0.8 / sqrt(0.02) = 4 sqrt(2)
    assert res.effect_size == pytest.approx(4 * math.sqrt(2))
    assert res.spearman == pytest.approx(sps.spearmanr(levels, scores).statistic)
    assert res.spearman < -0.9 and res.n == 6
    as_distance = stats.dose_response(levels, -np.array(scores), higher_is_more_similar=False)
    assert as_distance == res
    with_nan = stats.dose_response(levels + [1], scores + [np.nan])
    assert with_nan == res
    assert np.isnan(stats.dose_response([0, 1], [1.0, 0.5]).effect_size)  # no spread to pool


def test_correlation_statistic_is_the_statistic_of_the_test():
    rng = np.random.default_rng(11)
    for symmetric in (True, False):
        for _ in range(20):
            rep, fun = rng.random((6, 6)), rng.random((6, 6))
            if symmetric:
                rep, fun = rep + rep.T, fun + fun.T
            rep[0, 3] = rep[3, 0] = np.nan
            expected = stats.correlation_test(rep, fun, n_resamples=5, seed=0).statistic
            assert stats.correlation_statistic(rep, fun) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(stats.correlation_statistic(np.ones((2, 2)), np.ones((2, 2))))
