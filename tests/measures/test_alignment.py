"""Alignment family against oracles the suite did not compute: scipy (``orthogonal_procrustes``,
``spatial.procrustes``, ``linear_sum_assignment``, ``linprog``, ``pearsonr``), scikit-learn's
``r2_score``, statsmodels ``CanCorr``, POT ``ot.emd2``, brute force over permutations and subsets,
netrep-style invariance checks and closed forms; plus the degenerate regimes (D > N, unequal widths,
constant/duplicate neurons, ties, zero rows, magnitudes, float32)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import ot
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.optimize import linprog
from scipy.spatial import procrustes as scipy_procrustes
from scipy.spatial.distance import cdist
from scipy.stats import ortho_group, pearsonr
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from statsmodels.multivariate.cancorr import CanCorr

import measures
from measures import UndefinedMeasureError
from tests.measures.conftest import representations

ALIGNMENT_MEASURES = measures.names(family="alignment")


def centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0)


def pad(x: np.ndarray, width: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, width - x.shape[1])))


def pad_pair(x, y):
    w = max(x.shape[1], y.shape[1])
    return pad(x, w), pad(y, w)


def nu_scipy(x: np.ndarray, y: np.ndarray) -> float:
    """ν = ‖X̂ᵀŶ‖_* as scipy's orthogonal_procrustes ``scale`` on centred, unit-norm, zero-padded inputs."""
    a, b = pad_pair(centre(x) / np.linalg.norm(centre(x)), centre(y) / np.linalg.norm(centre(y)))
    return orthogonal_procrustes(a, b)[1]


def random_similarity_transform(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """netrep's check: a random rotation, shift and isotropic scaling."""
    d = x.shape[1]
    return 2.7 * x @ ortho_group.rvs(d, random_state=rng) + rng.standard_normal(d) * 5.0


@pytest.fixture
def pair():
    return representations(np.random.default_rng(21), 70, 9, 6)


@pytest.fixture
def square_pair():
    return representations(np.random.default_rng(22), 70, 7, 7)


# --- Procrustes family ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(70, 9, 6), (70, 7, 7), (20, 35, 28)])
def test_procrustes_forms_match_scipy_orthogonal_procrustes(shape):
    x, y = representations(np.random.default_rng(23), *shape)
    nu = nu_scipy(x, y)
    assert measures.compute("procrustes_orthogonal", x, y) == pytest.approx(math.sqrt(2 - 2 * nu), abs=1e-10)
    assert measures.compute("procrustes_orthogonal", x, y, form="squared") == pytest.approx(2 - 2 * nu, abs=1e-10)
    assert measures.compute("procrustes_orthogonal", x, y, form="angular") == pytest.approx(math.acos(nu), abs=1e-10)
    assert measures.compute("procrustes_orthogonal", x, y, form="one_minus_nu") == pytest.approx(1 - nu, abs=1e-10)
    assert measures.compute("procrustes_angular", x, y) == pytest.approx(math.acos(nu), abs=1e-10)


@pytest.mark.parametrize("shape", [(70, 7, 7), (70, 9, 6)])
def test_scipy_spatial_procrustes_disparity_is_one_minus_nu_squared(shape):
    x, y = representations(np.random.default_rng(24), *shape)
    _, _, disparity = scipy_procrustes(*pad_pair(x, y))  # scipy needs equal shapes: zero-pad
    nu = 1 - measures.compute("procrustes_orthogonal", x, y, form="one_minus_nu")
    assert disparity == pytest.approx(1 - nu**2, abs=1e-10)


@pytest.mark.parametrize("shape", [(70, 9, 6), (25, 40, 31)])
def test_size_shape_matches_scipy_rotation_residual(shape):
    x, y = representations(np.random.default_rng(25), *shape)
    a, b = pad_pair(centre(x), centre(y))
    rotation, _ = orthogonal_procrustes(a, b)
    expected = np.linalg.norm(a @ rotation - b)
    assert measures.compute("procrustes_size_shape", x, y) == pytest.approx(expected, rel=1e-10)
    assert measures.compute("procrustes_size_shape", x, y, form="squared") == pytest.approx(expected**2, rel=1e-10)
    assert measures.compute("procrustes_orthogonal", x, y, normalize=False) == pytest.approx(expected, rel=1e-10)


def test_size_shape_is_homogeneous_and_not_scale_invariant(pair):
    x, y = pair
    d = measures.compute("procrustes_size_shape", x, y)
    assert measures.compute("procrustes_size_shape", 3.0 * x, 3.0 * y) == pytest.approx(3.0 * d, rel=1e-12)
    assert measures.compute("procrustes_size_shape", 3.0 * x, y) != pytest.approx(d, rel=1e-3)


def test_uncentred_procrustes_is_not_translation_invariant(pair):
    x, y = pair
    base = measures.compute("procrustes_orthogonal", x, y, center=False)
    a, b = pad_pair(x / np.linalg.norm(x), y / np.linalg.norm(y))
    assert base == pytest.approx(math.sqrt(2 - 2 * orthogonal_procrustes(a, b)[1]), abs=1e-10)
    assert measures.compute("procrustes_orthogonal", x + 3.0, y, center=False) != pytest.approx(base, abs=1e-3)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("procrustes_orthogonal", {}),
        ("procrustes_angular", {}),
        ("shape_metric", {"alpha": 0.0}),
        ("shape_metric", {"alpha": 0.5}),
        ("shape_metric", {"alpha": 1.0}),
    ],
)
def test_netrep_rotation_shift_scale_gives_zero(name, kwargs):
    rng = np.random.default_rng(26)
    x = rng.standard_normal((31, 10))
    assert measures.compute(name, x, random_similarity_transform(x, rng), **kwargs) < 1e-6


