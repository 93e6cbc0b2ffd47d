"""CCA family against oracles the suite did not compute: statsmodels ``CanCorr``, an eigh (covariance)
route and a QR route written here, linear CKA of the bases, closed forms on constructed inputs, and
the degenerate regimes of the reference (D >= N-1, rank deficiency, constant columns, tiny N,
magnitudes, float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group
from statsmodels.multivariate.cancorr import CanCorr

import measures
from measures import UndefinedMeasureError
from tests.measures.conftest import representations

CCA_MEASURES = ["cca_mean_rho", "cca_r2", "svcca", "pwcca"]


def centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0)


def rho_eigh(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Canonical correlations from covariances: singular values of Σxx^{-1/2} Σxy Σyy^{-1/2}."""
    x, y = centre(x), centre(y)

    def inv_sqrt(c):
        w, v = np.linalg.eigh(c)
        return (v / np.sqrt(w)) @ v.T

    m = inv_sqrt(x.T @ x) @ (x.T @ y) @ inv_sqrt(y.T @ y)
    return np.linalg.svd(m, compute_uv=False)[: min(x.shape[1], y.shape[1])]


def rho_qr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    qx, qy = np.linalg.qr(centre(x))[0], np.linalg.qr(centre(y))[0]
    return np.linalg.svd(qx.T @ qy, compute_uv=False)


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    a, b = centre(a), centre(b)
    return np.linalg.norm(b.T @ a) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))


@pytest.fixture
def pair():
    return representations(np.random.default_rng(3), 80, 9, 6)


# --- mean rho and R² ----------------------------------------------------------------------------------


def test_mean_rho_and_r2_match_statsmodels_cancorr(pair):
    x, y = pair
    rho = CanCorr(y, x).cancorr
    assert measures.compute("cca_mean_rho", x, y) == pytest.approx(rho.mean(), abs=1e-10)
    assert measures.compute("cca_r2", x, y) == pytest.approx((rho**2).mean(), abs=1e-10)


def test_qr_eigh_and_measure_routes_agree(pair):
    x, y = pair
    by_eigh, by_qr = rho_eigh(x, y), rho_qr(x, y)
    np.testing.assert_allclose(by_eigh, by_qr, atol=1e-10)
    assert measures.compute("cca_mean_rho", x, y) == pytest.approx(by_eigh.mean(), abs=1e-10)
    assert measures.compute("cca_r2", x, y) == pytest.approx((by_qr**2).mean(), abs=1e-10)


def test_r2_equals_linear_cka_of_orthonormal_bases():
    x, y = representations(np.random.default_rng(4), 70, 7, 7)
    qx, qy = np.linalg.qr(centre(x))[0], np.linalg.qr(centre(y))[0]
    assert measures.compute("cca_r2", x, y) == pytest.approx(linear_cka(qx, qy), abs=1e-10)


def orthonormal_centred(rng, n, k):
    """k orthonormal N-vectors orthogonal to the all-ones vector (so already centred)."""
    z = centre(rng.standard_normal((n, k)))
    return np.linalg.qr(z)[0]


@pytest.mark.parametrize("theta", [0.0, 0.4, 1.1, np.pi / 2])
def test_closed_form_principal_angle(theta):
    # X = [a, b], Y = [a cos θ + c sin θ, b] with a, b, c orthonormal: ρ = {1, cos θ}.
    a, b, c = orthonormal_centred(np.random.default_rng(5), 40, 3).T
    x = np.column_stack([3 * a + 2 * b, b]) + 7.0  # an invertible mix and a shift change nothing
    y = np.column_stack([a * np.cos(theta) + c * np.sin(theta), -b])
    assert measures.compute("cca_mean_rho", x, y) == pytest.approx((1 + np.cos(theta)) / 2, abs=1e-12)
    assert measures.compute("cca_r2", x, y) == pytest.approx((1 + np.cos(theta) ** 2) / 2, abs=1e-12)


def test_exact_linear_relation_gives_one(pair):
    x, _ = pair
    a = np.random.default_rng(6).standard_normal((x.shape[1], x.shape[1]))
    assert measures.compute("cca_mean_rho", x, x @ a + 3.0) == pytest.approx(1.0, abs=1e-10)


