"""Descriptive statistics against closed forms written here, scipy's logsumexp and skdim's TwoNN."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import skdim
from scipy.spatial.distance import pdist, squareform
from scipy.special import logsumexp
from scipy.stats import ortho_group
from sklearn.metrics.pairwise import cosine_similarity

import measures
from measures import UndefinedMeasureError
from measures import statistics as stats_module


def pair(rng: np.random.Generator, n: int, d1: int, d2: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, d1)) * np.linspace(2.0, 0.5, d1) + rng.standard_normal(d1)
    y = np.tanh(x @ rng.standard_normal((d1, d2))) + 0.3 * rng.standard_normal((n, d2))
    return x, y


# ---------------------------------------------------------------- magnitude


def test_magnitude_numpy_closed_form():
    x, y = pair(np.random.default_rng(0), 50, 7, 4)
    expected = abs(np.linalg.norm(x.mean(axis=0)) - np.linalg.norm(y.mean(axis=0)))
    assert measures.compute("magnitude_difference", x, y) == pytest.approx(expected, rel=1e-13)


def test_magnitude_constructed_and_extreme_magnitudes():
    x = np.array([[3.0, 4.0], [3.0, 4.0]])  # mean (3, 4): magnitude 5
    y = np.array([[1.0, 0.0], [-1.0, 0.0]])  # mean 0: magnitude 0
    assert measures.compute("magnitude_difference", x, y) == 5.0
    # 5·2^1000 is finite, but the squares of the raw entries are not: the exact rescale keeps it exact
    assert measures.compute("magnitude_difference", x * 2.0**1000, y) == 5.0 * 2.0**1000
    assert measures.compute("magnitude_difference", x * 2.0**-1060, y) == 5.0 * 2.0**-1060  # subnormal
    with pytest.raises(UndefinedMeasureError, match="floating-point range"):
        measures.compute("magnitude_difference", np.full((3, 4), 1.5e308), y[:1].repeat(3, axis=0))
    f32 = measures.compute("magnitude_difference", x.astype(np.float32), y.astype(np.float32))
    assert f32 == 5.0  # small integers are exact in float32


# ---------------------------------------------------------------- concentricity


def literal_nrmse(a: np.ndarray, b: np.ndarray) -> float:
    """The per-instance NRMSE formula term by term, exactly: with m = (a + b)/2, the squared ratio
    ((a − m)² + (b − m)²)/2 / (a − b)² in rational arithmetic (0/0 = 0), its square root taken in floats."""
    from fractions import Fraction

    terms = []
    for ai, bi in zip(a.tolist(), b.tolist()):
        fa, fb = Fraction(ai), Fraction(bi)
        if fa == fb:
            terms.append(0.0)
            continue
        mean = (fa + fb) / 2
        terms.append(math.sqrt(((fa - mean) ** 2 + (fb - mean) ** 2) / 2 / (fa - fb) ** 2))
    return float(np.mean(terms))


def test_magnitude_nrmse_formula():
    """form="nrmse" (ReSi's magnitude_nrmse) against the literal formula on the instance norms, with some
    instances of equal norm (0 terms: sign flips and zero rows)."""
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((60, 5)), rng.standard_normal((60, 5))
    # same norms, bit for bit in any summation order: signs flipped (a permutation of the entries would
    # keep the norm in exact arithmetic only; its round-off may differ, which this step function sees)
    y[:20] = -x[:20]
    y[20:25] = 0.0
    x[20:25] = 0.0  # zero rows on both sides: equal norms
    norms_x, norms_y = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    expected = literal_nrmse(norms_x, norms_y)
    assert measures.compute("magnitude_difference", x, y, form="nrmse") == pytest.approx(expected, abs=1e-15)
    assert expected == pytest.approx(0.5 * np.mean(norms_x != norms_y), abs=1e-15)
    assert measures.compute("magnitude_difference", x, x, form="nrmse") == 0.0
    assert measures.compute("magnitude_difference", 1e200 * x, 1e200 * y, form="nrmse") == pytest.approx(expected)
    assert measures.compute("magnitude_difference", 1e-170 * x, 1e-170 * y, form="nrmse") == pytest.approx(expected)
    # one fixed point of the step function: every norm differs, 1/2 whatever the inputs
    assert measures.compute("magnitude_difference", x[25:], 2.0 * x[25:], form="nrmse") == 0.5
    with pytest.raises(ValueError, match="magnitude_difference.*form must be one of"):
        measures.compute("magnitude_difference", x, y, form="rmse")


def test_concentricity_nrmse_formula():
    """form="nrmse" (ReSi's concentricity_nrmse) against the literal formula on cos(x_i, x̄) from sklearn."""
    rng = np.random.default_rng(13)
    x, y = rng.standard_normal((50, 6)) + 1.0, rng.standard_normal((50, 4)) + 0.5
    alpha = cosine_similarity(x, x.mean(axis=0, keepdims=True))[:, 0]
    beta = cosine_similarity(y, y.mean(axis=0, keepdims=True))[:, 0]
    expected = literal_nrmse(alpha, beta)
    assert measures.compute("concentricity_difference", x, y, form="nrmse") == pytest.approx(expected, abs=1e-15)
    assert measures.compute("concentricity_difference", x, x, form="nrmse") == 0.0
    # tiny magnitudes (row squares underflow) take the rescaled route: the same cosines up to round-off
    assert measures.compute("concentricity_difference", 1e-170 * x, y, form="nrmse") == pytest.approx(expected)
    with pytest.raises(UndefinedMeasureError, match="zero row"):
        measures.compute("concentricity_difference", np.vstack([x[:-1], np.zeros((1, 6))]), y, form="nrmse")
    with pytest.raises(UndefinedMeasureError, match="mean instance is zero"):
        measures.compute("concentricity_difference", x - x.mean(axis=0), y, form="nrmse")


def test_concentricity_numpy_closed_form():
    x, y = pair(np.random.default_rng(1), 40, 6, 9)

    def c(z):
        return cosine_similarity(z, z.mean(axis=0, keepdims=True)).mean()

    expected = abs(c(x) - c(y))
    assert measures.compute("concentricity_difference", x, y) == pytest.approx(expected, abs=1e-14)
    assert measures.compute("concentricity_difference", x * 1e300, y * 1e-300) == pytest.approx(expected, abs=1e-14)
    assert measures.compute("concentricity_difference", x.astype(np.float32), y) == pytest.approx(expected, abs=1e-6)


def test_concentricity_constructed():
    x = np.array([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0], [3.0, 6.0]])  # one ray: every cosine to the mean is 1
    y = np.array([[1.0, 1.0], [1.0, -1.0], [2.0, 2.0], [2.0, -2.0]])  # mean (1.5, 0): every cosine is 1/√2
    assert measures.compute("concentricity_difference", x, y) == pytest.approx(1 - 1 / np.sqrt(2), abs=1e-15)


def test_concentricity_undefined_cases():
    rng = np.random.default_rng(2)
    x, y = pair(rng, 30, 5, 5)
    with pytest.raises(UndefinedMeasureError, match="mean instance is zero"):
        measures.compute("concentricity_difference", x - x.mean(axis=0), y)  # column-centred: mean is rounding noise
    zero_row = y.copy()
    zero_row[3] = 0.0
    with pytest.raises(UndefinedMeasureError, match="zero row"):
        measures.compute("concentricity_difference", x, zero_row)


# ---------------------------------------------------------------- uniformity


def uniformity_oracle(x: np.ndarray, t: float, normalize: bool, include_diagonal: bool) -> float:
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sq = squareform(pdist(x, "sqeuclidean"))
    n = len(x)
    if include_diagonal:
        return logsumexp(-t * sq) - np.log(n * n)
    return logsumexp(-t * sq[~np.eye(n, dtype=bool)]) - np.log(n * (n - 1))


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("include_diagonal", [False, True])
@pytest.mark.parametrize("t", [2.0, 0.5])
def test_uniformity_matches_scipy_logsumexp(normalize, include_diagonal, t):
    x, y = pair(np.random.default_rng(3), 60, 5, 3)
    kw = dict(t=t, normalize=normalize, include_diagonal=include_diagonal)
    expected = abs(uniformity_oracle(x, **kw) - uniformity_oracle(y, **kw))
    assert measures.compute("uniformity_difference", x, y, **kw) == pytest.approx(expected, rel=1e-11, abs=1e-12)


def test_uniformity_high_dimension_does_not_underflow(monkeypatch):
    rng = np.random.default_rng(4)
    x, y = 3.0 * rng.standard_normal((80, 512)), rng.standard_normal((80, 256))
    sq = pdist(x, "sqeuclidean")
    with np.errstate(divide="ignore"):
        assert np.log(np.mean(np.exp(-2.0 * sq))) == -np.inf  # the naive formula underflows to log(0)
    expected = abs(uniformity_oracle(x, 2.0, False, False) - uniformity_oracle(y, 2.0, False, False))
    assert np.isfinite(expected) and expected > 1000
    got = measures.compute("uniformity_difference", x, y)
    assert got == pytest.approx(expected, rel=1e-10)
    monkeypatch.setattr(stats_module, "BLOCK_ELEMENTS", 80 * 3 + 1)  # 3 rows per block, ragged last block
    assert measures.compute("uniformity_difference", x, y) == pytest.approx(got, rel=1e-13)


@pytest.mark.parametrize("block_elements", [1, 45, 47 * 5 + 3, 1 << 22])
@pytest.mark.parametrize("include_diagonal", [False, True])
def test_uniformity_upper_triangle_blocks_match_scipy(monkeypatch, block_elements, include_diagonal):
    """The numpy kernel sums each unordered pair once by row blocks against the later rows: one row per
    block, ragged blocks and a single block all give scipy's log-sum-exp over the full matrix."""
    x, y = pair(np.random.default_rng(8), 47, 6, 4)
    x[9] = x[2]  # a duplicate pair: d² = 0, exp = 1
    monkeypatch.setattr(stats_module, "BLOCK_ELEMENTS", block_elements)
    kw = dict(t=0.7, normalize=False, include_diagonal=include_diagonal)
    expected = abs(uniformity_oracle(x, **kw) - uniformity_oracle(y, **kw))
    assert measures.compute("uniformity_difference", x, y, **kw) == pytest.approx(expected, rel=1e-12)


def test_uniformity_two_point_closed_form_and_extreme_magnitudes():
    # Two points at distance a: distinct pairs give u = -t·a²; with the diagonal u = log((2 + 2e^{-t·a²})/4).
    x, y = np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[1.0], [2.0]])
    assert measures.compute("uniformity_difference", x, y) == pytest.approx(2.0 * (25 - 1), rel=1e-14)
    with_diag = abs(np.log((2 + 2 * np.exp(-50.0)) / 4) - np.log((2 + 2 * np.exp(-2.0)) / 4))
    assert measures.compute("uniformity_difference", x, y, include_diagonal=True) == pytest.approx(with_diag, rel=1e-13)
    # huge: u = -2·25·1e200 is finite although exp of it is 0; tiny: every term is exp(-0) = 1, u = 0
    assert measures.compute("uniformity_difference", x * 1e100, y * 1e-200) == pytest.approx(50e200, rel=1e-14)
    with pytest.raises(UndefinedMeasureError, match="floating-point range"):
        measures.compute("uniformity_difference", x * 1e200, y)  # -t·d² = -5e401 is beyond float64
    assert measures.compute("uniformity_difference", x * 1e200, y, include_diagonal=True) == pytest.approx(
        abs(np.log(0.5) - np.log((2 + 2 * np.exp(-2.0)) / 4)), rel=1e-14
    )
    assert measures.compute("uniformity_difference", x.astype(np.float32), y.astype(np.float32)) == pytest.approx(48.0)


