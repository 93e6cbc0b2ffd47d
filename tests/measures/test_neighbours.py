"""Neighbourhood family: the shared kNN search and every measure against independent oracles.

Oracles: scikit-learn ``NearestNeighbors(...).kneighbors()`` (X=None, self excluded by index) on
tie-free data; exact integer distances with a numpy (distance, index) lexsort where ties abound;
measures re-implemented here in numpy from sklearn's neighbour lists; closed forms on constructed
inputs (hand-worked 1-D example, cluster designs with identical, disjoint or half-shared neighbourhoods).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.neighbors import NearestNeighbors

import measures
from measures import UndefinedMeasureError, neighbours
from measures.neighbours import nearest_neighbours, prepare_rows

KNN_MEASURES = ["knn_jaccard", "mutual_knn", "second_order_cosine", "rank_similarity", "joint_rank_jaccard", "cknna"]


def knn(x: np.ndarray, k: int, metric: str) -> np.ndarray:
    z = prepare_rows("test", torch.from_numpy(np.asarray(x, dtype=np.float64)), metric)
    return nearest_neighbours(z, k, metric).numpy()


def sklearn_knn(x: np.ndarray, k: int, metric: str) -> np.ndarray:
    return NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(x).kneighbors(return_distance=False)


def pair(rng: np.random.Generator, n: int, d1: int, d2: int, noise: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, d1)) + 0.5
    y = np.tanh(x @ rng.standard_normal((d1, d2))) + noise * rng.standard_normal((n, d2))
    return x, y


# ---------------------------------------------------------------- the shared kNN search


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("shape", [(200, 5), (90, 40), (30, 300)])
def test_knn_matches_sklearn_on_tie_free_data(metric, shape):
    x = np.random.default_rng(0).standard_normal(shape) + 0.3
    for k in (1, 7, shape[0] - 1):
        np.testing.assert_array_equal(knn(x, k, metric), sklearn_knn(x, k, metric))


def test_knn_blocks_give_the_same_lists(monkeypatch):
    x = np.random.default_rng(1).standard_normal((157, 6))
    whole = knn(x, 9, "euclidean")
    monkeypatch.setattr(neighbours, "BLOCK_ELEMENTS", 157 * 4 + 3)  # 4 rows per block, ragged last block
    np.testing.assert_array_equal(knn(x, 9, "euclidean"), whole)
    monkeypatch.setattr(neighbours, "BLOCK_ELEMENTS", 1)  # one row per block
    np.testing.assert_array_equal(knn(x, 9, "euclidean"), whole)
    monkeypatch.setattr(neighbours, "GRAM_BYTES", 0)  # a GEMM per row block instead of the whole Gram matrix
    for metric in ("euclidean", "cosine"):
        np.testing.assert_array_equal(knn(x, 9, metric), sklearn_knn(x, 9, metric))


def _lexsort_neighbours(dist: np.ndarray, k: int) -> np.ndarray:
    """Brute force: self excluded by index, order by (distance, index)."""
    n = dist.shape[0]
    out = []
    for i in range(n):
        others = np.array([j for j in range(n) if j != i])
        order = np.lexsort((others, dist[i, others]))  # last key is primary
        out.append(others[order[:k]])
    return np.array(out)


@pytest.mark.parametrize("cache_block", [1, 7 * 6 + 5, 1 << 18])
def test_pair_values_numpy_and_torch_paths_match_brute_force(monkeypatch, cache_block):
    """Both paths of pair_values (numpy for plain CPU tensors, torch for tensors that need grad) against
    numpy written out entry by entry; 1-row, ragged and single blocks; duplicates are exactly 0 apart."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((31, 6))
    x[4] = x[17]
    index = np.stack([rng.permutation(31)[:7] for _ in range(31)])
    index[17, 0] = 4
    monkeypatch.setattr(neighbours, "CACHE_BLOCK_ELEMENTS", cache_block)
    expected_dot = np.array([[x[i] @ x[j] for j in row] for i, row in enumerate(index)])
    expected_sq = np.array([[np.sum((x[i] - x[j]) ** 2) for j in row] for i, row in enumerate(index)])
    for z in (torch.from_numpy(x), torch.from_numpy(x).requires_grad_()):
        got_dot = neighbours.pair_values(z, torch.from_numpy(index), squared_distance=False).detach().numpy()
        got_sq = neighbours.pair_values(z, torch.from_numpy(index), squared_distance=True).detach().numpy()
        np.testing.assert_allclose(got_dot, expected_dot, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(got_sq, expected_sq, rtol=1e-13, atol=1e-13)
        assert got_sq[17, 0] == 0.0


def test_euclidean_ties_follow_distance_then_index():
    # A symmetric integer grid: zero column means (so centring is exact), integer squared distances
    # (exact in float64), and many equidistant neighbours.
    g = np.arange(-2, 3)
    x = np.array([(a, b) for a in g for b in g], dtype=float)[np.random.default_rng(2).permutation(25)]
    dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    for k in (1, 4, 8, 13, 24):
        np.testing.assert_array_equal(knn(x, k, "euclidean"), _lexsort_neighbours(dist, k))


def test_cosine_ties_follow_similarity_then_index():
    # Scaled signed basis vectors: cosines in {-1, 0, 1}, exactly representable; many ties at 0.
    rng = np.random.default_rng(3)
    basis = np.vstack([np.eye(4), -np.eye(4), np.eye(4)]) * rng.integers(1, 5, size=(12, 1))
    x = basis[rng.permutation(12)]
    cos = cosine_similarity(x)
    for k in (1, 3, 6, 11):
        np.testing.assert_array_equal(knn(x, k, "cosine"), _lexsort_neighbours(-cos, k))


def test_torch_path_search_equals_brute_force_with_ties():
    """The torch route of the search (taken by CUDA tensors; forced here by a tensor that needs grad):
    top k + 1 for the straddling tie, largest products for cosine; against the (distance, index) oracle."""
    g = np.arange(-2, 3)
    grid = np.array([(a, b) for a in g for b in g], dtype=float)[np.random.default_rng(2).permutation(25)]
    dist = ((grid[:, None, :] - grid[None, :, :]) ** 2).sum(-1)
    rng = np.random.default_rng(3)
    basis = (np.vstack([np.eye(4), -np.eye(4), np.eye(4)]) * rng.integers(1, 5, size=(12, 1)))[rng.permutation(12)]
    for x, metric, oracle, ks in ((grid, "euclidean", dist, (1, 4, 8, 24)),
                                  (basis, "cosine", -cosine_similarity(basis), (1, 3, 6, 11))):
        z = prepare_rows("test", torch.from_numpy(x), metric).requires_grad_()
        for k in ks:
            lists = neighbours._search(z, k, metric).numpy()
            np.testing.assert_array_equal(lists, _lexsort_neighbours(oracle, k))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_duplicates_stay_neighbours_and_self_is_excluded_by_index(metric):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 6))
    x[[7, 19, 33]] = x[12]  # four copies: 7, 12, 19, 33
    lists = knn(x, 5, metric)
    copies = [7, 12, 19, 33]
    for i in copies:
        assert i not in lists[i]
        # the other three copies come first, in index order (exact ties at distance 0)
        np.testing.assert_array_equal(lists[i, :3], [c for c in copies if c != i])
    # sklearn's kneighbors(X=None) has the same sets (its order among ties is implementation-defined)
    theirs = sklearn_knn(x, 5, metric)
    assert all(set(lists[i, :3]) == set(theirs[i, :3]) for i in copies)