def test_netrep_invertible_linear_map_zero_only_when_fully_whitened():
    rng = np.random.default_rng(27)
    x = rng.standard_normal((31, 10))
    y = x @ rng.standard_normal((10, 10))
    assert measures.compute("shape_metric", x, y, alpha=0.0) < 1e-6
    assert measures.compute("shape_metric", x, y, alpha=1.0) > 1e-2
    assert measures.compute("shape_metric", x, y, alpha=0.5) > 1e-3


@pytest.mark.parametrize("alpha, width", [(0.0, 10), (0.5, 30), (1.0, 30)])
def test_shape_metric_triangle_inequality_netrep(alpha, width):
    # netrep's template: random triples of 31 x 30 data (alpha = 0 needs rank < N - 1, hence 31 x 10).
    rng = np.random.default_rng(28)
    for _ in range(10):
        a, b, c = (rng.standard_normal((31, width)) @ np.diag(rng.uniform(0.2, 2, width)) for _ in range(3))
        ab, bc, ac = (measures.compute("shape_metric", p, q, alpha=alpha) for p, q in ((a, b), (b, c), (a, c)))
        assert ac <= ab + bc + 1e-10


def test_shape_metric_alpha_one_is_angular_procrustes(pair):
    x, y = pair
    assert measures.compute("shape_metric", x, y, alpha=1.0) == pytest.approx(math.acos(nu_scipy(x, y)), abs=1e-10)


def test_shape_metric_alpha_zero_is_arccos_mean_rho(square_pair):
    x, y = square_pair
    rho = CanCorr(y, x).cancorr
    assert measures.compute("shape_metric", x, y, alpha=0.0) == pytest.approx(math.acos(rho.mean()), abs=1e-10)


def test_shape_metric_alpha_zero_unequal_widths(pair):
    x, y = pair  # ranks 9 and 6: cosine = Σρ / √(9·6)
    rho = CanCorr(y, x).cancorr
    expected = math.acos(rho.sum() / math.sqrt(9 * 6))
    assert measures.compute("shape_metric", x, y, alpha=0.0) == pytest.approx(expected, abs=1e-10)


def whiten_literally(x: np.ndarray, alpha: float) -> np.ndarray:
    """φ_α(X) = X̃ V diag(α + (1-α) λ^{-1/2}) Vᵀ on data rescaled so its non-zero covariance eigenvalues average 1."""
    xc = centre(x)
    lam, v = np.linalg.eigh(xc.T @ xc)
    keep = lam > lam.max() * 1e-12
    xc = xc / math.sqrt(lam[keep].mean())
    lam = lam / lam[keep].mean()
    d = np.where(keep, alpha + (1 - alpha) / np.sqrt(np.where(keep, lam, 1.0)), 0.0)
    return xc @ (v * d) @ v.T


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_shape_metric_matches_literal_partial_whitening(alpha, pair):
    x, y = pair
    a, b = pad_pair(whiten_literally(x, alpha), whiten_literally(y, alpha))
    cosine = orthogonal_procrustes(a, b)[1] / (np.linalg.norm(a) * np.linalg.norm(b))
    assert measures.compute("shape_metric", x, y, alpha=alpha) == pytest.approx(math.acos(min(cosine, 1.0)), abs=1e-9)


def test_shape_metric_degeneracy_only_at_alpha_zero():
    x, y = representations(np.random.default_rng(29), 24, 30, 26)
    with pytest.raises(UndefinedMeasureError, match="D >= N-1: CCA degenerate"):
        measures.compute("shape_metric", x, y, alpha=0.0)
    assert 0.0 < measures.compute("shape_metric", x, y, alpha=0.5) < math.pi / 2
    with pytest.raises(ValueError, match="alpha must lie in"):
        measures.compute("shape_metric", x, y, alpha=1.5)