def test_uniformity_with_diagonal_saturates_in_high_dimension():
    # Why the default excludes i = j: with raw features in high dimension every off-diagonal term is ~0,
    # u = log(N/N²) = -log N for any representation, and the difference is 0 for unrelated inputs.
    rng = np.random.default_rng(5)
    x, y = 5.0 * rng.standard_normal((30, 400)), rng.standard_normal((30, 300)) ** 3
    assert measures.compute("uniformity_difference", x, y, include_diagonal=True) == pytest.approx(0.0, abs=1e-12)
    assert measures.compute("uniformity_difference", x, y) > 10.0


def test_uniformity_parameters_and_zero_rows():
    x, y = pair(np.random.default_rng(6), 10, 3, 3)
    for bad in (0, -1.0, float("inf"), float("nan"), "2", True):
        with pytest.raises(ValueError, match="t must be a positive finite number"):
            measures.compute("uniformity_difference", x, y, t=bad)
    x[2] = 0.0
    with pytest.raises(UndefinedMeasureError, match="zero row"):
        measures.compute("uniformity_difference", x, y, normalize=True)
    assert measures.compute("uniformity_difference", x, y) >= 0.0  # raw features: a zero row is an ordinary point


# ---------------------------------------------------------------- intrinsic dimension (TwoNN)