def test_knn_rejects_bad_parameters_and_degenerate_inputs():
    x, y = pair(np.random.default_rng(5), 12, 3, 3)
    with pytest.raises(ValueError, match="'knn_jaccard'.*need at least 13 rows"):
        measures.compute("knn_jaccard", x, y, k=12)
    assert measures.compute("knn_jaccard", x, y, k=11) == 1.0  # every other row is a neighbour
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            measures.compute("mutual_knn", x, y, k=bad)
    with pytest.raises(ValueError, match="metric must be one of"):
        measures.compute("rank_similarity", x, y, metric="manhattan")
    zero_row = x.copy()
    zero_row[4] = 0.0
    with pytest.raises(UndefinedMeasureError, match="zero row"):
        measures.compute("knn_jaccard", zero_row, y)
    assert 0.0 <= measures.compute("knn_jaccard", zero_row, y, metric="euclidean") <= 1.0  # Euclidean is fine
    constant = np.ones_like(x)
    for name in KNN_MEASURES:
        with pytest.raises(UndefinedMeasureError, match="every row is identical"):
            measures.compute(name, constant, y, k=3)


# ---------------------------------------------------------------- the float32 first pass of the search


def _exact_dot(u: np.ndarray, v: np.ndarray) -> Fraction:
    return sum((Fraction(float(p)) * Fraction(float(q)) for p, q in zip(u, v)), Fraction(0))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("d", [1, 9, 300])