@pytest.mark.parametrize("name", ["procrustes_orthogonal", "procrustes_angular", "shape_metric"])
def test_constant_input_is_undefined_for_normalised_shapes(name, pair):
    x, y = pair
    with pytest.raises(UndefinedMeasureError, match="constant"):
        measures.compute(name, np.full_like(x, 4.0), y)


def test_size_shape_of_a_constant_input_is_the_other_norm(pair):
    x, y = pair
    assert measures.compute("procrustes_size_shape", np.full_like(x, 4.0), y) == pytest.approx(
        np.linalg.norm(centre(y)), rel=1e-12
    )


def test_procrustes_form_validation(pair):
    with pytest.raises(ValueError, match="form must be one of"):
        measures.compute("procrustes_orthogonal", *pair, form="cosine")
    with pytest.raises(ValueError, match="form must be one of"):
        measures.compute("procrustes_size_shape", *pair, form="angular")


# --- permutation Procrustes and soft matching ----------------------------------------------------------


def brute_force_permutation_distance(x: np.ndarray, y: np.ndarray) -> float:
    a, b = pad_pair(x, y)
    return min(np.linalg.norm(a[:, list(p)] - b) for p in itertools.permutations(range(a.shape[1])))


@pytest.mark.parametrize("widths", [(5, 5), (5, 3), (2, 5)])
def test_permutation_procrustes_brute_force(widths):
    rng = np.random.default_rng(30)
    for _ in range(5):
        x, y = rng.standard_normal((12, widths[0])), rng.standard_normal((12, widths[1]))
        assert measures.compute("procrustes_permutation", x, y) == pytest.approx(
            brute_force_permutation_distance(x, y), rel=1e-12
        )


def test_hungarian_recovers_a_planted_permutation():
    rng = np.random.default_rng(31)
    x = rng.standard_normal((100, 40)) * rng.uniform(0.5, 3.0, 40)
    perm = rng.permutation(40)
    assert measures.compute("procrustes_permutation", x, x[:, perm]) == 0.0
    noise = 1e-3 * rng.standard_normal((100, 40))
    assert measures.compute("procrustes_permutation", x, x[:, perm] + noise) == pytest.approx(
        np.linalg.norm(noise), rel=1e-10
    )


def test_permutation_procrustes_with_tied_columns():
    rng = np.random.default_rng(32)
    base = rng.standard_normal((10, 2))
    x = np.column_stack([base, base[:, 0], base[:, 0]])  # three identical columns: ties in XᵀY
    y = rng.standard_normal((10, 4))
    assert measures.compute("procrustes_permutation", x, y) == pytest.approx(
        brute_force_permutation_distance(x, y), rel=1e-12
    )


def brute_force_permutation_angle(x: np.ndarray, y: np.ndarray) -> float:
    """arccos of the best matched Frobenius inner product of the unit-norm inputs, over every permutation."""
    a, b = pad_pair(x / np.linalg.norm(x), y / np.linalg.norm(y))
    best = max(float(np.sum(a[:, list(p)] * b)) for p in itertools.permutations(range(a.shape[1])))
    return math.acos(min(max(best, -1.0), 1.0))


@pytest.mark.parametrize("widths", [(5, 5), (5, 3), (2, 5)])
def test_permutation_angular_shape_metric_brute_force(widths):
    """form="angular" (ReSi's permutation_angular_shape_metric) against every permutation."""
    rng = np.random.default_rng(33)
    for _ in range(5):
        x, y = rng.standard_normal((12, widths[0])) + 0.3, rng.standard_normal((12, widths[1]))
        assert measures.compute("procrustes_permutation", x, y, form="angular") == pytest.approx(
            brute_force_permutation_angle(x, y), rel=1e-12)
    x = rng.standard_normal((30, 6))
    perm = rng.permutation(6)
    assert measures.compute("procrustes_permutation", x, 2.5 * x[:, perm], form="angular") == pytest.approx(
        0.0, abs=1e-7)
    # one column: the only matching gives cos = −1, the angle π
    assert measures.compute("procrustes_permutation", x[:, :1], -x[:, :1], form="angular") == pytest.approx(math.pi)
    with pytest.raises(UndefinedMeasureError, match="all zeros"):
        measures.compute("procrustes_permutation", np.zeros_like(x), x, form="angular")
    with pytest.raises(ValueError, match="procrustes_permutation.*form must be one of"):
        measures.compute("procrustes_permutation", x, x, form="squared")


