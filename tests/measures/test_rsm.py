"""RSM family against independent oracles: PyPI libraries, closed forms and second routes written here.

Every expected value below is computed in the test itself (numpy/scipy/rsatoolbox/dcor/scikit-learn)
or follows from a closed form on constructed inputs; none is copied from the measures' own output.
"""

from __future__ import annotations

import math

import dcor
import numpy as np
import pytest
import torch
import scipy.linalg
from rsatoolbox.data import Dataset
from rsatoolbox.rdm import calc_rdm, compare
from scipy.spatial.distance import cdist, pdist, squareform
from scipy.stats import kendalltau, pearsonr, rankdata, spearmanr
from sklearn.metrics.pairwise import rbf_kernel

import measures
import measures.rsm
from measures import UndefinedMeasureError
from tests.measures.conftest import representations

RSM = measures.names(family="rsm")
SCALE_INVARIANT = [n for n in RSM if "isotropic_scaling" in measures.info(n).invariances]


@pytest.fixture
def xy(rng):
    return representations(rng, 40, 6, 5)


# --- numpy oracles written independently of measures/rsm.py ------------------------------------------


def centre(a):
    return a - a.mean(axis=0)


def double_centre(g):
    return g - g.mean(axis=0) - g.mean(axis=1)[:, None] + g.mean()


def cka_of_grams(k, l):
    kc, lc = double_centre(k), double_centre(l)
    return np.sum(kc * lc) / (np.linalg.norm(kc) * np.linalg.norm(lc))


