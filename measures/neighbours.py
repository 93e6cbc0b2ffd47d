"""Neighbourhood family: measures that compare the k-nearest-neighbour structure of the instances.

Every measure here shares one kNN convention, pinned by two parameters that go into the result key:

* ``metric``: ``"cosine"`` (default, as ReSi) ranks neighbours by cosine similarity of the rows;
  ``"euclidean"`` by Euclidean distance.
* ``k``: the number of neighbours (default 10, as ReSi and platonic-rep); it must be at most N - 1.

and two fixed rules: instance i is excluded from its own list **by index** (a duplicate row of i is an
ordinary neighbour at distance 0, as ``sklearn.neighbors.NearestNeighbors.kneighbors()`` with
``X=None``; ReSi instead queries k + 1 neighbours and drops the first column, which drops a duplicate
instead of i), and ties are broken by (distance, index), so lists are deterministic also under
duplicate rows. A zero row has no cosine direction, and a representation whose rows all coincide has no
neighbour structure: both raise :class:`~measures.UndefinedMeasureError`.

The neighbour search (:func:`nearest_neighbours`) is brute force in row blocks: O(N²·D) time,
O(block·N) memory, a top-k per block instead of a full N x N argsort, no per-row Python loop. float64
inputs on the CPU take a float32 first pass (twice the GEMM rate) with a rigorous round-off bound: rows
whose float32 ranking is separated by more than the bound keep it (the float64 lists exactly), the
others re-score their candidates in float64 or take the float64 path (:func:`_float32_pass`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from measures._kernels import mm, on_numpy
from measures._memo import one_sided
from measures._registry import UndefinedMeasureError, register
from measures._validation import center_columns

METRICS = ("cosine", "euclidean")
#: Elements per temporary block (N x N distances, N x k x D gathers): 2^22 float64 = 32 MiB.
BLOCK_ELEMENTS = 1 << 22
#: Largest Gram matrix the CPU kNN search builds whole (by a symmetric product) before selecting:
#: 256 MiB (N ≤ 5792 at float64). Larger ones lost more to first-touch page faults of the fresh
#: allocation than the halved GEMM saved on the development VM (N = 8000: 4.6 s against 2.5 s).
GRAM_BYTES = 1 << 28
#: Elements per gathered block of the numpy path of :func:`pair_values`: 2^18 float64 = 2 MiB.
CACHE_BLOCK_ELEMENTS = 1 << 18
#: Width of the float32 candidate lists of rows whose k-th place is not settled: k + 16 entries.
CANDIDATES = 16
#: Unit round-off of float32 and float64.
U32, U64 = 2.0**-24, 2.0**-53


def scale_to_unit(x: torch.Tensor, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` times 2^-e with e chosen so that the largest magnitude lies in [0.5, 1); returns (scaled, e).

    With ``dim`` the exponent is chosen per slice (``dim=1``: one per row, e has shape N x 1). Scaling by
    a power of two is exact, so scale-invariant quantities computed afterwards are bit-for-bit those of
    the original, and squares of huge or tiny entries neither overflow nor underflow.
    All-zero slices get e = 0 and stay zero.
    """
    if on_numpy(x):
        a = x.numpy()
        if dim is None:  # no |a| temporary
            peak = max(a.max(), -a.min()) if a.size else np.abs(a).max()
        else:
            peak = np.abs(a).max(axis=dim, keepdims=True)
        exponent = np.where(peak > 0, np.frexp(peak)[1], 0).astype(np.int32)
        return torch.from_numpy(np.ldexp(a, -exponent)), torch.from_numpy(np.asarray(exponent))
    peak = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    exponent = torch.where(peak > 0, torch.frexp(peak).exponent, 0)
    return torch.ldexp(x, -exponent), exponent