def test_uncentred_angular_procrustes_equals_scipy_rotation():
    """center=False (ReSi's orthogonal_angular_shape_metric): arccos ⟨X̂Q, Ŷ⟩ with Q from
    scipy.linalg.orthogonal_procrustes on the unit-Frobenius raw inputs; differs from the centred default."""
    rng = np.random.default_rng(34)
    for d1, d2 in ((6, 6), (4, 7), (9, 3)):
        x, y = rng.standard_normal((40, d1)) + 1.0, rng.standard_normal((40, d2)) + 0.5
        a, b = pad_pair(x / np.linalg.norm(x), y / np.linalg.norm(y))
        q, _ = orthogonal_procrustes(a, b)
        expected = math.acos(min(float(np.sum((a @ q) * b)), 1.0))
        value = measures.compute("procrustes_angular", x, y, center=False)
        assert value == pytest.approx(expected, rel=1e-12)
        # ReSi's plain orthogonal_procrustes: neither centred nor scaled
        xr, yr = pad_pair(x, y)
        qr, _ = orthogonal_procrustes(xr, yr)
        assert measures.compute("procrustes_orthogonal", x, y, center=False, normalize=False) == pytest.approx(
            np.linalg.norm(xr @ qr - yr), rel=1e-12)
        assert value != pytest.approx(measures.compute("procrustes_angular", x, y), rel=1e-3)
    with pytest.raises(UndefinedMeasureError, match="all zeros"):
        measures.compute("procrustes_angular", np.zeros((40, 3)), x, center=False)


def soft_matching_lp(x: np.ndarray, y: np.ndarray) -> float:
    """The transport LP solved by scipy's HiGHS: min Σ P_ij ‖x_i - y_j‖², rows 1/D1, columns 1/D2."""
    d1, d2 = x.shape[1], y.shape[1]
    cost = cdist(x.T, y.T, "sqeuclidean").ravel()
    rows = np.kron(np.eye(d1), np.ones((1, d2)))
    cols = np.kron(np.ones((1, d1)), np.eye(d2))
    res = linprog(cost, A_eq=np.vstack([rows, cols]), b_eq=np.r_[np.full(d1, 1 / d1), np.full(d2, 1 / d2)])
    assert res.status == 0
    return math.sqrt(res.fun)


@pytest.mark.parametrize("widths", [(3, 5), (4, 4), (6, 2)])
def test_soft_matching_against_scipy_linprog(widths):
    rng = np.random.default_rng(33)
    x, y = rng.standard_normal((15, widths[0])), rng.standard_normal((15, widths[1]))
    assert measures.compute("soft_matching", x, y) == pytest.approx(soft_matching_lp(x, y), rel=1e-8)


def test_soft_matching_against_pot_with_scipy_costs(pair):
    x, y = pair
    d1, d2 = x.shape[1], y.shape[1]
    cost = ot.emd2(np.full(d1, 1 / d1), np.full(d2, 1 / d2), cdist(x.T, y.T, "sqeuclidean"))
    assert measures.compute("soft_matching", x, y) == pytest.approx(math.sqrt(cost), rel=1e-10)


def test_soft_matching_equal_widths_is_permutation_procrustes_squared_over_d(square_pair):
    x, y = square_pair
    d = x.shape[1]
    perm = measures.compute("procrustes_permutation", x, y)
    assert measures.compute("soft_matching", x, y) ** 2 == pytest.approx(perm**2 / d, rel=1e-10)
    assert measures.compute("soft_matching", x, y) ** 2 == pytest.approx(
        brute_force_permutation_distance(x, y) ** 2 / d, rel=1e-10
    )


def test_soft_matching_planted_permutation_is_zero():
    x = np.random.default_rng(34).standard_normal((30, 12))
    assert measures.compute("soft_matching", x, x[:, ::-1]) == 0.0


# --- linear regression -----------------------------------------------------------------------------------


def sklearn_r2(predictor: np.ndarray, target: np.ndarray) -> float:
    prediction = LinearRegression().fit(predictor, target).predict(predictor)
    return r2_score(target, prediction, multioutput="variance_weighted")


def test_linear_regression_matches_sklearn(pair):
    x, y = pair
    assert measures.compute("linear_regression", x, y) == pytest.approx(sklearn_r2(x, y), abs=1e-10)
    assert measures.compute("linear_regression", x, y, predictor="y") == pytest.approx(sklearn_r2(y, x), abs=1e-10)
    assert measures.compute("linear_regression", y, x) == pytest.approx(sklearn_r2(y, x), abs=1e-10)


