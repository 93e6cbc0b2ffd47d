"""Topology family: measures that compare the shape of the data manifolds (geometry score, IMD, RTD).

All three are stochastic estimators; each takes a ``seed`` that fixes every random choice, so one
configuration gives bit-identical numbers on the CPU. Randomness is **shared between the two sides**:
the same row subsample (RTD), the same landmark rows (geometry score) and the same probe vectors (IMD)
are used for X and for Y. This keeps m(X, X) exactly 0, makes the measures exactly symmetric, and
couples the estimation noise of the two sides so that their difference is less noisy. RTD compares
paired rows by construction; the geometry score and IMD compare two point clouds and would not need
paired rows, but here they index the shared random choices by row.

Homology is computed by the field libraries, not by hand: ``giotto-ph`` (Vietoris-Rips barcodes for RTD)
and ``gudhi`` (witness complexes for the geometry score). IMD uses torch only (kNN graph, Lanczos).
Every measure depends on the data only through Euclidean distances (RTD, geometry score) or the
Euclidean kNN graph (IMD), after a scale normalisation, hence is invariant to permutations and
orthogonal maps of the columns, translations and isotropic scaling, but not to general invertible
linear maps, which distort distances.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import gudhi
import numpy as np
import torch

from measures._memo import one_sided, one_sided_shared
from measures._registry import UndefinedMeasureError, register
from measures._validation import center_columns
from measures.neighbours import nearest_neighbours, prepare_rows

TOPOLOGY_INVARIANCES = ("permutation", "orthogonal", "isotropic_scaling", "translation")


def _positive_int(name: str, what: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"measure {name!r}: {what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _seed(name: str, seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"measure {name!r}: seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _row_subsets(n: int, size: int, repeats: int, seed: int) -> list[np.ndarray]:
    """``repeats`` sorted random subsets of ``size`` of the n rows (one subset of all rows if size >= n).

    Drawn without replacement from ``numpy.random.default_rng(seed)``; with size >= n every subset
    would be all rows, so a single one is returned and the repeats (identical) are skipped.
    """
    if size >= n:
        return [np.arange(n)]
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(n, size=size, replace=False)) for _ in range(repeats)]


# --------------------------------------------------------------------------------------------------
# RTD
# --------------------------------------------------------------------------------------------------


def _normalised_distances(name: str, x: torch.Tensor, quantile: float) -> np.ndarray:
    """Euclidean distance matrix of the rows divided by the ``quantile`` of the pairwise distances.

    Distances come from row differences (not the Gram expansion), so translated copies give the same
    matrix to round-off. Dividing by a quantile makes the matrix invariant to isotropic scaling.
    """
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    n = d.shape[0]
    upper = d[torch.triu_indices(n, n, offset=1, device=d.device).unbind()]
    scale = torch.quantile(upper, quantile)
    if scale == 0:
        raise UndefinedMeasureError(
            f"{name}: the {quantile:g}-quantile of the pairwise distances is 0 (most sampled rows coincide), "
            "so the distances cannot be normalised"
        )
    return (d / scale).cpu().numpy()


def _cross_barcode_h1_length(d_a: np.ndarray, d_b: np.ndarray) -> float:
    """Total length of the H1 bars of the R-Cross-Barcode(a, b) (Barannikov et al. 2022).

    The filtered complex is the Vietoris-Rips complex of 2n vertices {A_i} ∪ {B_i} with the weights
        A_i-A_j: 0,   A_i-B_j: d_a[i, j],   B_i-B_j: min(d_a[i, j], d_b[i, j]),
    i.e. the block matrix [[0, d_aᵀ], [d_a, min(d_a, d_b)]]; its H1 bars are the cycles of the graph
    under min(d_a, d_b) that are not yet cycles under d_a. ripser drops bars of length 0.

    The matrix is handed over with its vertices renumbered: the B vertices first, [[min(d_a, d_b), d_a],
    [d_aᵀ, 0]], and within each half the points in descending order of their summed distance
    Σ_j min(d_a, d_b)[i, j] (B_i and A_i keep the same place in their halves). That is the same filtered
    complex, so the same barcode (a persistence diagram does not depend on how simplices of equal
    filtration value are ordered), but ripser, which orders simplices and breaks ties by vertex number,
    runs faster on it: B first by up to ~30 % (the n(n-1)/2 zero-weight A-A edges come last among
    equals), the far points first by another 6-27 % of ripser's time on the default benchmark's
    representations (BENCHMARKS.md, "RTD's vertex order, fourteenth session"). The barcode comes from
    giotto-ph's ``ripser_parallel`` on one thread, ripser's algorithm with faster reductions: the same bars
    as ``ripser.ripser`` (both filter in float32; 80 cross matrices of the default benchmark's
    representations gave identical diagrams), 1.6x less CPU. Its float32 bars are widened to float64, as
    ``ripser.ripser`` returns them, and their lengths summed exactly rounded (``math.fsum``), so the value
    does not depend on the order ripser lists the bars in.
    ``tests/measures/test_topology.py`` checks the bars against ripser (both vertex orders) and gudhi.
    """
    n = d_a.shape[0]
    closest = np.minimum(d_a, d_b)
    order = np.argsort(-closest.sum(axis=1), kind="stable")
    block = np.ix_(order, order)
    cross = np.zeros((2 * n, 2 * n))
    cross[:n, :n] = closest[block]
    cross[:n, n:] = d_a[block]
    cross[n:, :n] = cross[:n, n:].T
    # giotto-ph is imported on first use: its import pulls in scikit-learn (~0.9 s of CPU), which every
    # process that loads the measures (the sweep's plan, the CLI) would pay; POT likewise (alignment.py).
    from gph import ripser_parallel

    bars = ripser_parallel(cross, maxdim=1, metric="precomputed", n_threads=1)["dgms"][1].astype(np.float64)
    # Every edge eventually enters, so the complex ends contractible and no H1 bar is infinite.
    return math.fsum(bars[:, 1] - bars[:, 0])


@register(
    "rtd",
    family="topology",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    invariances=TOPOLOGY_INVARIANCES,
    min_rows=4,
    reference="Barannikov, Trofimov, Balabin, Burnaev. Representation Topology Divergence. ICML 2022",
    cost="n_repeats x 2 Vietoris-Rips barcodes (giotto-ph) on a 2n x 2n matrix (n = n_points); defaults ~0.3 s of one core at N=720",
)
def rtd(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    n_points: int = 100,
    n_repeats: int = 5,
    quantile: float = 0.9,
    seed: int = 0,
) -> float:
    """Representation topology divergence: total H1 persistence of the cross-barcode of paired clouds.

    Formula: on a random subsample of ``n_points`` paired rows, let d_X, d_Y be the Euclidean distance
    matrices divided by the ``quantile`` (default 0.9) of their pairwise distances; RTD(X, Y) is the sum
    of the lengths of the H1 bars of the R-Cross-Barcode(X, Y), the Vietoris-Rips barcode of the 2n x 2n
    matrix [[0, d_Xᵀ], [d_X, min(d_X, d_Y)]] (computed by ``giotto-ph``, ripser's algorithm); the value reported is the
    symmetrised ½(RTD(X, Y) + RTD(Y, X)) averaged over ``n_repeats`` subsamples (the same rows for X and Y).
    Range [0, ∞); 0 for identical distance structure (e.g. X and a rotated, scaled, translated X); lower
    is more similar; symmetric. The value grows with ``n_points`` (a sum over bars), so compare values
    only at equal ``n_points``. Invariant to column permutations, orthogonal maps, isotropic scaling and
    translation; not to other invertible linear maps. Rows must be paired (the cross-barcode matches row
    i of X with row i of Y). If N <= n_points all rows are used once (no repeats, nothing random).
    A subsample whose distance quantile is 0 (mostly coinciding rows) raises ``UndefinedMeasureError``.
    Deterministic given ``seed`` (subsets from ``numpy.random.default_rng(seed)``).

    Differences from the reference implementation (``IlyaTrofimov/RTD``, as used by ReSi: 10 trials of
    500 unseeded rows, ripser++ on CUDA): seeded subsets, smaller defaults for CPU cost, the quantile
    taken over the pairwise distances i < j (the reference includes the zero diagonal, which lowers it
    by O(1/n)), and no zeroing of distances below 1e-6 of the mean. ripser filters in single precision,
    so values are accurate to about 1e-7 relative.
    """
    name = "rtd"
    n_points = _positive_int(name, "n_points", n_points, minimum=4)
    n_repeats = _positive_int(name, "n_repeats", n_repeats)
    if isinstance(quantile, bool) or not isinstance(quantile, Real) or not 0 < quantile <= 1:
        raise ValueError(f"measure {name!r}: quantile must lie in (0, 1], got {quantile!r}")
    seed = _seed(name, seed)
    subsets = _row_subsets(X.shape[0], n_points, n_repeats, seed)

    def distances(z: torch.Tensor) -> list[np.ndarray]:
        return [_normalised_distances(name, z[torch.as_tensor(rows, device=z.device)], quantile) for rows in subsets]

    # one-sided: each input's subset distance matrices are computed once for all its partners
    d_x, d_y = (one_sided("rtd.distances", z, lambda z=z: distances(z), n_points=n_points, n_repeats=n_repeats,
                          quantile=quantile, seed=seed) for z in (X, Y))
    total = 0.0
    for a, b in zip(d_x, d_y):
        total += 0.5 * (_cross_barcode_h1_length(a, b) + _cross_barcode_h1_length(b, a))
    return total / len(subsets)


# --------------------------------------------------------------------------------------------------
# IMD
# --------------------------------------------------------------------------------------------------

#: IMD's reference implementation (msid) multiplies the descriptor by 1e6; kept so values compare.
IMD_SCALE = 1e6


def _knn_graph_edges(name: str, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The symmetrised unweighted kNN graph as directed edge lists (rows, cols) and the degrees.

    i ~ j when j is among the k nearest neighbours (Euclidean) of i or i among those of j; ties by
    (distance, index), self excluded by index (``measures.neighbours``).
    """
    n = x.shape[0]
    lists = nearest_neighbours(prepare_rows(name, x, "euclidean"), k, "euclidean")
    sources = torch.arange(n, device=x.device).repeat_interleave(k)
    targets = lists.reshape(-1)
    # Both directions of every kNN edge, deduplicated through the key i·n + j (O(N·k) memory, no N x N).
    keys = torch.unique(torch.cat([sources * n + targets, targets * n + sources]))
    rows, cols = keys // n, keys % n
    degrees = torch.bincount(rows, minlength=n).to(x.dtype)
    return rows, cols, degrees


#: ``imd(method="auto")`` uses the exact spectrum up to this many rows (a dense N x N eigenproblem).
IMD_EXACT_MAX_ROWS = 2000


def _exact_heat_traces(rows: torch.Tensor, cols: torch.Tensor, degrees: torch.Tensor,
                       temperatures: torch.Tensor) -> torch.Tensor:
    """tr exp(−t𝓛) / n from the full spectrum of the normalised Laplacian (dense eigvalsh)."""
    n = degrees.shape[0]
    laplacian = torch.eye(n, dtype=degrees.dtype, device=degrees.device)
    laplacian[rows, cols] -= (degrees[rows] * degrees[cols]).rsqrt()
    eigenvalues = torch.linalg.eigvalsh(laplacian)
    return torch.exp(-temperatures[:, None] * eigenvalues[None, :]).mean(dim=1)


def _lanczos_heat_traces(
    rows: torch.Tensor,
    cols: torch.Tensor,
    degrees: torch.Tensor,
    probes: torch.Tensor,
    steps: int,
    temperatures: torch.Tensor,
) -> torch.Tensor:
    """Stochastic Lanczos quadrature estimate of tr exp(−t𝓛) / n for the normalised graph Laplacian.

    𝓛 = I − D^{-1/2} A D^{-1/2}. For each probe v (rows of ``probes``), ``steps`` Lanczos steps from
    v/‖v‖ (with full reorthogonalisation) give a tridiagonal T with eigenpairs (θ_k, s_k); the
    Gauss quadrature vᵀf(𝓛)v/‖v‖² ≈ Σ_k s_k[0]² f(θ_k) averaged over probes estimates tr f(𝓛)/n
    (Hutchinson). A control variate removes the first-order noise: since tr 𝓛 = n exactly,
    α₀ − 1 = v̂ᵀ𝓛v̂ − 1 has mean 0, and exp(−t𝓛) ≈ e^{−t}(I − t(𝓛 − I)) near 𝓛 = I, so
    t·e^{−t}(α₀ − 1) is added to each probe's estimate (the msid "reduced variance" estimator).
    """
    n = degrees.shape[0]
    # S = D^{-1/2} A D^{-1/2} as a sparse matrix (the edge keys come sorted, i.e. already coalesced).
    adjacency = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), (degrees[rows] * degrees[cols]).rsqrt(), (n, n), check_invariants=False
    ).coalesce()

    def laplacian_times(v: torch.Tensor) -> torch.Tensor:  # v: probes x n
        return v - torch.sparse.mm(adjacency, v.T).T

    n_probes = probes.shape[0]
    basis = probes.new_zeros((n_probes, steps, n))  # the Lanczos vectors of every probe
    basis[:, 0] = probes / torch.linalg.vector_norm(probes, dim=1, keepdim=True)
    alphas, betas = [], []
    for j in range(steps):
        w = laplacian_times(basis[:, j])
        alpha = (w * basis[:, j]).sum(dim=1)
        alphas.append(alpha)
        if j == steps - 1:
            break
        # Full reorthogonalisation (twice is enough) against every earlier vector: cheap at m ~ 10
        # and it keeps the quadrature nodes from duplicating converged eigenvalues.
        previous = basis[:, : j + 1]
        for _ in range(2):
            w = w - torch.bmm(torch.bmm(previous, w[:, :, None]).transpose(1, 2), previous)[:, 0]
        beta = torch.linalg.vector_norm(w, dim=1)
        # beta ~ 0: the Krylov space is exhausted (invariant subspace found). A zero next vector makes T
        # block diagonal with a zero block whose eigenvectors have no weight on e_1, so it adds nothing.
        safe = beta > 1e-10
        basis[:, j + 1] = torch.where(safe[:, None], w / torch.where(safe, beta, 1.0)[:, None], 0.0)
        betas.append(torch.where(safe, beta, 0.0))
    tridiagonal = torch.diag_embed(torch.stack(alphas, dim=1))
    if betas:
        off = torch.diag_embed(torch.stack(betas, dim=1), offset=1)
        tridiagonal = tridiagonal + off + off.transpose(1, 2)
    nodes, vectors = torch.linalg.eigh(tridiagonal)  # probes x m, probes x m x m
    quadrature_weights = vectors[:, 0, :].square()
    per_probe = (quadrature_weights[:, None, :] * torch.exp(-temperatures[None, :, None] * nodes[:, None, :])).sum(-1)
    control = temperatures * torch.exp(-temperatures) * (alphas[0][:, None] - 1.0)
    return (per_probe + control).mean(dim=0)