def skdim_two_nn(x: np.ndarray, **kwargs) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skdim warns when it drops duplicate points
        return skdim.id.TwoNN(**kwargs).fit(x).dimension_


@pytest.mark.parametrize("dims", [(5, 3), (40, 30)])  # skdim's NearestNeighbors path and its pairwise path
@pytest.mark.parametrize(
    "params",
    [{}, {"discard_fraction": 0.25}, {"method": "mle"}, {"method": "mle", "discard_fraction": 0.0}],
)
def test_two_nn_matches_skdim(dims, params):
    # skdim 0.5 TwoNN: sort mu = r2/r1, keep int(n·(1 - discard_fraction)); 'linear' fits the slope through
    # the origin of -log(1 - i/n) on log mu (sklearn LinearRegression, fit_intercept=False); 'mle' is the
    # censored estimate. Same estimator here, so only distance rounding separates the two (~1e-13).
    x, y = pair(np.random.default_rng(7), 300, *dims)
    skdim_params = {"discard_fraction": 0.1, **params}
    expected = abs(skdim_two_nn(x, **skdim_params) - skdim_two_nn(y, **skdim_params))
    got = measures.compute("intrinsic_dimension_difference", x, y, **params)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_two_nn_duplicates_drop_and_collapse():
    rng = np.random.default_rng(8)
    x, y = pair(rng, 200, 4, 6)
    x[50:70] = x[0]  # 21 copies of row 0
    x[100:103] = x[7]
    y[[20, 21]] = y[150]
    with_copies = abs(skdim_two_nn(x) - skdim_two_nn(y))
    assert measures.compute("intrinsic_dimension_difference", x, y, duplicates="drop") == pytest.approx(
        with_copies, rel=1e-10
    )
    distinct = abs(skdim_two_nn(np.unique(x, axis=0)) - skdim_two_nn(np.unique(y, axis=0)))
    assert measures.compute("intrinsic_dimension_difference", x, y) == pytest.approx(distinct, rel=1e-10)
    assert abs(distinct - with_copies) > 1e-3  # the convention matters, hence the parameter