def test_linear_regression_is_not_sklearns_uniform_average(pair):
    x, y = pair
    prediction = LinearRegression().fit(x, y).predict(x)
    uniform = r2_score(y, prediction)  # sklearn's default: the mean of per-column R²
    assert measures.compute("linear_regression", x, y) != pytest.approx(uniform, abs=1e-4)


def test_linear_regression_rank_deficient_predictor(pair):
    x, y = pair
    dup = np.column_stack([x, x[:, 0] * 2.0, x[:, 1] - x[:, 2], np.full(len(x), 9.0)])
    assert measures.compute("linear_regression", dup, y) == pytest.approx(sklearn_r2(dup, y), abs=1e-9)
    assert measures.compute("linear_regression", dup, y) == pytest.approx(
        measures.compute("linear_regression", x, y), abs=1e-10
    )


def test_linear_regression_degenerate_regimes(pair):
    x, y = pair
    assert measures.compute("linear_regression", np.full_like(x, 1.0), y) == 0.0
    assert sklearn_r2(np.full_like(x, 1.0), y) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(UndefinedMeasureError, match="target is constant"):
        measures.compute("linear_regression", x, np.full_like(y, 3.0))
    wide, target = representations(np.random.default_rng(35), 20, 25, 4)
    with pytest.raises(UndefinedMeasureError, match="D >= N-1"):
        measures.compute("linear_regression", wide, target)
    # The wide side as *target* is fine: R² of a 4-column predictor.
    assert measures.compute("linear_regression", target, wide) == pytest.approx(sklearn_r2(target, wide), abs=1e-10)
    with pytest.raises(ValueError, match="predictor must be one of"):
        measures.compute("linear_regression", x, y, predictor="both")


def test_linear_regression_ilt_invariant_on_predictor_side_only(pair):
    x, y = pair
    rng = np.random.default_rng(36)
    base = measures.compute("linear_regression", x, y)
    a = rng.standard_normal((x.shape[1], x.shape[1]))
    b = np.diag(np.geomspace(0.1, 10, y.shape[1])) @ ortho_group.rvs(y.shape[1], random_state=rng)
    assert measures.compute("linear_regression", x @ a, y) == pytest.approx(base, abs=1e-10)
    assert measures.compute("linear_regression", x, y @ b) != pytest.approx(base, abs=1e-4)


# --- aligned cosine ------------------------------------------------------------------------------------


def aligned_cosine_oracle(x: np.ndarray, y: np.ndarray) -> float:
    a, b = pad_pair(x, y)
    rotation, _ = orthogonal_procrustes(a, b)
    aligned = a @ rotation
    norms = np.linalg.norm(aligned, axis=1) * np.linalg.norm(b, axis=1)
    keep = norms > 0
    return float(np.mean(np.sum(aligned * b, axis=1)[keep] / norms[keep]))


@pytest.mark.parametrize("shape", [(70, 9, 6), (70, 7, 7), (15, 20, 24)])
def test_aligned_cosine_matches_scipy_procrustes_rotation(shape):
    x, y = representations(np.random.default_rng(37), *shape)
    assert measures.compute("aligned_cosine", x, y) == pytest.approx(aligned_cosine_oracle(x, y), abs=1e-10)


def test_aligned_cosine_skips_zero_rows(pair):
    x, y = pair
    x = x.copy()
    x[[3, 10]] = 0.0
    y = y.copy()
    y[20] = 0.0
    assert measures.compute("aligned_cosine", x, y) == pytest.approx(aligned_cosine_oracle(x, y), abs=1e-10)
    with pytest.raises(UndefinedMeasureError, match="all-zero"):
        measures.compute("aligned_cosine", np.zeros_like(x), y)


def test_aligned_cosine_closed_forms(pair):
    x, _ = pair
    rng = np.random.default_rng(38)
    assert measures.compute("aligned_cosine", x, 0.3 * x @ ortho_group.rvs(x.shape[1], random_state=rng)) == (
        pytest.approx(1.0, abs=1e-12)
    )
    # Ambiguous alignment: X = [a, b], Y = [a, c] with a, b, c orthonormal columns; XᵀY = diag(1, 0), so the
    # second axis may map to ±c. The convention drops it: cos_i = a_i² / (‖X_i‖ ‖Y_i‖), the mean of both signs.
    a, b, c = np.linalg.qr(rng.standard_normal((20, 3)))[0].T
    x2, y2 = np.column_stack([a, b]), np.column_stack([a, c])
    norms = np.linalg.norm(x2, axis=1) * np.linalg.norm(y2, axis=1)
    expected = np.mean(a**2 / norms)
    assert measures.compute("aligned_cosine", x2, y2) == pytest.approx(expected, abs=1e-12)
    both_signs = [np.mean((a * a + s * b * c) / norms) for s in (1, -1)]
    assert expected == pytest.approx(np.mean(both_signs), abs=1e-12)