# --- degenerate regimes -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CCA_MEASURES)
@pytest.mark.parametrize("d", [29, 30, 45])
def test_wide_inputs_raise_degenerate(name, d):
    x, y = representations(np.random.default_rng(8), 30, d, 5)
    kwargs = {"tau": 1.0} if name == "svcca" else {}
    with pytest.raises(UndefinedMeasureError, match=r"D >= N-1: CCA degenerate"):
        measures.compute(name, x, y, **kwargs)
    with pytest.raises(UndefinedMeasureError, match=r"D >= N-1: CCA degenerate"):
        measures.compute(name, y, x, **kwargs)


def test_just_below_degeneracy_is_defined_and_matches_statsmodels():
    x, y = representations(np.random.default_rng(9), 30, 28, 5)  # rank 28 = N - 2
    assert measures.compute("cca_mean_rho", x, y) == pytest.approx(CanCorr(y, x).cancorr.mean(), abs=1e-8)


def test_svcca_is_the_reduced_variant_for_wide_layers():
    # A layer wider than N is degenerate for CCA but SVCCA keeps only its leading directions.
    rng = np.random.default_rng(10)
    z = rng.standard_normal((40, 3))
    x = z @ rng.standard_normal((3, 60)) + 1e-3 * rng.standard_normal((40, 60))
    y = z @ rng.standard_normal((3, 50)) + 1e-3 * rng.standard_normal((40, 50))
    with pytest.raises(UndefinedMeasureError):
        measures.compute("cca_mean_rho", x, y)
    assert measures.compute("svcca", x, y) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("name", ["cca_mean_rho", "cca_r2"])
def test_duplicate_constant_and_collinear_columns_are_dropped(name, pair):
    x, y = pair
    padded = np.column_stack([x, x[:, 0], np.full(len(x), 1e6), 2.0 * x[:, 1] - 0.5 * x[:, 2], np.zeros(len(x))])
    assert measures.compute(name, padded, y) == pytest.approx(measures.compute(name, x, y), abs=1e-9)
    assert measures.compute(name, y, padded) == pytest.approx(measures.compute(name, x, y), abs=1e-9)


def test_svcca_ignores_constant_columns(pair):
    # Constant columns add no variance, so the PCA step is unchanged (duplicates would change it).
    x, y = pair
    padded = np.column_stack([np.full(len(x), -3e7), x, np.zeros(len(x))])
    assert measures.compute("svcca", padded, y) == pytest.approx(measures.compute("svcca", x, y), abs=1e-9)


def test_pwcca_rank_deficiency_keeps_the_neuron_weights():
    # A duplicated neuron changes PWCCA's weights (it is one more neuron) but must not fail or add a direction.
    x, y = representations(np.random.default_rng(11), 80, 6, 6)
    dup = np.column_stack([x, x[:, 0]])
    value = measures.compute("pwcca", dup, y)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(pwcca_oracle(dup[:, :6], y, extra=dup[:, 6:]), abs=1e-10)


@pytest.mark.parametrize("name", CCA_MEASURES)
def test_constant_input_is_undefined(name, pair):
    x, y = pair
    with pytest.raises(UndefinedMeasureError, match="constant"):
        measures.compute(name, np.full_like(x, 2.5), y)


def test_tiny_n():
    x = np.array([[0.0], [1.0], [3.0]])
    y = np.array([[1.0], [0.0], [-5.0]])
    # One canonical correlation = |Pearson r|.
    r = abs(np.corrcoef(x[:, 0], y[:, 0])[0, 1])
    assert measures.compute("cca_mean_rho", x, y) == pytest.approx(r, abs=1e-12)
    with pytest.raises(ValueError, match="at least 3 rows"):
        measures.compute("cca_mean_rho", x[:2], y[:2])


@pytest.mark.parametrize("name", CCA_MEASURES)
@pytest.mark.parametrize("scale", [1e-150, 1e150])
def test_extreme_magnitudes(name, scale, pair):
    x, y = pair
    assert measures.compute(name, scale * x, y / scale) == pytest.approx(measures.compute(name, x, y), abs=1e-10)


@pytest.mark.parametrize("name", CCA_MEASURES)
def test_float32_input_agrees_with_float64(name, pair):
    x, y = pair
    v64 = measures.compute(name, x, y)
    v32 = measures.compute(name, x.astype(np.float32), y.astype(np.float32))
    assert v32 == pytest.approx(v64, abs=1e-5)


# --- SVCCA ----------------------------------------------------------------------------------------------


def pca_scores(x: np.ndarray, tau: float | None = None, k: int | None = None) -> np.ndarray:
    u, s, _ = np.linalg.svd(centre(x), full_matrices=False)
    if k is None:
        k = int(np.argmax(np.cumsum(s**2) / np.sum(s**2) >= tau)) + 1
    return u[:, :k] * s[:k]