def test_float32_key_error_bound_holds_in_exact_arithmetic(metric, d):
    """|float32 key - exact key| + |float64 key - exact key| ≤ E_i, keys computed as the paths do
    (BLAS Gram matrices, ‖z_j‖² from einsum; the re-scoring's squared differences for Euclidean), exact
    keys in rational arithmetic; a row with entries that underflow in float32 and a lattice row included."""
    rng = np.random.default_rng(d)
    x = rng.standard_normal((14, d))
    x[4, : max(1, d // 2)] *= 1e-41  # entries that underflow to float32 subnormals or zero
    x[5] = np.round(x[5] * 4) / 4  # lattice row
    z = prepare_rows("test", torch.from_numpy(x), metric).numpy()
    z32 = z.astype(np.float32)
    sq = np.einsum("ij,ij->i", z, z)
    cosine = metric == "cosine"
    key32, key64 = (z32 @ z32.T).astype(np.float64), z @ z.T
    if not cosine:
        key32 = (2.0 * (z32 @ z32.T) - sq.astype(np.float32)).astype(np.float64)
        key64 = 2.0 * key64 - sq
    bound = neighbours._key_error_bound(sq, d, cosine)
    for i in range(len(z)):
        for j in range(len(z)):
            exact = _exact_dot(z[i], z[j])
            if not cosine:
                exact = 2 * exact - _exact_dot(z[j], z[j])
            err32 = abs(Fraction(float(key32[i, j])) - exact)
            err = err32 + abs(Fraction(float(key64[i, j])) - exact)
            assert err <= Fraction(float(bound[i])), (i, j, float(err), bound[i])
            if not cosine:  # the re-scored key: ‖z_i - z_j‖² from differences = ‖z_i‖² - w
                rescored = Fraction(float(np.sum((z[i] - z[j]) ** 2)))
                err = err32 + abs(rescored - (_exact_dot(z[i], z[i]) - exact))
                assert err <= Fraction(float(bound[i])), (i, j, float(err), bound[i])


def _near_tie_data(metric: str) -> np.ndarray:
    """Random rows plus, around three anchors, 14 rows whose keys differ by ~1e-11 relative: far below
    float32 resolution, far above float64's (so the order is unambiguous for a float64 oracle)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((150, 12))
    for anchor, first in ((0, 20), (1, 40), (2, 60)):
        for step in range(14):
            u = rng.standard_normal(12)
            if metric == "cosine":
                u -= (u @ x[anchor]) / (x[anchor] @ x[anchor]) * x[anchor]
                x[first + step] = x[anchor] / np.linalg.norm(x[anchor]) + 1e-2 * (1 + step * 1e-7) * u / np.linalg.norm(u)
            else:
                x[first + step] = x[anchor] + 1e-2 * (1 + step * 1e-7) * u / np.linalg.norm(u)
    return x


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("blocks", [False, True])
def test_float32_pass_near_ties_against_sklearn(monkeypatch, metric, blocks):
    """Near-ties inside the float32 bound go to the float64 re-scoring (checked: the pass leaves them
    unordered) and come out in float64 order; also in row blocks without the whole Gram matrix."""
    if blocks:
        monkeypatch.setattr(neighbours, "BLOCK_ELEMENTS", 150 * 3 + 1)  # 6 rows per float32 block, ragged
        monkeypatch.setattr(neighbours, "GRAM_BYTES", 0)
    x = _near_tie_data(metric)
    z = prepare_rows("test", torch.from_numpy(x), metric)
    _, unordered, _, _ = neighbours._float32_pass(z, 10, metric == "cosine")
    assert {0, 1, 2} <= set(unordered.tolist())
    for k in (1, 10, 13, 149):
        np.testing.assert_array_equal(knn(x, k, metric), sklearn_knn(x, k, metric))


@pytest.mark.parametrize("blocks", [False, True])
def test_float32_pass_lattice_ties_and_duplicates_against_brute_force(monkeypatch, blocks):
    """Integer lattice (exact squared distances; ties at the k-th place everywhere, duplicates) and
    scaled signed basis vectors (cosines exactly -1, 0, 1; ties wider than the candidate lists, so
    rows fall back to the float64 path): the (distance, index) oracle, k from 1 to N - 1."""
    if blocks:
        monkeypatch.setattr(neighbours, "BLOCK_ELEMENTS", 128 * 7)
        monkeypatch.setattr(neighbours, "GRAM_BYTES", 0)
    rng = np.random.default_rng(12)
    # 27 lattice points, ~5 copies of each; N = 128 keeps the centred entries dyadic (column means k/128),
    # so every key is exact in float64 and the lattice's ties stay exact ties
    grid = rng.integers(-1, 2, size=(128, 3)).astype(float)
    dist = ((grid[:, None, :] - grid[None, :, :]) ** 2).sum(-1)
    basis = np.vstack([np.eye(6), -np.eye(6)])[rng.integers(0, 12, size=90)] * rng.integers(1, 5, size=(90, 1))
    for x, metric, oracle in ((grid, "euclidean", dist), (basis, "cosine", -cosine_similarity(basis))):
        z = prepare_rows("test", torch.from_numpy(x), metric)
        _, _, _, unsettled = neighbours._float32_pass(z, 10, metric == "cosine")
        assert unsettled.numel() > 0  # the float64 path is exercised
        for k in (1, 10, 31, len(x) - 1):
            np.testing.assert_array_equal(knn(x, k, metric), _lexsort_neighbours(oracle, k))


@pytest.mark.parametrize("n", [704, 701, 360, 2305, 2560])
@pytest.mark.parametrize("m", [1, 11, 26])
def test_largest_entries_match_a_full_sort(n, m):
    """The grouped top m of each row (strided groups of 8 columns, of ⌈N/256⌉ above N = 2048, the
    partial last stride when the group size does not divide N, and the topk fallback for short rows) against a full sort of every row: the same values in the
    same order, columns holding those values, and the same column set wherever the m-th value is
    strictly above the (m + 1)-th. Ties everywhere (values on a grid of 1/4) and -inf entries."""
    rng = np.random.default_rng(n + m)
    key = (np.round(rng.standard_normal((90, n)) * 4) / 4).astype(np.float32)
    key[np.arange(90), np.arange(90)] = -np.inf
    key[5, : n // 2] = -np.inf
    values, index = neighbours._largest(key, m)
    full = -np.sort(-key, axis=1)
    np.testing.assert_array_equal(values.numpy(), full[:, :m])
    np.testing.assert_array_equal(np.take_along_axis(key, index.numpy(), axis=1), full[:, :m])
    assert all(len(set(row)) == m for row in index.tolist())
    strict = full[:, m - 1] > full[:, m]
    expected = np.sort(np.argsort(-key, axis=1, kind="stable")[:, :m], axis=1)
    np.testing.assert_array_equal(np.sort(index.numpy(), axis=1)[strict], expected[strict])


def test_float32_pass_lattice_ties_with_grouped_selection():
    """A lattice large enough for the grouped top m of _largest (N = 512; exact ties at the k-th place
    and duplicates): the (distance, index) oracle."""
    grid = np.random.default_rng(14).integers(-2, 3, size=(512, 3)).astype(float)
    dist = ((grid[:, None, :] - grid[None, :, :]) ** 2).sum(-1)
    for k in (1, 10, 17):
        np.testing.assert_array_equal(knn(grid, k, "euclidean"), _lexsort_neighbours(dist, k))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_float32_pass_settles_random_rows_with_the_float64_lists(metric):
    """Tie-free data: most rows are settled by float32 alone, and the lists are exactly those of the
    float64 path (the second code path, run on every row) and of sklearn."""
    x = np.random.default_rng(13).standard_normal((700, 48)) + 0.2
    z = prepare_rows("test", torch.from_numpy(x), metric)
    cosine = metric == "cosine"
    _, unordered, _, unsettled = neighbours._float32_pass(z, 10, cosine)
    assert unordered.numel() + unsettled.numel() < 0.5 * len(x)
    every = neighbours._exact_rows(z, torch.arange(len(x)), 10, cosine)
    lists = neighbours._search(z, 10, metric)
    np.testing.assert_array_equal(lists.numpy(), every.numpy())
    np.testing.assert_array_equal(lists.numpy(), sklearn_knn(x, 10, metric))


# ---------------------------------------------------------------- closed forms on constructed inputs


def test_hand_worked_line_example():
    # 1-D points with doubling gaps (no ties), k = 2, Euclidean. X lists: 0:[1,2] 1:[0,2] 2:[1,0]
    # 3:[2,1] 4:[3,2]; Y (the positions reversed) lists: 0:[1,2] 1:[2,3] 2:[3,4] 3:[4,2] 4:[3,2].
    # Shared: {1,2} same ranks; {2} ranks (2,1); {}; {2} ranks (1,2); {3,2} same ranks.
    # J_i = 1, 1/3, 0, 1/3, 1;  v_i = 1, 1/3, 0, 1/3, 1 (2/((1+1)(2+1)) = 1/3 for the swapped ranks).
    x = np.array([[0.0], [1.0], [3.0], [7.0], [15.0]])
    y = x[::-1].copy()
    kw = dict(k=2, metric="euclidean")
    assert measures.compute("knn_jaccard", x, y, **kw) == pytest.approx(8 / 15, abs=1e-15)
    assert measures.compute("mutual_knn", x, y, **kw) == pytest.approx(6 / 10, abs=1e-15)
    assert measures.compute("rank_similarity", x, y, **kw) == pytest.approx(8 / 15, abs=1e-15)
    assert measures.compute("joint_rank_jaccard", x, y, **kw) == pytest.approx((2 + 2 / 9) / 5, abs=1e-15)


def clusters(rng: np.random.Generator, labels: np.ndarray, dim: int) -> np.ndarray:
    """Points around orthogonal, far-apart centres (one per label): each point's nearest neighbours, by
    cosine or Euclidean distance, are exactly its cluster mates."""
    centres = 100.0 * np.eye(dim)[labels]
    return centres + rng.standard_normal((labels.size, dim))


def test_identical_neighbourhoods_closed_form():
    rng = np.random.default_rng(6)
    labels = np.repeat(np.arange(6), 8)  # clusters of 8, k = 7: N_k(i) = the cluster mates
    x, y = clusters(rng, labels, 6), clusters(rng, labels, 6)  # same clusters, unrelated inner geometry
    for metric in ("cosine", "euclidean"):
        assert measures.compute("knn_jaccard", x, y, k=7, metric=metric) == 1.0
        assert measures.compute("mutual_knn", x, y, k=7, metric=metric) == 1.0
        # rank order inside a cluster is random: 1 only if it happens to agree
        assert 0.0 < measures.compute("rank_similarity", x, y, k=7, metric=metric) <= 1.0


def test_disjoint_neighbourhoods_closed_form():
    # 49 points indexed (a, b): X clusters by a, Y by b, so X- and Y-clusters meet in one point.
    rng = np.random.default_rng(7)
    a, b = np.divmod(np.arange(49), 7)
    x, y = clusters(rng, a, 7), clusters(rng, b, 7)
    for name in ("knn_jaccard", "mutual_knn", "rank_similarity", "joint_rank_jaccard", "cknna"):
        assert measures.compute(name, x, y, k=6) == 0.0, name


def test_half_shared_neighbourhoods_and_jaccard_mutual_relation():
    # X clusters G_a of size 2s, each split in halves H_a1, H_a2; Y pairs H_a1 with H_(a+1)2. Every point
    # shares exactly m = s - 1 of its k = 2s - 1 neighbours, so J_i = m/(2k - m) and m_i/k are constant:
    # the per-sample relation J_i = m_i/(2k - m_i) then holds for the means too.
    rng = np.random.default_rng(8)
    s, groups = 4, 5
    k, m = 2 * s - 1, s - 1
    idx = np.arange(groups * 2 * s)
    group, half = idx // (2 * s), (idx % (2 * s)) // s
    y_label = np.where(half == 0, group, (group - 1) % groups)
    x, y = clusters(rng, group, groups), clusters(rng, y_label, groups)
    mutual = measures.compute("mutual_knn", x, y, k=k)
    jaccard = measures.compute("knn_jaccard", x, y, k=k)
    assert mutual == pytest.approx(m / k, abs=1e-15)
    assert jaccard == pytest.approx(m / (2 * k - m), abs=1e-15)
    assert jaccard == pytest.approx(mutual * k / (2 * k - mutual * k), abs=1e-15)


def test_cknna_full_mask_is_off_diagonal_cka():
    # With k = N - 1 every pair is a neighbour in both: CKNNA = Σ_{i≠j} K̃L̃ / √(Σ_{i≠j} K̃² Σ_{i≠j} L̃²),
    # computed here with an explicit centring matrix H (fine at this size).
    rng = np.random.default_rng(9)
    x, y = pair(rng, 25, 6, 4)
    h = np.eye(25) - 1 / 25
    off = ~np.eye(25, dtype=bool)
    for metric, (px, py) in {
        "euclidean": (x, y),
        "cosine": (x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True)),
    }.items():
        kc, lc = h @ px @ px.T @ h, h @ py @ py.T @ h
        expected = (kc * lc)[off].sum() / np.sqrt((kc**2)[off].sum() * (lc**2)[off].sum())
        assert measures.compute("cknna", x, y, k=24, metric=metric) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- every measure against numpy brute force


def brute_force(name: str, x: np.ndarray, y: np.ndarray, k: int, metric: str, entries: str = "similarity") -> float:
    """Each measure written out per instance in numpy, from sklearn's neighbour lists (tie-free data)."""
    a, b = sklearn_knn(x, k, metric), sklearn_knn(y, k, metric)
    n = len(x)
    if name == "cknna":
        def centred_gram(z):
            if metric == "cosine":
                z = z / np.linalg.norm(z, axis=1, keepdims=True)
            z = z - z.mean(axis=0)
            return z @ z.T

        mask = np.zeros((n, n), dtype=bool)
        for i in range(n):
            mask[i, np.intersect1d(a[i], b[i])] = True
        kc, lc = centred_gram(x), centred_gram(y)
        return (kc * lc)[mask].sum() / np.sqrt((kc**2)[mask].sum() * (lc**2)[mask].sum())
    if name == "second_order_cosine":
        def entry(z):
            if metric == "cosine":
                c = cosine_similarity(z)
                return c if entries == "similarity" else 1 - c
            return np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))

        ex, ey = entry(x), entry(y)
        cos = []
        for i in range(n):
            u = np.union1d(a[i], b[i])
            cos.append(ex[i, u] @ ey[i, u] / (np.linalg.norm(ex[i, u]) * np.linalg.norm(ey[i, u])))
        return float(np.mean(cos))
    values = []
    for i in range(n):
        shared = set(a[i]) & set(b[i])
        jac = len(shared) / len(set(a[i]) | set(b[i]))
        rx = {j: r + 1 for r, j in enumerate(a[i])}
        ry = {j: r + 1 for r, j in enumerate(b[i])}
        harmonic = sum(1 / l for l in range(1, len(shared) + 1))
        rank = sum(2 / ((1 + abs(rx[j] - ry[j])) * (rx[j] + ry[j])) for j in shared) / harmonic if shared else 0.0
        per_instance = {"knn_jaccard": jac, "mutual_knn": len(shared) / k, "rank_similarity": rank}
        values.append(jac * rank if name == "joint_rank_jaccard" else per_instance[name])
    return float(np.mean(values))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("name", KNN_MEASURES)