def permutation_aligned_cosine_oracle(x: np.ndarray, y: np.ndarray) -> float:
    """Mean row cosine after the column permutation maximising the matched sum, found over every permutation."""
    a, b = pad_pair(x, y)
    best = max(itertools.permutations(range(a.shape[1])), key=lambda p: float(np.sum(a[:, list(p)] * b)))
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    keep = norms > 0
    return float(np.mean(np.sum(a[:, list(best)] * b, axis=1)[keep] / norms[keep]))


@pytest.mark.parametrize("widths", [(5, 5), (6, 3), (2, 6)])
def test_permutation_aligned_cosine_brute_force(widths):
    """alignment="permutation" (ReSi's permutation_aligned_cossim) against every permutation, zero rows skipped,
    on the numpy route and the torch route (autograd input)."""
    rng = np.random.default_rng(39)
    for _ in range(4):
        x, y = rng.standard_normal((25, widths[0])) + 0.2, rng.standard_normal((25, widths[1]))
        x[3] = 0.0
        expected = permutation_aligned_cosine_oracle(x, y)
        assert measures.compute("aligned_cosine", x, y, alignment="permutation") == pytest.approx(expected, abs=1e-12)
        via_torch = measures.compute("aligned_cosine", torch.tensor(x, requires_grad=True), torch.tensor(y),
                                     alignment="permutation")
        assert via_torch == pytest.approx(expected, abs=1e-12)
    x = rng.standard_normal((30, 7))
    assert measures.compute("aligned_cosine", x, 4.0 * x[:, rng.permutation(7)], alignment="permutation") == (
        pytest.approx(1.0, abs=1e-12))
    # extreme magnitudes take the rescaled route and give the same number
    z = rng.standard_normal((30, 5))
    assert measures.compute("aligned_cosine", 1e-170 * x, z, alignment="permutation") == pytest.approx(
        measures.compute("aligned_cosine", x, z, alignment="permutation"), abs=1e-12)
    with pytest.raises(UndefinedMeasureError, match="all-zero"):
        measures.compute("aligned_cosine", np.zeros_like(x), x, alignment="permutation")
    with pytest.raises(ValueError, match="aligned_cosine.*alignment must be one of"):
        measures.compute("aligned_cosine", x, x, alignment="affine")


# --- correlation matching -------------------------------------------------------------------------------


def pearson_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    c = np.zeros((x.shape[1], y.shape[1]))
    for i, j in itertools.product(range(x.shape[1]), range(y.shape[1])):
        if np.ptp(x[:, i]) > 0 and np.ptp(y[:, j]) > 0:
            c[i, j] = pearsonr(x[:, i], y[:, j]).statistic
    return c


def brute_force_hard_match(c: np.ndarray) -> float:
    d1, d2 = c.shape
    if d1 > d2:
        return brute_force_hard_match(c.T)
    return max(np.mean(c[range(d1), list(p)]) for p in itertools.permutations(range(d2), d1))


@pytest.mark.parametrize("widths", [(5, 5), (4, 6), (6, 3)])
def test_correlation_match_against_pearsonr_and_brute_force(widths):
    x, y = representations(np.random.default_rng(39), 40, *widths)
    c = pearson_matrix(x, y)
    assert measures.compute("correlation_match_hard", x, y) == pytest.approx(brute_force_hard_match(c), abs=1e-12)
    soft = 0.5 * (c.max(axis=1).mean() + c.max(axis=0).mean())
    assert measures.compute("correlation_match_soft", x, y) == pytest.approx(soft, abs=1e-12)


def test_correlation_match_planted_permutation_with_neuron_scaling_and_shift():
    rng = np.random.default_rng(40)
    x = rng.standard_normal((50, 8))
    y = x[:, rng.permutation(8)] * rng.uniform(0.1, 10.0, 8) + rng.standard_normal(8) * 100
    assert measures.compute("correlation_match_hard", x, y) == pytest.approx(1.0, abs=1e-12)
    assert measures.compute("correlation_match_soft", x, y) == pytest.approx(1.0, abs=1e-12)
    # Signed correlation: a flipped neuron correlates -1 with its twin.
    flipped = x.copy()
    flipped[:, 0] *= -1
    assert measures.compute("correlation_match_hard", x, flipped) < 1.0


