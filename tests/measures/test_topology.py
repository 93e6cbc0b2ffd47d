"""Topology measures (RTD, IMD, geometry score) against field libraries, exact spectra and known shapes.

Oracles: gudhi's Rips complex for the R-Cross-Barcode (the measure uses ripser), scipy/sklearn for the
kNN graph and the exact Laplacian spectrum (the measure uses torch and stochastic Lanczos quadrature),
gudhi called directly plus an RLT written here from the paper's formulas (midpoint counting) for the
geometry score; pipelines re-implemented in the test with scipy distances where the measure is
deterministic (all rows used); known shapes (a circle's loop, similarity transforms give exactly 0).
"""

from __future__ import annotations

import math

import gudhi
import numpy as np
import pytest
import ripser
import torch
from scipy.sparse.csgraph import laplacian
from scipy.spatial.distance import cdist, pdist, squareform
from scipy.stats import ortho_group
from sklearn.neighbors import kneighbors_graph

import measures
from measures import UndefinedMeasureError
from measures.topology import (
    _cross_barcode_h1_length,
    _knn_graph_edges,
    _lanczos_heat_traces,
    _witness_h1_intervals,
    relative_living_times,
)
from tests.measures.conftest import representations

TOPOLOGY = ["rtd", "imd", "geometry_score"]


def circle(rng, n, noise=0.0, radius=1.0):
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    return radius * np.c_[np.cos(theta), np.sin(theta)] + noise * rng.standard_normal((n, 2)), theta


def similarity_transform(x, rng):
    """A rotation, an isotropic scaling and a translation: every topology measure must give 0."""
    q = ortho_group.rvs(x.shape[1], random_state=rng)
    return 2.5 * x @ q + rng.standard_normal(x.shape[1])