def spread_spectrum(rng, n, d, total_scale):
    """Data whose variance is spread over many directions and whose total variance is far above 1."""
    return total_scale * rng.standard_normal((n, d)) @ np.diag(np.linspace(1.0, 0.2, d)) @ ortho_group.rvs(d, random_state=rng)


def test_svcca_matches_pca_then_statsmodels_cca():
    rng = np.random.default_rng(12)
    x = spread_spectrum(rng, 200, 20, 3.0)
    y = np.tanh(x @ rng.standard_normal((20, 15)) / 4) + 0.2 * rng.standard_normal((200, 15))
    px, py = pca_scores(x, tau=0.99), pca_scores(y, tau=0.99)
    assert 1 < px.shape[1] < 20 and 1 < py.shape[1]
    rho = CanCorr(py, px).cancorr
    assert measures.compute("svcca", x, y) == pytest.approx(rho.mean(), abs=1e-10)
    assert measures.compute("svcca", x, y, summary="r2") == pytest.approx((rho**2).mean(), abs=1e-10)


def test_svcca_fixed_k_matches_statsmodels():
    x, y = representations(np.random.default_rng(13), 90, 10, 8)
    rho = CanCorr(pca_scores(y, k=3), pca_scores(x, k=3)).cancorr
    assert measures.compute("svcca", x, y, truncation="fixed_k", k=3) == pytest.approx(rho.mean(), abs=1e-10)
    # k larger than the rank keeps the whole rank: plain CCA.
    assert measures.compute("svcca", x, y, truncation="fixed_k", k=50) == pytest.approx(
        measures.compute("cca_mean_rho", x, y), abs=1e-10
    )


def test_svcca_tau_one_is_plain_cca(pair):
    x, y = pair
    assert measures.compute("svcca", x, y, tau=1.0) == pytest.approx(CanCorr(y, x).cancorr.mean(), abs=1e-10)


def test_resi_svcca_k1_bug_regression():
    """ReSi ``top_k_pca_comps`` compares the cumulative *fraction* of variance with 0.99 x the *absolute*
    total variance; with total variance > 1.01 no fraction reaches it and k collapses to 1, so ReSi's
    SVCCA is |corr| of the first principal components. Ours must keep the 99%-variance k."""
    rng = np.random.default_rng(14)
    x = spread_spectrum(rng, 300, 12, 5.0)
    y = np.tanh(x @ rng.standard_normal((12, 12)) / 3) + 0.3 * rng.standard_normal((300, 12))
    u, s, _ = np.linalg.svd(centre(x), full_matrices=False)
    variance = s**2 / (len(x) - 1)
    assert variance.sum() > 1.01
    fraction = np.cumsum(variance) / variance.sum()
    k_resi = int(np.argmax(fraction >= 0.99 * variance.sum())) + 1  # the buggy comparison
    assert k_resi == 1
    resi_value = abs(np.corrcoef(pca_scores(x, k=1)[:, 0], pca_scores(y, k=1)[:, 0])[0, 1])
    ours = measures.compute("svcca", x, y)
    correct = CanCorr(pca_scores(y, tau=0.99), pca_scores(x, tau=0.99)).cancorr.mean()
    assert pca_scores(x, tau=0.99).shape[1] > 1
    assert ours == pytest.approx(correct, abs=1e-10)
    assert abs(ours - resi_value) > 0.05


def test_svcca_thresholds_squared_singular_values_not_absolute_ones():
    # Spectrum s = (10, 1, 1, 1, ...): Σ|s| reaches 99% only near the end, Σs² much earlier.
    rng = np.random.default_rng(15)
    d = 30
    basis = orthonormal_centred(rng, 200, d)
    s = np.r_[10.0, np.full(d - 1, 0.3)]
    x = basis * s
    k_squared = int(np.argmax(np.cumsum(s**2) / np.sum(s**2) >= 0.9)) + 1
    k_absolute = int(np.argmax(np.cumsum(s) / np.sum(s) >= 0.9)) + 1
    assert k_squared < k_absolute
    y = basis[:, :k_squared] @ rng.standard_normal((k_squared, 4)) + 0.1 * rng.standard_normal((200, 4))
    rho = CanCorr(pca_scores(y, tau=0.9), x[:, :k_squared]).cancorr
    assert measures.compute("svcca", x, y, tau=0.9) == pytest.approx(rho.mean(), abs=1e-10)