@pytest.mark.parametrize("shape", [(80, 6, 4), (40, 60, 50)])
def test_measures_match_numpy_brute_force(name, metric, shape):
    rng = np.random.default_rng(10)
    x, y = pair(rng, *shape)
    variants = [dict(entries="distance")] if name == "second_order_cosine" else [{}]
    if name == "second_order_cosine" and metric == "cosine":
        variants.append(dict(entries="similarity"))
    for k in (1, 5, 12):
        for extra in variants:
            got = measures.compute(name, x, y, k=k, metric=metric, **extra)
            assert got == pytest.approx(brute_force(name, x, y, k, metric, **extra), abs=1e-12), (k, extra)


def test_second_order_cosine_rejects_bad_entries_and_zero_profiles():
    x, y = pair(np.random.default_rng(11), 20, 4, 4)
    with pytest.raises(ValueError, match="needs metric='cosine'"):
        measures.compute("second_order_cosine", x, y, metric="euclidean", entries="similarity")
    with pytest.raises(ValueError, match="entries must be"):
        measures.compute("second_order_cosine", x, y, entries="rank")
    # Three copies of one row, k = 2: each copy's only neighbours are the other copies, at cosine
    # distance exactly 0, so its distance profile is the zero vector.
    x[[5, 9]] = x[0]
    y[[5, 9]] = y[0]
    with pytest.raises(UndefinedMeasureError, match="all-zero distance profile"):
        measures.compute("second_order_cosine", x, y, k=2, entries="distance")
    assert -1.0 <= measures.compute("second_order_cosine", x, y, k=2) <= 1.0  # similarity profile is fine