@pytest.mark.parametrize("dead", [7.0, 0.0])  # 0.0: an all-zero neuron (variance 0 by every formula)
def test_correlation_match_constant_neurons_and_ties(dead):
    rng = np.random.default_rng(41)
    x, y = representations(rng, 40, 5, 5)
    x = np.column_stack([x[:, :3], np.full(40, dead), x[:, 0]])  # a dead neuron and a duplicate (ties)
    c = pearson_matrix(x, y)
    assert not np.isnan(c).any()
    assert measures.compute("correlation_match_hard", x, y) == pytest.approx(brute_force_hard_match(c), abs=1e-12)
    soft = 0.5 * (c.max(axis=1).mean() + c.max(axis=0).mean())
    assert measures.compute("correlation_match_soft", x, y) == pytest.approx(soft, abs=1e-12)
    for name in ("correlation_match_hard", "correlation_match_soft"):
        with pytest.raises(UndefinedMeasureError, match="every neuron of input 2 is constant"):
            measures.compute(name, x, np.full_like(y, 2.0))


def test_correlation_match_is_not_rotation_invariant(square_pair):
    x, y = square_pair
    rotated = x @ ortho_group.rvs(x.shape[1], random_state=np.random.default_rng(42))
    for name in ("correlation_match_hard", "correlation_match_soft"):
        assert measures.compute(name, rotated, y) != pytest.approx(measures.compute(name, x, y), abs=1e-3)


# --- maximum match --------------------------------------------------------------------------------------


def relative_distance(v: np.ndarray, span: np.ndarray) -> float:
    if span.shape[1] == 0:
        return 1.0
    coef = np.linalg.lstsq(span, v, rcond=None)[0]
    return float(np.linalg.norm(span @ coef - v) / np.linalg.norm(v))


def is_match(x, y, a, b, eps) -> bool:
    return all(relative_distance(x[:, i], y[:, list(b)]) <= eps for i in a) and all(
        relative_distance(y[:, j], x[:, list(a)]) <= eps for j in b
    )


def brute_force_max_match(x: np.ndarray, y: np.ndarray, eps: float) -> float:
    """Union of every ε-approximate match found by enumerating all subset pairs (Wang et al.'s definition)."""

    def subsets(n):
        return itertools.chain.from_iterable(itertools.combinations(range(n), k) for k in range(1, n + 1))

    union_a, union_b = set(), set()
    for a in subsets(x.shape[1]):
        for b in subsets(y.shape[1]):
            if is_match(x, y, a, b, eps):
                union_a |= set(a)
                union_b |= set(b)
    assert not union_a or is_match(x, y, tuple(union_a), tuple(union_b), eps)  # the union is itself a match
    return (len(union_a) + len(union_b)) / (x.shape[1] + y.shape[1])


def test_max_match_closed_form():
    e = np.linalg.qr(np.random.default_rng(43).standard_normal((40, 6)))[0].T
    x = np.column_stack([e[0], e[1], e[0] + e[1], e[2]])
    y = np.column_stack([e[0] + 0.1 * e[4], 2.0 * e[1], e[3]])
    # e2 and e3 are unit distance from the other side; the rest lie within 0.1 of the other span.
    assert measures.compute("max_match", x, y, epsilon=0.25) == pytest.approx(5 / 7)
    # Below 0.0995 (the distance of e0 from e0 + 0.1 e4) only the exact pair e1 ~ 2 e1 survives.
    assert measures.compute("max_match", x, y, epsilon=0.05) == pytest.approx(2 / 7)
    # e2 and e3 are orthogonal to everything on the other side (distance exactly 1): never matched for ε < 1.
    assert measures.compute("max_match", x, y, epsilon=0.999) == pytest.approx(5 / 7)


@pytest.mark.parametrize("seed", range(6))
def test_max_match_against_brute_force_over_subsets(seed):
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((25, 3))
    x = latent @ rng.standard_normal((3, 4)) + rng.uniform(0.0, 0.6, 4) * rng.standard_normal((25, 4))
    y = latent @ rng.standard_normal((3, 4)) + rng.uniform(0.0, 0.6, 4) * rng.standard_normal((25, 4))
    for eps in (0.15, 0.3, 0.5):
        assert measures.compute("max_match", x, y, epsilon=eps) == pytest.approx(brute_force_max_match(x, y, eps))


def test_max_match_brute_force_cases_are_not_trivial():
    values = set()
    for seed in range(6):
        rng = np.random.default_rng(seed)
        latent = rng.standard_normal((25, 3))
        x = latent @ rng.standard_normal((3, 4)) + rng.uniform(0.0, 0.6, 4) * rng.standard_normal((25, 4))
        y = latent @ rng.standard_normal((3, 4)) + rng.uniform(0.0, 0.6, 4) * rng.standard_normal((25, 4))
        values |= {measures.compute("max_match", x, y, epsilon=eps) for eps in (0.15, 0.3, 0.5)}
    assert len(values - {0.0, 1.0}) >= 3


