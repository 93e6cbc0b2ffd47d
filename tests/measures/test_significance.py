"""Permutation null and bootstrap CI (measures.significance) against independent paths.

The permutation test is checked against a brute-force loop of ``measures.compute`` on explicitly
permuted inputs (the documented seed stream), for the prepared-matrix fast paths and the generic path;
the bootstrap against ``scipy.stats.bootstrap`` with the same generator.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import measures
from tests.measures.conftest import example_inputs, probabilities, representations


def _brute_force_null(name, x, y, n, seed, **params):
    rng = np.random.default_rng(seed)
    return np.array([measures.compute(name, x, y[rng.permutation(len(y))], **params) for _ in range(n)])


def _brute_force_p(value, null, higher_is_more_similar):
    tol = 100 * np.finfo(float).eps * abs(value)
    hits = sum((v >= value - tol) if higher_is_more_similar else (v <= value + tol) for v in null)
    return (1 + hits) / (1 + len(null))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("cka_linear", {}),
        ("cka_linear_debiased", {}),
        ("cka_rbf", {}),
        ("cka_rbf", {"fraction": 0.8, "median_over": "upper_triangle"}),
        ("distance_correlation", {}),
        ("distance_correlation", {"estimator": "unbiased"}),
        ("procrustes_orthogonal", {}),  # a distance: the generic path, p counts null <= value
        ("rsa", {}),
        ("knn_jaccard", {}),
    ],
)
def test_permutation_matches_brute_force(rng, name, params):
    x, y = representations(rng, 40, 6, 5)
    y = 0.15 * y + 0.85 * rng.standard_normal(y.shape)  # a weak relation, so the p-value is not at its floor
    result = measures.permutation_test(name, x, y, n_permutations=60, seed=7, **params)
    null = _brute_force_null(name, x, y, 60, 7, **params)
    assert result.value == pytest.approx(measures.compute(name, x, y, **params), abs=1e-12)
    np.testing.assert_allclose(result.null, null, rtol=1e-9, atol=1e-10)
    higher = measures.info(name).higher_is_more_similar
    assert result.p_value == pytest.approx(_brute_force_p(result.value, null, higher))
    assert result.higher_is_more_similar == higher
    assert result.direction == ("greater" if higher else "less")
    assert result.n_permutations == 60
    assert result.null_quantiles[0.5] == pytest.approx(np.quantile(null, 0.5), abs=1e-9)
    assert set(result.null_quantiles) == {0.05, 0.5, 0.95}


def test_permutation_separates_related_from_independent(rng):
    x, y = representations(rng, 60, 8, 6)
    related = measures.permutation_test("cka_linear", x, y, n_permutations=99)
    independent = measures.permutation_test("cka_linear", x, rng.standard_normal(y.shape), n_permutations=99)
    assert related.p_value == pytest.approx(0.01)  # nothing in the null reaches the related score
    assert independent.p_value > 0.05


def test_permutation_on_functional_outputs_with_labels(rng):
    a = probabilities(rng, 50, 4)
    b = 0.5 * a + 0.5 * probabilities(rng, 50, 4)
    labels = rng.integers(0, 4, size=50)
    result = measures.permutation_test("disagreement_error_corrected", a, b, n_permutations=30, seed=3, labels=labels)
    expected = _brute_force_null("disagreement_error_corrected", a, b, 30, 3, labels=labels)
    np.testing.assert_allclose(result.null, expected)
    result = measures.permutation_test("jsd", a, b, n_permutations=30, seed=3)
    np.testing.assert_allclose(result.null, _brute_force_null("jsd", a, b, 30, 3))
    assert result.p_value == pytest.approx(_brute_force_p(result.value, result.null, False))


def test_permutation_of_preactivations(rng):
    meta = measures.info("activation_region")
    (xs, ys), _ = example_inputs(meta, rng, n=30)
    result = measures.permutation_test("activation_region", xs, ys, n_permutations=5, seed=1)
    perm_rng = np.random.default_rng(1)
    for v in result.null:
        p = perm_rng.permutation(30)
        assert v == pytest.approx(measures.compute("activation_region", xs, [y[p] for y in ys]))


def test_undefined_measure_propagates_with_reason(rng):
    x = rng.standard_normal((30, 4))
    with pytest.raises(measures.UndefinedMeasureError, match="constant"):
        measures.permutation_test("cka_linear", x, np.ones((30, 3)), n_permutations=5)
    with pytest.raises(measures.UndefinedMeasureError, match="D >= N|canonical"):
        measures.bootstrap_ci("cca_mean_rho", x[:4], rng.standard_normal((4, 6)), n_resamples=5)


def test_bad_arguments_are_named(rng):
    x, y = representations(rng, 20, 4, 3)
    with pytest.raises(ValueError, match="n_permutations"):
        measures.permutation_test("cka_linear", x, y, n_permutations=0)
    with pytest.raises(ValueError, match="'fleiss_kappa'.*outputs_group"):
        measures.permutation_test("fleiss_kappa", x, y)
    with pytest.raises(ValueError, match="method"):
        measures.bootstrap_ci("cka_linear", x, y, method="bca")
    with pytest.raises(ValueError, match="confidence"):
        measures.bootstrap_ci("cka_linear", x, y, confidence=1.5)
    with pytest.raises(ValueError, match="row counts differ"):
        measures.permutation_test("cka_linear", x, y[:10])


@pytest.mark.parametrize("method", ["percentile", "basic"])
def test_bootstrap_matches_scipy(rng, method):
    x, y = representations(rng, 35, 5, 4)

    def statistic(idx):
        return measures.compute("cka_linear", x[idx], y[idx])

    reference = scipy.stats.bootstrap(
        (np.arange(35),),
        statistic,
        paired=True,
        vectorized=False,
        n_resamples=60,
        confidence_level=0.9,
        method=method,
        rng=np.random.default_rng(11),
    )
    result = measures.bootstrap_ci("cka_linear", x, y, n_resamples=60, confidence=0.9, seed=11, method=method)
    np.testing.assert_allclose(result.distribution, reference.bootstrap_distribution, rtol=1e-12)
    assert result.low == pytest.approx(reference.confidence_interval.low, rel=1e-12)
    assert result.high == pytest.approx(reference.confidence_interval.high, rel=1e-12)
    assert result.value == pytest.approx(measures.compute("cka_linear", x, y))
    assert result.low <= result.value <= result.high or method == "basic"


def test_bootstrap_resamples_labels_with_rows(rng):
    a = probabilities(rng, 40, 3)
    b = 0.5 * a + 0.5 * probabilities(rng, 40, 3)
    labels = rng.integers(0, 3, size=40)
    result = measures.bootstrap_ci("disagreement_error_corrected", a, b, n_resamples=20, seed=2, labels=labels)
    idx = np.random.default_rng(2).integers(0, 40, (20, 40))
    expected = [measures.compute("disagreement_error_corrected", a[i], b[i], labels=labels[i]) for i in idx]
    np.testing.assert_allclose(result.distribution, expected)


def test_stochastic_measure_seed_via_measure_params(rng):
    x, y = representations(rng, 30, 4, 4)
    stochastic = [n for n in measures.names(inputs="representations") if measures.info(n).stochastic]
    name = stochastic[0]
    result = measures.permutation_test(name, x, y, n_permutations=3, seed=5, measure_params={"seed": 9})
    assert result.value == measures.compute(name, x, y, seed=9)