@register(
    "imd",
    family="topology",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    invariances=TOPOLOGY_INVARIANCES,
    min_rows=6,
    reference="Tsitsulin, Munkhoeva, Mottin, Karras, Bronstein, Oseledets, Müller. "
    "The Shape of Data: Intrinsic Distance for Data Distributions. ICLR 2020",
    cost="O(N²·D) kNN + O(n_probes·steps·N·(k + steps)) Lanczos; defaults ~0.2 s of one core at N=720, D=512",
)
def imd(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    k: int = 5,
    n_probes: int = 500,
    lanczos_steps: int = 10,
    temperatures: tuple[float, float, int] = (0.1, 10.0, 256),
    method: str = "auto",
    seed: int = 0,
) -> float:
    """Multi-scale intrinsic distance: the largest weighted gap between the heat traces of kNN graphs.

    Formula: for each representation build the symmetrised unweighted k-nearest-neighbour graph
    (Euclidean, k = 5) and its normalised Laplacian 𝓛 = I − D^{-1/2}AD^{-1/2}; the heat-kernel trace
    h(t) = tr exp(−t𝓛)/N is estimated by stochastic Lanczos quadrature (``lanczos_steps`` = 10 steps,
    ``n_probes`` = 500 Rademacher probes) on ``temperatures`` = (t_min, t_max, count): ``count``
    log-spaced t in [t_min, t_max] (default 256 in [0.1, 10]). IMD = 10⁶ · max_t e^{−2(t + 1/t)}
    |h_X(t) − h_Y(t)| (the weight and the 10⁶ scale are those of the reference implementation msid,
    ``msid_mode='max'``, ``normalize='empty'``). Range [0, ∞); 0 for identical kNN graphs; lower is more
    similar; symmetric. Invariant to anything that keeps the kNN graph: column permutations, orthogonal
    maps, isotropic scaling, translation; not to other invertible linear maps. Needs N > k rows; all
    rows identical raise ``UndefinedMeasureError`` (no neighbour structure).
    The same probes (drawn from ``torch.Generator().manual_seed(seed)`` on the CPU) serve both sides,
    so m(X, X) = 0 exactly and the estimator is exactly symmetric; deterministic given ``seed``.

    Estimation noise: at N = 720 the value varies by about ±15% across seeds with 100 probes, ±5% with
    300 and ±4% with 500 (against the exact spectrum); the standard error falls as n_probes^{-1/2}, and
    the max over t biases small-probe estimates upwards.

    ``method``: ``"slq"`` (the estimator above), ``"exact"`` (the full spectrum of 𝓛 by a dense
    symmetric eigensolver: no estimation noise, O(N³), and ``seed``/``n_probes`` are unused) or
    ``"auto"`` (default: exact for N <= 2000, where it is also faster, SLQ above).

    Differences from msid (``xgfs/imd``): 500 instead of 100 probes by default (see above), Rademacher
    instead of Gaussian probes (lower Hutchinson variance), probes shared between the sides (msid draws
    them independently, so msid(X, X) > 0), ties in the kNN search broken by index, no repeats (ReSi
    averages 5 runs of 8000 probes; raise ``n_probes`` instead).
    """
    name = "imd"
    k = _positive_int(name, "k", k)
    n_probes = _positive_int(name, "n_probes", n_probes)
    lanczos_steps = _positive_int(name, "lanczos_steps", lanczos_steps)
    seed = _seed(name, seed)
    try:
        t_min, t_max, count = temperatures
    except (TypeError, ValueError):
        raise ValueError(
            f"measure {name!r}: temperatures must be (t_min, t_max, count), got {temperatures!r}"
        ) from None
    if not (0 < t_min <= t_max) or isinstance(count, bool) or not isinstance(count, Integral) or count < 1:
        raise ValueError(f"measure {name!r}: temperatures need 0 < t_min <= t_max and an integer count >= 1")
    n = X.shape[0]
    if k > n - 1:
        raise ValueError(f"measure {name!r}: k={k} neighbours need at least {k + 1} rows, got {n}")

    if method not in ("auto", "exact", "slq"):
        raise ValueError(f"measure {name!r}: method must be 'auto', 'exact' or 'slq', got {method!r}")
    exact = method == "exact" or (method == "auto" and n <= IMD_EXACT_MAX_ROWS)
    ts = torch.logspace(math.log10(t_min), math.log10(t_max), int(count), dtype=X.dtype, device=X.device)
    generator = torch.Generator().manual_seed(seed)
    probes = (torch.randint(0, 2, (n_probes, n), generator=generator) * 2 - 1).to(dtype=X.dtype, device=X.device)

    def heat_traces(z: torch.Tensor) -> torch.Tensor:
        rows, cols, degrees = _knn_graph_edges(name, z, k)
        if exact:
            return _exact_heat_traces(rows, cols, degrees, ts)
        return _lanczos_heat_traces(rows, cols, degrees, probes, lanczos_steps, ts)

    # Each side's heat traces depend on that side alone: memoised per input (a sweep reuses them).
    estimator = "exact" if exact else ("slq", seed, n_probes, lanczos_steps)
    # Shared between the processes of a sweep's pool (measures._memo.use_shared_dir).
    traces = [one_sided_shared("imd.heat_traces", z, lambda z=z: heat_traces(z), k=k, temperatures=tuple(temperatures),
                        estimator=estimator) for z in (X, Y)]
    weight = torch.exp(-2.0 * (ts + 1.0 / ts))
    return IMD_SCALE * (weight * (traces[0] - traces[1]).abs()).amax()


