"""The GEMM-bound measures' fast CPU routes (issue 15, third round) and each numerical guard that sends
an input back to the general route, against references computed here from explicitly centred copies
with scipy / scikit-learn (``orthogonal_procrustes``, ``svdvals``, ``orth``, ``r2_score``), never
against the code's own output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

import measures
from measures import _kernels
from measures.alignment import _aligned_cosine_numpy, _nuclear_norm_by_gram, _squared_residual_from_cross


def _pair(n: int = 400, d1: int = 24, d2: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d1))
    y = np.tanh(x @ rng.standard_normal((d1, d2)) / math.sqrt(d1)) + 0.3 * rng.standard_normal((n, d2))
    return x, y


def _centred(a: np.ndarray) -> np.ndarray:
    return a - a.mean(axis=0)


def _procrustes_reference(x: np.ndarray, y: np.ndarray, unit: bool) -> float:
    """min_Q ‖x̃Q − ỹ‖ by scipy's orthogonal_procrustes on explicitly centred (and normalised) copies."""
    xc, yc = _centred(x), _centred(y)
    if unit:
        xc, yc = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    width = max(xc.shape[1], yc.shape[1])
    xc = np.pad(xc, ((0, 0), (0, width - xc.shape[1])))
    yc = np.pad(yc, ((0, 0), (0, width - yc.shape[1])))
    rotation, _ = scipy.linalg.orthogonal_procrustes(xc, yc)
    return float(np.linalg.norm(xc @ rotation - yc))


# Inputs for which a guard must send the computation back to the general route, and which guard.
GUARDED = {
    "offset": lambda x: x + 1e3,  # |mean| far above the spread: centred_moments refuses (cancellation)
    "constant_column": lambda x: np.column_stack([x[:, :-1], np.full(len(x), 7.0)]),  # non-zero constant
    "tiny": lambda x: x * 1e-120,  # magnitude outside [1e-100, 1e100]
}


def test_centred_moments_guards() -> None:
    x, _ = _pair()
    mean, squares = _kernels.centred_moments(torch.from_numpy(x))
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(squares, (_centred(x) ** 2).sum(axis=0), rtol=1e-12)
    zero_column = x.copy()
    zero_column[:, 3] = 0.0  # a dead neuron is exact in the rank-one route: accepted
    assert _kernels.centred_moments(torch.from_numpy(zero_column)) is not None
    for make in GUARDED.values():
        assert _kernels.centred_moments(torch.from_numpy(make(x))) is None
    assert _kernels.centred_moments(torch.from_numpy(x * 1e60), limit=1e50) is None
    assert _kernels.centred_moments(torch.from_numpy(x.astype(np.float32))) is None


def test_centred_cross_equals_product_of_centred_copies() -> None:
    x, y = _pair(d2=17)
    mx, _ = _kernels.centred_moments(torch.from_numpy(x))
    my, _ = _kernels.centred_moments(torch.from_numpy(y))
    cross = _kernels.centred_cross(torch.from_numpy(x), torch.from_numpy(y), mx, my)
    np.testing.assert_allclose(cross, _centred(x).T @ _centred(y), rtol=1e-10, atol=1e-10 * np.abs(cross).max())


