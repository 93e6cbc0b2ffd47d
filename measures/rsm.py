"""RSM family: measures that compare instance-by-instance similarity structure (CKA, RSA, ...).

Every measure here is a function of the N x N representational similarity (or distance) matrices of
the two inputs, or of an equivalent D x D quantity. Two rules keep them cheap and exact:

- N x N matrices are built by row blocks (``_BLOCK_ELEMENTS`` entries at a time) wherever the measure
  only needs sums over them; feature-space (D x D) routes are used where they give the same number.
- Inputs are first divided by an exact power of two (``power_of_two_scale``), and column-centred where
  the measure is translation invariant, so squares and Gram entries neither overflow nor lose digits
  to a large common offset. Scale-dependent measures undo the power of two exactly at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import scipy.linalg
import torch

from measures._kernels import centred_cross, centred_moments, centred_products, gram, mm, on_numpy
from measures._memo import one_sided
from measures._registry import UndefinedMeasureError, register
from measures._validation import center_columns
from measures.cca import centred, power_of_two_scale, principal_directions, well_conditioned_cholesky

_SIMILARITY_TRANSFORMS = ("permutation", "orthogonal", "isotropic_scaling", "translation")
_ALL_INVARIANCES = _SIMILARITY_TRANSFORMS + ("invertible_linear",)
_KORNBLITH_2019 = "Kornblith, Norouzi, Lee, Hinton. Similarity of Neural Network Representations Revisited. ICML 2019"
#: Entries of one row block of an N x N matrix (2^22 float64 entries = 32 MiB).
_BLOCK_ELEMENTS = 1 << 22

BlockFn = Callable[[slice], torch.Tensor]


def _check_choice(name: str, param: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"measure {name!r}: {param} must be one of {choices}, got {value!r}")


def _eps(x: torch.Tensor) -> float:
    return torch.finfo(x.dtype).eps


def _centred_nonconstant(name: str, x: torch.Tensor, which: int) -> torch.Tensor:
    """Column-centred, power-of-two-rescaled copy of ``x``; a constant input has no structure to compare."""
    xc = centred(x)
    if not bool(xc.numpy().any() if on_numpy(xc) else xc.any()):  # numpy's any: ~10x torch's on the CPU
        raise UndefinedMeasureError(f"{name}: input {which} is constant (no variance after centring)")
    return xc


# --- N x N matrices by row blocks -------------------------------------------------------------------


def _row_blocks(n: int) -> list[slice]:
    rows = max(1, _BLOCK_ELEMENTS // n)
    return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]


def _diagonal_index(rows: slice, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the diagonal entries of the full matrix inside the row block ``rows``."""
    local = torch.arange(rows.stop - rows.start, device=device)
    return local, local + rows.start


def _squared_distance_blocks(x: torch.Tensor) -> BlockFn:
    """Row blocks of the squared Euclidean distance matrix, via ‖x_i‖² + ‖x_j‖² − 2⟨x_i, x_j⟩.

    The Gram identity costs one GEMM per block; its round-off (eps·‖x‖², small for centred ``x``) can
    make an entry slightly negative, so entries are clamped at 0 and the diagonal is set to exactly 0.
    """
    if on_numpy(x):
        xn = x.numpy()
        sq_n = np.einsum("ij,ij->i", xn, xn)

        def block_numpy(rows: slice) -> torch.Tensor:
            sq = xn[rows] @ xn.T
            sq *= -2.0
            sq += sq_n[rows, None]
            sq += sq_n
            np.maximum(sq, 0.0, out=sq)
            local = np.arange(rows.stop - rows.start)
            sq[local, local + rows.start] = 0.0
            return torch.from_numpy(sq)

        return block_numpy
    sq_norms = x.square().sum(dim=1)

    def block(rows: slice) -> torch.Tensor:
        sq = sq_norms[rows, None] + sq_norms[None, :] - 2.0 * (x[rows] @ x.T)
        sq.clamp_(min=0.0)
        sq[_diagonal_index(rows, x.device)] = 0.0
        return sq

    return block


def _distance_blocks(x: torch.Tensor) -> BlockFn:
    squared = _squared_distance_blocks(x)
    if on_numpy(x):

        def block_numpy(rows: slice) -> torch.Tensor:
            sq = squared(rows).numpy()
            return torch.from_numpy(np.sqrt(sq, out=sq))

        return block_numpy
    return lambda rows: squared(rows).sqrt_()


def _centred_products(mx: BlockFn, my: BlockFn, n: int, *, unbiased: bool) -> tuple[torch.Tensor, ...]:
    """⟨A', B'⟩, ⟨A', A'⟩, ⟨B', B'⟩ (Frobenius) for the centred versions of two symmetric N x N matrices.

    ``unbiased=False``: A' = HAH, the double-centred matrix (A − row means − column means + grand mean).
    ``unbiased=True``: A' is the U-centred matrix of Székely & Rizzo (2014) of A with its diagonal zeroed,
    A'_ij = A_ij − r_i/(N−2) − r_j/(N−2) + Σr/((N−1)(N−2)) off the diagonal and 0 on it (r = row sums);
    then ⟨A', B'⟩ = N(N−3)·HSIC_1 (Song et al. 2012) for Gram matrices and N(N−3)·dCov²_U for distances.
    Two passes over row blocks (row sums, then products), so memory stays O(block · N); a single block
    is kept from the first pass instead of being recomputed.
    """
    blocks = _row_blocks(n)
    first = (mx(blocks[0]), my(blocks[0]))
    if on_numpy(*first):
        return _centred_products_numpy(mx, my, n, unbiased, first)

    def get(m: BlockFn, rows: slice) -> torch.Tensor:
        b = m(rows)
        if unbiased:
            b[_diagonal_index(rows, b.device)] = 0.0
        return b

    if unbiased:
        for b in first:
            b[_diagonal_index(blocks[0], b.device)] = 0.0
    kept = [first] if len(blocks) == 1 else None
    row_x, row_y = [], []
    for i, rows in enumerate(blocks):
        bx, by = kept[i] if kept else (get(mx, rows), get(my, rows))
        row_x.append(bx.sum(dim=1))
        row_y.append(by.sum(dim=1))
    rx, ry = torch.cat(row_x), torch.cat(row_y)
    a, c = (1.0 / (n - 2), 1.0 / ((n - 1) * (n - 2))) if unbiased else (1.0 / n, 1.0 / n**2)
    shift_x, shift_y = c * rx.sum(), c * ry.sum()
    xy = xx = yy = rx.new_zeros(())
    for i, rows in enumerate(blocks):
        bx, by = kept[i] if kept else (get(mx, rows), get(my, rows))
        bx = bx - a * rx[rows, None] - a * rx[None, :] + shift_x
        by = by - a * ry[rows, None] - a * ry[None, :] + shift_y
        if unbiased:
            diagonal = _diagonal_index(rows, bx.device)
            bx[diagonal] = 0.0
            by[diagonal] = 0.0
        xy = xy + (bx * by).sum()
        xx = xx + bx.square().sum()
        yy = yy + by.square().sum()
    return xy, xx, yy


#: Up to this many bytes of N x N blocks (both inputs together) are kept between the two passes of
#: :func:`_centred_products` on the CPU instead of being computed twice (N ≤ 8192 at float64).
_KEEP_BYTES = 1 << 30