def unit_rows(name: str, x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit Euclidean norm; a zero row raises ``UndefinedMeasureError``."""
    z, _ = scale_to_unit(x, dim=1)
    norms = torch.from_numpy(np.linalg.norm(z.numpy(), axis=1, keepdims=True)) if on_numpy(z) else (
        torch.linalg.vector_norm(z, dim=1, keepdim=True))
    zero = int((norms == 0).sum())
    if zero:
        raise UndefinedMeasureError(
            f"{name}: {zero} zero row(s) have no direction, so their cosine similarities are undefined"
        )
    return z / norms


def prepare_rows(name: str, x: torch.Tensor, metric: str) -> torch.Tensor:
    """Rows in the geometry of ``metric``, ready for :func:`nearest_neighbours`.

    Cosine: unit rows (their inner products are the cosine similarities). Euclidean: column-centred rows
    rescaled by powers of two (before centring, so the mean cannot overflow, and after, so the squares
    of small differences cannot underflow); neither step changes the neighbour order, and centring keeps
    the expansion ‖a‖² - 2aᵀb accurate after large translations.
    """
    # numpy's comparison on the CPU (torch's elementwise == and all() take ~4x as long on one thread)
    same = bool((x.numpy() == x.numpy()[0]).all()) if on_numpy(x) else bool((x == x[0]).all())
    if same:
        raise UndefinedMeasureError(f"{name}: every row is identical, there is no neighbour structure")
    if metric == "cosine":
        return unit_rows(name, x)
    return scale_to_unit(center_columns(scale_to_unit(x)[0]))[0]


def nearest_neighbours(z: torch.Tensor, k: int, metric: str) -> torch.Tensor:
    """:func:`_search`, memoised per input (every kNN measure of a pair, and every pair of a sweep that
    shares a representation, needs the same lists)."""
    return one_sided("nearest_neighbours", z, lambda: _search(z, k, metric), k=k, metric=metric)


def _search(z: torch.Tensor, k: int, metric: str) -> torch.Tensor:
    """The N x k indices of each row's k nearest other rows, nearest first, ties by (distance, index).

    ``z`` comes from :func:`prepare_rows`. Row i never lists itself (excluded by index); a duplicate
    of row i is listed like any other row. float64 rows on the CPU first take :func:`_float32_pass`,
    which settles every row whose float32 top k + 1 is provably the float64 answer; the remaining rows
    (and every other input) take :func:`_exact_rows`.
    """
    n, d = z.shape
    cosine = metric != "euclidean"
    # The float32 pass needs the rows of prepare_rows (entries below 1 in magnitude: no float32 overflow).
    if on_numpy(z) and z.dtype == torch.float64 and d * U32 <= 0.01 and np.abs(z.numpy()).max(initial=0.0) <= 1.0:
        lists, unordered, candidates, unsettled = _float32_pass(z, k, cosine)
        if unordered.numel():
            lists[unordered] = _order_by_float64(z, unordered, candidates, k, cosine)
        if unsettled.numel():
            lists[unsettled] = _exact_rows(z, unsettled, k, cosine)
        return lists
    return _exact_rows(z, torch.arange(n, device=z.device), k, cosine)


def _float32_pass(
    z: torch.Tensor, k: int, cosine: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kNN lists of a float32 search; the rows it leaves unordered with their candidate lists; the
    rows it does not settle.

    Why: float32 GEMM runs at twice the float64 rate, and on real representations almost every row's
    nearest neighbours are separated by far more than float32 round-off. A row is settled when every
    gap between consecutive entries of its float32 top k + 1 (ranking key w, larger is nearer)
    exceeds 2E, where E bounds the distance of both the float32 key and the float64 key of
    :func:`_exact_rows` from the exact key. Then the exact keys, and the float64 ones, order the top k
    strictly and the same way, and every other row entry lies strictly below the k-th: the float32
    lists are bit-for-bit the float64 path's lists. Otherwise the row's candidates are the entries
    with w ≥ w_k - 2E (w_k its k-th largest w): every entry whose float64 key could reach the k-th
    float64 key, or tie with it, is among them, and :func:`_order_by_float64` picks and orders the
    k nearest by those keys. They are found in the top ``CANDIDATES`` entries of w (when w_k - 2E
    exceeds the last of those); rows with more (exact ties at the k-th place over many rows, as on
    lattice data) are returned as unsettled for the float64 path.

    The bound (Higham, Accuracy and Stability of Numerical Algorithms, 2002, §2.1 with gradual
    underflow, §3.1). Rows have ‖z_i‖ ≤ √D and entries below 1 (unit rows, or scale_to_unit). Rounding
    to float32 gives x̂ = x(1 + δ) + η, |δ| ≤ u, |η| ≤ 2^-150; an inner product of length D in any
    summation order, with or without FMA, errs by at most γ_D Σ|x̂_l ŷ_l| plus 2^-150 per product,
    γ_D = Du/(1 - Du). For D·u32 ≤ 0.01 these give |fl32(x̂ᵀŷ) - xᵀy| ≤ 1.02 (D + 2) u32 ‖x‖‖y‖ + a
    with a = D·2^-140 (the underflow terms sum to at most 1.01·2^-150 (‖x‖₁ + ‖y‖₁ + D) ≤ D·2^-148),
    and the float64 Gram matrix obeys the same with u64. With c = 1.02 (D + 2)(u32 + u64),
    R ≥ max_j ‖z_j‖ and n_i ≥ ‖z_i‖:
    cosine ranks by w = z_iᵀz_j, so E_i = c·n_i·R + 2a; Euclidean by w = 2z_iᵀz_j - ‖z_j‖² (the squared
    distance less the row's constant ‖z_i‖²), which adds the float64 sum ‖z_j‖² (1.02 (D + 2) u64 R²,
    in both keys), its rounding to float32 (1.01 u32 R²) and the rounding of the subtraction
    (1.01 u (2n_iR + R²) in either precision), and, for the keys of :func:`_order_by_float64` (squared
    differences, error ≤ γ_{D+2}‖z_i - z_j‖²), 1.02 (D + 2) u64 (n_i + R)²:
    E_i = 2c·n_i·R + 2.02 u32 (n_iR + R²) + 3 (D + 2) u64 R² + 1.02 (D + 2) u64 (n_i + R)² + 4a.
    (The cosine keys of :func:`_order_by_float64` are inner products, within the Gram matrix's bound.)
    """
    a = z.numpy()
    n = a.shape[0]
    a32 = a.astype(np.float32)
    sq_norms = np.einsum("ij,ij->i", a, a)
    sq_norms32 = None if cosine else sq_norms.astype(np.float32)
    twice_bound = torch.from_numpy(2 * _key_error_bound(sq_norms, a.shape[1], cosine))
    # The float32 Gram matrix is half the bytes of the float64 one: whole up to GRAM_BYTES.
    whole = a32 @ a32.T if n * n * 4 <= GRAM_BYTES else None
    rows_per_block = max(1, 2 * BLOCK_ELEMENTS // n)
    lists = torch.empty((n, k), dtype=torch.int64)
    m = min(k + 1, n - 1)  # k = N - 1: every other row is listed, nothing to separate from
    wide = min(k + CANDIDATES, n - 1)
    unordered, candidates, unsettled = [], [], []
    for start in range(0, n, rows_per_block):
        stop = min(n, start + rows_per_block)
        key = whole[start:stop] if whole is not None else a32[start:stop] @ a32.T
        if not cosine:
            key *= 2.0
            key -= sq_norms32
        rows = np.arange(stop - start)
        key[rows, start + rows] = -np.inf
        values, index = _largest(key, m)
        values = values.double()
        bound = twice_bound[start:stop]
        gaps_ok = (values[:, :-1] - values[:, 1:]) > bound[:, None]
        lists[start:stop] = index[:, :k]
        # The set is settled when the k-th gap is (always for k = N - 1), the order when all are.
        set_settled = gaps_ok[:, k - 1] if m > k else torch.ones(stop - start, dtype=torch.bool)
        order_only = (set_settled & ~gaps_ok.all(dim=1)).nonzero().squeeze(1)
        unordered.append(start + order_only)
        candidates.append(torch.cat([index[order_only, :k], torch.full((order_only.numel(), wide - k), -1)], dim=1))
        rest = (~set_settled).nonzero().squeeze(1)
        if rest.numel():
            wide_values, wide_index = torch.from_numpy(key[rest.numpy()]).topk(wide, dim=1)
            found = wide_values.double() >= (values[rest, k - 1] - bound[rest])[:, None]
            enough = ~found[:, -1] if wide < n - 1 else torch.ones(rest.numel(), dtype=torch.bool)
            unordered.append(start + rest[enough])
            candidates.append(torch.where(found, wide_index, -1)[enough])
            unsettled.append(start + rest[~enough])
    unsettled_rows = torch.cat(unsettled) if unsettled else torch.empty(0, dtype=torch.int64)
    return lists, torch.cat(unordered), torch.cat(candidates), unsettled_rows


#: Groups per row in :func:`_largest`: about this many (each row's top m is found among the m groups
#: with the largest maxima). numpy's partition and sort of int64 rows run in SIMD registers up to 256
#: entries (~2 ns per entry) and slow down several-fold above (a 625-entry partition at N = 5000: 7 ns).
GROUPS = 256
#: ... and at least this many columns per group (fewer groups than N/8 save little of the maxima pass).
MIN_GROUP = 8


def _ascending_codes(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """int64 codes of float32 ``values`` whose ascending order is the values' descending order, ties by
    ``ids`` (non-negative, below 2^31): the float's bits made order-preserving as an int32 (negative
    floats' magnitude bits flipped), inverted, in the high half; the id in the low half. No NaN."""
    bits = values.view(np.int32)
    ordered = bits >> 31
    ordered &= 0x7FFFFFFF
    ordered ^= bits
    np.invert(ordered, out=ordered)
    codes = ordered.astype(np.int64)
    codes <<= 32
    codes |= ids
    return codes


def _largest(key: np.ndarray, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The m largest entries of each row of the C-contiguous float32 array ``key`` (no NaN; at least
    m + 1 entries above -inf per row), largest first (ties by column), and their column indices: the
    values of ``torch.topk(key, m)``.

    Why not ``topk`` itself: on one thread it costs ~2.5 ns per entry (10 ms for a 2000 x 2000 block);
    this takes ~6 ms. The columns form B = ⌈N/g⌉ strided groups of g = max(8, ⌈N/256⌉) columns
    (group j: columns j, j + B, ...; B ≈ 256 keeps the selections in numpy's fast short-row sorts); one
    vectorised pass takes each group's maximum, and the m groups with the largest maxima hold the row's
    top m: an entry x outside them is at most its own group's maximum, so at most the smallest chosen
    maximum, and the m chosen groups hold m entries ≥ x, so dropping x leaves the multiset of the m
    largest values unchanged (and the columns of every value above the (m + 1)-th largest). The
    selections run on int64 codes of (value, id) (:func:`_ascending_codes`) with numpy's vectorised
    ``partition`` and ``sort``, several times faster than ``argpartition``/``argsort`` on the floats.
    Rows with fewer than 4m groups take ``topk``.
    """
    rows, n = key.shape
    group = max(MIN_GROUP, -(-n // GROUPS))  # g, the columns per group
    width = -(-n // group)  # B, the number of groups
    if width < 4 * m or key.dtype != np.float32:
        values, index = torch.from_numpy(key).topk(m, dim=1)
        return values, index
    if n == group * width:  # one reduction (a loop of strided maxima when the last stride is partial)
        maxima = torch.from_numpy(key).view(rows, group, width).amax(dim=1).numpy()
    else:
        maxima = key[:, :width].copy()
        for start in range(width, n, width):  # the last stride's columns belong to groups 0 .. n - start - 1
            stop = min(n, start + width)
            np.maximum(maxima[:, : stop - start], key[:, start:stop], out=maxima[:, : stop - start])
    best = np.partition(_ascending_codes(maxima, np.arange(width, dtype=np.int64)), m - 1, axis=1)[:, :m]
    groups = np.sort(best & 0xFFFFFFFF, axis=1)  # ascending columns: the gather below walks each row forward
    columns = (groups[:, None, :] + width * np.arange(group)[:, None]).reshape(rows, group * m)
    outside = columns >= n  # the partial last stride's missing columns
    np.minimum(columns, n - 1, out=columns)
    candidates = key.ravel()[columns + (n * np.arange(rows))[:, None]]
    candidates[outside] = -np.inf  # below every entry that can be among the top m
    top = np.sort(_ascending_codes(candidates, columns), axis=1)[:, :m]
    index = top & 0xFFFFFFFF
    return torch.from_numpy(np.take_along_axis(key, index, axis=1)), torch.from_numpy(index)


def _key_error_bound(sq_norms: np.ndarray, d: int, cosine: bool) -> np.ndarray:
    """E_i of :func:`_float32_pass` for each row, from the float64 squared row norms and the width D."""
    norms = np.sqrt(sq_norms) * (1 + 4 * d * U64)  # n_i ≥ ‖z_i‖
    top = norms.max()
    c, tiny = 1.02 * (d + 2) * (U32 + U64), d * 2.0**-140
    if cosine:
        return c * norms * top + 2 * tiny
    return (
        2 * c * norms * top
        + 2.02 * U32 * (norms * top + top**2)
        + 3 * (d + 2) * U64 * top**2
        + 1.02 * (d + 2) * U64 * (norms + top) ** 2
        + 4 * tiny
    )


def _order_by_float64(z: torch.Tensor, rows: torch.Tensor, candidates: torch.Tensor, k: int, cosine: bool) -> torch.Tensor:
    """The k nearest of each row's candidates (-1 pads), nearest first by float64 keys, ties by index.

    The keys are the cosine similarities z_iᵀz_j and the squared distances Σ(z_i - z_j)² from the
    differences (0 exactly for duplicates), one dot product per entry. They may round differently
    from the Gram matrix entries of :func:`_exact_rows` by a few ulps, so two entries within a few
    ulps of each other may be ordered differently than that path orders them.
    """
    index = np.sort(candidates.numpy(), axis=1)  # pads first, then index order
    padding = index < 0
    keys = pair_values(z, torch.from_numpy(index), squared_distance=not cosine, rows=rows).numpy()
    if cosine:
        np.negative(keys, out=keys)  # exact: nearest first in ascending order
    keys[padding] = np.inf
    order = np.argsort(keys, axis=1, kind="stable")[:, :k]  # index order within equal keys
    return torch.from_numpy(np.take_along_axis(index, order, axis=1))


def _exact_rows(z: torch.Tensor, rows: torch.Tensor, k: int, cosine: bool) -> torch.Tensor:
    """kNN lists of the given rows in the input's precision.

    Each block of rows gets its distances to all N rows and a ``topk``. Its k-th smallest value t is
    unique even where the order of tied entries is not: if the row holds no more entries equal to t
    than the top k does, the top-k set is the answer; otherwise (a tie straddles the k-th place) the
    row takes every entry below t plus the lowest-index entries equal to t. A stable sort of the k
    entries, in index order, by distance gives the final order.
    """
    n = z.shape[0]
    # Only the order within a row matters: drop the constant ‖z_i‖². Cosine selects the k largest
    # inner products directly (the same order as the k smallest -cos, without negating N x N entries).
    sq_norms = None if cosine else z.square().sum(dim=1)
    rows_per_block = max(1, BLOCK_ELEMENTS // n)
    every = rows.numel() == n
    # On the CPU, up to GRAM_BYTES the whole Gram matrix comes from one numpy product z @ zᵀ, which
    # OpenBLAS computes as a symmetric rank-k update (half the flops of the row-block GEMMs); the
    # selection then runs over row blocks of it. Larger N (or other devices, or a subset of the
    # rows): one GEMM per row block.
    whole = (
        mm(z, z.T)
        if every and on_numpy(z) and n > rows_per_block and n * n * z.element_size() <= GRAM_BYTES
        else None
    )
    lists = []
    for start in range(0, rows.numel(), rows_per_block):
        own = rows[start : start + rows_per_block]
        # The GEMM runs in numpy's BLAS on the CPU (mm); the selection stays in torch, whose ``topk``
        # is ~4x faster than ``np.argpartition`` on one thread here.
        # All rows: slices of z (numpy computes z[a:b] @ zᵀ for a single block as a symmetric product).
        block = z[start : start + rows_per_block] if every else z[own]
        key = mm(block, z.T) if whole is None else whole[start : start + rows_per_block]
        if not cosine:
            key = key.mul_(-2.0).add_(sq_norms)
        key[torch.arange(own.numel(), device=z.device), own] = -math.inf if cosine else math.inf
        # k + 1 entries (k <= n - 1, so there are enough): the tie at the k-th place straddles into the
        # rest of the row exactly when the (k + 1)-th entry equals the k-th, so no pass over the whole
        # block is needed to detect it.
        top_values, index = key.topk(k + 1, dim=1, largest=cosine)
        kth, next_value, index = top_values[:, k - 1 : k], top_values[:, k], index[:, :k]
        straddle = (next_value == kth[:, 0]).nonzero().squeeze(1)
        if straddle.numel():
            tied_key, tied_kth = key[straddle], kth[straddle]
            below = tied_key > tied_kth if cosine else tied_key < tied_kth
            at = tied_key == tied_kth
            chosen = below | (at & (at.cumsum(dim=1) <= k - below.sum(dim=1, keepdim=True)))
            index[straddle] = chosen.nonzero()[:, 1].view(-1, k)
        index = index.sort(dim=1).values
        nearest_first = key.gather(1, index)
        if cosine:
            nearest_first.neg_()  # exact: the order of -cos, ties kept in index order by the stable sort
        order = nearest_first.sort(dim=1, stable=True).indices
        lists.append(index.gather(1, order))
    return torch.cat(lists) if lists else torch.empty((0, k), dtype=torch.int64, device=z.device)


def pair_values(z: torch.Tensor, index: torch.Tensor, squared_distance: bool,
                rows: torch.Tensor | None = None) -> torch.Tensor:
    """For each list i and each j in ``index[i]``: z_rᵀz_j, or ‖z_r - z_j‖² from the differences, where
    r = ``rows[i]`` (default: r = i, list i belongs to row i).

    Computed in blocks of rows (never N x N); differences make the distance of duplicates exactly 0.
    """
    n, m = index.shape
    rows_per_block = max(1, BLOCK_ELEMENTS // (m * z.shape[1]))
    if on_numpy(z):
        # numpy: the gathered block is reduced in place and in one pass by einsum (torch builds a new
        # N x m x D temporary for each of the difference, the square and the product); blocks of 2 MiB
        # stay in cache between the gather and the reduction (1.9x faster than 32 MiB blocks here).
        rows_per_block = max(1, CACHE_BLOCK_ELEMENTS // (m * z.shape[1]))
        a, neighbour_index = z.numpy(), index.numpy()
        own_rows = None if rows is None else rows.numpy()
        out = np.empty((n, m), dtype=a.dtype)
        for start in range(0, n, rows_per_block):
            stop = min(n, start + rows_per_block)
            neighbours = a[neighbour_index[start:stop]]
            own = a[start:stop] if own_rows is None else a[own_rows[start:stop]]
            if squared_distance:
                neighbours -= own[:, None, :]
                out[start:stop] = np.einsum("ijk,ijk->ij", neighbours, neighbours)
            else:
                out[start:stop] = np.einsum("ijk,ik->ij", neighbours, own)
        return torch.from_numpy(out)
    values = []
    for start in range(0, n, rows_per_block):
        neighbours = z[index[start : start + rows_per_block]]
        own = z[start : start + rows_per_block] if rows is None else z[rows[start : start + rows_per_block]]
        own = own[:, None, :]
        values.append((neighbours - own).square().sum(-1) if squared_distance else (neighbours * own).sum(-1))
    return torch.cat(values)


def _match(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which entries of each list a[i] occur in b[i], and their 0-based positions in b[i].

    Sort each row of b once and binary-search the entries of a in it: O(N·k·log k), no N x k x k mask.
    The position is meaningful only where the entry was found.
    """
    b_sorted, b_position = b.sort(dim=1)
    slot = torch.searchsorted(b_sorted, a).clamp_(max=b.shape[1] - 1)
    found = b_sorted.gather(1, slot) == a
    return found, b_position.gather(1, slot)


def _neighbour_lists(
    name: str, X: torch.Tensor, Y: torch.Tensor, k: int, metric: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate the shared parameters; return the prepared rows and the kNN lists of both sides."""
    if metric not in METRICS:
        raise ValueError(f"measure {name!r}: metric must be one of {METRICS}, got {metric!r}")
    n = X.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"measure {name!r}: k must be a positive integer, got {k!r}")
    if k > n - 1:
        raise ValueError(f"measure {name!r}: k={k} neighbours need at least {k + 1} rows, got {n}")
    zx, zy = prepare_rows(name, X, metric), prepare_rows(name, Y, metric)
    return zx, zy, nearest_neighbours(zx, k, metric), nearest_neighbours(zy, k, metric)


def _jaccard_per_instance(found: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    k, shared = found.shape[1], found.sum(dim=1).to(dtype)
    return shared / (2 * k - shared)


def _rank_similarity_per_instance(found: torch.Tensor, position_in_b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    k = found.shape[1]
    rank_a = torch.arange(1, k + 1, device=found.device, dtype=dtype)
    rank_b = position_in_b.to(dtype) + 1
    terms = torch.where(found, 2.0 / ((1 + (rank_a - rank_b).abs()) * (rank_a + rank_b)), 0.0)
    shared = found.sum(dim=1)
    # harmonic[m] = H_m = sum_{l<=m} 1/l, with H_0 = 0 (an empty shared set scores 0)
    harmonic = torch.cat([torch.zeros(1, dtype=dtype, device=found.device), (1.0 / rank_a).cumsum(0)])
    return torch.where(shared > 0, terms.sum(dim=1) / harmonic[shared].clamp_min(1.0), 0.0).clamp(0.0, 1.0)


_KNN_INVARIANCES = ("permutation", "orthogonal", "isotropic_scaling")


@register(
    "knn_jaccard",
    family="neighbours",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=_KNN_INVARIANCES,
    reference=(
        "Schumacher et al. The Effects of Randomness on the Stability of Node Embeddings. 2021; "
        "Wang et al. Towards Understanding the Instability of Network Embedding. IEEE TKDE 2020"
    ),
    cost="O(N²·D) chunked kNN search, O(N·k·log k) matching",
)
def knn_jaccard(X: torch.Tensor, Y: torch.Tensor, *, k: int = 10, metric: str = "cosine") -> torch.Tensor:
    """Mean Jaccard similarity of the k-nearest-neighbour sets of each instance in the two representations.

    Formula: J = (1/N) Σ_i |A_i ∩ B_i| / |A_i ∪ B_i| with A_i = N_k^X(i), B_i = N_k^Y(i); since
    |A_i| = |B_i| = k, J_i = m_i / (2k - m_i) with m_i = |A_i ∩ B_i|. Range [0, 1]; higher is more
    similar; symmetric. Invariant to permutation, orthogonal maps and isotropic scaling; with
    ``metric="euclidean"`` also to translation (cosine neighbourhoods are not). Not invariant to
    invertible linear maps.
    Conventions: ``k`` neighbours (default 10) under ``metric`` ("cosine" default or "euclidean"), self
    excluded by index, ties by (distance, index). A zero row under cosine and a representation with all
    rows identical raise ``UndefinedMeasureError``.
    Elsewhere: ReSi drops the first of k + 1 neighbours (a duplicate instead of self when rows repeat);
    sklearn's tie order is implementation-defined. The similarity-repository saw a spread of 0.03
    between two implementations from these conventions.
    """
    _, _, a, b = _neighbour_lists("knn_jaccard", X, Y, k, metric)
    found, _ = _match(a, b)
    return _jaccard_per_instance(found, X.dtype).mean()


@register(
    "mutual_knn",
    family="neighbours",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=_KNN_INVARIANCES,
    reference="Huh, Cheung, Wang, Isola. The Platonic Representation Hypothesis. ICML 2024",
    cost="O(N²·D) chunked kNN search, O(N·k·log k) matching",
)
def mutual_knn(X: torch.Tensor, Y: torch.Tensor, *, k: int = 10, metric: str = "cosine") -> torch.Tensor:
    """Mutual nearest-neighbour alignment: the mean fraction of each instance's k neighbours shared by both.

    Formula: m_NN = (1/N) Σ_i |A_i ∩ B_i| / k with A_i = N_k^X(i), B_i = N_k^Y(i). Range [0, 1]; higher
    is more similar; symmetric. Per instance it is a monotone transform of the kNN Jaccard similarity
    (J_i = m_i / (2k - m_i)), but the means over instances are not monotone transforms of each other.
    Invariant to permutation, orthogonal maps and isotropic scaling; with ``metric="euclidean"`` also to
    translation. Not invariant to invertible linear maps.
    Conventions: as ``knn_jaccard`` (k = 10, cosine, self excluded by index, ties by (distance, index)).
    Elsewhere: platonic-rep ranks by the inner product of features it L2-normalises itself (cosine order),
    and its protocol clamps features at the 95th percentile and takes the maximum over layer pairs;
    those are protocol steps, not part of this measure.
    """
    _, _, a, b = _neighbour_lists("mutual_knn", X, Y, k, metric)
    found, _ = _match(a, b)
    return found.sum(dim=1).to(X.dtype).mean() / k


@register(
    "second_order_cosine",
    family="neighbours",
    kind="similarity",
    range=(-1.0, 1.0),
    symmetric=True,
    invariances=_KNN_INVARIANCES,
    reference=(
        "Hamilton, Leskovec, Jurafsky. Cultural Shift or Linguistic Drift? Comparing Two Computational "
        "Measures of Semantic Change. EMNLP 2016"
    ),
    cost="O(N²·D) chunked kNN search, O(N·k·D) profiles",
)
def second_order_cosine(
    X: torch.Tensor, Y: torch.Tensor, *, k: int = 10, metric: str = "cosine", entries: str = "similarity"
) -> torch.Tensor:
    """Mean cosine similarity of each instance's similarity profile over the union of its two neighbourhoods.

    Formula: U_i = N_k^X(i) ∪ N_k^Y(i); s_i^X = (sim_X(i, j))_{j ∈ U_i}, s_i^Y likewise in Y's geometry;
    score = (1/N) Σ_i cos(s_i^X, s_i^Y). Range [-1, 1] with ``entries="similarity"`` (cosine
    similarities can be negative), [0, 1] with ``entries="distance"``; higher is more similar;
    symmetric. Invariant to permutation, orthogonal maps and isotropic scaling; with
    ``metric="euclidean"`` also to translation. Not invariant to invertible linear maps.
    Conventions: neighbourhoods as ``knn_jaccard``. ``entries="similarity"`` (default, Hamilton et al.)
    uses the cosine similarity cos(x_i, x_j); ``entries="distance"`` (ReSi) uses the cosine distance
    1 - cos(x_i, x_j) under ``metric="cosine"`` and the Euclidean distance ‖x_i - x_j‖ under
    ``metric="euclidean"``; ``metric="euclidean"`` with ``entries="similarity"`` has no similarity to use
    and is rejected. An instance whose profile is the zero vector in either representation (e.g. only
    exact duplicates as neighbours under cosine distances) has no cosine: ``UndefinedMeasureError``.
    Elsewhere: ReSi builds two full N x N distance matrices; this computes only the ≤ 2k entries per row.
    """
    name = "second_order_cosine"
    if entries not in ("similarity", "distance"):
        raise ValueError(f"measure {name!r}: entries must be 'similarity' or 'distance', got {entries!r}")
    if entries == "similarity" and metric == "euclidean":
        raise ValueError(
            f"measure {name!r}: entries='similarity' needs metric='cosine' "
            "(Euclidean geometry has distances only; use entries='distance')"
        )
    zx, zy, a, b = _neighbour_lists(name, X, Y, k, metric)
    b_in_a, _ = _match(b, a)
    union = torch.cat([a, b], dim=1)
    in_union = torch.cat([torch.ones_like(b_in_a), ~b_in_a], dim=1)  # each j ∈ U_i counted once

    def profile(z: torch.Tensor) -> torch.Tensor:
        if entries == "similarity":
            values = pair_values(z, union, squared_distance=False)
        elif metric == "cosine":
            values = 0.5 * pair_values(z, union, squared_distance=True)  # 1 - cos = ‖u - v‖²/2 for unit rows
        else:
            values = pair_values(z, union, squared_distance=True).sqrt()
        return torch.where(in_union, values, 0.0)

    sx, sy = profile(zx), profile(zy)
    norm_x, norm_y = torch.linalg.vector_norm(sx, dim=1), torch.linalg.vector_norm(sy, dim=1)
    zero = int(((norm_x == 0) | (norm_y == 0)).sum())
    if zero:
        raise UndefinedMeasureError(f"{name}: {zero} instance(s) have an all-zero {entries} profile, cosine undefined")
    return ((sx * sy).sum(dim=1) / (norm_x * norm_y)).clamp(-1.0, 1.0).mean()


@register(
    "rank_similarity",
    family="neighbours",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=_KNN_INVARIANCES,
    reference=(
        "Wang et al. Towards Understanding the Instability of Network Embedding. IEEE TKDE 2020; "
        "normalisation of ReSi (Klabunde et al. 2024)"
    ),
    cost="O(N²·D) chunked kNN search, O(N·k·log k) matching",
)
def rank_similarity(X: torch.Tensor, Y: torch.Tensor, *, k: int = 10, metric: str = "cosine") -> torch.Tensor:
    """Mean agreement of the ranks of the neighbours that both representations share.

    Formula: S_i = A_i ∩ B_i with 1-based ranks r_X(j), r_Y(j) in the ordered lists A_i = N_k^X(i),
    B_i = N_k^Y(i); v_i = (1/H_{|S_i|}) Σ_{j∈S_i} 2 / ((1 + |r_X(j) - r_Y(j)|)(r_X(j) + r_Y(j))),
    H_m = Σ_{l≤m} 1/l, and v_i = 0 when S_i is empty; score = (1/N) Σ_i v_i. Range [0, 1] (each term
    is at most (1/r_X + 1/r_Y)/2 and distinct ranks sum to at most H_m); higher is more similar;
    symmetric. v_i = 1 whenever the shared neighbours hold the same top |S_i| ranks in both lists, even
    if |S_i| < k. Invariant to permutation, orthogonal maps and isotropic scaling; with
    ``metric="euclidean"`` also to translation. Not invariant to invertible linear maps.
    Conventions: neighbourhoods as ``knn_jaccard``; ranks follow the (distance, index) tie order.
    The 1/H_{|S_i|} normaliser is ReSi's; the normaliser of Wang et al.'s paper is unverified.
    Elsewhere: ReSi computes the ranks with per-row Python loops.
    """
    _, _, a, b = _neighbour_lists("rank_similarity", X, Y, k, metric)
    found, position = _match(a, b)
    return _rank_similarity_per_instance(found, position, X.dtype).mean()


@register(
    "joint_rank_jaccard",
    family="neighbours",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=_KNN_INVARIANCES,
    reference=(
        "Wang et al. Towards Understanding the Instability of Network Embedding. IEEE TKDE 2020; "
        "ReSi (Klabunde et al. 2024) code, unregistered there"
    ),
    cost="O(N²·D) chunked kNN search, O(N·k·log k) matching",
)
def joint_rank_jaccard(X: torch.Tensor, Y: torch.Tensor, *, k: int = 10, metric: str = "cosine") -> torch.Tensor:
    """Mean product of each instance's kNN Jaccard similarity and its rank similarity.

    Formula: score = (1/N) Σ_i J_i · v_i with J_i the per-instance Jaccard similarity of ``knn_jaccard``
    and v_i the per-instance rank similarity of ``rank_similarity``. Range [0, 1]; higher is more
    similar; symmetric. Invariant to permutation, orthogonal maps and isotropic scaling; with
    ``metric="euclidean"`` also to translation. Not invariant to invertible linear maps.
    Conventions: neighbourhoods as ``knn_jaccard``; ranks follow the (distance, index) tie order.
    """
    _, _, a, b = _neighbour_lists("joint_rank_jaccard", X, Y, k, metric)
    found, position = _match(a, b)
    return (_jaccard_per_instance(found, X.dtype) * _rank_similarity_per_instance(found, position, X.dtype)).mean()


@register(
    "cknna",
    family="neighbours",
    kind="similarity",
    range=(-1.0, 1.0),
    symmetric=True,
    invariances=_KNN_INVARIANCES,
    reference="Huh, Cheung, Wang, Isola. The Platonic Representation Hypothesis. ICML 2024 (CKNNA)",
    cost="O(N²·D) chunked kNN search, O(N·k·D) masked kernel entries",
)
def cknna(X: torch.Tensor, Y: torch.Tensor, *, k: int = 10, metric: str = "cosine") -> torch.Tensor:
    """Centred kernel nearest-neighbour alignment: CKA restricted to pairs that are neighbours in both.

    Formula: with α_ij = 1[j ≠ i, j ∈ N_k^X(i), j ∈ N_k^Y(i)] and centred linear kernels K̃ = HKH,
    L̃ = HLH (H the centring operator, never built), A(K, L) = Σ_ij α_ij K̃_ij L̃_ij and
    CKNNA = A(K, L) / √(A(K, K) · A(L, L)), all three with the same mask α. Range [-1, 1] (Cauchy-Schwarz
    for the non-negative weights α); higher is more similar; symmetric.
    Kernel: under ``metric="cosine"`` K is the Gram matrix of the unit rows (cosine similarities), under
    ``metric="euclidean"`` that of the raw rows; HKH is the Gram matrix of the column-centred rows, so
    only the ≤ N·k masked entries are computed. Invariant to permutation, orthogonal maps and isotropic
    scaling; with ``metric="euclidean"`` also to translation. Not invariant to invertible linear maps.
    Conventions: neighbourhoods as ``knn_jaccard``. When no pair is a neighbour in both representations
    the kernels share no entry and CKNNA is defined as 0 (as ``mutual_knn``); a non-empty mask on which a
    centred kernel vanishes raises ``UndefinedMeasureError``.
    Elsewhere: the paper's formula centres each kernel row by its mean E_l⟨φ_i, φ_l⟩ (as recalled from
    the paper, unverified); this uses the double centring of CKA, so that a full mask gives CKA on the
    off-diagonal entries and the Euclidean variant is translation-invariant. platonic-rep masks the raw
    kernels first, applies the unbiased HSIC estimator to the masked kernels and normalises by the HSIC
    of each kernel under its own kNN mask (so the value is not guaranteed to lie in [-1, 1]), builds
    dense N x N masks, and crashes for ``topk=None``.
    """
    zx, zy, a, b = _neighbour_lists("cknna", X, Y, k, metric)
    mask, _ = _match(a, b)
    if not bool(mask.any()):
        return torch.zeros((), dtype=zx.dtype, device=zx.device)
    kx = torch.where(mask, pair_values(center_columns(zx), a, squared_distance=False), 0.0)
    ly = torch.where(mask, pair_values(center_columns(zy), a, squared_distance=False), 0.0)
    self_x, self_y = kx.square().sum(), ly.square().sum()
    if self_x == 0 or self_y == 0:
        raise UndefinedMeasureError("cknna: the centred kernel is zero on every mutual-neighbour pair")
    return ((kx * ly).sum() / (self_x.sqrt() * self_y.sqrt())).clamp(-1.0, 1.0)