@pytest.mark.parametrize("shape", [(30, 30), (40, 25), (25, 40)])
def test_nuclear_norm_by_gram_matches_svdvals_within_its_bound(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    for condition in (1.0, 1e3, 1e6):
        u, _ = np.linalg.qr(rng.standard_normal((shape[0], shape[0])))
        v, _ = np.linalg.qr(rng.standard_normal((shape[1], shape[1])))
        k = min(shape)
        s = np.geomspace(1.0, 1.0 / condition, k)
        m = u[:, :k] @ np.diag(s) @ v[:, :k].T
        nu, bound = _nuclear_norm_by_gram(m)
        exact = float(scipy.linalg.svdvals(m).sum())
        assert abs(nu - exact) <= bound + 1e-15 * exact
    singular = np.outer(rng.standard_normal(20), rng.standard_normal(20))  # rank 1: λ_i <= 0 appear
    assert _nuclear_norm_by_gram(singular) is None
    assert _nuclear_norm_by_gram(np.zeros((5, 5))) is None


def test_squared_residual_refuses_near_identical_pairs() -> None:
    x, _ = _pair()
    y = x + 1e-9 * np.random.default_rng(2).standard_normal(x.shape)
    total = float((x**2).sum() + (y**2).sum())
    assert _squared_residual_from_cross(torch.from_numpy(x.T @ y), total) is None


@pytest.mark.parametrize("case", ["plain", "unequal", "near", *GUARDED])
@pytest.mark.parametrize("name, unit", [("procrustes_orthogonal", True), ("procrustes_size_shape", False)])
def test_procrustes_routes_against_scipy(case: str, name: str, unit: bool) -> None:
    x, y = _pair(d2=16 if case == "unequal" else 24)
    if case == "near":
        y = x + 1e-8 * np.random.default_rng(3).standard_normal(x.shape)
    elif case in GUARDED:
        x = GUARDED[case](x)
        if case == "tiny" and not unit:
            y = y * 1e-120
    expected = _procrustes_reference(x, y, unit)
    got = measures.compute(name, x, y)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-14 * (1e-120 if case == "tiny" and not unit else 1.0))
    if unit:
        angle = measures.compute("procrustes_angular", x, y)
        assert angle == pytest.approx(2.0 * math.asin(expected / 2.0), rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("case", ["plain", "unequal", *GUARDED])
def test_cka_linear_routes_against_centred_formula(case: str) -> None:
    x, y = _pair(d2=16 if case == "unequal" else 24)
    if case in GUARDED:
        x = GUARDED[case](x)
    # CKA is scale invariant: the reference takes the tiny input at unit scale (its squares underflow)
    xc, yc = _centred(x * 1e120 if case == "tiny" else x), _centred(y)
    expected = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert measures.compute("cka_linear", x, y) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("case", ["plain", "unequal", *GUARDED])
def test_gulp_routes_against_canonical_correlations(case: str) -> None:
    x, y = _pair(d2=16 if case == "unequal" else 24)
    if case in GUARDED:
        x = GUARDED[case](x)
    # d²_0 = rank X̃ + rank Ỹ − 2Σρ², ρ the canonical correlations (singular values of Q_XᵀQ_Y)
    qx, qy = scipy.linalg.orth(_centred(x * 1e120 if case == "tiny" else x)), scipy.linalg.orth(_centred(y))
    rho = scipy.linalg.svdvals(qx.T @ qy)
    expected = math.sqrt(qx.shape[1] + qy.shape[1] - 2.0 * float((rho**2).sum()))
    assert measures.compute("gulp", x, y) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("case", ["plain", "unequal", *GUARDED])
@pytest.mark.parametrize("predictor", ["x", "y"])
def test_linear_regression_routes_against_sklearn(case: str, predictor: str) -> None:
    x, y = _pair(d2=16 if case == "unequal" else 24)
    if case in GUARDED:
        x = GUARDED[case](x)
    # R² is scale invariant: the reference takes the tiny input at unit scale
    scaled = x * 1e120 if case == "tiny" else x
    source, target = (scaled, y) if predictor == "x" else (y, scaled)
    fitted = LinearRegression().fit(source, target).predict(source)
    expected = r2_score(target, fitted, multioutput="variance_weighted")
    got = measures.compute("linear_regression", x, y, predictor=predictor)
    assert got == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("case", ["plain", "unequal", "tiny_row", "huge"])
def test_aligned_cosine_routes_against_scipy(case: str) -> None:
    x, y = _pair(d2=16 if case == "unequal" else 24)
    reference_x = x.copy()
    if case == "tiny_row":
        x[5] *= 1e-150  # its squares (1e-300) are below the row-norm guard: the rescaled route runs
        reference_x = x
    elif case == "huge":
        x = x * 1e160  # squares would overflow; the cosines are scale invariant, so the reference is at scale 1
    width = max(x.shape[1], y.shape[1])
    xp, yp = np.pad(reference_x, ((0, 0), (0, width - x.shape[1]))), np.pad(y, ((0, 0), (0, width - y.shape[1])))
    rotation, _ = scipy.linalg.orthogonal_procrustes(xp, yp)
    rotated = xp @ rotation
    cosines = (rotated * yp).sum(axis=1) / (np.linalg.norm(rotated, axis=1) * np.linalg.norm(yp, axis=1))
    assert measures.compute("aligned_cosine", x, y) == pytest.approx(float(cosines.mean()), rel=1e-9)
    fast = _aligned_cosine_numpy(torch.from_numpy(x), torch.from_numpy(y))
    assert (fast is None) == (case in ("tiny_row", "huge"))  # which route ran (both checked above)


def test_magnitude_difference_fused_finiteness_check() -> None:
    assert measures.info("magnitude_difference").checks_finite
    x, y = _pair()
    expected = abs(np.linalg.norm(x.mean(axis=0)) - np.linalg.norm(y.mean(axis=0)))
    assert measures.compute("magnitude_difference", x, y) == pytest.approx(expected, rel=1e-12)
    bad = x.copy()
    bad[3, 2], bad[7, 2] = np.inf, -np.inf  # inf − inf: the column sum is NaN
    with pytest.raises(ValueError, match=r"'magnitude_difference': input 2 contains 2 NaN or Inf value\(s\)"):
        measures.compute("magnitude_difference", x, bad)
    bad[3, 2], bad[7, 2] = np.nan, 1.0
    with pytest.raises(ValueError, match=r"input 1 contains 1 NaN or Inf value\(s\)"):
        measures.compute("magnitude_difference", bad, y)
    with pytest.raises(ValueError, match="NaN or Inf"):
        measures.compute("magnitude_difference", torch.from_numpy(bad), torch.from_numpy(y))
    # finite entries whose sum overflows are valid input (the exact test settles it): mean 1e308
    huge = np.full((4, 1), 1e308)
    assert measures.compute("magnitude_difference", huge, np.zeros((4, 1))) == 1e308


@pytest.mark.parametrize("scale", [1e-160, 1e-101, 1e-99, 1.0, 1e99, 1e101, 1e150])
def test_magnitude_difference_dot_route_boundaries(scale: float) -> None:
    """‖x̄‖ comes from one dot product only where Σ x̄_j² lies in (1e-200, 1e200); on either side of the
    boundary the value must be the exact one: Python's integers and fractions, no float arithmetic."""
    from fractions import Fraction

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((50, 300)) * scale, rng.standard_normal((50, 300)) * scale * 0.5

    def exact_norm_of_mean(a: np.ndarray) -> float:
        means = [sum(Fraction(v) for v in column) / a.shape[0] for column in a.T]
        square = sum(m * m for m in means)
        # √square to double precision: scale by a power of two, integer square root, scale back
        shift = 2 * (110 - square.numerator.bit_length() // 2 + square.denominator.bit_length() // 2)
        return math.ldexp(math.isqrt(int(square * Fraction(2) ** shift)), -shift // 2)

    expected = abs(exact_norm_of_mean(x) - exact_norm_of_mean(y))
    assert measures.compute("magnitude_difference", x, y) == pytest.approx(expected, rel=1e-13)


def test_public_names_are_bound_after_first_lookup() -> None:
    info = measures.info
    assert vars(measures)["info"] is info  # no second pass through the package __getattr__
    assert measures.compute is vars(measures)["compute"]
    with pytest.raises(AttributeError):
        measures.no_such_attribute  # noqa: B018


@pytest.mark.parametrize("scale", [1.0, 1e-99, 1e-101, 1e-120, 1e-170, 1e99, 1e101, 1e120, 1e160, 0.0])
def test_rescale_extreme_from_validation_squares_matches_the_peak_rule(scale: float) -> None:
    """The finiteness pass's Σx² settles the extreme-magnitude check; the decision must be the peak's."""
    from measures import _validation

    info = measures.info("cka_linear")
    x, y = _pair(n=50, d1=6, d2=6)
    x = x * scale
    squares: list = []
    inputs = _validation.validate(info, (x, y), squares)
    assert squares[1] == pytest.approx(float((y**2).sum()), rel=1e-12)
    fused = _validation.rescale_extreme(info, inputs, squares)
    peak = float(np.abs(x).max())
    if peak > _validation.EXTREME_LARGE or 0.0 < peak < _validation.EXTREME_SMALL:
        expected = np.ldexp(x, -math.frexp(peak)[1])  # the documented rule: a power of two into [0.5, 1)
    else:
        expected = x
    np.testing.assert_array_equal(fused[0].numpy(), expected)
    np.testing.assert_array_equal(fused[1].numpy(), y)


@pytest.mark.parametrize("peak", [None, 1.01e-100, 1e-60, 1e60, 9.9e99])
def test_concentricity_difference_row_norm_bounds_against_numpy(peak: float | None) -> None:
    """The magnitude range read from the row norms (exact max/min only where the bounds straddle a
    limit, as for a largest entry just inside 1e-100 or 1e100) gives the cosine formula's value; a zero
    mean instance still raises."""
    x, y = _pair(n=60, d1=5, d2=7)
    x, y = x + 0.5, y - 0.7  # a mean instance with a direction
    scale = 1.0 if peak is None else peak / np.abs(x).max()
    if peak is not None and peak > 1e90:
        assert (x * scale).__pow__(2).sum(axis=1).max() >= 1e200  # the straddling case is exercised
    if peak is not None and peak < 1e-90:
        assert (x * scale).__pow__(2).sum(axis=1).max() <= 1e-200 * x.shape[1]

    def concentricity(a: np.ndarray) -> float:  # mean_i cos(a_i, ā), computed at unit scale
        mean = a.mean(axis=0)
        return float(np.mean(a @ mean / (np.linalg.norm(a, axis=1) * np.linalg.norm(mean))))

    expected = abs(concentricity(x) - concentricity(y))
    assert measures.compute("concentricity_difference", x * scale, y) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    with pytest.raises(measures.UndefinedMeasureError, match="mean instance is zero"):
        measures.compute("concentricity_difference", _centred(x) * scale, y)


@pytest.mark.parametrize("scale", [1.0, 1e-120, 1e-99, 3e98, 1e120])
def test_procrustes_permutation_scale_from_squares_against_assignment(scale: float) -> None:
    """The power-of-two scale settled from the squared norms (exact max/min near the limits) gives the
    distance of the best column matching, computed here at unit scale from explicit squared distances."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    x, y = _pair(n=40, d1=6, d2=6)
    cost = cdist(x.T, y.T, "sqeuclidean")
    rows, cols = linear_sum_assignment(cost)
    expected = math.sqrt(cost[rows, cols].sum()) * scale  # d is 1-homogeneous in the pair
    assert measures.compute("procrustes_permutation", x * scale, y * scale) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("shape", [(1, 5), (7, 300), (2000, 256), (1003, 64), (50, 2048), (9, 1024)])
@pytest.mark.parametrize("layout", ["c", "fortran", "strided"])
def test_column_sums_match_exact_sums(shape: tuple[int, int], layout: str) -> None:
    """The folded reduction (rows regrouped into ~1024-entry rows, remainder rows added) against
    ``math.fsum`` per column (correctly rounded), for row counts that do and do not divide evenly."""
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    a = rng.standard_normal(shape) + 3.0
    if layout == "fortran":
        a = np.asfortranarray(a)
    elif layout == "strided":
        a = np.repeat(a, 2, axis=1)[:, ::2]
    exact = np.array([math.fsum(a[:, j]) for j in range(a.shape[1])])
    got = _kernels.column_sums(a)
    assert got.shape == (shape[1],)
    np.testing.assert_allclose(got, exact, rtol=1e-13, atol=1e-13 * np.abs(a).sum(axis=0).max())


def test_plain_pair_agrees_with_the_general_route_and_declines_the_rest() -> None:
    """``validate``'s one-step route for two plain CPU float64 tensors gives the general route's tensors
    and Σx² (for ``rescale_extreme``), and declines (None) every input the general route would convert
    or reject; ``validate`` returns what the general route returns either way."""
    from measures import _validation

    info = measures.info("cka_linear")
    x, y = (torch.from_numpy(a) for a in _pair(50, 6, 4))
    squares: list = []
    got = _validation._plain_pair(info, (x, y), squares)
    reference: list = []
    expected = _validation._matrix_pair(info, (x, y), reference)
    assert got is not None and all(torch.equal(g, e) and g.data_ptr() == e.data_ptr() for g, e in zip(got, expected))
    assert got[0] is not x and got[1] is not y  # fresh views, as the general route's (the memo's key lives on them)
    assert squares == pytest.approx(reference, rel=1e-14)
    assert squares[0] == pytest.approx(float((x * x).sum()), rel=1e-13)
    through: list = []
    assert all(torch.equal(g, e) for g, e in zip(_validation.validate(info, (x, y), through), expected))
    assert through == squares
    bad = x.clone()
    bad[3, 2] = math.nan
    declined = {
        "numpy": (x.numpy(), y), "float32": (x.float(), y), "1-D": (x[:, 0], y), "rows": (x[:10], y),
        "autograd": (x.clone().requires_grad_(), y), "strided": (x.T.contiguous().T, y), "NaN": (bad, y),
        "no columns": (x[:, :0], y),
    }
    for what, args in declined.items():
        squares = []
        assert _validation._plain_pair(info, args, squares) is None, what
        assert squares == [], what
    with pytest.raises(ValueError, match="takes 2 input"):
        _validation.validate(info, (x, y, y))
    with pytest.raises(ValueError, match="NaN"):
        _validation.validate(info, (bad, y))
    # a measure that checks finiteness itself gets no Σx² (and no pass)
    squares = []
    got = _validation._plain_pair(measures.info("magnitude_difference"), (bad, y), squares)
    assert got is not None and got[0].data_ptr() == bad.data_ptr() and squares == [None, None]


@pytest.mark.parametrize("n, d", [(300, 2048), (1100, 512), (7, 3)])
def test_concentricity_row_blocks_match_explicit_cosines(n: int, d: int) -> None:
    """The one-pass route (row blocks of 2^19 entries: several blocks for the first two shapes) against
    the explicit mean of cos(x_i, x̄) from unit rows; a zero row in a later block sends it to the scaled
    route, which raises as before."""
    rng = np.random.default_rng(n)

    def concentricity(a: np.ndarray) -> float:
        mean = a.mean(axis=0)
        return float(np.mean((a / np.linalg.norm(a, axis=1, keepdims=True)) @ (mean / np.linalg.norm(mean))))

    x, y = rng.standard_normal((n, d)) + 0.3, rng.standard_normal((n, d)) * 5.0 + 0.1
    expected = abs(concentricity(x) - concentricity(y))
    assert measures.compute("concentricity_difference", x, y) == pytest.approx(expected, rel=1e-11, abs=1e-14)
    x[n - 1] = 0.0
    with pytest.raises(measures.UndefinedMeasureError):
        measures.compute("concentricity_difference", x, y)