def _centred_products_numpy(
    mx: BlockFn, my: BlockFn, n: int, unbiased: bool, first: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    """:func:`_centred_products` for CPU blocks, with numpy's in-place arithmetic and BLAS dot products.

    The blocks of the first pass are kept for the second when both N x N matrices fit in
    ``_KEEP_BYTES`` (each block is then built once); otherwise they are rebuilt (O(block · N) memory).
    """
    blocks = _row_blocks(n)
    dtype = first[0].dtype
    keep = 2 * n * n * first[0].element_size() <= _KEEP_BYTES
    kept: list[tuple[np.ndarray, np.ndarray]] = []

    def get(i: int, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        pair = first if i == 0 else (mx(rows), my(rows))
        bx, by = pair[0].numpy(), pair[1].numpy()
        if unbiased:
            local = np.arange(rows.stop - rows.start)
            bx[local, local + rows.start] = 0.0
            by[local, local + rows.start] = 0.0
        return bx, by

    row_x, row_y = [], []
    for i, rows in enumerate(blocks):
        bx, by = get(i, rows)
        row_x.append(bx.sum(axis=1))
        row_y.append(by.sum(axis=1))
        if keep:
            kept.append((bx, by))
    first = None  # a rebuilt first block must not reuse the (centred) kept one
    rx, ry = np.concatenate(row_x), np.concatenate(row_y)
    a, c = (1.0 / (n - 2), 1.0 / ((n - 1) * (n - 2))) if unbiased else (1.0 / n, 1.0 / n**2)
    shift_x, shift_y = c * rx.sum(), c * ry.sum()
    xy = xx = yy = 0.0
    for i, rows in enumerate(blocks):
        if keep:
            bx, by = kept[i]
        else:
            bx, by = (mx(rows).numpy(), my(rows).numpy())
        for b, r, shift in ((bx, rx, shift_x), (by, ry, shift_y)):
            b -= a * r[rows, None]
            b -= a * r[None, :]
            b += shift
            if unbiased:
                local = np.arange(rows.stop - rows.start)
                b[local, local + rows.start] = 0.0
        flat_x, flat_y = bx.reshape(-1), by.reshape(-1)
        xy += float(np.dot(flat_x, flat_y))
        xx += float(np.dot(flat_x, flat_x))
        yy += float(np.dot(flat_y, flat_y))
    return tuple(torch.tensor(v, dtype=dtype) for v in (xy, xx, yy))


# --- CKA -----------------------------------------------------------------------------------------


@register(
    "cka_linear",
    family="rsm",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=_SIMILARITY_TRANSFORMS,
    reference=_KORNBLITH_2019,
    cost="O(N·D²) feature route if N > D, else O(N²·D) Gram route",
)
def cka_linear(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Linear centred kernel alignment (biased HSIC estimator).

    Formula: CKA = ‖ỸᵀX̃‖_F² / (‖X̃ᵀX̃‖_F · ‖ỸᵀỸ‖_F) with X̃, Ỹ column-centred; equivalently
    tr(K̃L̃) / (‖K̃‖_F ‖L̃‖_F) for the linear Grams K = XXᵀ, L = YYᵀ and K̃ = HKH. Range [0, 1]; higher
    is more similar; symmetric. Invariant to orthogonal maps, isotropic scaling, permutation and
    translation, not to invertible linear maps. Equals the RV coefficient (Robert & Escoufier 1976) and
    rsatoolbox's ``cosine_cov`` comparison of ``'euclidean'`` RDMs.

    The feature route is used when N > max(D1, D2), the Gram route otherwise (same number). A constant
    representation has no variance and CKA is 0/0: ``UndefinedMeasureError`` is raised with that reason.
    Where others differ: platonic-rep adds 1e-6 to the denominator and runs in float32 (≈1e-4 drift).
    """
    fast = _cka_linear_uncentred(X, Y)
    if fast is not None:
        return fast
    x = _centred_nonconstant("cka_linear", X, 1)
    y = _centred_nonconstant("cka_linear", Y, 2)
    if x.shape[0] > max(x.shape[1], y.shape[1]):
        cross = mm(y.T, x).square().sum()
        norm_x = torch.linalg.matrix_norm(mm(x.T, x))
        norm_y = torch.linalg.matrix_norm(mm(y.T, y))
    else:
        k, l = gram(x), gram(y)  # Grams of centred data are already double-centred
        cross = (k * l).sum()
        norm_x, norm_y = torch.linalg.matrix_norm(k), torch.linalg.matrix_norm(l)
    # Round-off can only push the ratio a hair outside [0, 1] (Cauchy–Schwarz, PSD Grams).
    return (cross / (norm_x * norm_y)).clamp(0.0, 1.0)


def _cka_linear_uncentred(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor | None:
    """``cka_linear``'s feature route without centred copies, or None where the general route must run.

    X̃ᵀỸ, X̃ᵀX̃ and ỸᵀỸ as rank-one corrections of XᵀY, XᵀX (a SYRK) and YᵀY (``centred_cross``): a
    fresh N x D copy costs ~2-3 ms at 2000x256 here, as much as half a GEMM. CPU float64 with
    N > max(D1, D2) only, under ``centred_moments``' cancellation guard; magnitudes within
    [1e-50, 1e50] so that the squared Gram entries neither overflow nor underflow. A constant input
    (every centred norm 0) is left to the general route, which raises.
    """
    if X.shape[0] <= max(X.shape[1], Y.shape[1]):
        return None
    moments_x, moments_y = centred_moments(X, limit=1e50), centred_moments(Y, limit=1e50)
    if moments_x is None or moments_y is None or not moments_x[1].any() or not moments_y[1].any():
        return None
    products = (centred_cross(Y, X, moments_y[0], moments_x[0]), centred_cross(X, X, moments_x[0], moments_x[0]),
                centred_cross(Y, Y, moments_y[0], moments_y[0]))
    cross, xx, yy = (float(np.dot(p.ravel(), p.ravel())) for p in products)
    return torch.tensor(min(max(cross / (math.sqrt(xx) * math.sqrt(yy)), 0.0), 1.0), dtype=torch.float64)


def _hsic1_times_n_n3(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """N(N−3)·HSIC_1(XXᵀ, YYᵀ), Song et al.'s unbiased HSIC, without forming N x N matrices if N > D.

    With K̂ = K − diag(K), k = diag K and s_K = K̂1 = X(Xᵀ1) − k:
    tr(K̂L̂) = ‖XᵀY‖_F² − kᵀl,  1ᵀK̂1 = Σ s_K,  1ᵀK̂L̂1 = s_Kᵀ s_L, and
    N(N−3)·HSIC_1 = tr(K̂L̂) + (1ᵀK̂1)(1ᵀL̂1)/((N−1)(N−2)) − 2·1ᵀK̂L̂1/(N−2).
    tr(KL) = ‖XᵀY‖_F² is taken from the D1 x D2 cross product when N > max(D1, D2) and from the
    elementwise Gram product otherwise.
    """
    n = x.shape[0]
    k, l = x.square().sum(dim=1), y.square().sum(dim=1)
    if n > max(x.shape[1], y.shape[1]):
        trace_kl = mm(x.T, y).square().sum()
    else:
        trace_kl = (gram(x) * gram(y)).sum()
    s_k = x @ x.sum(dim=0) - k
    s_l = y @ y.sum(dim=0) - l
    return trace_kl - k @ l + s_k.sum() * s_l.sum() / ((n - 1) * (n - 2)) - 2.0 * (s_k @ s_l) / (n - 2)


@register(
    "cka_linear_debiased",
    family="rsm",
    kind="similarity",
    range=(-1.0, 1.0),
    symmetric=True,
    invariances=_SIMILARITY_TRANSFORMS,
    min_rows=4,
    reference="Song, Smola, Gretton, Bedo, Borgwardt. Feature Selection via Dependence Maximization. JMLR 2012 "
    "(unbiased HSIC); " + _KORNBLITH_2019,
    cost="O(N·D²) feature route if N > D, else O(N²·D) Gram route",
)
def cka_linear_debiased(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Linear CKA with the unbiased HSIC estimator (debiased CKA); needs N ≥ 4 and can be negative.

    Formula: CKA_1 = HSIC_1(K, L) / √(HSIC_1(K, K)·HSIC_1(L, L)) for the linear Grams K = XXᵀ, L = YYᵀ,
    with HSIC_1(K, L) = [tr(K̂L̂) + (1ᵀK̂1)(1ᵀL̂1)/((N−1)(N−2)) − 2·1ᵀK̂L̂1/(N−2)] / (N(N−3)) and K̂ = K
    with its diagonal zeroed (Song et al. 2012). N(N−3)·HSIC_1 is the Frobenius inner product of the
    U-centred Grams (Székely & Rizzo 2014), so Cauchy–Schwarz gives the range [−1, 1]; higher is more
    similar; symmetric. Near 0 for independent inputs at any N (the biased ``cka_linear`` is not).
    Invariant to orthogonal maps, isotropic scaling, permutation and translation, not to invertible
    linear maps.

    Computed in feature space (O(N·D²)) when N > max(D1, D2), from the Grams otherwise; the Kornblith
    Colab's ``center_gram(unbiased=True)`` route gives the same number. ``UndefinedMeasureError`` when
    HSIC_1(K, K) or HSIC_1(L, L) is zero up to round-off: a constant input, or one whose U-centred Gram
    vanishes (e.g. N = D one-hot rows). Where others differ: dmarx/cka_pytorch and phrasenmaeher/cka
    return NaN there (square root of a non-positive number), and nothing here clamps a negative value.
    """
    x = _centred_nonconstant("cka_linear_debiased", X, 1)
    y = _centred_nonconstant("cka_linear_debiased", Y, 2)
    xy, xx, yy = _hsic1_times_n_n3(x, y), _hsic1_times_n_n3(x, x), _hsic1_times_n_n3(y, y)
    for which, (self_term, z) in enumerate(((xx, x), (yy, y)), start=1):
        # Round-off of N(N−3)·HSIC_1(K, K) is of order eps·(tr K)²/N; a value within 10·eps·(tr K)² of 0
        # is a vanishing U-centred Gram, not a small positive number.
        if self_term <= 10.0 * _eps(z) * z.square().sum() ** 2:
            raise UndefinedMeasureError(
                f"cka_linear_debiased: HSIC_1 of input {which} with itself is {float(self_term):.3g} "
                "(<= 0 up to round-off): its U-centred Gram vanishes, debiased CKA is undefined"
            )
    return (xy / (xx.sqrt() * yy.sqrt())).clamp(-1.0, 1.0)


def _kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest entry (1-based) of a 1-D tensor (``np.partition`` on the CPU: ~10x ``kthvalue``)."""
    if on_numpy(values):
        return torch.tensor(np.partition(values.numpy(), k - 1)[k - 1], dtype=values.dtype)
    return torch.kthvalue(values, k).values


#: :func:`_order_statistics` brackets the wanted ranks by this fraction of the entries on each side.
_BRACKET = 1 / 64


def _order_statistics(values: np.ndarray | list[np.ndarray], wanted: list[int]) -> dict[int, float]:
    """The k-th smallest entries (0-based k in ``wanted``, close together) of a float vector without
    NaNs, exactly those of ``np.partition``; ``values`` may be reordered (scratch). ``values`` may also be
    a list of arrays (any shapes): their entries taken together, copied into one vector only by the
    fallback below.

    ``np.partition`` of the 2 M squared distances at N = 2000 takes ~20 ms here. Instead, a strided
    sample of ~65536 entries gives two values a ≤ b whose ranks bracket the wanted ones by about
    ``_BRACKET`` of the entries; one count of the entries below a and one selection of those in [a, b]
    (a few fast passes), and the order statistics are taken from that small set. If the bracket
    misses (a value-ordered layout can fool the sample), one ``np.partition`` of everything runs.
    """
    if not wanted:
        return {}
    pieces = values if isinstance(values, list) else [values]
    m = sum(p.size for p in pieces)
    if m >= 1 << 16:
        step = max(1, m >> 16)
        sample = np.sort(np.concatenate([p.reshape(-1)[::step] for p in pieces]))
        s = sample.size
        lo_at = max(0, int((wanted[0] / m - _BRACKET) * s))
        hi_at = min(s - 1, int((wanted[-1] / m + _BRACKET) * s) + 1)
        a, b = sample[lo_at], sample[hi_at]
        below = sum(int(np.count_nonzero(p < a)) for p in pieces)
        inside = np.concatenate([p[(p >= a) & (p <= b)] for p in pieces])
        if below <= wanted[0] and wanted[-1] < below + inside.size:
            inside.partition([k - below for k in wanted])
            return {k: float(inside[k - below]) for k in wanted}
    values = pieces[0].reshape(-1) if len(pieces) == 1 else np.concatenate([p.reshape(-1) for p in pieces])
    values.partition(wanted)
    return {k: float(values[k]) for k in wanted}


def _squared_distance_row_blocks(x: np.ndarray, sq: np.ndarray, max_rows: int) -> Iterator[np.ndarray]:
    """Row blocks of the squared distances max(0, ‖x_i‖² + ‖x_j‖² − 2x_iᵀx_j) over the upper triangle:
    block b holds rows start..stop−1 against columns start+1..N−1 (≤ ``max_rows`` rows, ~32 MiB), so its
    row r, column c is the pair (start + r, start + 1 + c), a pair of the triangle where c ≥ r. The
    blocks, rows and arithmetic of :func:`_upper_triangle_centred_products` (which reuses them)."""
    n = x.shape[0]
    start = 0
    while start < n - 1:
        rows = max(1, min(n - 1 - start, _BLOCK_ELEMENTS // (n - start), max_rows))
        stop = start + rows
        block = x[start:stop] @ x[start + 1:].T
        block *= -2.0
        block += sq[start:stop, None]
        block += sq[start + 1:]
        np.maximum(block, 0.0, out=block)
        yield block
        del block  # before the next block: its memory can be reused (new memory is slow on the VMs here)
        start = stop


#: :func:`_upper_order_statistics_float32` samples M/1024 pairs of the M entries, clipped to this range
#: (65536 pairs cost ~50 ms here), for a bracket of ±6 standard deviations of a sample quantile.
_FLOAT32_SAMPLE = (1 << 13, 1 << 16)
#: ... and leaves the rest to the float64 route when more entries than this need float64 values
#: (exact ties at the median, as on lattice data).
_FLOAT32_CANDIDATES = 1 << 20
#: ``cka_rbf`` takes its median from :func:`_upper_order_statistics_float32` when the N x N float64
#: matrix exceeds this (N > 2896); below, the float64 median pass, whose blocks the kernel pass reuses
#: (no second GEMM), costs less (2000x256: 0.114 s against 0.128 s a call on the Zen 4 VM; on the
#: Zen 5 one 0.065 against 0.073 s for a first call in a process, even at N = 3000, 0.39 against 0.27 s
#: at N = 4000, where the kept blocks are 64 MB of new memory).
_FLOAT32_MEDIAN_BYTES = 1 << 26


def _squared_distance_float32_bound(sq_norms: np.ndarray, d: int) -> float:
    """E with |d̃_ij − d_ij| ≤ E and |d'_ij − d_ij| ≤ E for every pair, where d_ij = ‖x_i − x_j‖² (exact),
    d̃_ij its float32 Gram-identity value fl32(s̃_i + s̃_j − 2·x̂_iᵀx̂_j) (x̂ = fl32(x), s̃ = fl32 of the
    float64 squared norms s) and d'_ij = max(0, fl64(s_i + s_j − 2·x_iᵀx_j)) its float64 re-scoring.

    The argument of ``measures.neighbours._float32_pass`` (Higham, Accuracy and Stability of Numerical
    Algorithms, 2002, §2.1, §3.1): for entries below 2 and D·u32 ≤ 0.01 an inner product of length D in
    any order, with or without FMA, including the rounding of its inputs to float32, errs by at most
    1.02 (D + 2) u32 ‖x‖‖y‖ + a (a = D·2^-138 covers gradual underflow), and 2‖x_i‖‖x_j‖ ≤ s_i + s_j;
    the float64 norms err by ≤ 1.02 (D + 2) u64 s and their rounding to float32 adds u32·s; each of
    the two additions rounds by ≤ u·2(s_i + s_j). Summed, with the same terms in u64 for d', both are
    within 1.05 ((D + 8) u32 + 3 (D + 4) u64)(s_i + s_j) + 4a of d, and s_i + s_j ≤ 2 max s. The clamp
    at 0 does not move d' further from d ≥ 0.
    """
    u32, u64 = 2.0**-24, 2.0**-53
    return 1.05 * ((d + 8) * u32 + 3 * (d + 4) * u64) * 2.0 * float(sq_norms.max()) + d * 2.0**-136


def _pair_squared_distances(x: np.ndarray, sq: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """‖x_i‖² + ‖x_j‖² − 2⟨x_i, x_j⟩ for the listed pairs (i[t], j[t]), in ``x``'s dtype (``sq``: the
    squared row norms in that dtype), gathered 4096 pairs at a time so the gathered rows stay in cache.
    (``neighbours.pair_values`` scores a list per row; these are flat pair lists.)"""
    out = np.empty(i.size, dtype=x.dtype)
    for s in range(0, i.size, 4096):
        p, q = i[s:s + 4096], j[s:s + 4096]
        out[s:s + 4096] = sq[p] + sq[q] - 2.0 * np.einsum("ij,ij->i", x[p], x[q])
    return out


def _upper_order_statistics_float32(x: np.ndarray, wanted: list[int]) -> dict[int, float] | None:
    """The k-th smallest (0-based k in ``wanted``, sorted, close together) of the N(N−1)/2 squared
    distances d'_ij (i < j, of :func:`_squared_distance_float32_bound`) of the rows of ``x`` (entries
    below 2 in magnitude), from one float32 GEMM pass over the upper triangle; None where this route
    cannot settle them (the caller's float64 route runs then).

    Why: the float64 median pass of ``cka_rbf`` was a second GEMM pass over the triangle before the
    kernel pass (or kept its N²/2 blocks, whose first touch cost more than the GEMM on this VM);
    float32 GEMM runs at twice the float64 rate, into one reused 32 MiB block.

    How: a sample of uniform pairs (``_FLOAT32_SAMPLE``) brackets the wanted ranks by [lo, hi] in float32
    values; one pass over float32 row blocks of d̃ counts the entries below lo and collects those in
    [lo, hi] with their pairs. |d̃ − d'| ≤ g = 2E per pair, so the k-th smallest d' lies within g of
    t_k, the k-th smallest d̃ (an order statistic moves by at most the largest perturbation). Every
    entry with d̃ < t_min − 2g has d' < t_min − g, every entry with d̃ > t_max + 2g has d' > t_max + g;
    if [t_min − 2g, t_max + 2g] lies inside [lo, hi], the candidates C (collected entries with d̃ in
    it) hold every entry whose d' can equal or tie a wanted order statistic, and with nb the entries
    below t_min − 2g, the k-th smallest d' is the (k − nb)-th smallest d' of C, computed in float64 for
    C alone (and checked to lie in [t_min − g, t_max + g]).
    """
    if not wanted:
        return {}
    n, d = x.shape
    m = n * (n - 1) // 2
    size = min(max(m >> 10, _FLOAT32_SAMPLE[0]), _FLOAT32_SAMPLE[1])
    if m < 8 * size or d * 2.0**-24 > 0.01 or x.dtype != np.float64 or not max(x.max(), -x.min()) < 2.0:
        return None
    sq = np.einsum("ij,ij->i", x, x)
    gap = 2.0 * _squared_distance_float32_bound(sq, d) * (1 + 1e-6)  # margin for the float64 sums below
    x32, sq32 = x.astype(np.float32), sq.astype(np.float32)
    rng = np.random.default_rng(0)  # fixed: it decides the bracket (and so the work), never the value
    first = rng.integers(0, n, size)
    second = rng.integers(0, n - 1, size)
    second += second >= first  # a uniform pair i ≠ j: a uniform entry of the triangle
    sample = _pair_squared_distances(x32, sq32, first, second)
    sample.sort()
    spread = 3.0 / math.sqrt(size)  # 6 standard deviations (0.5/√size) of a sample quantile
    lo = sample[max(0, int((wanted[0] / m - spread) * size))]
    hi = sample[min(size - 1, int((wanted[-1] / m + spread) * size) + 1)]
    buffer = np.empty(2 * _BLOCK_ELEMENTS, dtype=np.float32)  # one 32 MiB block, reused
    below = 0
    blocks = []  # (start, columns, positions in the block, values) of the entries in [lo, hi]
    start = 0
    while start < n - 1:
        rows = max(1, min(n - 1 - start, 2 * _BLOCK_ELEMENTS // (n - start), -(-n // 8)))  # ≤ N/8: half the GEMM
        stop, cols = start + rows, n - 1 - start
        block = buffer[:rows * cols].reshape(rows, cols)
        np.matmul(x32[start:stop], x32[start + 1:].T, out=block)  # row r: pairs (start + r, j), j > start
        block *= -2.0
        block += sq32[start:stop, None]
        block += sq32[start + 1:]
        block[:, :rows][np.tri(rows, rows, -1, dtype=bool)] = np.inf  # j <= i: not in the triangle
        below += int(np.count_nonzero(block < lo))
        at = np.flatnonzero((block >= lo) & (block <= hi))
        blocks.append((start, cols, at, block.reshape(-1)[at]))
        start = stop
    found = np.concatenate([b[3] for b in blocks])
    local = [k - below for k in wanted]
    if local[0] < 0 or local[-1] >= found.size:
        return None  # the bracket missed the wanted ranks
    found.partition(local)
    t_min, t_max = float(found[local[0]]), float(found[local[-1]])
    low, high = t_min - 2.0 * gap, t_max + 2.0 * gap
    if not lo <= low or not high <= hi:
        return None
    nb = below
    i, j = [], []
    for start, cols, at, values in blocks:
        nb += int(np.count_nonzero(values < low))
        pick = at[(values >= low) & (values <= high)]
        i.append(start + pick // cols)
        j.append(start + 1 + pick % cols)
    i, j = np.concatenate(i), np.concatenate(j)
    local = [k - nb for k in wanted]
    if i.size > _FLOAT32_CANDIDATES or local[0] < 0 or local[-1] >= i.size:
        return None
    exact = _pair_squared_distances(x, sq, i, j)
    np.maximum(exact, 0.0, out=exact)
    exact.partition(local)
    result = {k: float(exact[k - nb]) for k in wanted}
    if not all(t_min - gap <= v <= t_max + gap for v in result.values()):
        return None
    return result


def _median_upper_ranks(n: int, median_over: str) -> list[int]:
    """The ranks (1-based) in the sorted N(N−1)/2 upper-triangle entries of the two middle values of the
    median (numpy's rule); 0 stands for a zero diagonal entry of the ``"full_matrix"`` convention."""
    m = n * (n - 1) // 2
    if median_over == "upper_triangle":
        return [(m + 1) // 2, m // 2 + 1]
    total = n * n
    return [0 if k <= n else math.ceil((k - n) / 2) for k in ((total + 1) // 2, total // 2 + 1)]


def _median_of(found: dict[int, float], ks: list[int], dtype: torch.dtype) -> torch.Tensor:
    lo, hi = (0.0 if k == 0 else found[k - 1] for k in ks)
    return 0.5 * (torch.tensor(lo, dtype=dtype) + torch.tensor(hi, dtype=dtype))


def _median_squared_distance(upper: torch.Tensor, n: int, median_over: str) -> torch.Tensor:
    """Median of the squared distances, numpy's convention (mean of the two middle values if even).

    ``upper`` holds the N(N−1)/2 strict-upper-triangle entries (all ≥ 0); on the CPU it is reordered
    in place. For ``"full_matrix"`` the
    N² entries are N diagonal zeros followed, in sorted order, by every upper entry twice, so the k-th
    smallest (k > N) is the ⌈(k−N)/2⌉-th smallest upper entry: no N x N copy is needed.
    """
    if on_numpy(upper):  # both order statistics from one selection
        ks = _median_upper_ranks(n, median_over)
        found = _order_statistics(upper.numpy(), sorted({k - 1 for k in ks if k > 0}))
        return _median_of(found, ks, upper.dtype)
    if median_over == "upper_triangle":
        m = upper.numel()
        lo, hi = (m + 1) // 2, m // 2 + 1
        return 0.5 * (_kth_smallest(upper, lo) + _kth_smallest(upper, hi))

    def kth_full(k: int) -> torch.Tensor:
        return upper.new_zeros(()) if k <= n else _kth_smallest(upper, math.ceil((k - n) / 2))

    total = n * n
    return 0.5 * (kth_full((total + 1) // 2) + kth_full(total // 2 + 1))


def _rbf_two_sigma_sq(
    name: str, x: torch.Tensor, which: int, fraction: float, median_over: str, kept: list[np.ndarray] | None = None
) -> torch.Tensor:
    """2σ² = 2·fraction²·median squared distance of the rows of x (the median memoised per input).

    CPU inputs above N = 2896 (``_FLOAT32_MEDIAN_BYTES``) take the median's order statistics from one
    float32 pass (:func:`_upper_order_statistics_float32`), the float64 route below only where that
    cannot settle them. ``kept`` (CPU inputs): where a float64 median pass runs (not memoised), it
    receives the row blocks of squared distances, which are those :func:`_upper_triangle_centred_products`
    builds (same blocks, same arithmetic), so the kernel pass need not redo their GEMM."""
    n = x.shape[0]

    def median_squared_distance() -> torch.Tensor:
        if on_numpy(x):
            xn = x.numpy()
            ks = _median_upper_ranks(n, median_over)
            wanted = sorted({k - 1 for k in ks if k > 0})
            if x.dtype == torch.float64 and n * n * 8 > _FLOAT32_MEDIAN_BYTES:  # the bound assumes float64 d
                found = _upper_order_statistics_float32(xn, wanted)
                if found is not None:
                    return _median_of(found, ks, x.dtype)
            # The upper triangle by row blocks of ≤ N/8 rows (about half the GEMM), kept as they are for
            # the kernel pass: the order statistics are selected across the blocks (each block's
            # entries j ≤ i set to +Inf, above every pair: they move no order statistic of the
            # triangle; the kernel pass makes them 0). Why not one condensed copy: at N = 2000 that
            # copy into a new 16 MB vector cost ~10 ms per input, as much as the GEMM (new memory).
            blocks = [] if kept is None else kept
            for block in _squared_distance_row_blocks(xn, np.einsum("ij,ij->i", xn, xn), -(-n // 8)):
                rows = block.shape[0]
                block[:, :rows][np.tri(rows, rows, -1, dtype=bool)] = np.inf
                blocks.append(block)
            found = _order_statistics(blocks, wanted)
            if kept is None:
                blocks.clear()
            return _median_of(found, ks, x.dtype)
        else:
            squared = _squared_distance_blocks(x)
            columns = torch.arange(n, device=x.device)
            upper = torch.cat([squared(rows)[columns[None, :] > columns[rows, None]] for rows in _row_blocks(n)])
        return _median_squared_distance(upper, n, median_over)

    # The bandwidth depends on this input alone: memoised per input.
    median = one_sided("cka_rbf.median", x, median_squared_distance, median_over=median_over)
    if median <= 0:
        raise UndefinedMeasureError(
            f"{name}: the median squared distance of input {which} is 0 (constant or mostly duplicate rows), "
            "so the median-fraction bandwidth is 0"
        )
    return 2.0 * fraction**2 * median


def _rbf_blocks(name: str, x: torch.Tensor, which: int, fraction: float, median_over: str) -> BlockFn:
    squared = _squared_distance_blocks(x)
    two_sigma_sq = _rbf_two_sigma_sq(name, x, which, fraction, median_over)
    if on_numpy(x):
        minus_two_sigma_sq = -float(two_sigma_sq)

        def kernel_numpy(rows: slice) -> torch.Tensor:
            k = squared(rows).numpy()
            np.divide(k, minus_two_sigma_sq, out=k)
            return torch.from_numpy(np.exp(k, out=k))

        return kernel_numpy
    return lambda rows: torch.exp(-squared(rows) / two_sigma_sq)


@register(
    "cka_rbf",
    family="rsm",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=_SIMILARITY_TRANSFORMS,
    reference=_KORNBLITH_2019,
    cost="O(N²·D) time; kernel sums by row blocks; O(N²) memory for the median up to N ≈ 2900 (float32 median pass above)",
)
def cka_rbf(
    X: torch.Tensor, Y: torch.Tensor, *, fraction: float = 0.4, median_over: str = "full_matrix"
) -> torch.Tensor:
    """CKA with Gaussian (RBF) kernels whose bandwidth is a fraction of the median distance.

    Formula: K_ij = exp(−‖x_i − x_j‖² / (2σ_X²)) with σ_X² = fraction² · median_{i,j} ‖x_i − x_j‖², same
    for L with its own σ_Y; CKA = ⟨K̃, L̃⟩_F / (‖K̃‖_F ‖L̃‖_F) with K̃ = HKH (biased HSIC). Range [0, 1];
    higher is more similar; symmetric. Invariant to orthogonal maps, isotropic scaling (the bandwidth
    scales with the data), permutation and translation; not to invertible linear maps.

    Conventions: ``fraction`` = 0.4 (Kornblith et al. 2019 report 0.2, 0.4 and 0.8). ``median_over``
    says which squared distances the median runs over: ``"full_matrix"`` (default) all N² entries
    including the N zero diagonal entries, with numpy's mean-of-the-two-middle-values rule — exactly the
    Kornblith Colab's ``gram_rbf(x, threshold=fraction)``; ``"upper_triangle"`` the N(N−1)/2 distinct
    pairs only (a slightly larger σ). Where others differ: platonic-rep uses an absolute bandwidth (not
    scale invariant); thingsvision once ignored its σ argument (PR #175). ``UndefinedMeasureError`` when
    the median distance of an input is 0 (constant or mostly duplicate rows).
    """
    _check_choice("cka_rbf", "median_over", median_over, ("full_matrix", "upper_triangle"))
    if not fraction > 0:
        raise ValueError(f"measure 'cka_rbf': fraction must be positive, got {fraction!r}")
    x = _centred_nonconstant("cka_rbf", X, 1)
    y = _centred_nonconstant("cka_rbf", Y, 2)
    upper = None
    if on_numpy(x, y):
        # The squared-distance blocks of a float64 median pass (N ≤ 2896, or where the float32 route
        # cannot settle the median) serve the kernel pass too (up to _KEEP_BYTES of them: N ≤ ~11000).
        keep = x.shape[0] ** 2 * x.element_size() <= _KEEP_BYTES
        kept: list[list[np.ndarray] | None] = [[], []] if keep else [None, None]
        divisors = [-float(_rbf_two_sigma_sq("cka_rbf", z, w, fraction, median_over, kept[w - 1]))
                    for w, z in ((1, x), (2, y))]
        upper = _upper_triangle_centred_products(
            x.numpy(), y.numpy(), lambda block, which: np.exp(np.divide(block, divisors[which], out=block), out=block),
            1.0, kept)
    if upper is not None:
        xy, xx, yy = (torch.tensor(v, dtype=x.dtype) for v in upper)
    else:
        kx = _rbf_blocks("cka_rbf", x, 1, fraction, median_over)
        ky = _rbf_blocks("cka_rbf", y, 2, fraction, median_over)
        xy, xx, yy = _centred_products(kx, ky, x.shape[0], unbiased=False)
    return (xy / (xx.sqrt() * yy.sqrt())).clamp(0.0, 1.0)


# --- RSA -----------------------------------------------------------------------------------------


def _condensed(z: torch.Tensor, inner: str) -> torch.Tensor:
    """Strict upper triangle of the RDM of the rows of ``z``, row-major, built by row blocks.

    ``z`` is prepared by :func:`_rdm_upper` (unit rows for the correlation and cosine inners, translated
    rows otherwise). Each block multiplies its rows only with the rows after its first one, so the
    N x N matrix is never formed (peak memory: the N(N−1)/2 output plus one 32 MiB block) and the GEMM
    does half the flops of the full Gram matrix; each unordered pair is computed exactly once.
    """
    n = z.shape[0]
    sq = (z * z).sum(dim=1) if inner in ("euclidean", "sqeuclidean") else None
    if on_numpy(z):
        if sq is None:
            return torch.from_numpy(_condensed_numpy(z.numpy(), inner, None))
        # Euclidean inners: blocks of ≤ N/8 rows (about half the GEMM of one N x N block, ~20 % of
        # rsa(inner="euclidean") at 2000x256). Their round-off differs from one block's, which moves no
        # exact tie: lattice rows (translated by a row, integer) give exact products in any block.
        return torch.from_numpy(_condensed_numpy(z.numpy(), inner, sq.numpy(), -(-n // 8)))

    def block(start: int, stop: int) -> torch.Tensor:  # row i of the block: pairs (i, j) for j > start
        entries = mm(z[start:stop], z[start + 1:].T)
        if sq is None:
            return entries.neg_().add_(1.0)
        entries = entries.mul_(-2.0).add_(sq[start:stop, None]).add_(sq[None, start + 1:]).clamp_(min=0.0)
        return entries.sqrt_() if inner == "euclidean" else entries

    return _upper_by_row_blocks(n, block, z.new_empty(n * (n - 1) // 2))


def _condensed_numpy(z: np.ndarray, inner: str, sq: np.ndarray | None, max_rows: int | None = None) -> np.ndarray:
    """:func:`_condensed` with numpy: the same blocks and arithmetic entry by entry, so the same bits
    (smaller blocks would save part of the GEMM below N ≈ 2900, ~6 % of ``rsa`` at 2000x256, but the
    GEMM's round-off then moves, and with it which mathematically equal entries of lattice data tie);
    each row's part j > i is copied straight into the output (no boolean mask over the block).
    ``max_rows`` caps the rows per block where those bits need not match (the Euclidean inners of
    :func:`_condensed`)."""
    n = z.shape[0]
    out = np.empty(n * (n - 1) // 2, dtype=z.dtype)
    start = offset = 0
    while start < n - 1:
        rows = max(1, min(n - 1 - start, _BLOCK_ELEMENTS // (n - start), max_rows or n))
        stop = start + rows
        entries = z[start:stop] @ z[start + 1:].T  # row r (instance start + r): pairs with j > start
        if sq is not None:
            entries *= -2.0
            entries += sq[start:stop, None]
            entries += sq[start + 1:]
            np.maximum(entries, 0.0, out=entries)
            if inner == "euclidean":
                np.sqrt(entries, out=entries)
        for r in range(rows):
            row = entries[r, r:]  # columns j > start + r
            out[offset:offset + row.size] = row
            offset += row.size
        start = stop
    if sq is None:  # 1 − ⟨z_i, z_j⟩ on the kept entries only: the same bits as −e + 1 on the block
        np.subtract(1.0, out, out=out)
    return out


def _upper_by_row_blocks(n: int, block: Callable[[int, int], torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` with the strict upper triangle of an N x N matrix, row-major (condensed order), from
    ``block(start, stop)``: rows start..stop−1 against columns start+1..N−1, sized to ~32 MiB. Entry (i, j)
    sits at column j − start − 1 of its block; only j > i is kept."""
    start, offset = 0, 0
    while start < n - 1:
        rows = max(1, min(n - 1 - start, _BLOCK_ELEMENTS // (n - start)))
        stop = start + rows
        keep = torch.ones(rows, n - start - 1, dtype=torch.bool, device=out.device).triu_()
        values = block(start, stop)[keep]
        out[offset:offset + values.numel()] = values
        offset += values.numel()
        start = stop
    return out


def _expand_condensed(upper: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The condensed RDM of the N original rows from that of the distinct rows (``index``: row -> distinct).

    Every pair of rows that maps to the same distinct pair gets the very same entry (exact ties), and
    duplicate rows are exactly 0 apart. Done by row blocks, like :func:`_condensed`.
    """
    n, m = index.numel(), int(index.max()) + 1

    def block(start: int, stop: int) -> torch.Tensor:
        p, q = index[start:stop, None], index[None, start + 1:]
        lo, hi = torch.minimum(p, q), torch.maximum(p, q)
        same = lo == hi
        # Position of the distinct pair (lo, hi), lo < hi, in the row-major condensed vector of m rows.
        position = lo * m - lo * (lo + 1) // 2 + hi - lo - 1
        return upper[position.masked_fill_(same, 0)].masked_fill_(same, 0.0)

    return _upper_by_row_blocks(n, block, upper.new_empty(n * (n - 1) // 2))


def _rows_distinct(a: np.ndarray) -> bool:
    """True if the rows of the float matrix ``a`` (no NaN) are pairwise different by value: equal rows
    (-0.0 made +0.0 first) have equal bit patterns, hence equal hashes Σ_j h(bits_ij ⊕ s_j) mod 2^64
    (h: the splitmix64 finaliser, a bijection with full avalanche; s_j a fixed random salt per
    column), so N distinct hashes prove N distinct rows. False means "maybe not" (a duplicate or a
    hash collision): the caller then sorts the rows. Why: ``torch.unique(dim=0)`` sorts the rows
    lexicographically, 5 ms at 2000 x 256 against ~1.5 ms here."""
    n, d = a.shape
    salts = np.random.default_rng(0x5EED).integers(0, 1 << 63, size=d, dtype=np.uint64)
    rows = max(1, (1 << 15) // max(d, 1))  # 256 KiB blocks: a reused buffer, no fresh pages to fault in
    scratch = np.empty((min(rows, n), d))
    hashes = np.empty(n, dtype=np.uint64)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        np.add(a[start:stop], 0.0, out=scratch[: stop - start])
        z = scratch[: stop - start].view(np.uint64)
        z ^= salts
        for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            z ^= z >> np.uint64(shift)
            z *= np.uint64(factor)
        z ^= z >> np.uint64(31)
        np.sum(z, axis=1, out=hashes[start:stop])
    return np.unique(hashes).size == n


def _rdm_upper(name: str, x: torch.Tensor, which: int, inner: str) -> torch.Tensor:
    """The strict upper triangle of the RDM, row-major (the order of ``scipy.spatial.distance.pdist``).

    With duplicate instances the RDM is computed on the distinct rows and expanded, so duplicates are
    exactly 0 apart and their distances to any other instance exactly tied (a GEMM does not promise
    bitwise-equal dot products for equal rows). Never forms an N x N matrix (:func:`_condensed`).
    """
    n = x.shape[0]
    x = x / power_of_two_scale(x)  # every RDM is scaled or unchanged by it; keeps norms clear of under/overflow
    if on_numpy(x) and _rows_distinct(x.numpy()):
        distinct, index = x, None  # no duplicates (the usual case, settled without sorting the rows)
    else:
        distinct, index = torch.unique(x, dim=0, return_inverse=True)
        if distinct.shape[0] == n:
            distinct, index = x, None  # no duplicates: the rows in their own order
    if inner in ("correlation", "cosine"):
        z = distinct - distinct.mean(dim=1, keepdim=True) if inner == "correlation" else distinct
        norms = torch.linalg.vector_norm(z, dim=1)
        # A zero-variance row (e.g. a dead-ReLU instance) has no correlation with anything.
        flat = norms <= _eps(x) * torch.linalg.vector_norm(distinct, dim=1)
        if bool(flat.any()):
            what = "constant across features" if inner == "correlation" else "all zeros"
            count = int(flat.sum() if index is None else flat[index].sum())
            raise UndefinedMeasureError(
                f"{name}: {count} row(s) of input {which} are {what}, so the {inner} distance "
                "is undefined for them; use inner='euclidean'"
            )
        z = z / norms[:, None]
    else:
        # Subtracting one row is a translation (distances unchanged) that removes a large common offset
        # before the Gram identity; unlike the column mean it keeps lattice data (integer or binary
        # codes) exact, so equal distances stay exact ties for the rank-based outers.
        z = distinct - distinct[:1]
    if index is None:
        return _condensed(z, inner)
    if z.shape[0] == 1:
        return x.new_zeros(n * (n - 1) // 2)
    return _expand_condensed(_condensed(z, inner), index)


def _is_constant(v: torch.Tensor) -> bool:
    """All entries equal up to round-off (a spread within 64 eps of the largest magnitude)."""
    if on_numpy(v):  # two numpy passes; the largest magnitude is max(|max|, |min|) (no abs copy)
        hi, lo = float(v.numpy().max()), float(v.numpy().min())
        return hi - lo <= 64.0 * _eps(v) * max(abs(hi), abs(lo))
    return bool(v.max() - v.min() <= 64.0 * _eps(v) * v.abs().max())


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if on_numpy(a, b):
        return a.new_tensor(_pearson_numpy(a.numpy(), b.numpy()))
    a, b = a - a.mean(), b - b.mean()
    return (a @ b) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))


#: Entries per chunk of :func:`_pearson_numpy` (two 512 KiB temporaries: they stay in the L2 cache).
_PEARSON_CHUNK = 1 << 16


def _pearson_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two vectors: Σ (a − ā)(b − b̄) / √(Σ (a − ā)² Σ (b − b̄)²), the centred entries taken
    chunk by chunk. Why not centred copies of the whole vectors: for the N(N−1)/2 entries of two RDMs they
    are two more M-entry buffers at the peak of ``rsa``, and on the VMs of BENCHMARKS.md new memory costs
    more than the arithmetic (first touch)."""
    mean_a, mean_b = a.mean(), b.mean()
    ab = aa = bb = 0.0
    for s in range(0, a.size, _PEARSON_CHUNK):
        da, db = a[s:s + _PEARSON_CHUNK] - mean_a, b[s:s + _PEARSON_CHUNK] - mean_b
        ab += float(da @ db)
        aa += float(da @ da)
        bb += float(db @ db)
    return ab / (math.sqrt(aa) * math.sqrt(bb))


def _average_ranks(v: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
    """1-based ranks with ties given their average rank (``scipy.stats.rankdata(method='average')``).

    Memory-lean for the N(N−1)/2 entries of an RDM: besides the sort (values and permutation) only
    chunk-sized temporaries. On the CPU the numpy version below runs (``overwrite``: it may reuse the
    buffer of ``v`` for the ranks). The rank of sorted position k is (first + last)/2 + 1 with first/last the
    0-based bounds of its tie group, found by a running max (left to right) and min (right to left).
    """
    if on_numpy(v):
        return torch.from_numpy(_average_ranks_numpy(v.numpy() if overwrite else v.numpy().copy()))
    ordered, order = torch.sort(v)
    m = v.numel()
    new_group = torch.ones(m, dtype=torch.bool, device=v.device)
    torch.ne(ordered[1:], ordered[:-1], out=new_group[1:])
    ranks = torch.empty_like(v)
    chunk = _BLOCK_ELEMENTS
    if bool(new_group.all()):  # no ties: the rank is the sorted position + 1
        for s in range(0, m, chunk):
            e = min(s + chunk, m)
            ranks[order[s:e]] = torch.arange(s + 1, e + 1, dtype=v.dtype, device=v.device)
        return ranks
    buf = ordered  # the sorted values are no longer needed: the buffer takes first + last of each group
    first = 0
    for s in range(0, m, chunk):
        e = min(s + chunk, m)
        at = torch.arange(s, e, device=v.device)
        starts = torch.where(new_group[s:e], at, first).cummax(dim=0).values
        buf[s:e] = starts
        first = int(starts[-1])
    last = m - 1
    for s in reversed(range(0, m, chunk)):
        e = min(s + chunk, m)
        at = torch.arange(s, e, device=v.device)
        group_end = torch.ones(e - s, dtype=torch.bool, device=v.device)
        group_end[: e - s - (e == m)] = new_group[s + 1:e + (e < m)]
        ends = torch.where(group_end, at, last).flip(0).cummin(dim=0).values.flip(0)
        buf[s:e] += ends
        last = int(ends[0])
    buf.mul_(0.5).add_(1.0)
    ranks[order] = buf
    return ranks


#: :func:`_sort_distinct_keys` may sort this many keys and up by buckets; fewer, or more than
#: ``_BUCKET_SORT_MAX`` (N > 2896 for an RDM), go to one ``np.sort``: the radix pass over 65536 buckets
#: slows to ~110 ns per entry at 12.5 M entries (N = 5000), where ``np.sort`` took ~65 ns.
_BUCKET_SORT_MIN = 1 << 16
_BUCKET_SORT_MAX = 1 << 22
#: Width of the row sorts in :func:`_bucket_sort_keys`: numpy sorts up to 256 int64 entries inside
#: SIMD registers (~2 ns per entry on the Zen 4 VM, against ~55 ns per entry for one sort of 2 M; rows
#: of 512 already cost ~9 ns per entry).
_SORT_WINDOW = 256
#: Whether :func:`_bucket_sort_keys` beats ``np.sort`` on this CPU; None until :func:`_bucket_sort_pays`
#: has timed both in this process.
_BUCKET_SORT_FASTER: bool | None = None


def _bucket_sort_pays() -> bool:
    """Whether the bucket sort is the faster of the two here: both timed once per process on 2^18 random
    distinct keys (thread CPU time, best of two; ~13 ms).

    Both give the same array, so the choice moves only the time; it is measured because it flips between
    the machines of BENCHMARKS.md. At 2 M keys numpy's sort took ~55 ns per entry on the Zen 4 VM (the
    bucket sort ~23), and takes ~4.3 on the Zen 5 one (the bucket sort ~19).
    """
    global _BUCKET_SORT_FASTER
    if _BUCKET_SORT_FASTER is None:
        m = 1 << 18
        keys = (np.random.default_rng(0).integers(0, 1 << 40, m) << 18) | np.arange(m)
        best = {np.ndarray.sort: math.inf, _bucket_sort_keys: math.inf}
        for _ in range(2):
            for sort in best:
                scratch = keys.copy()
                start = time.thread_time()
                sort(scratch)
                best[sort] = min(best[sort], time.thread_time() - start)
        _BUCKET_SORT_FASTER = best[_bucket_sort_keys] < best[np.ndarray.sort]
    return _BUCKET_SORT_FASTER


def _sort_distinct_keys(key: np.ndarray) -> np.ndarray:
    """The distinct non-negative int64 ``key`` in ascending order (the array ``np.sort`` gives); ``key`` is
    scratch (sorted in place by ``np.sort``: a fresh M-entry buffer costs its page faults). By buckets
    (:func:`_bucket_sort_keys`) where that is faster on this CPU (:func:`_bucket_sort_pays`)."""
    if _BUCKET_SORT_MIN <= key.size <= _BUCKET_SORT_MAX and _bucket_sort_pays():
        return _bucket_sort_keys(key)
    key.sort()
    return key


def _bucket_sort_keys(key: np.ndarray) -> np.ndarray:
    """:func:`_sort_distinct_keys` by buckets, for ``_BUCKET_SORT_MIN`` to ``_BUCKET_SORT_MAX`` keys.

    Written by hand because on some CPUs numpy's sort of millions of int64 is the cost of ``rsa`` (110 ms
    for the 2 M entries of an RDM at N = 2000 on the Zen 4 VM of BENCHMARKS.md, ~55 ns per entry), while
    its radix sort of 16-bit keys (stable argsort, ~8 ns per entry) and its sorts of short rows (≤ 256
    entries, ~2 ns per entry) are fast. So: a 16-bit bucket digit, monotone in the key (its offset from a
    low sample quantile, shifted right by a power of two and clipped to [0, 65535], so outliers cannot
    squeeze the rest into a few buckets); the stable argsort of the digits puts the keys in bucket
    order; buckets of more than W/2 entries (W = ``_SORT_WINDOW``) are sorted one by one; then rows of
    W entries are sorted, and rows of W shifted by W/2. Sorting a row of a bucket-ordered array only
    reorders entries within buckets, so a sorted bucket stays sorted, and a bucket of ≤ W/2 entries lies
    inside a row of one of the two passes: afterwards every bucket is sorted.
    """
    m = key.size
    sample = key[::max(1, m >> 16)].copy()  # ~65536 keys for the range of the digits
    cut = max(1, sample.size >> 10)
    sample.partition([cut - 1, sample.size - cut])
    lo, hi = int(sample[cut - 1]), int(sample[sample.size - cut])
    shift = np.int64(max(0, (hi - lo).bit_length() - 16))
    digit = np.empty(m, dtype=np.uint16)
    chunk = _BLOCK_ELEMENTS
    for s in range(0, m, chunk):
        part = key[s:s + chunk] - np.int64(lo)
        np.right_shift(part, shift, out=part)
        digit[s:s + chunk] = np.clip(part, 0, 65535, out=part)
    order = np.argsort(digit, kind="stable")  # a radix sort for 16-bit keys
    ends = np.cumsum(np.bincount(digit, minlength=1 << 16))
    del digit
    # The gathered keys overwrite the permutation in place (entry t of ``order`` is read before entry t
    # of the output is written; mode="clip" makes numpy write straight into ``out``): one M-entry
    # buffer less at N = 16000 (1 GiB).
    out = np.take(key, order, out=order, mode="clip")
    half = _SORT_WINDOW // 2
    starts = ends - np.diff(ends, prepend=0)
    for b in np.flatnonzero(ends - starts > half):
        out[starts[b]:ends[b]].sort()
    for first in (0, half):
        body = (m - first) // _SORT_WINDOW * _SORT_WINDOW
        out[first:first + body].reshape(-1, _SORT_WINDOW).sort(axis=1)
        out[first + body:].sort()
    return out


#: Entries per pass of :func:`_average_ranks_numpy` over its M-entry arrays: temporaries that stay in the
#: L2 cache, and a chunk with a tie in it (the running max and min) costs only its own 64 Ki entries.
_RANK_CHUNK = 1 << 16


def _average_ranks_numpy(v: np.ndarray) -> np.ndarray:
    """:func:`_average_ranks` with numpy; ``v`` is used as scratch space and receives the ranks (returned).

    Ranks need the sorting permutation, and ``np.argsort`` / ``torch.sort`` (values and indices) take
    ~1.8x as long as numpy's value sort here. So the permutation rides along inside the sorted values:
    each entry becomes the int64 key q(v)·2^b + position (b bits hold the positions; q(v) = round((v −
    min)·s), s mapping the range onto the remaining ≤ 52 bits, is monotone, so the keys sort in the order
    of the values), one sort of the keys (:func:`_sort_distinct_keys`), then the low b bits are the
    permutation. Entries whose quantised parts coincide (a few hundred at 2 M entries) are put in value
    order by an argsort of just those entries; only they are compared by value (different quantised
    parts are different values), so no gather of all M values in sorted order is needed. Exact ties are
    then averaged as in :func:`_average_ranks`.

    Memory: one M-entry int64 buffer besides ``v`` (the keys, then the permutation) and M bytes of group
    flags. The rounding happens in that buffer (adding 2^52 leaves round(x) in the low mantissa bits of a
    double x in [0, 2^52]) and the ranks are scattered into ``v`` chunk by chunk, because on the VMs of
    BENCHMARKS.md every M-entry buffer beyond a process's earlier peak costs more than the sort (first
    touch of new memory).
    """
    m = v.size
    bits = max(1, (m - 1).bit_length())
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        v.fill((m + 1) / 2.0)
        return v
    half = not math.isfinite(hi - lo)  # a range beyond float64: halve (exact, monotone) before scaling
    scale = float(1 << min(62 - bits, 52)) / ((hi * 0.5 - lo * 0.5) if half else (hi - lo))
    key = np.empty(m, dtype=np.int64)
    chunk = _RANK_CHUNK
    for s in range(0, m, chunk):  # by chunks that stay in the L2 cache: ~40 % less than six whole passes
        e = min(s + chunk, m)
        x = key[s:e].view(np.float64)
        if half:
            np.multiply(v[s:e], 0.5, out=x)
            x -= lo * 0.5
        else:
            np.subtract(v[s:e], lo, out=x)
        x *= scale
        x += 2.0**52  # x in [0, 2^52 (1 + ε)]: the double x + 2^52 holds round(x) above the bits of 2^52
        q = key[s:e]
        q -= np.int64(0x4330000000000000)  # the bit pattern of 2^52: round(x) is left
        q <<= np.int64(bits)
        q |= np.arange(s, e, dtype=np.int64)
    key = _sort_distinct_keys(key)
    # new_group[k]: sorted position k starts a new quantised group (later: a new tie group). Positions
    # k, k + 1 share their quantised part iff the keys' XOR has no bit above the position bits.
    new_group = np.empty(m, dtype=bool)
    new_group[0] = True
    shared = []  # the positions k whose quantised part is that of k + 1
    for s in range(0, m - 1, chunk):
        e = min(s + chunk, m - 1)
        high = np.bitwise_xor(key[s:e], key[s + 1:e + 1]) >= np.int64(1 << bits)
        new_group[s + 1:e + 1] = high
        shared.append(np.flatnonzero(~high) + s)
    key &= np.int64((1 << bits) - 1)
    order = key
    at = np.concatenate(shared)
    if at.size:
        # Different quantised parts mean different values: only entries that share theirs with a
        # neighbour in the sort need their values (gathered, put in value order, compared exactly).
        members = np.concatenate((at, at + 1))  # sorted positions t and t + 1, each once (np.union1d's
        members.sort()  # hashing took ~0.7 s for the ~1 M members at N = 16000)
        members = members[np.concatenate(([True], members[1:] != members[:-1]))]
        values = v[order[members]]
        within = np.argsort(values)
        order[members] = order[members][within]
        values = values[within]
        pairs = np.flatnonzero(np.diff(members) == 1)  # members t, t + 1 adjacent in the sort
        pairs = pairs[~new_group[members[pairs] + 1]]  # ... and in one quantised group
        new_group[members[pairs + 1]] = values[pairs + 1] != values[pairs]
    ranks = v  # the values are no longer needed: their buffer takes the ranks, entry by entry
    # Sorted position k gets (first + last)/2 + 1, first/last the 0-based bounds of its tie group: k + 1
    # in a chunk that no tie group touches; otherwise a running max of group starts from the left, a
    # running min of group ends from the right, and for a group that runs past the chunk, the position
    # before the next group start.
    first = 0
    for s in range(0, m, chunk):
        e = min(s + chunk, m)
        if new_group[s:e + 1].all():  # no ties in the chunk, and the next entry starts a new group
            ranks[order[s:e]] = np.arange(s + 1, e + 1, dtype=np.float64)
            continue
        pos = np.arange(s, e)
        starts = np.maximum.accumulate(np.where(new_group[s:e], pos, first))
        first = int(starts[-1])
        group_end = np.ones(e - s, dtype=bool)  # position k ends its group: k = m − 1 or k + 1 starts one
        group_end[: e - s - (e == m)] = new_group[s + 1:e + (e < m)]
        ahead = new_group[e + 1:]
        step = int(ahead.argmax()) if ahead.size else 0
        last = e + step if ahead.size and ahead[step] else m - 1  # (e + 1 + step) − 1
        ends = np.minimum.accumulate(np.where(group_end, pos, last)[::-1])[::-1]
        starts += ends
        ranks[order[s:e]] = starts * 0.5 + 1.0
    return ranks


def _count_inversions(v: torch.Tensor) -> int:
    """Pairs i < j with v_i > v_j (strict), for an int64 vector, in O(M log² M) vectorised work.

    Bottom-up merge sort: at each level every pair of adjacent sorted blocks contributes, for each entry
    of the right block, the number of left-block entries greater than it (a batched ``searchsorted``).
    The length is padded to a power of two with a value larger than every entry, which adds no pair.
    """
    m = v.numel()
    size = 1 << max(0, (m - 1).bit_length())
    blocks = torch.cat([v, v.new_full((size - m,), int(v.max()) + 1)])
    inversions = 0
    width = 1
    while width < size:
        pairs = blocks.view(-1, 2, width)
        left, right = pairs[:, 0].contiguous(), pairs[:, 1].contiguous()
        not_greater = torch.searchsorted(left, right, right=True)
        inversions += int((width - not_greater).sum())
        blocks = pairs.reshape(-1, 2 * width).sort(dim=1).values.reshape(-1)
        width *= 2
    return inversions


def _tied_pairs(counts: torch.Tensor) -> int:
    return int((counts * (counts - 1) // 2).sum())


def _kendall_tau(a: torch.Tensor, b: torch.Tensor, variant: str) -> torch.Tensor:
    """Kendall's τ_a or τ_b by Knight's O(M log M) method (no M² pair loop).

    Sort by (a, b); the discordant pairs are the strict inversions of b in that order. With P pairs,
    T_a, T_b tied pairs in a, in b, and T_ab tied in both: C − D = P − T_a − T_b + T_ab − 2D;
    τ_a = (C − D)/P and τ_b = (C − D)/√((P − T_a)(P − T_b)) (``scipy.stats.kendalltau``'s default).
    """
    _, rank_a, counts_a = torch.unique(a, return_inverse=True, return_counts=True)
    _, rank_b, counts_b = torch.unique(b, return_inverse=True, return_counts=True)
    key = rank_a * (int(rank_b.max()) + 1) + rank_b
    _, counts_ab = torch.unique(key, return_counts=True)
    discordant = _count_inversions(rank_b[torch.argsort(key)])
    m = a.numel()
    pairs = m * (m - 1) // 2
    ties_a, ties_b = _tied_pairs(counts_a), _tied_pairs(counts_b)
    balance = pairs - ties_a - ties_b + _tied_pairs(counts_ab) - 2 * discordant
    if variant == "kendall_tau_a":
        return a.new_tensor(balance / pairs)
    return a.new_tensor(balance / math.sqrt((pairs - ties_a) * (pairs - ties_b)))


@register(
    "rsa",
    family="rsm",
    kind="similarity",
    range=(-1.0, 1.0),
    symmetric=True,
    invariances=("permutation", "isotropic_scaling"),
    min_rows=3,
    reference="Kriegeskorte, Mur, Bandettini. Representational similarity analysis - connecting the branches of "
    "systems neuroscience. Front. Syst. Neurosci. 2008",
    cost="O(N²·D) for the RDMs (upper triangle by row blocks), O(N² log N) for ranks (O(N² log² N) for "
    "Kendall); O(N²) memory: the N(N−1)/2 RDM entries and their sort, never an N x N matrix",
)
def rsa(X: torch.Tensor, Y: torch.Tensor, *, inner: str = "correlation", outer: str = "spearman") -> torch.Tensor:
    """Representational similarity analysis: a correlation between the two representational dissimilarity matrices.

    Formula: RDM_X[i, j] = inner(x_i, x_j); RSA = outer(vec RDM_X, vec RDM_Y) over the N(N−1)/2 strict
    upper-triangle entries. ``inner``: ``"correlation"`` (1 − Pearson r between instance rows, default),
    ``"euclidean"``, ``"sqeuclidean"``, ``"cosine"`` (1 − cosine). ``outer``: ``"spearman"`` (default;
    average ranks for ties), ``"pearson"``, ``"kendall_tau_a"``, ``"kendall_tau_b"``, ``"cosine"`` (of
    the raw RDM vectors). Range [−1, 1]; higher is more similar; symmetric.

    Invariances depend on ``inner``; with the default correlation inner: column permutation and
    isotropic scaling only — *not* translation or orthogonal maps (each row is centred over its own
    features). With a Euclidean or squared-Euclidean inner: permutation, orthogonal, isotropic scaling
    and translation. Never invertible linear maps.

    Defaults follow ReSi (correlation inner, Spearman outer). Where others differ: rsatoolbox's
    ``calc_rdm(..., 'euclidean')`` is the squared distance divided by D (same ranks as ``"sqeuclidean"``);
    ``scipy.stats.kendalltau`` defaults to τ_b. ``UndefinedMeasureError`` when a row is constant across
    features (correlation inner) or all zero (cosine inner), and when an RDM is constant (all-zero for
    the cosine outer), so that its correlation is 0/0.
    """
    _check_choice("rsa", "inner", inner, ("correlation", "euclidean", "sqeuclidean", "cosine"))
    _check_choice("rsa", "outer", outer, ("spearman", "pearson", "kendall_tau_a", "kendall_tau_b", "cosine"))

    def side(z: torch.Tensor, which: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        rdm = _rdm_upper("rsa", z, which, inner)
        degenerate = not bool(rdm.any()) if outer == "cosine" else _is_constant(rdm)
        if degenerate:
            raise UndefinedMeasureError(
                f"rsa: the {inner} RDM of input {which} is {'zero' if outer == 'cosine' else 'constant'} "
                f"(all instances equally dissimilar), so its {outer} correlation is undefined"
            )
        if outer == "spearman":
            return None, _average_ranks(rdm, overwrite=True)  # the RDM is not needed: only its ranks are kept
        return rdm, None

    # The RDM (and its ranks) of each input depend on that input alone: memoised per input.
    (a, rank_a), (b, rank_b) = (one_sided("rsa.rdm", z, lambda z=z, w=w: side(z, w), inner=inner,
                                          outer=outer) for w, z in ((1, X), (2, Y)))
    if outer == "pearson":
        value = _pearson(a, b)
    elif outer == "spearman":
        value = _pearson(rank_a, rank_b)
    elif outer == "cosine":
        value = (a @ b) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))
    else:
        value = _kendall_tau(a, b, outer)
    return value.clamp(-1.0, 1.0)


# --- RSM norm difference, distance correlation ----------------------------------------------------


@register(
    "rsm_norm_difference",
    family="rsm",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    metric=True,
    invariances=("permutation", "orthogonal", "translation"),
    reference="Shahbazi, Shirali, Aghajan, Nili. Using distance on the Riemannian manifold to compare "
    "representations in brain and in models. NeuroImage 2021; Yin, Shen. On the Dimensionality of Word "
    "Embedding. NeurIPS 2018 (PIP loss)",
    cost="O(N²·D) time, O(block·N) memory (row blocks); norm='spectral': O(N²·D) plus ~20 matrix-vector "
    "products over one N x N triangle (Euclidean RSM), O(N·D² + D³) (linear RSM)",
)
def rsm_norm_difference(
    X: torch.Tensor, Y: torch.Tensor, *, inner: str = "euclidean", norm: str = "frobenius_full"
) -> torch.Tensor:
    """Frobenius norm of the difference of the two representational similarity matrices.

    Formula: d = ‖S_X − S_Y‖_F with S the N x N RSM: ``inner="euclidean"`` (default) the Euclidean
    distance matrix ‖x_i − x_j‖; ``inner="linear"`` the Gram XXᵀ of the raw inputs (Yin & Shen's PIP
    loss). ``norm="frobenius_full"`` (default) sums over all N² entries; ``"frobenius_upper"`` over the
    strict upper triangle only (1/√2 of the full value for the zero-diagonal distance RSM). Range
    [0, ∞); 0 means identical RSMs; symmetric; a pseudometric (the Frobenius distance between RSMs).
    Scale dependent: d(cX, cY) = c·d(X, Y) for the Euclidean RSM, c²·d for the linear one.

    Invariances (Euclidean RSM): permutation, orthogonal maps and translation; not isotropic scaling or
    invertible linear maps (the linear RSM is not translation invariant either).

    ``norm="spectral"``: the spectral norm ‖S_X − S_Y‖₂ (largest singular value), which for the
    symmetric difference is its largest |eigenvalue|; it lies between ‖·‖_F/√N and ‖·‖_F, and is a
    pseudometric too (same invariances). Euclidean RSM: the strict upper triangle of S_X − S_Y is built
    once (half the GEMM flops) and the largest |eigenvalue| found by Lanczos (ARPACK ``eigsh``,
    tolerance 0 = machine precision, a fixed seeded start vector, so deterministic; a symmetric
    matrix-vector product reads one triangle), instead of an O(N³) SVD; dense ``eigvalsh`` for
    N ≤ 64. Linear RSM: XXᵀ − YYᵀ = ½(UVᵀ + VUᵀ) with U = X − Y, V = X + Y (narrower side
    zero-padded), so with the thin QR [U V] = QR its non-zero eigenvalues are those of the
    2D x 2D matrix ½(R_U R_Vᵀ + R_V R_Uᵀ): exact, O(N·D² + D³), and free of the cancellation of
    XXᵀ − YYᵀ when X ≈ Y.

    Where others differ: ReSi's ``rsm_norm_diff`` passes the square Euclidean distance matrices to
    ``np.linalg.norm(..., ord=2)``, i.e. takes the *spectral* norm (largest singular value) although its
    comment says the vectorised triangle is meant: ``norm="spectral"`` is that number (ReSi: an O(N³)
    SVD). ReSi's ``rsa(inner="euclidean", outer="euclidean")`` is ``norm="frobenius_upper"``.
    """
    _check_choice("rsm_norm_difference", "inner", inner, ("euclidean", "linear"))
    _check_choice("rsm_norm_difference", "norm", norm, ("frobenius_full", "frobenius_upper", "spectral"))
    if inner == "euclidean":
        x, y, degree = X - X.mean(dim=0), Y - Y.mean(dim=0), 1
    else:
        x, y, degree = X, Y, 2
    # d is homogeneous in the pair: one exact power-of-two rescaling keeps the squares finite.
    scale = power_of_two_scale(x, y)
    x, y = x / scale, y / scale
    if norm == "spectral":
        spectral = _distance_difference_spectral_norm(x, y) if inner == "euclidean" else _gram_difference_spectral_norm(x, y)
        return torch.tensor(spectral * scale**degree, dtype=X.dtype)
    if inner == "euclidean" and on_numpy(x, y):
        # The strict upper triangle once (symmetric difference, zero diagonal): a block's columns from
        # stop on are above the diagonal, its leading square holds each of its pairs twice.
        upper = 0.0
        for start, stop, block in _upper_distance_difference_blocks(x.numpy(), y.numpy()):
            lead = block[:, :stop - start]
            upper += float(np.vdot(block, block)) - 0.5 * float(np.einsum("ij,ij->", lead, lead))
        total = torch.tensor(upper if norm == "frobenius_upper" else 2.0 * upper, dtype=x.dtype)
        return total.clamp(min=0.0).sqrt() * scale**degree
    if inner == "euclidean":
        mx, my = _distance_blocks(x), _distance_blocks(y)
        diagonal = x.new_zeros(())
    else:
        mx, my = (lambda rows: mm(x[rows], x.T)), (lambda rows: mm(y[rows], y.T))
        diagonal = (x.square().sum(dim=1) - y.square().sum(dim=1)).square().sum()
    total = sum((mx(rows) - my(rows)).square().sum() for rows in _row_blocks(x.shape[0]))
    if norm == "frobenius_upper":
        total = (total - diagonal) / 2.0
    return total.clamp(min=0.0).sqrt() * scale**degree


#: Below this N the spectral norm comes from a dense ``eigvalsh`` (ARPACK needs N > 1 and gains nothing).
_DENSE_SPECTRAL_ROWS = 64


def _largest_abs_eigenvalue(matrix: np.ndarray) -> float:
    """max |λ| of a symmetric N x N matrix of which only the upper triangle (with the diagonal) is read.

    Lanczos (ARPACK ``eigsh``, k = 1, which="LM") to machine precision (tol = 0): ARPACK's one cycle of
    ~20 products settles the extreme eigenvalues of these matrices. Each product is BLAS ``dsymv`` on the
    transposed (Fortran-ordered) view, reading the one triangle: half the memory traffic of ``A @ v``.
    The start vector is seeded, so the result is deterministic.
    """
    n = matrix.shape[0]
    if not matrix.any():
        return 0.0

    def dense() -> float:
        full = np.triu(matrix)
        full += np.triu(matrix, 1).T
        return float(np.abs(scipy.linalg.eigvalsh(full, check_finite=False)).max())

    if n <= _DENSE_SPECTRAL_ROWS:
        return dense()
    # imported on first use: scipy.sparse.linalg is a heavy import that no other measure needs
    from scipy.linalg.blas import dsymv, ssymv
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    symv = dsymv if matrix.dtype == np.float64 else ssymv
    lower_view = matrix.T  # Fortran order; its lower triangle is the matrix's filled upper one

    def product(v: np.ndarray) -> np.ndarray:
        return symv(1.0, lower_view, v.ravel(), lower=1)

    operator = LinearOperator((n, n), matvec=product, dtype=matrix.dtype)
    start = np.random.default_rng(0).standard_normal(n).astype(matrix.dtype)
    try:
        return float(np.abs(eigsh(operator, k=1, which="LM", v0=start, tol=0, return_eigenvectors=False)).max())
    except ArpackNoConvergence:  # never seen here; the dense O(N³) eigenvalues still give the exact value
        return dense()


def _distance_difference_spectral_norm(x: torch.Tensor, y: torch.Tensor) -> float:
    """‖D_x − D_y‖₂ for the Euclidean distance matrices of the (centred, rescaled) rows of ``x`` and ``y``.

    The upper triangle of D_x − D_y is filled by row blocks (each block's rows against the columns from
    its first row on: half the GEMM flops of the full matrices, one N x N array of memory), then
    :func:`_largest_abs_eigenvalue`. Distances come from the Gram identity as in the Frobenius route.
    Other devices (GPU) keep the work there: the full difference from the same row blocks and a dense
    ``eigvalsh``, O(N³) but on the device.
    """
    n = x.shape[0]
    if not on_numpy(x, y):
        mx, my = _distance_blocks(x), _distance_blocks(y)
        difference = torch.cat([mx(rows) - my(rows) for rows in _row_blocks(n)])
        return float(torch.linalg.eigvalsh(difference).abs().max())
    difference = np.zeros((n, n), dtype=x.numpy().dtype)
    for start, stop, block in _upper_distance_difference_blocks(x.numpy(), y.numpy()):
        difference[start:stop, start:] = block
    return _largest_abs_eigenvalue(difference)


def _upper_distance_difference_blocks(a: np.ndarray, b: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """Row blocks (start, stop, D_a − D_b restricted to rows start..stop−1 and columns start..N−1) of the
    difference of the Euclidean distance matrices of the rows of ``a`` and ``b``, diagonal exactly 0.

    Each block multiplies its rows only with the rows from its first one on: the upper triangle of the
    symmetric difference (plus the lower half of each block's leading square) for about half the GEMM
    flops and half the square roots of the full matrices. Distances come from the Gram identity
    ‖a_i‖² + ‖a_j‖² − 2⟨a_i, a_j⟩, clamped at 0 (callers centre the inputs first).
    """
    n = a.shape[0]
    sq_a, sq_b = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    start = 0
    while start < n:
        # At most N/8 rows per block, so the doubly computed leading squares stay ~1/8 of the triangle.
        rows = max(1, min(n - start, _BLOCK_ELEMENTS // (n - start), -(-n // 8)))
        stop = start + rows
        blocks = []
        for z, sq in ((a, sq_a), (b, sq_b)):
            # rows start..stop−1 against columns start..N−1; the factor −2 (exact) on the small side
            block = (-2.0 * z[start:stop]) @ z[start:].T
            block += sq[start:stop, None]
            block += sq[start:]
            np.maximum(block, 0.0, out=block)
            np.sqrt(block, out=block)
            blocks.append(block)
        difference = np.subtract(blocks[0], blocks[1], out=blocks[0])
        local = np.arange(rows)
        difference[local, local] = 0.0  # both distances are exactly 0 there
        yield start, stop, difference
        start = stop


def _gram_difference_spectral_norm(x: torch.Tensor, y: torch.Tensor) -> float:
    """‖xxᵀ − yyᵀ‖₂ through the 2D x 2D problem of the identity xxᵀ − yyᵀ = ½(uvᵀ + vuᵀ), u = x − y,
    v = x + y (narrower side zero-padded, which leaves xxᵀ and yyᵀ unchanged).

    With the thin QR [u v] = QR, R = [R_u R_v]: xxᵀ − yyᵀ = Q·½(R_u R_vᵀ + R_v R_uᵀ)·Qᵀ, and Q has
    orthonormal columns, so the non-zero eigenvalues are those of the small symmetric matrix. When
    2D ≥ N the N x N difference itself is smaller and is used.
    """
    width = max(x.shape[1], y.shape[1])
    x = torch.nn.functional.pad(x, (0, width - x.shape[1]))
    y = torch.nn.functional.pad(y, (0, width - y.shape[1]))
    u, v = x - y, x + y
    if 2 * width >= x.shape[0]:
        small = 0.5 * (mm(u, v.T) + mm(v, u.T))
    else:
        r = torch.linalg.qr(torch.cat([u, v], dim=1), mode="r").R
        ru, rv = r[:, :width], r[:, width:]
        small = 0.5 * (mm(ru, rv.T) + mm(rv, ru.T))
    return float(torch.linalg.eigvalsh(small).abs().max())


def _used_up(blocks: list[np.ndarray]) -> Iterator[np.ndarray]:
    """The entries of ``blocks`` in order, each removed from the list when handed out (freed once used)."""
    blocks.reverse()
    while blocks:
        yield blocks.pop()


#: The smallest fraction of its uncentred counterpart a centred product may keep in
#: :func:`_upper_triangle_centred_products` (below it the expansion would lose more than ~11 digits).
_EXPANSION_KEEP = 1e-5


def _upper_triangle_centred_products(
    x: np.ndarray, y: np.ndarray, entries: Callable[[np.ndarray, int], None], diagonal: float,
    kept: list[list[np.ndarray] | None] | None = None,
) -> tuple[float, float, float] | None:
    """⟨HAH, HBH⟩, ⟨HAH, HAH⟩, ⟨HBH, HBH⟩ for symmetric N x N matrices A, B that are elementwise functions
    of the squared distances of the rows of x, y, from the strict upper triangles alone, in one pass;
    None where that would lose digits.

    ``entries(block, which)`` turns a block of squared distances (side 0 or 1) into matrix entries in
    place; ``diagonal`` is the value of every diagonal entry (0 for distances, 1 for RBF kernels).
    For symmetric A, B with row sums r_A, r_B and totals s_A, s_B: ⟨HAH, HBH⟩ = tr(HAHB) =
    ⟨A, B⟩ − (2/N)·r_Aᵀr_B + s_A·s_B/N². Each unordered pair is computed once (row blocks of ≤ N/8 rows
    against the rows after them: half the GEMM, elementwise work and products of the two-pass route of
    :func:`_centred_products`, and no N x N block kept between passes); its row and column sums give r.
    The expansion cancels (for the Euclidean distances of Gaussian data at D = 256 the centred products
    are ~1e-3 of the uncentred ones, so ~3 of 16 digits go): it is used only when each centred product
    keeps ≥ ``_EXPANSION_KEEP`` of its uncentred counterpart (relative error ≲ 1e-11); otherwise the
    caller takes the two-pass route. ``kept[side]``, where not empty, holds that side's blocks of
    :func:`_squared_distance_row_blocks` with rows ≤ N/8, already built (used up here, each freed once
    used; their entries j ≤ i may hold anything).
    """
    n = x.shape[0]
    row_sums = [np.full(n, diagonal), np.full(n, diagonal)]
    sources = [_used_up(k) if k else _squared_distance_row_blocks(z, np.einsum("ij,ij->i", z, z), -(-n // 8))
               for z, k in zip((x, y), kept or (None, None))]
    ab = aa = bb = 0.0
    start = 0
    # One pair of blocks at a time, freed before the next pair is built (zip would keep the last pair
    # alive while it builds the next one: two blocks more at the peak, and new memory is slow here).
    while (pair := [next(source, None) for source in sources])[0] is not None:
        rows = pair[0].shape[0]
        stop = start + rows
        flat = []
        for which, block in enumerate(pair):
            entries(block, which)
            block[:, :rows][np.tri(rows, rows, -1, dtype=bool)] = 0.0  # j <= i: another block's pair
            row_sums[which][start:stop] += block.sum(axis=1)
            row_sums[which][start + 1:] += block.sum(axis=0)
            flat.append(block.reshape(-1))
        ab += float(np.dot(flat[0], flat[1]))
        aa += float(np.dot(flat[0], flat[0]))
        bb += float(np.dot(flat[1], flat[1]))
        del pair, block, flat
        start = stop
    rx, ry = row_sums
    sx, sy = float(rx.sum()), float(ry.sum())
    on_diagonal = n * diagonal * diagonal
    raw = (2.0 * ab + on_diagonal, 2.0 * aa + on_diagonal, 2.0 * bb + on_diagonal)  # each pair twice
    centred = (raw[0] - 2.0 / n * float(rx @ ry) + sx * sy / n**2,
               raw[1] - 2.0 / n * float(rx @ rx) + sx * sx / n**2,
               raw[2] - 2.0 / n * float(ry @ ry) + sy * sy / n**2)
    keep = _EXPANSION_KEEP
    if not (centred[1] >= keep * raw[1] and centred[2] >= keep * raw[2]
            and abs(centred[0]) >= keep * math.sqrt(raw[1] * raw[2])):
        return None
    return centred


@register(
    "distance_correlation",
    family="rsm",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=_SIMILARITY_TRANSFORMS,
    reference="Székely, Rizzo, Bakirov. Measuring and testing dependence by correlation of distances. "
    "Ann. Statist. 2007; Székely, Rizzo. Partial distance correlation with methods for dissimilarities. "
    "Ann. Statist. 2014 (unbiased)",
    cost="O(N²·(D1 + D2)) time, O(block·N) memory (CPU: one pass over the upper triangle's row blocks)",
)
def distance_correlation(X: torch.Tensor, Y: torch.Tensor, *, estimator: str = "biased") -> torch.Tensor:
    """Distance correlation (dCor) of the two representations.

    Formula: A_ij = ‖x_i − x_j‖, Â = A double-centred (row, column and grand means); same for B;
    dCov²(X, Y) = (1/N²) Σ Â_ij B̂_ij and dCor = √(dCov²(X, Y) / √(dCov²(X, X)·dCov²(Y, Y))).
    ``estimator="biased"`` (default) returns dCor in [0, 1] — ``dcor.distance_correlation``, not its
    square. ``estimator="unbiased"`` returns the bias-corrected *squared* distance correlation of
    Székely & Rizzo (2014; ``dcor.u_distance_correlation_sqr``): U-centred distance matrices instead of
    double-centred ones; it lies in [−1, 1] and can be negative, so it has no square root; needs N ≥ 4.
    Higher is more similar; symmetric. Invariant to orthogonal maps, isotropic scaling, permutation
    and translation; not to invertible linear maps. ReSi flags it as not scale invariant (wrong).

    ``UndefinedMeasureError`` for a constant input (dCov²(X, X) = 0) and, for the unbiased estimator,
    when a U-centred distance matrix vanishes up to round-off.
    """
    _check_choice("distance_correlation", "estimator", estimator, ("biased", "unbiased"))
    unbiased = estimator == "unbiased"
    n = X.shape[0]
    if unbiased and n < 4:
        raise ValueError(f"measure 'distance_correlation': estimator='unbiased' needs at least 4 rows, got {n}")
    x = _centred_nonconstant("distance_correlation", X, 1)
    y = _centred_nonconstant("distance_correlation", Y, 2)
    upper = None if unbiased or not on_numpy(x, y) else _upper_triangle_centred_products(
        x.numpy(), y.numpy(), lambda block, which: np.sqrt(block, out=block), 0.0)
    if upper is not None:
        xy, xx, yy = (torch.tensor(v, dtype=x.dtype) for v in upper)
    else:
        xy, xx, yy = _centred_products(_distance_blocks(x), _distance_blocks(y), n, unbiased=unbiased)
    for which, (self_term, z) in enumerate(((xx, x), (yy, y)), start=1):
        # Σ_ij A_ij² = 2N‖Z̃‖_F² bounds the round-off of the centred sum of squares.
        if self_term <= 64.0 * _eps(z) * 2 * n * z.square().sum():
            raise UndefinedMeasureError(
                f"distance_correlation: the {'U' if unbiased else 'double'}-centred distance matrix of "
                f"input {which} vanishes, so dCor is 0/0"
            )
    r2 = xy / (xx.sqrt() * yy.sqrt())
    return r2.clamp(-1.0, 1.0) if unbiased else r2.clamp(0.0, 1.0).sqrt()


# --- Bures, eigenspace overlap, GULP, Riemannian ----------------------------------------------------


def _gram_factor(x: torch.Tensor) -> torch.Tensor:
    """An N x min(N, D) matrix F with FFᵀ = xxᵀ (F = Rᵀ of the thin QR xᵀ = QR when D > N).

    Every orthogonally invariant function of x (singular values of cross products) is unchanged, and
    a D x D SVD becomes an N x N one for wide layers.
    """
    return x if x.shape[1] <= x.shape[0] else torch.linalg.qr(x.T).R.T


@register(
    "nbs",
    family="rsm",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=_SIMILARITY_TRANSFORMS,
    reference="Tang, Maddox, Dickens, Diethe, Damianou. Similarity of Neural Networks with Gradients. "
    "arXiv 2003.11498, 2020",
    cost="O(N·D1·D2 + min(N, D)³): one cross product and its singular values",
)
def nbs(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Normalized Bures similarity of the centred linear kernels.

    Formula: NBS = F(K̃, L̃) / √(tr K̃ · tr L̃) with the fidelity F(K, L) = tr((K^{1/2} L K^{1/2})^{1/2});
    for linear kernels K̃ = X̃X̃ᵀ, L̃ = ỸỸᵀ this is ‖X̃ᵀỸ‖_* / (‖X̃‖_F ‖Ỹ‖_F), computed from the singular
    values of the D1 x D2 cross product (of the N x N Gram factors when D > N), never from N x N matrix
    square roots (which lose ≈1e-8 in float64). Range [0, 1]; higher is more similar; symmetric.
    arccos(NBS) is the angular Procrustes distance (``procrustes_angular``). Invariant to orthogonal
    maps, isotropic scaling, permutation and (through the centring) translation; not to invertible
    linear maps. ``UndefinedMeasureError`` for a constant input.
    """
    x = _centred_nonconstant("nbs", X, 1)
    y = _centred_nonconstant("nbs", Y, 2)
    x, y = x / torch.linalg.matrix_norm(x), y / torch.linalg.matrix_norm(y)
    cross = mm(_gram_factor(x).T, _gram_factor(y))
    return torch.linalg.svdvals(cross).sum().clamp(0.0, 1.0)


def _bases(name: str, X: torch.Tensor, Y: torch.Tensor, center: bool) -> tuple[torch.Tensor, ...]:
    """Orthonormal bases and singular values of the (centred) inputs; raises on degenerate spans.

    With centring every column lies in the (N−1)-dimensional complement of 1, so a rank of N − 1 spans
    all of it (N without centring): the overlap with any other representation is then fixed by the
    ranks alone, the same degeneracy as CCA at D >= N − 1.
    """
    out = []
    for which, z in enumerate((X, Y), start=1):
        z = centred(z) if center else z / power_of_two_scale(z)
        u, s = principal_directions(z)
        if u.shape[1] == 0:
            raise UndefinedMeasureError(f"{name}: input {which} is {'constant' if center else 'all zeros'}")
        out += [u, s]
    available = X.shape[0] - 1 if center else X.shape[0]
    ranks = (out[0].shape[1], out[2].shape[1])
    if max(ranks) >= available:
        raise UndefinedMeasureError(
            f"{name}: D >= N{'-1' if center else ''}: degenerate like CCA (ranks {ranks[0]} and {ranks[1]} "
            f"with N = {X.shape[0]} rows: a rank of {available} spans every {'centred ' if center else ''}"
            "direction, so the value depends on the ranks only); use fewer dimensions or more rows"
        )
    return tuple(out)


@register(
    "eigenspace_overlap",
    family="rsm",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=_ALL_INVARIANCES,
    min_rows=3,
    reference="May, Zhang, Dao, Ré. On the Downstream Performance of Compressed Word Embeddings. NeurIPS 2019",
    cost="O(N·D² + D³): Gram and cross products and a Cholesky factor per input if well conditioned, "
    "else a thin SVD of each input and one r_X x r_Y product",
)
def eigenspace_overlap(X: torch.Tensor, Y: torch.Tensor, *, center: bool = True) -> torch.Tensor:
    """Eigenspace overlap score: how much the column spaces of the two representations coincide.

    Formula: EOS = ‖UᵀV‖_F² / max(r_X, r_Y) with U, V orthonormal bases (left singular vectors with
    nonzero singular values) of col(X̃), col(Ỹ) and r their numerical ranks (LAPACK's tolerance).
    Range [0, 1]; higher is more similar; symmetric. Invariant to invertible linear maps (hence
    orthogonal maps, isotropic scaling and permutation) and, with ``center=True`` (default), translation.

    Conventions: May et al. divide by max(D1, D2), which equals max(r_X, r_Y) for full-column-rank
    inputs; dividing by the ranks (as ReSi does with ``matrix_rank``) keeps EOS(X, X) = 1 when dead or
    duplicate units make X rank deficient. ReSi does not centre (no translation invariance) and takes a
    full N x N SVD. ``UndefinedMeasureError`` for a constant input and when a rank reaches N − 1
    (N without centring), where the column space is everything and the score depends on ranks only.
    """
    value = _overlap_by_covariances(X, Y, center)
    if value is not None:
        return torch.tensor(value, dtype=X.dtype).clamp(0.0, 1.0)
    ux, _, uy, _ = _bases("eigenspace_overlap", X, Y, center)
    return (mm(ux.T, uy).square().sum() / max(ux.shape[1], uy.shape[1])).clamp(0.0, 1.0)


def _overlap_by_covariances(X: torch.Tensor, Y: torch.Tensor, center: bool) -> float | None:
    """The eigenspace overlap score from D x D products (CPU inputs), or None for the SVD route.

    With full column rank, Q = X̃ L_X⁻ᵀ (L_X the Cholesky factor of X̃ᵀX̃) is an orthonormal basis of
    col(X̃), and ‖UᵀV‖_F is the same for every orthonormal basis, so
    EOS = ‖L_X⁻¹ X̃ᵀỸ L_Y⁻ᵀ‖_F² / max(D1, D2): two Gram products, one cross product and two triangular
    solves instead of two thin N x D SVDs (the measure ~4.5x faster at 2000x256). Taken only when both covariances are well conditioned
    (``measures.cca.well_conditioned_cholesky``: κ(X̃) ≤ 100, so every singular value is far above
    the rank tolerance and the ranks are D1, D2) and D < N (− 1 with centring); rank-deficient,
    ill-conditioned and degenerate inputs keep the SVD route with its rank rule and errors.
    """
    if not on_numpy(X, Y) or X.dtype != torch.float64:  # squaring κ needs float64's digits
        return None
    available = X.shape[0] - 1 if center else X.shape[0]
    if max(X.shape[1], Y.shape[1]) >= available:
        return None

    def side(z: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        a = (centred(z) if center else z / power_of_two_scale(z)).numpy()
        return a, well_conditioned_cholesky(a.T @ a)

    # Memoised per input, refusals included: a rank-deficient representation (dead ReLU units) is
    # checked once, not once per partner, before the SVD route takes it; Y is not checked when X fails.
    a, low_a = one_sided("eigenspace_overlap.cholesky", X, lambda: side(X), center=center)
    if low_a is None:
        return None
    b, low_b = one_sided("eigenspace_overlap.cholesky", Y, lambda: side(Y), center=center)
    if low_b is None:
        return None
    half = scipy.linalg.solve_triangular(low_a, a.T @ b, lower=True, check_finite=False)
    whole = scipy.linalg.solve_triangular(low_b, half.T, lower=True, check_finite=False)
    return float(np.einsum("ij,ij->", whole, whole)) / max(a.shape[1], b.shape[1])


def _ridge_weights(s: torch.Tensor, lam: float) -> torch.Tensor:
    """Eigenvalues of R_λ(Σ)Σ = Σ(Σ + λI)^{-1} for Σ = X̃ᵀX̃/‖X̃‖_F² (unit trace), from X̃'s singular values."""
    if lam == 0:
        return torch.ones_like(s)
    variance = s.square() / s.square().sum()
    return variance / (variance + lam)


def _gulp_by_covariances(X: torch.Tensor, Y: torch.Tensor, lam: float) -> torch.Tensor | None:
    """GULP's d from the D x D covariances (Cholesky factors), or None where that route is not exact enough.

    With A_X = X̃ᵀX̃ + λ‖X̃‖_F²I = L_X L_Xᵀ the ridge hat matrix is P_X = X̃A_X⁻¹X̃ᵀ, so
    tr(P_X P_Y) = ‖L_X⁻¹ X̃ᵀỸ L_Y⁻ᵀ‖_F² and tr(P_X²) = ‖L_X⁻¹ X̃ᵀX̃ L_X⁻ᵀ‖_F² (= D_X at λ = 0): three
    GEMMs, two Cholesky factorisations and triangular solves, O(N·D² + D³), against two thin N x D SVDs.
    Squaring X̃ into its covariance squares its condition number, so this route is taken only on the CPU,
    when each A is numerically well conditioned (``measures.cca.well_conditioned_cholesky``; at λ = 0
    this also means full column rank, so the rank rule of the SVD route keeps every direction) and when
    d² keeps ≥ 1e-2 of tr(P_X²) + tr(P_Y²) (no cancellation); otherwise None, and the caller takes the
    SVD route.
    """
    n = X.shape[0]
    if not on_numpy(X, Y) or (lam == 0 and max(X.shape[1], Y.shape[1]) >= n - 1):
        return None
    # Centred products by rank-one corrections where that keeps its digits (no centred N x D copies).
    products = centred_products(X, Y)
    if products is None or products[3] == 0.0 or products[4] == 0.0:
        x, y = centred(X).numpy(), centred(Y).numpy()
        products = (x.T @ x, y.T @ y, x.T @ y)
    factors, totals = [], []
    for g in products[:2]:
        a = g + (lam * np.trace(g)) * np.eye(g.shape[0]) if lam > 0 else g
        low = well_conditioned_cholesky(a)
        if low is None:
            return None
        if lam == 0:
            totals.append(float(g.shape[0]))
        else:
            half = scipy.linalg.solve_triangular(low, g, lower=True, check_finite=False)
            totals.append(float(np.square(scipy.linalg.solve_triangular(low, half.T, lower=True,
                                                                        check_finite=False)).sum()))
        factors.append(low)
    half = scipy.linalg.solve_triangular(factors[0], products[2], lower=True, check_finite=False)
    cross = float(np.square(scipy.linalg.solve_triangular(factors[1], half.T, lower=True, check_finite=False)).sum())
    total = totals[0] + totals[1]
    squared = total - 2.0 * cross
    if not squared >= 1e-2 * total:
        return None
    return torch.tensor(math.sqrt(squared), dtype=X.dtype)


@register(
    "gulp",
    family="rsm",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    metric=True,
    invariances=_ALL_INVARIANCES,
    min_rows=3,
    reference="Boix-Adserà, Lawrence, Stepaniants, Rigollet. GULP: a prediction-based metric between "
    "representations. NeurIPS 2022",
    cost="O(N·D² + D³): three D x D covariances and their Cholesky factors when well conditioned, else a thin SVD "
    "of each input and one r_X x r_Y product (a QR of the stacked bases when d ≈ 0)",
)
def gulp(X: torch.Tensor, Y: torch.Tensor, *, lambda_: float = 0.0) -> torch.Tensor:
    """GULP distance: how differently ridge regression on each representation predicts linear targets.

    Formula: centre, scale so ‖X̃‖_F² = N (GULP's preprocessing), Σ_X = X̃ᵀX̃/N, Σ_XY = X̃ᵀỸ/N,
    R_λ(Σ) = (Σ + λI)^{-1} (pseudo-inverse at λ = 0), and
    d²_λ = tr(R_λ(Σ_X)Σ_X R_λ(Σ_X)Σ_X) + tr(R_λ(Σ_Y)Σ_Y R_λ(Σ_Y)Σ_Y) − 2 tr(R_λ(Σ_X)Σ_XY R_λ(Σ_Y)Σ_YX).
    This equals ‖P_X − P_Y‖_F² for the ridge hat matrices P_X = X̃(X̃ᵀX̃ + NλI)^{-1}X̃ᵀ, which is how it is
    computed (from the r_X x r_Y cross product of the bases, or in an orthonormal basis of
    col X̃ + col Ỹ when d is so small that the trace form would cancel).
    Returns d_λ (not d²); range [0, ∞); 0 means identical; symmetric; a pseudometric.

    ``lambda_`` (λ ≥ 0, default 0): at λ = 0, d²_0 = rank X̃ + rank Ỹ − 2Σρ_i² (ρ the canonical
    correlations), invariant to invertible linear maps (hence orthogonal, scaling, permutation) and
    translation; for λ > 0 only to orthogonal maps, isotropic scaling (via the normalisation),
    permutation and translation. Sweep λ ∈ {0, 1e-3, 1e-2, 1e-1, 1} for the regularised variants.

    Where others differ: ReSi (copying the GULP repository's ``predictor_dist``) returns d² with λ = 0
    and inverts every eigenvalue > 0, including round-off ones; here directions below LAPACK's rank
    tolerance count as null. ``UndefinedMeasureError`` for a constant input and, at λ = 0, when a rank
    reaches N − 1 (degenerate like CCA: then d depends on the ranks only).
    """
    if not (math.isfinite(lambda_) and lambda_ >= 0):
        raise ValueError(f"measure 'gulp': lambda_ must be a finite number >= 0, got {lambda_!r}")
    fast = _gulp_by_covariances(X, Y, lambda_)
    if fast is not None:
        return fast
    if lambda_ == 0:
        ux, sx, uy, sy = _bases("gulp", X, Y, center=True)
    else:
        (ux, sx), (uy, sy) = (
            principal_directions(_centred_nonconstant("gulp", z, which)) for which, z in ((1, X), (2, Y))
        )
    wx, wy = _ridge_weights(sx, lambda_), _ridge_weights(sy, lambda_)
    # Trace form: with P_X = U_x diag(w_x) U_xᵀ, ‖P_X − P_Y‖² = Σw_x² + Σw_y² − 2‖diag(√w_x) U_xᵀU_y diag(√w_y)‖²,
    # one r_X x r_Y product. It cancels when P_X ≈ P_Y (absolute error ≈ eps·(Σw_x² + Σw_y²)), so it is
    # used only when d² keeps at least 1e-3 of that total (relative error of d below 1e-12); otherwise
    # the distance is taken in an orthonormal basis of col X̃ + col Ỹ, without cancellation.
    total = wx.square().sum() + wy.square().sum()
    cross = (mm(ux.T, uy) * wx.sqrt()[:, None] * wy.sqrt()[None, :]).square().sum()
    squared = total - 2.0 * cross
    if squared >= 1e-3 * total:
        return squared.sqrt()
    q = torch.linalg.qr(torch.cat([ux, uy], dim=1)).Q
    ax, ay = mm(q.T, ux), mm(q.T, uy)
    return torch.linalg.matrix_norm(mm(ax * wx, ax.T) - mm(ay * wy, ay.T))


def _normalised_factor(name: str, z: torch.Tensor, which: int, center: bool, epsilon: float) -> tuple[torch.Tensor, float]:
    """(F, log a) with F = Z̃/‖Z̃‖_F, so that Ŝ = N·FFᵀ has unit mean eigenvalue and S = Z̃Z̃ᵀ/D = a·Ŝ.

    Keeping the scale a apart (as a logarithm) makes the distance finite for any input magnitude.
    """
    n, d = z.shape
    scale = power_of_two_scale(z)
    z = z / scale
    if center:
        z = center_columns(z)
    fro = torch.linalg.matrix_norm(z)
    if fro == 0:
        raise UndefinedMeasureError(f"{name}: input {which} is {'constant' if center else 'all zeros'}; its RSM is 0")
    z = z / fro
    if epsilon == 0 and principal_directions(z)[0].shape[1] < n:
        why = "centring leaves rank <= N - 1" if center else f"rank < N = {n}"
        raise UndefinedMeasureError(f"{name}: the RSM of input {which} is singular ({why}); use epsilon > 0")
    return z, 2.0 * math.log(scale) + 2.0 * math.log(float(fro)) - math.log(d * n)


def _normalised_rsm(name: str, z: torch.Tensor, which: int, center: bool, epsilon: float) -> tuple[torch.Tensor, float]:
    """(Ŝ + εI, log a) for :func:`_normalised_factor`'s F: Ŝ = N·FFᵀ."""
    factor, log_mean_eigenvalue = _normalised_factor(name, z, which, center, epsilon)
    rsm = z.shape[0] * gram(factor)
    rsm.diagonal().add_(epsilon)
    return rsm, log_mean_eigenvalue


def _reduced_log_eigenvalues(fx: torch.Tensor, fy: torch.Tensor, epsilon: float) -> torch.Tensor:
    """log λ_i of the m = D1 + D2 generalised eigenvalues of (N·F_yF_yᵀ + εI, N·F_xF_xᵀ + εI) that can
    differ from 1, for ε > 0 and m < N (the other N − m are exactly 1).

    Both regularised RSMs map V = col([F_x F_y]) into itself and act as εI on V^⊥, so in an orthonormal
    basis Q of (a superspace of) V they are block diagonal with the blocks N·aaᵀ + εI_m, N·bbᵀ + εI_m,
    where [a b] = Qᵀ[F_x F_y] = R from the thin QR [F_x F_y] = QR, and εI_{N−m}: the generalised
    eigenvalues on V^⊥ are ε/ε = 1. Cost O(N·m² + m³) instead of O(N³); Q itself is never formed.
    """
    n, d1 = fx.shape
    stacked = torch.cat([fx, fy], dim=1)
    if on_numpy(stacked):
        r = torch.from_numpy(np.linalg.qr(stacked.numpy(), mode="r"))
    else:
        r = torch.linalg.qr(stacked, mode="r").R
    a, b = r[:, :d1], r[:, d1:]
    sx, sy = n * mm(a, a.T), n * mm(b, b.T)
    sx.diagonal().add_(epsilon)
    sy.diagonal().add_(epsilon)
    chol, info = torch.linalg.cholesky_ex(sx)
    if int(info) != 0:
        raise UndefinedMeasureError("riemannian_distance: the RSM of input 1 is not positive definite; use epsilon > 0")
    half = torch.linalg.solve_triangular(chol, sy, upper=False)
    eigenvalues = torch.linalg.eigvalsh(torch.linalg.solve_triangular(chol, half.T, upper=False))
    if bool((eigenvalues <= 0).any()):
        raise UndefinedMeasureError("riemannian_distance: the RSM of input 2 is not positive definite; use epsilon > 0")
    return eigenvalues.log()


@register(
    "riemannian_distance",
    family="rsm",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    metric=True,
    invariances=("permutation", "orthogonal", "translation"),
    reference="Shahbazi, Shirali, Aghajan, Nili. Using distance on the Riemannian manifold to compare "
    "representations in brain and in models. NeuroImage 2021",
    cost="O(N·m² + m³) with m = D1 + D2 < N (exact reduction to an m x m eigenproblem), else O(N²·D + N³)",
)
def riemannian_distance(
    X: torch.Tensor, Y: torch.Tensor, *, epsilon: float = 1e-3, center: bool = True
) -> torch.Tensor:
    """Affine-invariant Riemannian distance between the two (regularised) linear RSMs.

    Formula: S_X = X̃X̃ᵀ/D1 (N x N; X̃ column-centred when ``center=True``), regularised to
    S_X,ε = S_X + ε·(tr S_X / N)·I, same for Y; d = √(Σ_i log² λ_i(S_X,ε^{-1} S_Y,ε)) over the N
    generalized eigenvalues (Cholesky of S_X,ε, then a symmetric eigenproblem). For ε > 0 and
    m = D1 + D2 < N the problem is reduced exactly: both RSMs act as ε(tr S/N)·I outside
    col(X̃) + col(Ỹ), so N − m eigenvalues are (tr S_Y/tr S_X) and only an m x m generalised
    eigenproblem is solved (O(N·m² + m³); same value as the N x N route to round-off). Range [0, ∞); 0 means
    identical RSMs; symmetric; a pseudometric (the affine-invariant metric on SPD matrices).

    Invariances: permutation, orthogonal maps and, with centring, translation; not isotropic scaling
    (S_cX = c²S_X shifts every log-eigenvalue by log c²) and not invertible linear maps.

    Regulariser: a linear RSM has rank ≤ min(D, N − 1) and the metric needs SPD matrices, so ``epsilon``
    (default 1e-3) adds ε times the mean eigenvalue to the diagonal (shrinkage towards a scaled identity;
    unitless, so the same ε suits any scale). Smaller ε makes directions one RSM lacks dominate d
    (each contributes ≈ |log ε|). ``epsilon=0`` needs ``center=False`` and full-rank inputs (D ≥ N);
    otherwise ``UndefinedMeasureError``. Not implemented in ReSi; rsatoolbox's ``'neg_riem_dist'``
    works on RDMs, not on these Grams.
    """
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"measure 'riemannian_distance': epsilon must be a finite number >= 0, got {epsilon!r}")

    n, m = X.shape[0], X.shape[1] + Y.shape[1]
    if epsilon > 0 and m < n:
        (fx, log_ax), (fy, log_ay) = (
            _normalised_factor("riemannian_distance", z, w, center, epsilon) for w, z in ((1, X), (2, Y)))
        shift = log_ay - log_ax
        logs = _reduced_log_eigenvalues(fx, fy, epsilon) + shift
        # The N − m eigenvalues equal to 1 contribute (0 + shift)² each.
        return (logs.square().sum() + (n - m) * shift**2).sqrt()

    def side(z: torch.Tensor, which: int) -> tuple[torch.Tensor, float, torch.Tensor, int]:
        rsm, log_mean = _normalised_rsm("riemannian_distance", z, which, center, epsilon)
        chol, info = torch.linalg.cholesky_ex(rsm)
        return rsm, log_mean, chol, int(info)

    # The normalised RSM and its Cholesky factor depend on one input only: memoised per input.
    (_, log_ax, chol, info), (sy, log_ay, _, _) = (
        one_sided("riemannian.rsm", z, lambda z=z, w=w: side(z, w), center=center, epsilon=epsilon)
        for w, z in ((1, X), (2, Y)))
    if info != 0:
        raise UndefinedMeasureError("riemannian_distance: the RSM of input 1 is not positive definite; use epsilon > 0")
    half = torch.linalg.solve_triangular(chol, sy, upper=False)
    whitened = torch.linalg.solve_triangular(chol, half.T, upper=False)
    eigenvalues = torch.linalg.eigvalsh(whitened)
    if bool((eigenvalues <= 0).any()):
        raise UndefinedMeasureError("riemannian_distance: the RSM of input 2 is not positive definite; use epsilon > 0")
    logs = eigenvalues.log() + (log_ay - log_ax)
    return torch.linalg.vector_norm(logs)