def test_max_match_invariances_on_constructed_data():
    e = np.linalg.qr(np.random.default_rng(44).standard_normal((30, 4)))[0].T
    x = np.column_stack([e[0], e[2]])
    y = np.column_stack([e[0], e[1]])
    assert measures.compute("max_match", x, y) == pytest.approx(0.5)
    # Any non-zero per-neuron scaling (and so isotropic scaling and permutation) changes nothing ...
    assert measures.compute("max_match", x[:, ::-1] * [-3.0, 0.01], y) == pytest.approx(0.5)
    # ... a 45° rotation mixes the matched and unmatched neurons: each is 1/√2 away from span(Y).
    rotation = np.array([[1.0, 1.0], [1.0, -1.0]]) / math.sqrt(2)
    assert measures.compute("max_match", x @ rotation, y) == 0.0
    # Raw activations: a translation adds the all-ones direction, which Y's span lacks.
    assert measures.compute("max_match", x + 1.0, y) != pytest.approx(0.5)
    assert measures.compute("max_match", x + 1.0, y, center=True) == pytest.approx(
        measures.compute("max_match", x, y, center=True)
    )


def test_max_match_dead_neurons_and_degeneracy():
    e = np.linalg.qr(np.random.default_rng(45).standard_normal((30, 3)))[0].T
    x = np.column_stack([e[0], np.zeros(30)])
    y = np.column_stack([e[0], e[1]])
    assert measures.compute("max_match", x, y) == pytest.approx(2 / 4)
    assert measures.compute("max_match", np.zeros((30, 2)), y) == 0.0
    wide = np.random.default_rng(46).standard_normal((20, 20))
    with pytest.raises(UndefinedMeasureError, match="D >= N"):
        measures.compute("max_match", wide, y[:20])
    with pytest.raises(UndefinedMeasureError, match="D >= N"):
        measures.compute("max_match", wide[:, :19], y[:20], center=True)
    with pytest.raises(ValueError, match="epsilon must lie in"):
        measures.compute("max_match", x, y, epsilon=1.0)


# --- regimes shared by the whole family --------------------------------------------------------------------

SCALE_DEPENDENT = {"procrustes_size_shape", "procrustes_permutation", "soft_matching"}


@pytest.mark.parametrize("name", ALIGNMENT_MEASURES)
@pytest.mark.parametrize("scale", [1e-150, 1e150])
def test_extreme_magnitudes(name, scale, pair):
    x, y = pair
    base = measures.compute(name, x, y)
    if name in SCALE_DEPENDENT:  # 1-homogeneous distances: scale both sides together
        assert measures.compute(name, scale * x, scale * y) == pytest.approx(scale * base, rel=1e-10)
    else:
        assert measures.compute(name, scale * x, y / scale) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("name", ALIGNMENT_MEASURES)
def test_float32_input_agrees_with_float64(name, pair):
    x, y = pair
    v64 = measures.compute(name, x, y)
    v32 = measures.compute(name, x.astype(np.float32), y.astype(np.float32))
    assert v32 == pytest.approx(v64, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("name", ALIGNMENT_MEASURES)
def test_wide_inputs(name):
    """D > N: every measure either gives a value in range or raises the documented degeneracy."""
    x, y = representations(np.random.default_rng(47), 15, 22, 18)
    info = measures.info(name)
    try:
        v = measures.compute(name, x, y)
    except UndefinedMeasureError as err:
        assert "D >= N" in str(err) and name in ("linear_regression", "max_match")
    else:
        assert info.range[0] - 1e-12 <= v <= info.range[1] + 1e-12


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ALIGNMENT_MEASURES + ["cca_mean_rho", "cca_r2", "svcca", "pwcca"])
def test_cuda_matches_cpu(name, pair):
    x, y = pair
    on_gpu = measures.compute(name, torch.tensor(x, device="cuda"), torch.tensor(y, device="cuda"))
    assert on_gpu == pytest.approx(measures.compute(name, x, y), rel=1e-8, abs=1e-8)


@pytest.mark.parametrize("name", ALIGNMENT_MEASURES)
def test_float32_arithmetic_path(name, pair):
    """On a GPU the inputs stay float32; the implementation (behind the validating wrapper) must cope."""
    x, y = pair
    impl = measures.info(name).function.__wrapped__
    v64 = float(impl(torch.tensor(x), torch.tensor(y)))
    v32 = float(impl(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)))
    assert v32 == pytest.approx(v64, rel=1e-5, abs=1e-5)
    same = float(impl(torch.tensor(x, dtype=torch.float32), torch.tensor(x, dtype=torch.float32)))
    assert same == pytest.approx(measures.info(name).identity_value, abs=1e-4)