def test_two_nn_recovers_the_dimension_of_embedded_planes():
    # Gaussian samples on a 2-plane and on a 5-plane, rotated into R^50 and translated. The TwoNN
    # estimate has standard error about d/√n (Facco et al. 2017: the MLE of a Pareto shape from n ratios),
    # 0.05 and 0.12 here for n = 1800 kept ratios, so 0.6 on the difference is about 5 standard errors.
    rng = np.random.default_rng(9)

    def plane(d):
        return rng.standard_normal((2000, d)) @ ortho_group.rvs(50, random_state=rng)[:d] + 7.0

    x, y = plane(2), plane(5)
    assert measures.compute("intrinsic_dimension_difference", x, y) == pytest.approx(3.0, abs=0.6)
    assert measures.compute("intrinsic_dimension_difference", x, y, method="mle") == pytest.approx(3.0, abs=0.6)
    assert measures.compute("intrinsic_dimension_difference", x, plane(2)) == pytest.approx(0.0, abs=0.3)


def test_two_nn_degenerate_inputs_and_parameters():
    rng = np.random.default_rng(10)
    x, y = pair(rng, 30, 3, 3)
    name = "intrinsic_dimension_difference"
    # every point equidistant from all others (simplex vertices): every ratio is 1, no slope
    with pytest.raises(UndefinedMeasureError, match="every kept ratio"):
        measures.compute(name, np.eye(30), y)
    with pytest.raises(UndefinedMeasureError, match="at least 3 distinct rows"):
        measures.compute(name, np.repeat(x[:2], 15, axis=0), y)
    with pytest.raises(UndefinedMeasureError, match="every row is identical"):
        measures.compute(name, np.ones_like(x), y, duplicates="drop")
    with pytest.raises(ValueError, match="discard_fraction large enough"):
        measures.compute(name, x, y, discard_fraction=0.0)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"discard_fraction must lie in \[0, 1\)"):
            measures.compute(name, x, y, discard_fraction=bad)
    with pytest.raises(ValueError, match="method must be"):
        measures.compute(name, x, y, method="mind_ml")
    with pytest.raises(ValueError, match="duplicates must be"):
        measures.compute(name, x, y, duplicates="keep")
    base = measures.compute(name, x, y)
    assert measures.compute(name, x * 2.0**700, y * 2.0**-900) == base  # exact power-of-two rescale
    assert measures.compute(name, x * 1e200, y * 1e-200) == pytest.approx(base, rel=1e-12)
    assert measures.compute(name, x.astype(np.float32), y.astype(np.float32)) == pytest.approx(base, rel=1e-4, abs=1e-4)