# --------------------------------------------------------------------------------------------------
# Shared properties
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOPOLOGY)
def test_zero_for_similarity_transforms(name, rng):
    x, _ = representations(rng, 150, 6, 6)
    assert measures.compute(name, x, similarity_transform(x, rng)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", TOPOLOGY)
def test_seed_determinism(name, rng):
    x, y = representations(rng, 150, 6, 5)
    small = {
        "rtd": {"n_points": 40},
        "imd": {"n_probes": 20, "method": "slq"},  # the exact route has no randomness
        "geometry_score": {"n_landmarks": 30, "n_draws": 4},
    }[name]
    first = measures.compute(name, x, y, seed=3, **small)
    assert measures.compute(name, x, y, seed=3, **small) == first  # bit-identical
    assert measures.compute(name, x, y, seed=4, **small) != first  # the seed is really used
    assert measures.info(name).stochastic


@pytest.mark.parametrize("name", TOPOLOGY)
def test_constant_representation_is_undefined(name, rng):
    x, _ = representations(rng, 30, 4, 4)
    with pytest.raises(UndefinedMeasureError, match=name):
        measures.compute(name, x, np.ones((30, 3)))


@pytest.mark.parametrize("name", TOPOLOGY)
def test_defaults_run_at_benchmark_size(name, rng):
    """One default call at (N, D) = (720, 512): the defaults must stay cheap (about 0.1-0.4 s of CPU)."""
    x, y = representations(rng, 720, 512, 512)
    value = measures.compute(name, x, y)
    assert math.isfinite(value) and value > 0


# --------------------------------------------------------------------------------------------------
# RTD
# --------------------------------------------------------------------------------------------------


def gudhi_h1_total(matrix: np.ndarray) -> tuple[float, np.ndarray]:
    """Total H1 persistence and the H1 bar lengths of the Rips filtration of a distance matrix (gudhi)."""
    tree = gudhi.RipsComplex(distance_matrix=matrix).create_simplex_tree(max_dimension=2)
    tree.compute_persistence()
    bars = tree.persistence_intervals_in_dimension(1)
    lengths = np.sort(bars[:, 1] - bars[:, 0])[::-1] if len(bars) else np.zeros(0)
    return float(lengths.sum()), lengths


def cross_matrix(d_a: np.ndarray, d_b: np.ndarray) -> np.ndarray:
    """Barannikov et al.'s 2n x 2n matrix [[0, d_aᵀ], [d_a, min(d_a, d_b)]], built independently."""
    n = len(d_a)
    top = np.hstack([np.zeros((n, n)), d_a.T])
    bottom = np.hstack([d_a, np.minimum(d_a, d_b)])
    return np.vstack([top, bottom])


def quantile_normalised(x: np.ndarray, q: float = 0.9) -> np.ndarray:
    pairwise = pdist(x)
    return squareform(pairwise / np.quantile(pairwise, q))


def test_cross_barcode_matches_gudhi(rng):
    x, y = representations(rng, 35, 5, 4)
    d_x, d_y = quantile_normalised(x), quantile_normalised(y)
    for a, b in [(d_x, d_y), (d_y, d_x)]:
        expected, _ = gudhi_h1_total(cross_matrix(a, b))
        assert expected > 0
        # ripser computes in float32: agreement to single precision.
        assert _cross_barcode_h1_length(a, b) == pytest.approx(expected, rel=1e-5)


def test_cross_barcode_empty_when_second_distances_dominate(rng):
    """d_b >= d_a everywhere: min(d_a, d_b) = d_a, so nothing is born that d_a lacks."""
    x, _ = representations(rng, 30, 4, 4)
    d_a = quantile_normalised(x)
    d_b = d_a * (1.0 + rng.uniform(0, 1, d_a.shape))
    d_b = np.maximum(d_b, d_b.T)
    assert _cross_barcode_h1_length(d_a, d_b) == 0.0
    assert _cross_barcode_h1_length(d_b, d_a) > 0.0


def test_rtd_circle_against_line_has_one_long_bar(rng):
    """A circle has one H1 loop; the line through the same angles has none. The loop is the long bar."""
    points, theta = circle(rng, 60)
    line = np.c_[theta, np.zeros_like(theta)]
    d_circle, d_line = quantile_normalised(points), quantile_normalised(line)
    total, lengths = gudhi_h1_total(cross_matrix(d_line, d_circle))
    assert lengths[0] > 0.3 and (len(lengths) == 1 or lengths[1] < 0.1 * lengths[0])
    assert _cross_barcode_h1_length(d_line, d_circle) == pytest.approx(total, rel=1e-5)
    assert measures.compute("rtd", points, line) > 0.2


def test_rtd_matches_independent_pipeline(rng):
    """With N <= n_points every row is used once: RTD is deterministic and re-computable with scipy+gudhi."""
    x, y = representations(rng, 45, 6, 3)
    d_x, d_y = quantile_normalised(x), quantile_normalised(y)
    expected = 0.5 * (gudhi_h1_total(cross_matrix(d_x, d_y))[0] + gudhi_h1_total(cross_matrix(d_y, d_x))[0])
    assert measures.compute("rtd", x, y) == pytest.approx(expected, rel=1e-5)
    assert measures.compute("rtd", x, y, quantile=0.5) != pytest.approx(expected, rel=1e-3)


def test_rtd_averages_subsets_of_paired_rows(rng):
    """Each repeat uses one shared row subset: averaging fixed subsets equals the measure on those rows."""
    x, y = representations(rng, 120, 5, 5)
    one_subset = measures.compute("rtd", x, y, n_points=50, n_repeats=1, seed=11)
    chosen = np.sort(np.random.default_rng(11).choice(120, size=50, replace=False))
    assert one_subset == pytest.approx(measures.compute("rtd", x[chosen], y[chosen], n_points=50), rel=1e-12)
    # Rows are paired: shuffling Y's rows against X's changes RTD.
    assert measures.compute("rtd", x, y[rng.permutation(120)], n_points=50) != pytest.approx(
        measures.compute("rtd", x, y, n_points=50), rel=1e-3
    )


def test_rtd_rejects_bad_parameters(rng):
    x, y = representations(rng, 30, 4, 4)
    for bad in ({"n_points": 2}, {"n_repeats": 0}, {"quantile": 0.0}, {"seed": -1}):
        with pytest.raises(ValueError, match="'rtd'"):
            measures.compute("rtd", x, y, **bad)


# --------------------------------------------------------------------------------------------------
# IMD
# --------------------------------------------------------------------------------------------------


def exact_heat_trace(x: np.ndarray, k: int, ts: np.ndarray) -> np.ndarray:
    """tr exp(−t𝓛)/N of the symmetrised kNN graph (scikit-learn) from the exact spectrum (numpy)."""
    adjacency = kneighbors_graph(x, k, mode="connectivity", include_self=False)
    adjacency = ((adjacency + adjacency.T) > 0).astype(float).toarray()
    eigenvalues = np.linalg.eigvalsh(laplacian(adjacency, normed=True))
    return np.exp(-np.outer(ts, eigenvalues)).sum(axis=1) / len(x)


def test_knn_graph_matches_sklearn(rng):
    x, _ = representations(rng, 80, 7, 7)
    rows, cols, degrees = _knn_graph_edges("imd", torch.as_tensor(x), 5)
    adjacency = kneighbors_graph(x, 5, mode="connectivity", include_self=False)
    expected = ((adjacency + adjacency.T) > 0).toarray()
    ours = np.zeros_like(expected)
    ours[rows.numpy(), cols.numpy()] = True
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(degrees.numpy(), expected.sum(axis=1))


@pytest.mark.parametrize("k", [5, 39])  # k = N - 1: complete graph, the Krylov space has dimension 2
def test_lanczos_quadrature_is_exact_with_basis_probes(rng, k):
    """Probes e_1..e_N and N Lanczos steps: Hutchinson and Gauss quadrature are both exact."""
    x, _ = representations(rng, 40, 3, 3)
    ts = np.logspace(-1, 1, 64)
    rows, cols, degrees = _knn_graph_edges("imd", torch.as_tensor(x), k)
    estimate = _lanczos_heat_traces(rows, cols, degrees, torch.eye(40, dtype=torch.float64), 40, torch.as_tensor(ts))
    np.testing.assert_allclose(estimate.numpy(), exact_heat_trace(x, k, ts), rtol=1e-10, atol=1e-12)


def test_slq_with_random_probes_approximates_the_exact_trace(rng):
    x, _ = representations(rng, 200, 4, 4)
    ts = np.logspace(-1, 1, 32)
    rows, cols, degrees = _knn_graph_edges("imd", torch.as_tensor(x), 5)
    probes = torch.as_tensor(rng.choice([-1.0, 1.0], size=(1000, 200)))
    estimate = _lanczos_heat_traces(rows, cols, degrees, probes, 10, torch.as_tensor(ts)).numpy()
    np.testing.assert_allclose(estimate, exact_heat_trace(x, 5, ts), rtol=0.01)


def test_imd_approaches_the_exact_spectral_value(rng):
    a, _ = circle(rng, 200, noise=0.03)
    b = rng.standard_normal((200, 2))
    ts = np.logspace(-1, 1, 256)
    weight = np.exp(-2 * (ts + 1 / ts))
    exact = 1e6 * np.max(weight * np.abs(exact_heat_trace(a, 5, ts) - exact_heat_trace(b, 5, ts)))
    # The max over t of a noisy gap is biased upwards; with many probes it is within a few percent.
    assert measures.compute("imd", a, b, n_probes=2000) == pytest.approx(exact, rel=0.1)


def test_circle_graph_is_a_cycle_with_closed_form_heat_trace():
    """Equally spaced points on a circle with k = 2: the kNN graph is the cycle C_n, whose normalised
    Laplacian has eigenvalues 1 − cos(2πj/n), so tr exp(−t𝓛)/n = (1/n) Σ_j exp(−t(1 − cos(2πj/n)))."""
    n = 60
    angles = 2 * np.pi * np.arange(n) / n
    points = np.c_[np.cos(angles), np.sin(angles)]
    rows, cols, degrees = _knn_graph_edges("imd", torch.as_tensor(points), 2)
    cycle = {(i, (i + 1) % n) for i in range(n)} | {((i + 1) % n, i) for i in range(n)}
    assert set(zip(rows.tolist(), cols.tolist())) == cycle
    ts = np.logspace(-1, 1, 32)
    closed_form = np.exp(-np.outer(ts, 1 - np.cos(2 * np.pi * np.arange(n) / n))).mean(axis=1)
    estimate = _lanczos_heat_traces(rows, cols, degrees, torch.eye(n, dtype=torch.float64), n, torch.as_tensor(ts))
    np.testing.assert_allclose(estimate.numpy(), closed_form, rtol=1e-10)
    # A rotated, scaled, translated and row-shuffled copy is the same cycle: IMD 0 (rows need not be paired
    # for the graph, but the shared probes are indexed by row, so compare the unshuffled copy).
    assert measures.compute("imd", points, 3.0 * points[:, ::-1] + 1.0, k=2) == pytest.approx(0.0, abs=1e-9)


def test_imd_rejects_bad_parameters(rng):
    x, y = representations(rng, 10, 3, 3)
    with pytest.raises(ValueError, match=r"'imd': k=10 neighbours need at least 11 rows"):
        measures.compute("imd", x, y, k=10)
    with pytest.raises(ValueError, match="'imd': temperatures"):
        measures.compute("imd", x, y, temperatures=(0.0, 1.0, 5))


# --------------------------------------------------------------------------------------------------
# Geometry score
# --------------------------------------------------------------------------------------------------


def rlt_by_midpoints(intervals, alpha_max: float, i_max: int) -> np.ndarray:
    """RLT from Khrulkov & Oseledets' formulas: between consecutive switch points, count the bars alive."""
    bars = [(b, min(d, alpha_max)) for b, d in intervals]
    rlt = np.zeros(i_max)
    points = sorted({0.0, alpha_max, *[v for bar in bars for v in bar]})
    for left, right in zip(points[:-1], points[1:]):
        middle = 0.5 * (left + right)
        alive = sum(b <= middle < d for b, d in bars)
        if alive < i_max:
            rlt[alive] += right - left
    return rlt / alpha_max


def test_relative_living_times_match_midpoint_counting(rng):
    for _ in range(30):
        births = rng.uniform(0, 1, int(rng.integers(0, 12)))
        deaths = births + rng.exponential(0.3, len(births))
        deaths[rng.uniform(size=len(births)) < 0.2] = np.inf
        intervals = np.c_[births, deaths]
        for i_max in (3, 100):
            expected = rlt_by_midpoints(intervals, 1.0, i_max)
            np.testing.assert_allclose(relative_living_times(intervals, 1.0, i_max), expected, atol=1e-12)
    # No bar at all: zero holes the whole time.
    assert relative_living_times(np.zeros((0, 2)), 2.0, 4).tolist() == [1.0, 0.0, 0.0, 0.0]


def gudhi_witness_rlt(x: np.ndarray, landmarks: np.ndarray, gamma: float, i_max: int) -> np.ndarray:
    """Algorithm 1 of Khrulkov & Oseledets for one landmark set, with scipy distances and gudhi."""
    distances = cdist(x, x[landmarks])
    order = np.argsort(distances, axis=1, kind="stable")
    table = [[(int(j), float(distances[w, j])) for j in order[w]] for w in range(len(x))]
    alpha_max = gamma * distances.max()
    tree = gudhi.WitnessComplex(nearest_landmark_table=table).create_simplex_tree(
        max_alpha_square=alpha_max, limit_dimension=2
    )
    tree.compute_persistence(homology_coeff_field=2)
    intervals = tree.persistence_intervals_in_dimension(1)
    return rlt_by_midpoints(intervals, alpha_max, i_max)


def test_witness_intervals_match_gudhi_called_directly(rng):
    x, _ = representations(rng, 120, 3, 3)
    landmarks = np.sort(rng.choice(120, 30, replace=False))
    intervals, alpha_max = _witness_h1_intervals(torch.as_tensor(cdist(x, x[landmarks])), 0.05)
    assert alpha_max == pytest.approx(0.05 * cdist(x, x[landmarks]).max())
    np.testing.assert_allclose(
        relative_living_times(intervals, alpha_max, 100), gudhi_witness_rlt(x, landmarks, 0.05, 100), atol=1e-12
    )


def test_geometry_score_matches_independent_pipeline(rng):
    """With N <= n_landmarks every row is a landmark: one deterministic draw, recomputed with gudhi here."""
    x, y = representations(rng, 50, 6, 4)
    everyone = np.arange(50)
    for gamma in (1 / 128, 0.05):
        expected = np.square(gudhi_witness_rlt(x, everyone, gamma, 100) - gudhi_witness_rlt(y, everyone, gamma, 100))
        assert measures.compute("geometry_score", x, y, gamma=gamma) == pytest.approx(expected.sum(), abs=1e-10)


def test_circle_has_one_persistent_loop_and_geometry_score_separates_shapes(rng):
    # The witness complex needs enough witnesses per landmark to close the loop early: N = 720.
    points, _ = circle(rng, 720, noise=0.03)
    landmarks = np.sort(rng.choice(720, 64, replace=False))
    rlt = gudhi_witness_rlt(points, landmarks, 1 / 128, 100)
    assert rlt.argmax() == 1  # most of the time exactly one H1 class (the loop) is alive
    other_circle, _ = circle(rng, 720, noise=0.03)
    line = np.c_[rng.uniform(-1, 1, 720), 0.03 * rng.standard_normal(720)]
    # GS is a noisy estimator (the paper averages 1000 draws); with 8 draws the contrast is about 5x.
    same = measures.compute("geometry_score", points, other_circle, n_draws=8)
    different = measures.compute("geometry_score", points, line, n_draws=8)
    assert different > 2 * same


def test_imd_exact_spectrum_matches_numpy_and_slq(rng):
    """The exact route equals a heat trace from numpy's eigvalsh of the same normalised Laplacian built
    here with scikit-learn's kNN graph, and the stochastic estimator agrees with it within its noise."""
    from sklearn.neighbors import kneighbors_graph

    x, y = representations(rng, 200, 6, 5)
    ts = np.logspace(-1, 1, 256)

    def trace(z):
        a = kneighbors_graph(z, 5, include_self=False).toarray()
        a = np.maximum(a, a.T)
        d = a.sum(1)
        lap = np.eye(len(z)) - a / np.sqrt(np.outer(d, d))
        return np.exp(-ts[:, None] * np.linalg.eigvalsh(lap)[None, :]).mean(1)

    expected = 1e6 * np.max(np.exp(-2 * (ts + 1 / ts)) * np.abs(trace(x) - trace(y)))
    assert measures.compute("imd", x, y, method="exact") == pytest.approx(expected, rel=1e-8)
    assert measures.compute("imd", x, y) == pytest.approx(expected, rel=1e-8)  # auto = exact at N = 200
    assert measures.compute("imd", x, y, method="slq", n_probes=2000) == pytest.approx(expected, rel=0.1)


def test_cross_barcode_same_bars_as_ripser_on_the_a_first_matrix(rng):
    """The vertex order ripser is given (B first, far points first) must not change the barcode: ripser
    called directly on the paper's A-first matrix gives the same bars, so the same exactly rounded total,
    also with tied distances (duplicated rows); and so does any relabelling of the points."""
    x, y = representations(rng, 60, 6, 5)
    x[10:20] = x[:10]  # coinciding rows: zero distances and many ties
    relabel = rng.permutation(60)
    for a, b in [(quantile_normalised(x), quantile_normalised(y)), (quantile_normalised(y), quantile_normalised(x))]:
        bars = ripser.ripser(cross_matrix(a, b), maxdim=1, distance_matrix=True)["dgms"][1]
        expected = math.fsum(bars[:, 1] - bars[:, 0])
        assert expected > 0
        assert _cross_barcode_h1_length(a, b) == expected
        assert _cross_barcode_h1_length(a[np.ix_(relabel, relabel)], b[np.ix_(relabel, relabel)]) == expected


def test_first_of_each_row_keeps_the_rows_numpy_unique_keeps(rng):
    """geometry_score's witness deduplication against np.unique(axis=0, return_index=True): repeated rows,
    -0.0 against +0.0, rows equal but for one entry, one row, all rows equal, distinct rows (all sums
    distinct), distinct rows with equal sums (permuted entries)."""
    from measures.topology import _first_of_each_row

    base = rng.integers(0, 3, size=(60, 5)).astype(float)  # few values: many repeated rows
    base[7] = base[3]
    base[9] = np.where(base[3] == 0, -0.0, base[3])  # row 3 with its zeros negative: equal as values
    assert (base[3] == 0).any() and np.signbit(base[9]).any()
    base[11] = base[3] + np.array([0, 0, 0, 0, 1e-300])
    for rows in (base, base[:1], np.zeros((8, 4)), np.vstack([np.zeros(4), -np.zeros(4)]), rng.standard_normal((40, 6)),
                 np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 1.0, 3.0], [3.0, 2.0, 1.0]])):
        _, first = np.unique(rows, axis=0, return_index=True)
        np.testing.assert_array_equal(_first_of_each_row(rows), np.sort(first))


def test_stable_row_argsort_is_numpys_stable_argsort(rng):
    """geometry_score's row order against ``np.argsort(kind="stable")``: distinct values, many ties (few
    distinct values), exact zeros beside -0.0, NaN, one column, one row."""
    from measures.topology import _stable_row_argsort

    ties = rng.integers(0, 4, size=(50, 16)).astype(float)
    ties[3, :] = 0.0
    ties[5, ::2] = -0.0
    with_nan = rng.standard_normal((20, 8))
    with_nan[[2, 7], [1, 4]] = np.nan
    with_nan[9, :3] = np.nan
    for a in (rng.standard_normal((719, 64)), ties, with_nan, rng.standard_normal((30, 1)), ties[:1]):
        order, values = _stable_row_argsort(a)
        expected = np.argsort(a, axis=1, kind="stable")
        np.testing.assert_array_equal(order, expected)
        np.testing.assert_array_equal(values, np.take_along_axis(a, expected, axis=1))