# ---------------------------------------------------------------- magnitudes and precision


@pytest.mark.parametrize("name", KNN_MEASURES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_huge_tiny_magnitudes_and_float32(name, metric):
    rng = np.random.default_rng(12)
    x, y = pair(rng, 60, 8, 5)
    kw = dict(metric=metric, **({"entries": "distance"} if name == "second_order_cosine" else {}))
    base = measures.compute(name, x, y, **kw)
    # Powers of two: the exact rescaling makes the result bit-identical; decimal factors only round.
    assert measures.compute(name, x * 2.0**900, y * 2.0**-1000, **kw) == base
    assert measures.compute(name, x * 1e150, y * 1e-150, **kw) == pytest.approx(base, abs=1e-12)
    # float32 inputs are computed in float64 from the rounded values: the neighbour lists of this
    # tie-free data do not change, the kernel entries of cknna / second_order_cosine move by ~1e-7.
    got32 = measures.compute(name, x.astype(np.float32), y.astype(np.float32), **kw)
    assert got32 == pytest.approx(base, abs=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", KNN_MEASURES)
def test_cuda_matches_cpu(name):
    x, y = pair(np.random.default_rng(13), 300, 16, 12)
    cpu = measures.compute(name, x, y)
    cuda = measures.compute(name, torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda())
    assert cuda == pytest.approx(cpu, abs=1e-12)  # float64 on the GPU: same lists, same sums to rounding