def hsic1_song(k, l):
    """Song et al. (2012) closed form of the unbiased HSIC."""
    n = len(k)
    kh, lh = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one = np.ones(n)
    return (
        np.trace(kh @ lh)
        + (one @ kh @ one) * (one @ lh @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ kh @ lh @ one
    ) / (n * (n - 3))


def u_centre(g):
    """U-centring (Székely & Rizzo 2014) of a symmetric matrix after zeroing its diagonal."""
    n = len(g)
    g = g - np.diag(np.diag(g))
    r = g.sum(axis=1)
    u = g - r[:, None] / (n - 2) - r[None, :] / (n - 2) + r.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(u, 0.0)
    return u


def tau_a_brute_force(a, b):
    sa = np.sign(a[:, None] - a[None, :])
    sb = np.sign(b[:, None] - b[None, :])
    m = len(a)
    return np.sum(np.triu(sa * sb, 1)) / (m * (m - 1) / 2)


def canonical_correlations(x, y):
    qx = np.linalg.qr(centre(x))[0]
    qy = np.linalg.qr(centre(y))[0]
    return np.linalg.svd(qx.T @ qy, compute_uv=False)


# --- cka_linear -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40, 6, 5), (12, 30, 20)], ids=["feature_route", "gram_route"])
def test_cka_linear_equals_gram_route(shape, rng):
    x, y = representations(rng, *shape)
    expected = cka_of_grams(x @ x.T, y @ y.T)
    assert measures.compute("cka_linear", x, y) == pytest.approx(expected, abs=1e-12)


def test_cka_linear_equals_rsatoolbox_cosine_cov_of_euclidean_rdms(xy):
    x, y = xy
    rx = calc_rdm(Dataset(measurements=x), method="euclidean")
    ry = calc_rdm(Dataset(measurements=y), method="euclidean")
    expected = compare(rx, ry, method="cosine_cov")[0, 0]
    assert measures.compute("cka_linear", x, y) == pytest.approx(expected, abs=1e-10)


def test_cka_linear_changes_under_invertible_linear_map(xy, rng):
    x, y = xy
    a = rng.standard_normal((x.shape[1], x.shape[1])) + np.diag(np.linspace(0.1, 5, x.shape[1]))
    assert np.linalg.matrix_rank(a) == x.shape[1]
    before, after = measures.compute("cka_linear", x, y), measures.compute("cka_linear", x @ a, y)
    assert after == pytest.approx(cka_of_grams(x @ a @ a.T @ x.T, y @ y.T), abs=1e-12)
    assert abs(before - after) > 1e-3


def test_cka_linear_tiny_n_is_one(rng):
    # With N = 2 every centred Gram is a multiple of [[1, -1], [-1, 1]].
    x, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    assert measures.compute("cka_linear", x, y) == pytest.approx(1.0, abs=1e-12)


# --- cka_linear_debiased ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40, 6, 5), (10, 25, 30), (4, 2, 3)], ids=["feature_route", "gram_route", "n4"])
def test_cka_debiased_equals_song_closed_form(shape, rng):
    x, y = representations(rng, *shape)
    k, l = x @ x.T, y @ y.T
    expected = hsic1_song(k, l) / math.sqrt(hsic1_song(k, k) * hsic1_song(l, l))
    assert measures.compute("cka_linear_debiased", x, y) == pytest.approx(expected, abs=1e-10)


def test_cka_debiased_equals_u_centred_gram_route(xy):
    x, y = xy
    n = len(x)
    uk, ul = u_centre(x @ x.T), u_centre(y @ y.T)
    # The closed form and the U-centred sum agree (the identity the measure relies on).
    assert np.sum(uk * ul) == pytest.approx(n * (n - 3) * hsic1_song(x @ x.T, y @ y.T), rel=1e-10)
    expected = np.sum(uk * ul) / (np.linalg.norm(uk) * np.linalg.norm(ul))
    assert measures.compute("cka_linear_debiased", x, y) == pytest.approx(expected, abs=1e-10)


def test_cka_debiased_is_near_zero_and_can_be_negative_for_independent_inputs():
    rng = np.random.default_rng(3)
    biased, debiased = [], []
    for _ in range(20):
        x, y = rng.standard_normal((20, 8)), rng.standard_normal((20, 8))
        biased.append(measures.compute("cka_linear", x, y))
        value = measures.compute("cka_linear_debiased", x, y)
        k, l = x @ x.T, y @ y.T
        assert value == pytest.approx(hsic1_song(k, l) / math.sqrt(hsic1_song(k, k) * hsic1_song(l, l)), abs=1e-10)
        debiased.append(value)
    assert min(debiased) < 0, "debiased CKA must not be clamped at 0"
    assert abs(np.mean(debiased)) < 0.05 < np.mean(biased) - 0.2


def test_cka_debiased_undefined_when_u_centred_gram_vanishes(rng):
    # Orthogonal rows: every off-diagonal Gram entry is 0, the U-centred Gram is 0, HSIC_1(K, K) = 0.
    one_hot = np.eye(6)
    with pytest.raises(UndefinedMeasureError, match="HSIC_1 of input 1"):
        measures.compute("cka_linear_debiased", one_hot, rng.standard_normal((6, 3)))
    with pytest.raises(UndefinedMeasureError, match="constant"):
        measures.compute("cka_linear_debiased", rng.standard_normal((6, 3)), np.ones((6, 2)))


# --- cka_rbf --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("median_over", ["full_matrix", "upper_triangle"])
@pytest.mark.parametrize("fraction", [0.2, 0.4, 0.8])
def test_cka_rbf_equals_sklearn_kernels_with_colab_bandwidth(xy, fraction, median_over):
    x, y = xy

    def gram(a):
        sq = cdist(a, a, "sqeuclidean")
        # The Colab's gram_rbf: np.median over the full N x N matrix, zero diagonal included.
        median = np.median(sq) if median_over == "full_matrix" else np.median(pdist(a, "sqeuclidean"))
        return rbf_kernel(a, gamma=1.0 / (2.0 * fraction**2 * median))

    expected = cka_of_grams(gram(x), gram(y))
    value = measures.compute("cka_rbf", x, y, fraction=fraction, median_over=median_over)
    assert value == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("block", [1, 33 * 2 + 5, 1 << 22])
@pytest.mark.parametrize("median_over", ["full_matrix", "upper_triangle"])
def test_cka_rbf_upper_triangle_route_and_fallback_equal_colab(monkeypatch, block, median_over):
    """One pass over the upper triangle (1-row, ragged and single blocks, a duplicate row) and the forced
    two-pass fallback both equal the Colab's full-matrix formula."""
    monkeypatch.setattr(measures.rsm, "_BLOCK_ELEMENTS", block)
    x, y = representations(np.random.default_rng(22), 33, 5, 4)
    x[20] = x[3]

    def gram(a):
        sq = cdist(a, a, "sqeuclidean")
        median = np.median(sq) if median_over == "full_matrix" else np.median(pdist(a, "sqeuclidean"))
        return np.exp(-sq / (2 * 0.4**2 * median))

    expected = cka_of_grams(gram(x), gram(y))
    assert measures.compute("cka_rbf", x, y, median_over=median_over) == pytest.approx(expected, rel=1e-12)
    monkeypatch.setattr(measures.rsm, "_EXPANSION_KEEP", 1.0)
    assert measures.compute("cka_rbf", x, y, median_over=median_over) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("keep", [True, False])
def test_cka_rbf_kept_blocks_and_memoised_median_equal_colab(monkeypatch, keep):
    """The median pass's blocks reused by the kernel pass (or rebuilt: nothing kept), and a second call
    that finds x's median memoised (its blocks then rebuilt by the kernel pass), at N = 400, where the
    median's order statistics come from the sample bracket: the Colab's full-matrix formula each time."""
    from measures import _memo

    if not keep:
        monkeypatch.setattr(measures.rsm, "_KEEP_BYTES", 0)
    rng = np.random.default_rng(23)
    x, y, z = (rng.standard_normal((400, 6)) for _ in range(3))
    y += 0.5 * x

    def gram(a):
        sq = cdist(a, a, "sqeuclidean")
        return np.exp(-sq / (2 * 0.4**2 * np.median(sq)))

    _memo.clear()
    hits = _memo.stats["hits"]
    for a, b in ((x, y), (x, z)):
        assert measures.compute("cka_rbf", a, b) == pytest.approx(cka_of_grams(gram(a), gram(b)), rel=1e-10)
    assert _memo.stats["hits"] > hits


@pytest.mark.parametrize("n", [7, 8])  # odd and even N² (numpy's two-middle-values rule)
def test_cka_rbf_median_rules_differ_and_match_numpy(n, rng):
    x, y = representations(rng, n, 3, 3)
    values = {m: measures.compute("cka_rbf", x, y, median_over=m) for m in ("full_matrix", "upper_triangle")}
    assert abs(values["full_matrix"] - values["upper_triangle"]) > 1e-6

    def colab_gram(a, fraction=0.4):
        sq = cdist(a, a, "sqeuclidean")
        return np.exp(-sq / (2 * fraction**2 * np.median(sq)))

    assert values["full_matrix"] == pytest.approx(cka_of_grams(colab_gram(x), colab_gram(y)), abs=1e-10)


def test_cka_rbf_wide_bandwidth_tends_to_linear_cka(xy):
    # exp(-d²/2σ²) ≈ 1 - d²/2σ², and -½ H D² H is the centred linear Gram.
    x, y = xy
    linear = cka_of_grams(x @ x.T, y @ y.T)
    assert measures.compute("cka_rbf", x, y, fraction=1e3) == pytest.approx(linear, abs=1e-5)


def test_cka_rbf_undefined_for_zero_median_distance(rng):
    x = np.vstack([np.zeros((8, 3)), rng.standard_normal((2, 3))])  # most rows duplicate
    with pytest.raises(UndefinedMeasureError, match="median squared distance of input 1 is 0"):
        measures.compute("cka_rbf", x, rng.standard_normal((10, 3)))


def test_cka_rbf_bad_parameters(xy):
    with pytest.raises(ValueError, match="median_over"):
        measures.compute("cka_rbf", *xy, median_over="diagonal")
    with pytest.raises(ValueError, match="fraction must be positive"):
        measures.compute("cka_rbf", *xy, fraction=0.0)


# --- rsa ------------------------------------------------------------------------------------------------


def test_rsa_default_equals_rsatoolbox_correlation_rdm_spearman(xy):
    x, y = xy
    rx = calc_rdm(Dataset(measurements=x), method="correlation")
    ry = calc_rdm(Dataset(measurements=y), method="correlation")
    assert measures.compute("rsa", x, y) == pytest.approx(compare(rx, ry, method="spearman")[0, 0], abs=1e-10)


@pytest.mark.parametrize("method, outer", [("corr", "pearson"), ("tau-a", "kendall_tau_a"), ("cosine", "cosine")])
def test_rsa_equals_rsatoolbox_compare(xy, method, outer):
    x, y = xy
    rx = calc_rdm(Dataset(measurements=x), method="correlation")
    ry = calc_rdm(Dataset(measurements=y), method="correlation")
    value = measures.compute("rsa", x, y, outer=outer)
    assert value == pytest.approx(compare(rx, ry, method=method)[0, 0], abs=1e-10)


@pytest.mark.parametrize("inner", ["correlation", "euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("outer", ["spearman", "pearson", "kendall_tau_a", "kendall_tau_b", "cosine"])
def test_rsa_every_inner_and_outer_equals_scipy(inner, outer):
    rng = np.random.default_rng(11)
    x, y = representations(rng, 14, 5, 4)
    a, b = pdist(x, inner), pdist(y, inner)  # scipy's metric names are the measure's inner names
    expected = {
        "spearman": lambda: spearmanr(a, b).statistic,
        "pearson": lambda: pearsonr(a, b).statistic,
        "kendall_tau_a": lambda: tau_a_brute_force(a, b),
        "kendall_tau_b": lambda: kendalltau(a, b).statistic,
        "cosine": lambda: a @ b / (np.linalg.norm(a) * np.linalg.norm(b)),
    }[outer]()
    assert measures.compute("rsa", x, y, inner=inner, outer=outer) == pytest.approx(expected, abs=1e-10)


def tied_codes(rng):
    """Binary codes with duplicate rows: Euclidean distances are √(Hamming), full of exact ties and zeros."""
    x = rng.integers(0, 2, size=(30, 6)).astype(float)
    x[10:14] = x[0]
    return x, rng.integers(0, 3, size=(30, 4)).astype(float)


def duplicated_floats(rng):
    """Continuous data far from the origin with duplicate rows: ties at 0 and among the copies' distances."""
    x = 3.0 * rng.standard_normal((30, 7)) + 100.0
    x[5:12], x[20:25] = x[3], x[1]
    y = rng.standard_normal((30, 4))
    y[5:9] = y[0]
    return x, y


def test_rows_distinct_agrees_with_numpy_unique():
    """The hash check of the RDM's distinct rows says "distinct" only where np.unique(axis=0) keeps every
    row (value equality: -0.0 equals 0.0), on distinct, duplicated, permuted-entry and signed-zero rows."""
    rng = np.random.default_rng(8)
    gauss = rng.standard_normal((300, 17))
    permuted = np.vstack([np.eye(6), np.eye(6)[::-1][:, ::-1] * 2])  # rows with equal multisets of entries
    repeated = gauss.copy()
    repeated[200] = repeated[3]
    zeros = np.zeros((4, 3))
    zeros[1, 2] = -0.0
    codes = rng.integers(0, 2, size=(40, 5)).astype(float)
    for a in (gauss, permuted, repeated, zeros, codes, gauss[:, :1], gauss[:1]):
        assert measures.rsm._rows_distinct(a) == (np.unique(a, axis=0).shape[0] == a.shape[0])


@pytest.mark.parametrize("data", [tied_codes, duplicated_floats])
@pytest.mark.parametrize("outer", ["spearman", "kendall_tau_a", "kendall_tau_b"])
def test_rsa_rank_outers_handle_ties_like_scipy(outer, data):
    x, y = data(np.random.default_rng(5))
    a, b = pdist(x), pdist(y)
    assert len(np.unique(a)) < 0.8 * len(a) and len(np.unique(b)) < 0.9 * len(b)
    expected = {
        "spearman": spearmanr(a, b).statistic,
        "kendall_tau_a": tau_a_brute_force(a, b),
        "kendall_tau_b": kendalltau(a, b).statistic,
    }[outer]
    assert measures.compute("rsa", x, y, inner="euclidean", outer=outer) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("block", [1, 7, 64])
@pytest.mark.parametrize("inner", ["correlation", "euclidean"])
def test_rsa_row_blocks_equal_scipy_on_condensed_distances(monkeypatch, block, inner):
    # Tiny row blocks (1, 7 and 64 entries of an RDM row: one row per block, blocks that end mid-row of
    # the triangle) and duplicate rows (the distinct-row expansion): Spearman of scipy's pdist vectors.
    monkeypatch.setattr(measures.rsm, "_BLOCK_ELEMENTS", block)
    rng = np.random.default_rng(11)
    x, y = representations(rng, 41, 6, 5)
    x[7], x[30], y[3] = x[2], x[2], y[40]
    a, b = pdist(x, inner), pdist(y, inner)
    value = measures.compute("rsa", x, y, inner=inner)
    assert value == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    upper = measures.rsm._rdm_upper("rsa", torch.from_numpy(x), 1, inner)
    np.testing.assert_array_equal(measures.rsm._average_ranks(upper).numpy(), rankdata(upper.numpy()))
    upper = upper.numpy()  # the RDM up to a power-of-two scale
    np.testing.assert_allclose(upper / upper.max(), a / a.max(), rtol=1e-12, atol=1e-13)


def test_order_statistics_equal_sorted_entries():
    """The bracketed selection of the RBF median against np.sort: random, tied, all-equal, mostly-zero
    and value-ordered (the sample's bracket can miss: the np.partition fallback) vectors."""
    rng = np.random.default_rng(14)
    cases = [rng.random(200_000), rng.integers(0, 3, 100_000).astype(float), np.zeros(70_000),
             np.concatenate([np.zeros(90_000), rng.random(9)]), np.sort(rng.random(100_000))[::-1].copy(),
             rng.random(1000)]
    for v in cases:
        m = v.size
        for wanted in ([m // 2 - 1, m // 2], [0], [m - 1], [m // 3, m // 3 + 5]):
            found = measures.rsm._order_statistics(v.copy(), wanted)
            assert found == {k: np.sort(v)[k] for k in wanted}
            # The same entries as row blocks of uneven sizes with +Inf padding, as cka_rbf's median pass
            # hands them over (entries j <= i of each block set to +Inf): the order statistics below the
            # padding are those of the entries alone.
            cuts = np.sort(rng.choice(np.arange(1, m), size=min(5, m - 1), replace=False))
            pieces = []
            for width, part in enumerate(np.split(v.copy(), cuts), start=1):
                padding = np.full(width + (-part.size) % width, np.inf)
                pieces.append(np.concatenate([part, padding]).reshape(-1, width))
            assert measures.rsm._order_statistics(pieces, wanted) == {k: np.sort(v)[k] for k in wanted}


def _float32_median_cases() -> list[tuple[str, np.ndarray, bool]]:
    """(name, rows with entries below 2, whether the float32 route must settle the order statistics)."""
    rng = np.random.default_rng(31)
    gauss = rng.standard_normal((600, 48)) / 8
    duplicates = np.repeat(rng.standard_normal((150, 10)) / 4, 4, axis=0)  # exact 0 distances, repeated pairs
    clustered = np.vstack([rng.standard_normal((300, 16)) / 16 + 0.5, rng.standard_normal((300, 16)) / 16 - 0.5])
    lattice = rng.integers(0, 3, (600, 12)) / 4  # integer distances: ~1e4 exact ties at the median
    outlier = np.vstack([rng.standard_normal((599, 20)) / 100, np.full((1, 20), 1.5)])  # the bound is too wide
    return [("gauss", gauss, True), ("duplicates", duplicates, True), ("clustered", clustered, True),
            ("lattice", lattice, False), ("outlier", outlier, False)]


@pytest.mark.parametrize("case", range(5))
def test_float32_order_statistics_equal_sorted_float64_entries(case):
    """The float32-bracketed selection of the RBF median against the sorted float64 squared distances of
    the plain formula ‖x_i‖² + ‖x_j‖² − 2x_iᵀx_j (i < j), at the median ranks, a low and a high rank;
    where the route cannot settle them (exact ties over more candidates than it re-scores; one far row
    that widens the error bound) it returns None and the caller's float64 route runs."""
    name, x, settles = _float32_median_cases()[case]
    sq = np.einsum("ij,ij->i", x, x)
    i, j = np.triu_indices(x.shape[0], 1)
    exact = np.sort(np.maximum(sq[i] + sq[j] - 2.0 * np.einsum("ij,ij->i", x[i], x[j]), 0.0))
    reference = np.sort(pdist(x, "sqeuclidean"))  # a different summation: agrees to round-off
    m = exact.size
    for wanted in ([(m + 1) // 2 - 1, m // 2], [m // 5], [4 * m // 5, 4 * m // 5 + 3]):
        found = measures.rsm._upper_order_statistics_float32(x, wanted)
        if not settles and wanted[0] == (m + 1) // 2 - 1:
            assert found is None, name
        if found is None:
            continue
        assert found == {k: exact[k] for k in wanted}, name
        for k in wanted:
            assert found[k] == pytest.approx(reference[k], rel=1e-13, abs=1e-15)


def test_float32_squared_distance_bound_holds_exactly():
    """|d̃ − d| ≤ E against exact rational arithmetic on the float64 rows, for the float32 values the
    route computes (fl32 norms, fl32 GEMM entries, −2·g + s_i + s_j in float32), on pairs chosen to
    make the Gram identity cancel (near-duplicate rows with large norms)."""
    from fractions import Fraction

    rng = np.random.default_rng(32)
    d = 64
    base = rng.uniform(-1.99, 1.99, (20, d))
    x = np.vstack([base, base + rng.standard_normal((20, d)) * 1e-4, rng.standard_normal((20, d)) / 3])
    sq = np.einsum("ij,ij->i", x, x)
    bound = measures.rsm._squared_distance_float32_bound(sq, d)
    x32, sq32 = x.astype(np.float32), sq.astype(np.float32)
    gram32 = x32 @ x32.T
    worst = 0.0
    for a in range(x.shape[0]):
        for b in range(a + 1, x.shape[0]):
            approx = np.float32(np.float32(np.float32(-2.0) * gram32[a, b]) + sq32[a]) + sq32[b]
            exact = sum((Fraction(float(p)) - Fraction(float(q))) ** 2 for p, q in zip(x[a], x[b]))
            error = abs(Fraction(float(approx)) - exact)
            assert error <= Fraction(bound)
            worst = max(worst, float(error) / bound)
    assert worst > 1e-3  # the pairs do probe the bound (it is not vacuous by orders of magnitude)


@pytest.mark.parametrize("median_over", ["full_matrix", "upper_triangle"])
def test_cka_rbf_float32_median_equals_colab(monkeypatch, median_over):
    """The float32 median route (forced at N = 500; it runs by default above N = 2896) and its float64
    fallback on lattice data both equal the Colab's formula (np.median of cdist's squared distances)."""
    monkeypatch.setattr(measures.rsm, "_FLOAT32_MEDIAN_BYTES", 0)
    calls = []
    route = measures.rsm._upper_order_statistics_float32
    monkeypatch.setattr(measures.rsm, "_upper_order_statistics_float32",
                        lambda x, wanted: calls.append(route(x, wanted)) or calls[-1])
    rng = np.random.default_rng(33)

    def gram(a):
        sq = cdist(a, a, "sqeuclidean")
        median = np.median(sq) if median_over == "full_matrix" else np.median(pdist(a, "sqeuclidean"))
        return np.exp(-sq / (2 * 0.4**2 * median))

    x = rng.standard_normal((500, 20))
    y = np.tanh(x @ rng.standard_normal((20, 30))) + 0.3 * rng.standard_normal((500, 30))
    lattice = rng.integers(0, 3, (500, 12)).astype(float)
    for a, b in ((x, y), (x, lattice)):
        measures._memo.clear()
        value = measures.compute("cka_rbf", a, b, median_over=median_over)
        assert value == pytest.approx(cka_of_grams(gram(a), gram(b)), rel=1e-12)
    assert [c is not None for c in calls] == [True, True, True, False]


def _rank_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(12)
    near_one = 1.0 + rng.integers(0, 300, 5000) * 2.0**-52  # every quantised key equal: all in the fix-up
    return [
        rng.standard_normal(20000),  # signed, tie-free
        np.round(rng.standard_normal(20000), 2),  # many ties
        near_one,
        np.concatenate([near_one, rng.random(3000)]),  # fix-up groups among ordinary entries
        np.array([0.0, -0.0, 0.0, 1e-300, -1e-300, 5e-324, 3.0, 3.0]),  # signed zeros tie
        np.array([-1.7e308, 1.7e308, 0.0, 1.7e308, -1.0]),  # a range beyond float64
        np.full(7, 2.5),  # constant
        np.array([4.0]),
    ]


@pytest.mark.parametrize("case", range(8))
def test_average_ranks_by_bucket_sort_equal_scipy_rankdata(monkeypatch, case):
    """The same with every key array of ≥ 4 entries sorted by buckets (rows of 8): scipy's ranks."""
    monkeypatch.setattr(measures.rsm, "_BUCKET_SORT_MIN", 4)
    monkeypatch.setattr(measures.rsm, "_BUCKET_SORT_FASTER", True)
    monkeypatch.setattr(measures.rsm, "_SORT_WINDOW", 8)
    v = _rank_cases()[case]
    np.testing.assert_array_equal(measures.rsm._average_ranks_numpy(v.copy()), rankdata(v))


@pytest.mark.parametrize("block", [1, 3, 64, 1000])
@pytest.mark.parametrize("case", range(8))
def test_average_ranks_numpy_in_chunks_equal_scipy_rankdata(monkeypatch, block, case):
    """The rank passes chunk by chunk (written straight into the input's buffer): tie groups that span
    one or many chunk boundaries, start or end on one, or fill whole chunks; scipy's ranks."""
    monkeypatch.setattr(measures.rsm, "_RANK_CHUNK", block)
    v = _rank_cases()[case][: 3000 if block < 64 else None]
    expected = rankdata(v)
    scratch = v.copy()
    ranks = measures.rsm._average_ranks_numpy(scratch)
    np.testing.assert_array_equal(ranks, expected)
    assert ranks is scratch  # no second M-entry buffer for the ranks


@pytest.mark.parametrize("window", [8, 256])
def test_sort_distinct_keys_equals_numpy_sort(monkeypatch, window):
    """Bucket sort against np.sort: spread and concentrated keys, outliers that would squeeze the rest
    into a few buckets, one huge bucket, buckets just above and below half a window, tiny arrays."""
    monkeypatch.setattr(measures.rsm, "_BUCKET_SORT_MIN", 4)
    monkeypatch.setattr(measures.rsm, "_BUCKET_SORT_FASTER", True)
    monkeypatch.setattr(measures.rsm, "_SORT_WINDOW", window)
    rng = np.random.default_rng(13)

    def keys(q: np.ndarray) -> np.ndarray:  # distinct, like the packed keys: value bits then position
        bits = max(1, (q.size - 1).bit_length())
        return (q.astype(np.int64) << bits) | np.arange(q.size)

    cases = [
        rng.integers(0, 1 << 40, 200_000),
        (np.clip(rng.normal(0.5, 0.01, 300_000), 0, 1) * 2.0**38).astype(np.int64),
        np.concatenate([rng.integers(0, 1000, 100_000), [1 << 40] * 3, [0] * 5]),
        np.zeros(70_000, dtype=np.int64),
        np.repeat(np.arange(3000), rng.integers(window // 2 - 1, window // 2 + 2, 3000)),
        rng.integers(0, 5, 9),
        np.array([7]),
    ]
    for q in cases:
        k = keys(q)
        expected = np.sort(k)
        np.testing.assert_array_equal(measures.rsm._sort_distinct_keys(k), expected)


def test_bucket_sort_choice_is_timed_once_per_process(monkeypatch):
    """The bucket sort runs only where it beat np.sort in this process's one timing of both."""
    monkeypatch.setattr(measures.rsm, "_BUCKET_SORT_FASTER", None)
    choice = measures.rsm._bucket_sort_pays()
    assert isinstance(choice, bool) and measures.rsm._BUCKET_SORT_FASTER is choice
    monkeypatch.setattr(measures.rsm, "_bucket_sort_keys", lambda key: pytest.fail("not timed again"))
    assert measures.rsm._bucket_sort_pays() is choice
    keys = np.random.default_rng(3).permutation(1 << 17).astype(np.int64)
    monkeypatch.setattr(measures.rsm, "_BUCKET_SORT_FASTER", False)
    np.testing.assert_array_equal(measures.rsm._sort_distinct_keys(keys.copy()), np.arange(1 << 17))


@pytest.mark.parametrize("case", range(8))
def test_average_ranks_numpy_and_torch_paths_equal_scipy_rankdata(case):
    """The packed-key numpy ranks (quantised value and position in one int64 sort, then a fix-up of
    equal quantised parts) and the torch sort path both equal scipy's average ranks exactly."""
    v = _rank_cases()[case]
    expected = rankdata(v)
    np.testing.assert_array_equal(measures.rsm._average_ranks(torch.from_numpy(v)).numpy(), expected)
    np.testing.assert_array_equal(measures.rsm._average_ranks_numpy(v.copy()), expected)
    forced_torch = measures.rsm._average_ranks(torch.from_numpy(v).requires_grad_()).detach().numpy()
    np.testing.assert_array_equal(forced_torch, expected)


def test_rsa_kendall_on_large_rdm_equals_scipy():
    # 1,225 RDM entries: exercises several merge levels of the inversion count, with and without ties.
    rng = np.random.default_rng(8)
    x, y = representations(rng, 50, 6, 4)
    expected = kendalltau(pdist(x, "sqeuclidean"), pdist(y, "sqeuclidean")).statistic
    assert measures.compute("rsa", x, y, inner="sqeuclidean", outer="kendall_tau_b") == pytest.approx(
        expected, abs=1e-12
    )
    xr, yr = np.round(x), np.round(y)  # integer data: squared distances are exact integers with many ties
    a, b = pdist(xr, "sqeuclidean"), pdist(yr, "sqeuclidean")
    assert len(np.unique(a)) < len(a) // 4
    expected = kendalltau(a, b).statistic
    assert measures.compute("rsa", xr, yr, inner="sqeuclidean", outer="kendall_tau_b") == pytest.approx(
        expected, abs=1e-12
    )


def test_rsa_euclidean_inner_is_orthogonal_and_translation_invariant(xy, rng):
    from scipy.stats import ortho_group

    x, y = xy
    base = measures.compute("rsa", x, y, inner="euclidean")
    moved = x @ ortho_group.rvs(x.shape[1], random_state=1) + 50.0 * rng.standard_normal(x.shape[1])
    assert measures.compute("rsa", moved, y, inner="euclidean") == pytest.approx(base, abs=1e-9)
    # ... while the default correlation inner is not translation invariant.
    assert abs(measures.compute("rsa", moved, y) - measures.compute("rsa", x, y)) > 1e-3


def test_rsa_undefined_cases(rng):
    y = rng.standard_normal((6, 3))
    row_constant = rng.standard_normal((6, 3))
    row_constant[2] = 1.5
    with pytest.raises(UndefinedMeasureError, match="constant across features"):
        measures.compute("rsa", row_constant, y)
    with pytest.raises(UndefinedMeasureError, match="RDM of input 1 is constant"):
        measures.compute("rsa", np.eye(6), y, inner="euclidean")  # all pairs √2 apart
    with pytest.raises(UndefinedMeasureError, match="all zeros"):
        measures.compute("rsa", np.zeros((6, 3)), y, inner="cosine")


def test_rsa_bad_parameters(xy):
    with pytest.raises(ValueError, match="inner must be one of"):
        measures.compute("rsa", *xy, inner="manhattan")
    with pytest.raises(ValueError, match="outer must be one of"):
        measures.compute("rsa", *xy, outer="kendall")


# --- rsm_norm_difference ------------------------------------------------------------------------------------


def test_rsm_norm_difference_equals_scipy_distance_matrices(xy):
    x, y = xy
    diff = squareform(pdist(x)) - squareform(pdist(y))
    assert measures.compute("rsm_norm_difference", x, y) == pytest.approx(np.linalg.norm(diff), rel=1e-12)
    upper = np.linalg.norm(pdist(x) - pdist(y))
    assert measures.compute("rsm_norm_difference", x, y, norm="frobenius_upper") == pytest.approx(upper, rel=1e-12)
    gram_diff = x @ x.T - y @ y.T
    assert measures.compute("rsm_norm_difference", x, y, inner="linear") == pytest.approx(
        np.linalg.norm(gram_diff), rel=1e-12
    )
    strict = np.linalg.norm(gram_diff[np.triu_indices(len(x), 1)])
    value = measures.compute("rsm_norm_difference", x, y, inner="linear", norm="frobenius_upper")
    assert value == pytest.approx(strict, rel=1e-10)


def test_rsm_norm_difference_is_frobenius_not_resi_spectral_norm(xy):
    """Regression: ReSi passes the square matrices to np.linalg.norm(..., ord=2), the spectral norm."""
    x, y = xy
    diff = squareform(pdist(x)) - squareform(pdist(y))
    value = measures.compute("rsm_norm_difference", x, y)
    resi_value = np.linalg.norm(diff, ord=2)
    assert value == pytest.approx(np.linalg.norm(diff, "fro"), rel=1e-12)
    assert abs(value - resi_value) > 0.05 * value


def test_rsm_norm_difference_scale_and_magnitudes(xy):
    x, y = xy
    base = measures.compute("rsm_norm_difference", x, y)
    assert measures.compute("rsm_norm_difference", 3.0 * x, 3.0 * y) == pytest.approx(3.0 * base, rel=1e-12)
    assert measures.compute("rsm_norm_difference", 1e200 * x, 1e200 * y) == pytest.approx(1e200 * base, rel=1e-10)
    assert measures.compute("rsm_norm_difference", 1e-200 * x, 1e-200 * y) == pytest.approx(1e-200 * base, rel=1e-10)
    assert measures.compute("rsm_norm_difference", x, x + 7.0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(5, 3, 2), (40, 6, 6), (90, 7, 12), (150, 20, 5), (30, 40, 25)])
def test_rsm_norm_difference_spectral_equals_dense_svd(shape):
    """norm="spectral" (ReSi's np.linalg.norm(S - S', ord=2)) against LAPACK's singular values of the full
    difference (scipy.spatial distances; the Gram difference formed directly), below and above the
    dense/Lanczos switch and with 2D ≥ N for the linear RSM."""
    n, d1, d2 = shape
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal((n, d1)) + 2.0, 0.5 * rng.standard_normal((n, d2)) - 1.0
    diff = squareform(pdist(x)) - squareform(pdist(y))
    assert measures.compute("rsm_norm_difference", x, y, norm="spectral") == pytest.approx(
        scipy.linalg.svdvals(diff)[0], rel=1e-12)
    assert measures.compute("rsm_norm_difference", x, y, inner="linear", norm="spectral") == pytest.approx(
        scipy.linalg.svdvals(x @ x.T - y @ y.T)[0], rel=1e-12)
    # the same number from torch (autograd inputs take the torch route)
    value = measures.compute("rsm_norm_difference", torch.tensor(x, requires_grad=True), torch.tensor(y),
                             norm="spectral")
    assert value == pytest.approx(scipy.linalg.svdvals(diff)[0], rel=1e-12)


def test_rsm_norm_difference_spectral_properties(xy):
    x, y = xy
    spectral = measures.compute("rsm_norm_difference", x, y, norm="spectral")
    frobenius = measures.compute("rsm_norm_difference", x, y)
    assert frobenius / math.sqrt(len(x)) <= spectral <= frobenius
    assert measures.compute("rsm_norm_difference", 3.0 * x, 3.0 * y, norm="spectral") == pytest.approx(
        3.0 * spectral, rel=1e-12)
    assert measures.compute("rsm_norm_difference", 1e200 * x, 1e200 * y, norm="spectral") == pytest.approx(
        1e200 * spectral, rel=1e-10)
    assert measures.compute("rsm_norm_difference", x, x, norm="spectral") == 0.0
    assert measures.compute("rsm_norm_difference", x, x + 7.0, norm="spectral") == pytest.approx(0.0, abs=1e-12)
    # linear RSM: XXᵀ − YYᵀ for X ≈ Y has no cancellation in the ½(UVᵀ + VUᵀ) form
    near = x + 1e-9 * np.random.default_rng(5).standard_normal(x.shape)
    t = near - x  # exact (Sterbenz)
    expected = scipy.linalg.svdvals(near @ t.T + t @ x.T)[0]  # (x+t)(x+t)ᵀ − xxᵀ, factored by hand
    assert measures.compute("rsm_norm_difference", near, x, inner="linear", norm="spectral") == pytest.approx(
        expected, rel=1e-8)


def test_rsm_norm_difference_spectral_of_a_rank_two_difference():
    """One moved instance: D_X − D_Y is non-zero in one row and column only (rank 2), where Lanczos meets
    an invariant subspace after two steps."""
    x = np.random.default_rng(6).standard_normal((120, 5))
    y = x.copy()
    y[7] += 3.0
    expected = scipy.linalg.svdvals(squareform(pdist(x)) - squareform(pdist(y)))[0]
    assert measures.compute("rsm_norm_difference", x, y, norm="spectral") == pytest.approx(expected, rel=1e-12)


def test_largest_abs_eigenvalue_with_nearly_tied_ends():
    """The Lanczos helper on symmetric matrices whose largest |λ| is nearly tied between both ends of the
    spectrum (only the upper triangle is filled), against LAPACK's eigenvalues."""
    rng = np.random.default_rng(9)
    q = np.linalg.qr(rng.standard_normal((200, 200)))[0]
    for top in (5.0, -5.0):
        eigenvalues = np.concatenate([[top, -top * (1 - 1e-6)], rng.uniform(-4.5, 4.5, 198)])
        full = (q * eigenvalues) @ q.T
        upper = np.triu(full)
        assert measures.rsm._largest_abs_eigenvalue(upper) == pytest.approx(5.0, rel=1e-12)
    assert measures.rsm._largest_abs_eigenvalue(np.zeros((100, 100))) == 0.0


def test_largest_abs_eigenvalue_falls_back_to_dense_eigenvalues(monkeypatch):
    """Should ARPACK not converge, the dense eigenvalues give the value."""
    import scipy.sparse.linalg

    def no_convergence(*args, **kwargs):
        raise scipy.sparse.linalg.ArpackNoConvergence("forced", np.zeros(0), np.zeros((0, 0)))

    monkeypatch.setattr(scipy.sparse.linalg, "eigsh", no_convergence)
    a = np.random.default_rng(10).standard_normal((100, 100))
    a += a.T
    assert measures.rsm._largest_abs_eigenvalue(np.triu(a)) == pytest.approx(
        np.abs(np.linalg.eigvalsh(a)).max(), rel=1e-12)


def test_rsm_norm_difference_bad_norm(xy):
    with pytest.raises(ValueError, match="rsm_norm_difference.*norm must be one of"):
        measures.compute("rsm_norm_difference", *xy, norm="nuclear")


# --- distance_correlation -------------------------------------------------------------------------------------


def test_distance_correlation_equals_dcor(xy):
    x, y = xy
    assert measures.compute("distance_correlation", x, y) == pytest.approx(dcor.distance_correlation(x, y), abs=1e-10)
    value = measures.compute("distance_correlation", x, y, estimator="unbiased")
    assert value == pytest.approx(dcor.u_distance_correlation_sqr(x, y), abs=1e-10)


@pytest.mark.parametrize("block", [1, 40 * 3 + 7, 1 << 22])
def test_distance_correlation_upper_triangle_route_equals_dcor(monkeypatch, block):
    """The one-pass route over the upper triangle (row blocks of 1 row, ragged blocks, one block) and,
    where its expansion would cancel too far (forced here by demanding that the centred products keep
    all of the uncentred ones), the two-pass route: both equal dcor, and the fallback is taken only then."""
    monkeypatch.setattr(measures.rsm, "_BLOCK_ELEMENTS", block)
    rng = np.random.default_rng(21)
    x = rng.standard_normal((40, 5))
    y = np.tanh(x @ rng.standard_normal((5, 3))) + 0.3 * rng.standard_normal((40, 3))
    x[11] = x[4]
    two_pass = []
    original = measures.rsm._centred_products
    monkeypatch.setattr(measures.rsm, "_centred_products", lambda *a, **k: two_pass.append(1) or original(*a, **k))
    assert measures.compute("distance_correlation", x, y) == pytest.approx(dcor.distance_correlation(x, y), rel=1e-12)
    assert not two_pass
    monkeypatch.setattr(measures.rsm, "_EXPANSION_KEEP", 1.0)
    assert measures.compute("distance_correlation", x, y) == pytest.approx(dcor.distance_correlation(x, y), rel=1e-12)
    assert two_pass


def test_distance_correlation_unbiased_can_be_negative_and_tiny_n():
    rng = np.random.default_rng(2)
    values = []
    for _ in range(10):
        x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
        v = measures.compute("distance_correlation", x, y, estimator="unbiased")
        assert v == pytest.approx(dcor.u_distance_correlation_sqr(x, y), abs=1e-10)
        values.append(v)
    assert min(values) < 0
    x, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    assert measures.compute("distance_correlation", x, y) == pytest.approx(dcor.distance_correlation(x, y), abs=1e-12)
    with pytest.raises(ValueError, match="needs at least 4 rows"):
        measures.compute("distance_correlation", x, y, estimator="unbiased")


def test_distance_correlation_undefined_for_constant_input(rng):
    with pytest.raises(UndefinedMeasureError, match="constant"):
        measures.compute("distance_correlation", np.full((5, 2), 3.0), rng.standard_normal((5, 2)))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("distance_correlation", {}),
        ("distance_correlation", {"estimator": "unbiased"}),
        ("cka_rbf", {}),
        ("rsm_norm_difference", {}),
        ("rsm_norm_difference", {"inner": "linear", "norm": "frobenius_upper"}),
    ],
)
def test_row_blocked_route_equals_single_block(name, kwargs, xy, monkeypatch):
    x, y = xy
    single = measures.compute(name, x, y, **kwargs)
    monkeypatch.setattr(measures.rsm, "_BLOCK_ELEMENTS", 3 * len(x))  # 3 rows per block, last one short
    assert measures.compute(name, x, y, **kwargs) == pytest.approx(single, rel=1e-12, abs=1e-14)


# --- nbs --------------------------------------------------------------------------------------------------------


def test_nbs_equals_gram_route_with_matrix_square_roots(xy):
    x, y = xy
    k, l = centre(x) @ centre(x).T, centre(y) @ centre(y).T
    root_k = scipy.linalg.sqrtm(k).real
    fidelity = np.trace(scipy.linalg.sqrtm(root_k @ l @ root_k).real)
    expected = fidelity / math.sqrt(np.trace(k) * np.trace(l))
    # The N x N square-root route loses ≈1e-8 in float64 (near-zero eigenvalues).
    assert measures.compute("nbs", x, y) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("shape", [(40, 6, 6), (10, 25, 30)], ids=["n_gt_d", "d_gt_n"])
def test_nbs_equals_nuclear_norm_and_scipy_procrustes_scale(shape, rng):
    x, y = representations(rng, *shape)
    xc, yc = centre(x) / np.linalg.norm(centre(x)), centre(y) / np.linalg.norm(centre(y))
    value = measures.compute("nbs", x, y)
    assert value == pytest.approx(np.linalg.norm(xc.T @ yc, "nuc"), abs=1e-12)
    if shape[1] == shape[2]:
        _, scale = scipy.linalg.orthogonal_procrustes(xc, yc)  # scale = ‖xcᵀ yc‖_*
        assert value == pytest.approx(scale, abs=1e-12)


def test_nbs_undefined_for_constant_input(rng):
    with pytest.raises(UndefinedMeasureError, match="input 2 is constant"):
        measures.compute("nbs", rng.standard_normal((5, 2)), np.ones((5, 3)))


# --- eigenspace_overlap ----------------------------------------------------------------------------------------


def test_eigenspace_overlap_equals_scipy_orth(xy):
    x, y = xy
    u, v = scipy.linalg.orth(centre(x)), scipy.linalg.orth(centre(y))
    expected = np.linalg.norm(u.T @ v) ** 2 / max(u.shape[1], v.shape[1])
    assert measures.compute("eigenspace_overlap", x, y) == pytest.approx(expected, abs=1e-12)
    u, v = scipy.linalg.orth(x), scipy.linalg.orth(y)
    expected = np.linalg.norm(u.T @ v) ** 2 / max(u.shape[1], v.shape[1])
    assert measures.compute("eigenspace_overlap", x, y, center=False) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("center", [True, False])
def test_eigenspace_overlap_both_routes_equal_scipy_orth(rng, center):
    """The Cholesky route (well-conditioned inputs) and the SVD route (a full-rank input with condition
    number 1e7, beyond the Cholesky bound) both against orthonormal bases from scipy's SVD."""
    x = rng.standard_normal((200, 12))
    y = 0.5 * x[:, :8] @ rng.standard_normal((8, 10)) + rng.standard_normal((200, 10))
    skewed = x * np.logspace(0, -7, 12)
    for a, b, fast in ((x, y, True), (skewed, y, False)):
        assert (measures.rsm._overlap_by_covariances(torch.from_numpy(a), torch.from_numpy(b), center)
                is not None) == fast
        u = scipy.linalg.orth(centre(a) if center else a, rcond=200 * np.finfo(float).eps)
        v = scipy.linalg.orth(centre(b) if center else b, rcond=200 * np.finfo(float).eps)
        expected = np.linalg.norm(u.T @ v) ** 2 / max(u.shape[1], v.shape[1])
        assert measures.compute("eigenspace_overlap", a, b, center=center) == pytest.approx(expected, abs=1e-10)


def test_eigenspace_overlap_closed_forms(rng):
    x = centre(rng.standard_normal((30, 5)))
    # A subspace: the 3 columns of Y lie in the 5-dimensional col(X).
    assert measures.compute("eigenspace_overlap", x, x[:, :3] @ rng.standard_normal((3, 3))) == pytest.approx(0.6)
    # An invertible linear map keeps the column space.
    assert measures.compute("eigenspace_overlap", x, x @ rng.standard_normal((5, 5))) == pytest.approx(1.0)
    # Orthogonal column spaces (both ⟂ 1): overlap 0.
    q = np.linalg.qr(centre(rng.standard_normal((30, 6))))[0]
    assert measures.compute("eigenspace_overlap", q[:, :3], q[:, 3:]) == pytest.approx(0.0, abs=1e-12)


def test_eigenspace_overlap_rank_deficient_inputs(xy):
    x, y = xy
    padded = np.hstack([x, x[:, :2], np.full((len(x), 1), 4.0)])  # duplicate and constant columns
    assert measures.compute("eigenspace_overlap", x, padded) == pytest.approx(1.0, abs=1e-12)
    assert measures.compute("eigenspace_overlap", padded, y) == pytest.approx(
        measures.compute("eigenspace_overlap", x, y), abs=1e-12
    )


def test_eigenspace_overlap_degenerate_when_columns_span_everything(rng):
    y = rng.standard_normal((10, 3))
    with pytest.raises(UndefinedMeasureError, match="D >= N-1"):
        measures.compute("eigenspace_overlap", rng.standard_normal((10, 9)), y)
    with pytest.raises(UndefinedMeasureError, match="D >= N"):
        measures.compute("eigenspace_overlap", rng.standard_normal((10, 12)), y, center=False)
    value = measures.compute("eigenspace_overlap", rng.standard_normal((10, 9)), y, center=False)
    assert 0.0 <= value <= 1.0
    with pytest.raises(UndefinedMeasureError, match="constant"):
        measures.compute("eigenspace_overlap", np.ones((10, 2)), y)


# --- gulp --------------------------------------------------------------------------------------------------------


def gulp_trace_form(x, y, lam):
    """GULP's d² from its definition (D x D covariances, explicit (pseudo-)inverses)."""
    n = len(x)

    def prep(a):
        a = centre(a)
        return a * math.sqrt(n) / np.linalg.norm(a)

    a, b = prep(x), prep(y)
    sa, sb, sab = a.T @ a / n, b.T @ b / n, a.T @ b / n
    inv = (
        (lambda s: np.linalg.pinv(s, hermitian=True))
        if lam == 0
        else (lambda s: np.linalg.inv(s + lam * np.eye(len(s))))
    )
    ra, rb = inv(sa), inv(sb)
    return np.trace(ra @ sa @ ra @ sa) + np.trace(rb @ sb @ rb @ sb) - 2 * np.trace(ra @ sab @ rb @ sab.T)


def test_gulp_lambda0_equals_ranks_minus_canonical_correlations(xy):
    x, y = xy
    rho = canonical_correlations(x, y)
    expected_sq = x.shape[1] + y.shape[1] - 2 * np.sum(rho**2)
    value = measures.compute("gulp", x, y)
    assert value == pytest.approx(math.sqrt(expected_sq), abs=1e-10)  # d, not d²
    assert value**2 == pytest.approx(gulp_trace_form(x, y, 0.0), abs=1e-9)


@pytest.mark.parametrize("lam", [1e-3, 1e-2, 1e-1, 1.0])
def test_gulp_ridge_equals_trace_form(xy, lam):
    x, y = xy
    value = measures.compute("gulp", x, y, lambda_=lam)
    assert value == pytest.approx(math.sqrt(gulp_trace_form(x, y, lam)), abs=1e-10)


def test_gulp_ridge_is_defined_for_wide_layers_but_lambda0_is_not(rng):
    x, y = representations(rng, 10, 20, 15)
    with pytest.raises(UndefinedMeasureError, match="D >= N-1"):
        measures.compute("gulp", x, y)
    assert measures.compute("gulp", x, y, lambda_=0.1) == pytest.approx(
        math.sqrt(gulp_trace_form(x, y, 0.1)), abs=1e-10
    )


def test_gulp_ridge_loses_invertible_linear_invariance(xy, rng):
    x, y = xy
    a = np.diag(np.geomspace(0.1, 10, x.shape[1])) @ np.linalg.qr(rng.standard_normal((x.shape[1],) * 2))[0]
    assert measures.compute("gulp", x @ a, y) == pytest.approx(measures.compute("gulp", x, y), abs=1e-9)
    assert abs(measures.compute("gulp", x @ a, y, lambda_=0.1) - measures.compute("gulp", x, y, lambda_=0.1)) > 1e-3


def test_gulp_bad_lambda(xy):
    with pytest.raises(ValueError, match="lambda_ must be"):
        measures.compute("gulp", *xy, lambda_=-1.0)


# --- riemannian_distance --------------------------------------------------------------------------------------


def riemannian_oracle(x, y, epsilon, center=True):
    def rsm(a):
        a = centre(a) if center else a
        s = a @ a.T / a.shape[1]
        return s + epsilon * np.trace(s) / len(s) * np.eye(len(s))

    eigenvalues = scipy.linalg.eigh(rsm(y), rsm(x), eigvals_only=True)
    return math.sqrt(np.sum(np.log(eigenvalues) ** 2))


@pytest.mark.parametrize("epsilon", [1e-3, 1e-1])
def test_riemannian_distance_equals_scipy_generalized_eigh(xy, epsilon):
    x, y = xy
    value = measures.compute("riemannian_distance", x, y, epsilon=epsilon)
    assert value == pytest.approx(riemannian_oracle(x, y, epsilon), rel=1e-9)


def test_riemannian_distance_unregularised_full_rank(rng):
    x, y = rng.standard_normal((12, 20)), rng.standard_normal((12, 15))
    value = measures.compute("riemannian_distance", x, y, epsilon=0.0, center=False)
    assert value == pytest.approx(riemannian_oracle(x, y, 0.0, center=False), rel=1e-9)
    with pytest.raises(UndefinedMeasureError, match="singular"):
        measures.compute("riemannian_distance", x, y, epsilon=0.0)  # centring removes one rank
    with pytest.raises(UndefinedMeasureError, match="singular"):
        measures.compute("riemannian_distance", x[:, :5], y, epsilon=0.0, center=False)


def test_riemannian_distance_scaling_closed_form_and_magnitudes(xy):
    x, y = xy
    n = len(x)
    # S_cX = c² S_X (regulariser included): every log-eigenvalue is log c².
    assert measures.compute("riemannian_distance", x, 3.0 * x) == pytest.approx(
        2 * math.sqrt(n) * math.log(3.0), rel=1e-10
    )
    assert measures.compute("riemannian_distance", x, 1e150 * x) == pytest.approx(
        2 * math.sqrt(n) * math.log(1e150), rel=1e-10
    )
    base = measures.compute("riemannian_distance", x, y)
    assert measures.compute("riemannian_distance", 1e200 * x, 1e200 * y) == pytest.approx(base, rel=1e-9)


def test_riemannian_distance_bad_epsilon(xy):
    with pytest.raises(ValueError, match="epsilon must be"):
        measures.compute("riemannian_distance", *xy, epsilon=-1e-3)


# --- shared degenerate regimes -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCALE_INVARIANT)
def test_huge_and_tiny_magnitudes(name, xy):
    x, y = xy
    base = measures.compute(name, x, y)
    assert measures.compute(name, 1e150 * x, 1e-150 * y) == pytest.approx(base, rel=1e-9, abs=1e-12)
    assert measures.compute(name, 1e-200 * x, 1e200 * y) == pytest.approx(base, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", RSM)
def test_float32_input_matches_float64(name, xy):
    x, y = xy
    value32 = measures.compute(name, x.astype(np.float32), y.astype(np.float32))
    assert value32 == pytest.approx(measures.compute(name, x, y), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    "name",
    [
        "cka_linear",
        "cka_linear_debiased",
        "cka_rbf",
        "distance_correlation",
        "nbs",
        "eigenspace_overlap",
        "gulp",
        "rsm_norm_difference",
    ],
)
def test_constant_columns_change_nothing(name, xy):
    x, y = xy
    padded = np.hstack([x, np.full((len(x), 2), -3.25)])
    assert measures.compute(name, padded, y) == pytest.approx(measures.compute(name, x, y), rel=1e-10, abs=1e-12)


def test_every_rsm_measure_is_tested_here():
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    assert all(f'"{name}"' in source for name in RSM)