# --------------------------------------------------------------------------------------------------
# Geometry score
# --------------------------------------------------------------------------------------------------


def relative_living_times(intervals: np.ndarray, alpha_max: float, i_max: int) -> np.ndarray:
    """RLT(i) for i < i_max: the fraction of [0, alpha_max] during which exactly i H1 bars are alive.

    ``intervals`` is a (b, 2) array of [birth, death) pairs; deaths beyond alpha_max (or infinite) are
    cut at alpha_max. Times with i_max or more bars alive are not counted (as in Khrulkov & Oseledets).
    """
    rlt = np.zeros(i_max)
    if len(intervals) == 0:
        rlt[0] = 1.0
        return rlt
    births = np.minimum(intervals[:, 0], alpha_max)
    deaths = np.minimum(intervals[:, 1], alpha_max)
    times = np.concatenate([[0.0], births, deaths, [alpha_max]])
    steps = np.concatenate([[0], np.ones(len(births), int), -np.ones(len(deaths), int), [0]])
    order = np.argsort(times, kind="stable")
    times, alive = times[order], np.cumsum(steps[order])[:-1]
    lengths = np.diff(times)
    counted = alive < i_max
    np.add.at(rlt, alive[counted], lengths[counted])
    return rlt / alpha_max


#: Bound on the witness complex's size (estimated triangles): ~65x the largest seen on the default benchmark.
MAX_WITNESS_TRIANGLES = 2e5