def test_svcca_parameter_validation(pair):
    x, y = pair
    for bad in ({"tau": 0.0}, {"tau": 1.5}, {"truncation": "energy"}, {"summary": "max"}, {"k": 0}):
        with pytest.raises(ValueError, match="'svcca'"):
            measures.compute("svcca", x, y, **bad)


# --- PWCCA ---------------------------------------------------------------------------------------------


def pwcca_oracle(x: np.ndarray, y: np.ndarray, extra: np.ndarray | None = None) -> float:
    """PWCCA from statsmodels' canonical coefficients: variates X̃ a_i normalised, weights Σ_j |<h_i, x̃_j>|."""
    cc = CanCorr(y, x)
    h = centre(x) @ cc.x_cancoef
    h /= np.linalg.norm(h, axis=0)
    neurons = centre(x if extra is None else np.column_stack([x, extra]))
    weights = np.abs(h.T @ neurons).sum(axis=1)
    return float(weights @ cc.cancorr / weights.sum())


def test_pwcca_matches_statsmodels_variates(pair):
    x, y = pair
    assert measures.compute("pwcca", x, y) == pytest.approx(pwcca_oracle(x, y), abs=1e-10)
    assert measures.compute("pwcca", x, y, side="y") == pytest.approx(pwcca_oracle(y, x), abs=1e-10)
    assert measures.compute("pwcca", y, x) == pytest.approx(pwcca_oracle(y, x), abs=1e-10)


def test_pwcca_closed_form_and_asymmetry():
    # X = [s1 a, s2 b], Y = [t1 a, t2 c] with a, b, c orthonormal: ρ = {1, 0}, variates a and b (or c),
    # so PWCCA weighted by X is s1 / (s1 + s2) and weighted by Y is t1 / (t1 + t2).
    a, b, c = orthonormal_centred(np.random.default_rng(16), 30, 3).T
    x = np.column_stack([3.0 * a, 1.0 * b])
    y = np.column_stack([1.0 * a, 4.0 * c])
    assert measures.compute("pwcca", x, y) == pytest.approx(3 / 4, abs=1e-12)
    assert measures.compute("pwcca", x, y, side="y") == pytest.approx(1 / 5, abs=1e-12)
    assert measures.compute("pwcca", y, x) == pytest.approx(1 / 5, abs=1e-12)
    assert measures.compute("cca_mean_rho", x, y) == pytest.approx(1 / 2, abs=1e-12)


def test_pwcca_side_smaller_picks_fewer_neurons(pair):
    x, y = pair  # 9 and 6 columns
    assert measures.compute("pwcca", x, y, side="smaller") == pytest.approx(pwcca_oracle(y, x), abs=1e-10)
    assert measures.compute("pwcca", y, x, side="smaller") == pytest.approx(pwcca_oracle(y, x), abs=1e-10)
    with pytest.raises(ValueError, match="side must be one of"):
        measures.compute("pwcca", x, y, side="both")


def test_pwcca_ignores_invertible_maps_of_the_other_side(pair):
    x, y = pair
    a = np.random.default_rng(17).standard_normal((y.shape[1], y.shape[1]))
    assert measures.compute("pwcca", x, y @ a) == pytest.approx(measures.compute("pwcca", x, y), abs=1e-10)


@pytest.mark.parametrize("name", CCA_MEASURES)
def test_float32_arithmetic_path(name, pair):
    """On a GPU the inputs stay float32; the implementation (behind the validating wrapper) must cope."""
    x, y = pair
    impl = measures.info(name).function.__wrapped__
    v64 = float(impl(torch.tensor(x), torch.tensor(y)))
    v32 = float(impl(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)))
    assert v32 == pytest.approx(v64, abs=1e-5)
    assert float(impl(torch.tensor(x, dtype=torch.float32), torch.tensor(x, dtype=torch.float32))) == pytest.approx(
        1.0, abs=1e-5
    )


def test_svcca_undefined_message_does_not_suggest_svcca():
    """When svcca's kept directions reach N - 1, its hint is to keep fewer (not to use svcca)."""
    import measures

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(8, 20)), rng.normal(size=(8, 20))
    with pytest.raises(measures.UndefinedMeasureError) as err:
        measures.compute("svcca", X, Y, tau=1.0)
    assert "keep fewer directions" in str(err.value) and "e.g. svcca" not in str(err.value)
    with pytest.raises(measures.UndefinedMeasureError, match=r"e\.g\. svcca"):
        measures.compute("cca_mean_rho", X, Y)