def _first_of_each_row(rows: np.ndarray) -> np.ndarray:
    """Indices, ascending, of the first occurrence of each distinct row of a float matrix: the rows
    ``np.unique(rows, axis=0, return_index=True)`` keeps (value equality; no NaN here), by a dict of the
    rows' bytes (-0.0 made +0.0 first) in 0.3 ms instead of np.unique's 1.6 ms (a sort of the rows as
    structured records) at 719 x 128, once per landmark draw."""
    rows = np.ascontiguousarray(rows) + 0.0
    # Equal rows have equal sums, so rows whose sums are all distinct are all distinct (the usual case:
    # np.unique of N sums, ~30 us) and every row is kept; otherwise the dict settles it.
    sums = rows.sum(axis=1)
    if np.unique(sums).size == sums.size:
        return np.arange(len(rows), dtype=np.intp)
    first: dict[bytes, int] = {}
    for i, row in enumerate(rows):
        first.setdefault(row.tobytes(), i)
    return np.fromiter(first.values(), dtype=np.intp, count=len(first))


def _stable_row_argsort(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.argsort(a, axis=1, kind="stable")`` (ties by column index) and the rows sorted by it.

    Why not that call alone: numpy's stable argsort is a timsort, its default argsort a SIMD sort, ~5x
    faster on the 719 x 64 witness table (0.33 against 1.6 ms, once per landmark draw). A row without
    equal entries has one ascending order, so both give it the same permutation; the rows where the
    default sort leaves two neighbours not strictly ascending (a tie, or NaN) are sorted again stably.
    """
    order = np.argsort(a, axis=1)
    values = np.take_along_axis(a, order, axis=1)
    redo = ~(values[:, 1:] > values[:, :-1]).all(axis=1)
    if redo.any():
        rows = a[redo]
        order[redo] = np.argsort(rows, axis=1, kind="stable")
        values[redo] = np.take_along_axis(rows, order[redo], axis=1)
    return order, values


def _witness_h1_intervals(witness_landmark: torch.Tensor, gamma: float) -> tuple[np.ndarray, float]:
    """H1 persistence intervals of the witness complex, and its largest filtration value alpha_max.

    ``witness_landmark`` holds the distances from every witness (row) to every landmark (column).
    gudhi's ``WitnessComplex`` takes, per witness, the landmarks sorted by distance; the filtration is
    cut at alpha_max = gamma · max distance, as in the reference implementation (which passes plain,
    not squared, distances, so the relaxation is in distance units; so does this one).
    """
    landmarks, distances = _stable_row_argsort(witness_landmark.cpu().numpy())
    alpha_max = gamma * float(distances[:, -1].max())
    table = np.dstack([landmarks.astype(float), distances])
    # Witnesses with identical rows of the table witness the same simplices at the same filtration values,
    # so one of each gives the same complex. Keeping one bounds the cost on degenerate inputs: gudhi's work
    # per witness grows with the number of landmarks tied within its relaxation (dead ReLUs put most rows,
    # landmarks included, on one point: minutes per call without this); normal inputs have no duplicates.
    table = table[_first_of_each_row(table.reshape(len(table), -1))]
    # What is left to bound: ties among landmarks. A witness witnesses (about) every triangle of the
    # landmarks within its third-nearest distance + alpha_max; on the default benchmark's representations
    # that is at most ~3e3 triangles per complex, on a mostly-dead layer millions (seconds to minutes).
    d = table[:, :, 1]
    k = (d <= d[:, [min(2, d.shape[1] - 1)]] + alpha_max).sum(axis=1).astype(float)
    triangles = float((k * (k - 1) * (k - 2) / 6).sum())
    if triangles > MAX_WITNESS_TRIANGLES:
        raise UndefinedMeasureError(
            f"geometry_score: the witness complex would hold ~{triangles:.2g} triangles (limit "
            f"{MAX_WITNESS_TRIANGLES:.0e}): many landmarks coincide or are tied (e.g. dead ReLUs), so the "
            "representation has no stable H1 geometry at this scale"
        )
    tree = gudhi.WitnessComplex(nearest_landmark_table=table).create_simplex_tree(
        max_alpha_square=alpha_max, limit_dimension=2
    )
    tree.compute_persistence(homology_coeff_field=2)
    return np.asarray(tree.persistence_intervals_in_dimension(1)).reshape(-1, 2), alpha_max


def _summed_living_times(name: str, z: torch.Tensor, draws: list[np.ndarray], gamma: float, i_max: int) -> np.ndarray:
    """Σ over the landmark draws of the relative living times of the witness complex's H1 (one side)."""
    # Centring and dividing by the largest entry keep the Gram expansion of distances accurate and
    # finite; neither changes any distance ratio.
    z = center_columns(z)
    peak = z.abs().amax()
    if peak == 0:
        raise UndefinedMeasureError(f"{name}: a representation has all rows identical (no geometry)")
    z = z / peak
    sq = z.square().sum(dim=1)
    # Coinciding rows (dead ReLUs put many rows on one point): distances between them are set to exactly
    # 0, as the Gram expansion leaves them a residue that differs from row to row; witnesses then coincide
    # exactly and _witness_h1_intervals keeps one of each, which bounds the cost on degenerate inputs.
    # Without coinciding rows this is the landmark's zero distance to itself, as before.
    _, point = np.unique(z.cpu().numpy(), axis=0, return_inverse=True)
    point = point.reshape(-1)
    total = np.zeros(i_max)
    for landmark_rows in draws:
        index = torch.as_tensor(landmark_rows, device=z.device)
        squared = (sq[:, None] + sq[index][None, :] - 2.0 * z @ z[index].T).clamp_min(0.0)
        # A landmark is its own nearest landmark at distance exactly 0 (as is every row coinciding with
        # it); the Gram expansion would leave a round-off residue whose square root (~1e-8) is far above
        # round-off level.
        same = torch.as_tensor(point[:, None] == point[landmark_rows][None, :], device=z.device)
        squared[same] = 0.0
        # alpha_max > 0 here: some row differs from each landmark, since not all rows coincide.
        intervals, alpha_max = _witness_h1_intervals(squared.sqrt(), gamma)
        total += relative_living_times(intervals, alpha_max, i_max)
    return total


@register(
    "geometry_score",
    family="topology",
    kind="distance",
    range=(0.0, 2.0),
    symmetric=True,
    invariances=TOPOLOGY_INVARIANCES,
    min_rows=4,
    reference="Khrulkov & Oseledets. Geometry Score: A Method For Comparing Generative Adversarial Networks. ICML 2018",
    cost="n_draws x 2 gudhi witness complexes (n_landmarks landmarks, N witnesses); defaults ~0.3 s at N=720",
)
def geometry_score(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    n_landmarks: int = 64,
    gamma: float = 1.0 / 128,
    i_max: int = 100,
    n_draws: int = 20,
    seed: int = 0,
) -> float:
    """Geometry score: squared distance between the mean relative-living-time histograms of H1.

    Formula: for each of ``n_draws`` random sets of ``n_landmarks`` landmark rows (all rows witnesses),
    compute the H1 persistence intervals of the witness complex (gudhi ``WitnessComplex``, Z/2
    coefficients) up to alpha_max = ``gamma`` · (largest witness-landmark distance), and the relative
    living times RLT(i) = (time in [0, alpha_max] with exactly i H1 classes alive) / alpha_max, i < i_max.
    MRLT = mean RLT over the draws; GS = Σ_i (MRLT_X(i) − MRLT_Y(i))². Range [0, 2] (two histograms
    of mass at most 1); 0 for the same H1 behaviour; lower is more similar; symmetric. Depends only on
    distance ratios: invariant to column permutations, orthogonal maps, isotropic scaling and
    translation; not to other invertible linear maps. The same landmark rows are drawn for X and Y
    (``numpy.random.default_rng(seed)``); with N <= n_landmarks every row is a landmark and a single
    deterministic draw is made. A representation whose rows all coincide has no geometry (alpha_max = 0):
    ``UndefinedMeasureError``.

    Differences from the reference implementation (``KhrulkovV/geometry-score``): landmarks drawn without
    replacement (the reference samples with replacement, so a draw may repeat a landmark); a fixed
    default gamma = 1/128 (the reference's default is N/(128·5000), which at N ~ 10³ leaves almost no
    H1); n_draws = 20 instead of 1000 to keep the CPU cost modest (raise it for lower variance).
    """
    name = "geometry_score"
    n_landmarks = _positive_int(name, "n_landmarks", n_landmarks, minimum=3)
    i_max = _positive_int(name, "i_max", i_max)
    n_draws = _positive_int(name, "n_draws", n_draws)
    seed = _seed(name, seed)
    if isinstance(gamma, bool) or not isinstance(gamma, Real) or not gamma > 0:
        raise ValueError(f"measure {name!r}: gamma must be a positive number, got {gamma!r}")
    draws = _row_subsets(X.shape[0], n_landmarks, n_draws, seed)
    # Each side's mean relative living times depend on that side alone: memoised per input.
    # Shared between the processes of a sweep's pool (measures._memo.use_shared_dir).
    mrlt = [one_sided_shared("geometry_score.mrlt", z, lambda z=z: _summed_living_times(name, z, draws, gamma, i_max),
                      n_landmarks=n_landmarks, n_draws=n_draws, seed=seed, gamma=gamma, i_max=i_max)
            for z in (X, Y)]
    return float(np.square((mrlt[0] - mrlt[1]) / len(draws)).sum())
