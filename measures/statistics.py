"""Descriptive statistics: differences of one-representation statistics (magnitude, concentricity, uniformity, intrinsic dimension).

Each measure is D(X, Y) = |s(X) - s(Y)| for a statistic s of one representation: symmetric, 0 for
identical inputs, but not a metric (different representations with equal statistics are at distance 0).
ReSi ranks them at the bottom in every domain; they are sanity baselines.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from measures._kernels import column_sums, mm, on_numpy
from measures._memo import one_sided
from measures._registry import UndefinedMeasureError, register
from measures._validation import center_columns, require_finite
from measures.cca import check_choice, power_of_two_scale
from measures.neighbours import BLOCK_ELEMENTS, nearest_neighbours, pair_values, prepare_rows, scale_to_unit, unit_rows


def _magnitude_numpy(a: np.ndarray) -> float | None:
    """‖ā‖₂ of a non-empty CPU array with one pass over it (the column sums), or None where that may
    have overflowed or underflowed (then the scaled route decides).

    The column sums by ``column_sums`` (rows folded into ~1024-entry rows: ~1.8x faster than ``mean``'s
    reduction here, with round-off of the same size); a GEMV 1ᵀa, faster from cache, was slower from
    memory, where this one pass over the input reads.
    A finite Σ ā_j² proves every column sum, hence every entry, finite (an infinity or NaN never becomes
    finite again); a non-finite one goes to the exact test (an overflow of finite entries). Within
    (1e-200, 1e200) neither the column sums nor the D squares overflowed, and the squares of the largest
    entries of ā did not underflow: the norm is the scaled route's (scaling by a power of two commutes
    exactly with sums and division, barring subnormal partial sums).
    """
    mean = column_sums(a)
    mean /= a.shape[0]
    square = float(np.dot(mean, mean))  # np.linalg.norm's own formula for a real vector
    return math.sqrt(square) if 1e-200 < square < 1e200 else None


def _magnitude_scaled(x: torch.Tensor, what: str) -> float:
    """‖x̄‖₂ after an exact power-of-two rescaling, with validation's finiteness check of ``x`` fused into
    a sum (``checks_finite``)."""
    require_finite("magnitude_difference", x, what, float(x.sum()))
    scaled, exponent = scale_to_unit(x)  # exact; keeps the sum and the squares in the norm finite
    return float(torch.ldexp(torch.linalg.vector_norm(scaled.mean(dim=0)), exponent))


@register(
    "magnitude_difference",
    family="statistics",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    invariances=("permutation", "orthogonal"),
    reference="Wang et al. Towards Understanding the Instability of Network Embedding. IEEE TKDE 2020",
    cost="O(N·D)",
    checks_finite=True,
)
def magnitude_difference(X: torch.Tensor, Y: torch.Tensor, *, form: str = "difference") -> float:
    """Absolute difference of the Euclidean norms of the two mean instances.

    Formula: D = |‖x̄‖₂ - ‖ȳ‖₂| with x̄ = (1/N) Σ_i x_i. Range [0, ∞); 0 means equal magnitudes (not
    equal representations); symmetric; not a metric. Invariant to permutation and orthogonal maps; not
    to isotropic scaling, translation or invertible linear maps. Widths may differ.
    Conventions: the norm of the mean instance (Wang et al.). The mean is taken after an exact
    power-of-two rescaling, so huge entries do not overflow; a magnitude beyond the float range raises
    ``UndefinedMeasureError``.

    ``form="nrmse"``: ReSi's ``magnitude_nrmse``, the mean over instances of the normalised RMSE of the
    two instance norms a_i = ‖x_i‖, b_i = ‖y_i‖ about their mean m_i = (a_i + b_i)/2:
    NRMSE_i = √(((a_i − m_i)² + (b_i − m_i)²)/2) / |a_i − b_i| (Wang et al. normalise by the range
    max − min over the compared embeddings; for two it is |a_i − b_i|), with 0/0 = 0. For two values the
    RMSE is exactly |a_i − b_i|/2, so NRMSE_i = 1/2 whenever a_i ≠ b_i: the value is
    (1/2)·#{i : ‖x_i‖ ≠ ‖y_i‖}/N, evaluated exactly like that on the computed norms (ReSi's literal
    formula adds round-off: up to ~0.2 for an instance whose norms differ in the last digits). Range
    [0, 1/2]; 0 iff every instance keeps its norm. It is a step function: any pair of inputs whose
    instance norms all differ scores 1/2, and norms equal in exact arithmetic (an orthogonal map or a
    permutation of one side) can differ by round-off and count as different. The metadata's invariances
    are those of the default form. Rows are squared and summed in float64 as they are, or, where a
    square overflows or underflows, after one power-of-two rescaling common to both inputs (exact, so
    equal norms stay equal).
    """
    check_choice("magnitude_difference", "form", form, ("difference", "nrmse"))
    if form == "nrmse":
        return _nrmse_of_pairs(*_instance_norms("magnitude_difference", X, Y))
    magnitudes = [None, None]
    try:
        # Validation hands over CPU inputs as float64: ``.numpy()`` succeeds exactly for those without
        # autograd. One torch call per input instead of ``on_numpy``'s dozen attribute reads: with cold
        # caches each costs instruction-cache misses in libtorch (~25 µs together, a tenth of the measure).
        arrays = (X.numpy(), Y.numpy())
    except (RuntimeError, TypeError):  # autograd, or a GPU tensor
        arrays = None
    if arrays is not None:
        with np.errstate(over="ignore", invalid="ignore"):  # one context for both inputs
            magnitudes = [_magnitude_numpy(arrays[0]), _magnitude_numpy(arrays[1])]
    for i, (z, what) in enumerate(((X, "input 1"), (Y, "input 2"))):
        if magnitudes[i] is None:
            magnitudes[i] = _magnitude_scaled(z, what)
    difference = abs(magnitudes[0] - magnitudes[1])
    if not math.isfinite(difference):
        raise UndefinedMeasureError("magnitude_difference: a magnitude exceeds the floating-point range")
    return difference


def _nrmse_of_pairs(a: torch.Tensor, b: torch.Tensor) -> float:
    """(1/N) Σ_i √(((a_i − m_i)² + (b_i − m_i)²)/2) / |a_i − b_i| with m_i = (a_i + b_i)/2 and 0/0 = 0.

    The RMSE of two values about their mean is |a_i − b_i|/2 exactly, so each term is 1/2 where
    a_i ≠ b_i and 0 where they are equal: the mean is half the share of unequal pairs (no division, no
    round-off of the literal formula).
    """
    return 0.5 * float((a != b).sum()) / a.shape[0]


def _instance_norms(name: str, X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """‖x_i‖ and ‖y_i‖ for every row, with validation's finiteness check fused into the row squares
    (``checks_finite``). CPU inputs: one pass each (numpy row squares); where a square of a non-zero
    row overflows or underflows (or another device), the norms of both inputs divided by one common power
    of two (exact: equal norms stay equal)."""
    if on_numpy(X, Y):
        squares = [np.einsum("ij,ij->i", z.numpy(), z.numpy()) for z in (X, Y)]
        for z, sq, what in ((X, squares[0], "input 1"), (Y, squares[1], "input 2")):
            require_finite(name, z, what, float(sq.sum()))
        if all(sq.size == 0 or (sq.max() <= 1e300 and sq.min() >= 1e-280) for sq in squares):
            return torch.from_numpy(np.sqrt(squares[0])), torch.from_numpy(np.sqrt(squares[1]))
    else:
        require_finite(name, X, "input 1", float(X.sum()))
        require_finite(name, Y, "input 2", float(Y.sum()))
    scale = power_of_two_scale(X, Y)
    return torch.linalg.vector_norm(X / scale, dim=1), torch.linalg.vector_norm(Y / scale, dim=1)


def _concentricity(name: str, x: torch.Tensor, what: str) -> torch.Tensor:
    """c(x), with validation's finiteness check of ``x`` fused into the first pass (``checks_finite``)."""
    n, d = x.shape
    if not (on_numpy(x) and x.numel()):
        require_finite(name, x, what, float(x.sum()))
    else:
        a = x.numpy()
        # One pass over the input from memory: c = (1/N) Σ_i x_iᵀx̄ / (‖x_i‖ ‖x̄‖) = x̄ᵀ(Σ_i x_i / ‖x_i‖) / (N ‖x̄‖),
        # so each row block (~4 MiB, still cached for its own three passes) gives its row squares, its
        # column sums and its sum of rows over their norms (BLAS-kernel passes: from cache ~2x faster here
        # than einsum's and mean's loops). 5000x512: 2.7 ms against 4.0 ms for three whole-input passes.
        rows = max(1, (1 << 19) // d)
        sums, weighted = np.zeros(d, dtype=a.dtype), np.zeros(d, dtype=a.dtype)
        total, largest, smallest = 0.0, 0.0, math.inf
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for start in range(0, n, rows):
                block = a[start:start + rows]
                squares = np.matmul(block[:, None, :], block[:, :, None]).reshape(-1)
                total += float(squares.sum())
                largest, smallest = max(largest, float(squares.max())), min(smallest, float(squares.min()))
                sums += np.ones(len(block), dtype=a.dtype) @ block
                weighted += (1.0 / np.sqrt(squares)) @ block
        # a finite Σ‖x_i‖² proves every entry finite: validation's own pass (the first one over the
        # input, from memory) is saved
        require_finite(name, x, what, total)
        # max|x| from the row norms where they settle it (max_i ‖x_i‖² / D ≤ max|x|² ≤ max_i ‖x_i‖²):
        # two passes over the input fewer; the exact max/min only when the bounds straddle a limit.
        peak = None if 1e-200 * d < largest < 1e200 else float(max(a.max(), -a.min()))
        if peak is None or 1e-100 < peak < 1e100:
            # Inside this range no row norm or dot product overflows or underflows, so the scaled
            # route below (three N x D copies: rescaled input, rescaled rows, unit rows) reduces to
            # the sums above, no copy. (A row whose squares underflow, e.g. all entries ~1e-200, or a
            # zero row takes the scaled route instead.)
            if math.sqrt(smallest) > 1e-140:
                mean = sums / n
                mean_norm = float(np.linalg.norm(mean))
                # the scaled route's noise bound, in the input's units (its scale is 2^e, peak < 2^e);
                # √largest ≥ max|x| gives a bound at least as large, so the exact peak is needed only below it
                noise = math.sqrt(d) * n * torch.finfo(x.dtype).eps
                if mean_norm <= noise * 2.0 ** math.frexp(math.sqrt(largest) if peak is None else peak)[1]:
                    peak = float(max(a.max(), -a.min())) if peak is None else peak
                    if mean_norm <= noise * 2.0 ** math.frexp(peak)[1]:
                        raise UndefinedMeasureError(
                            f"{name}: the mean instance is zero (to rounding), its direction is undefined")
                return torch.tensor(float(mean @ weighted) / (mean_norm * n), dtype=x.dtype)
    return _instance_concentricities(name, x).mean()


def _instance_concentricities_numpy(x: torch.Tensor) -> torch.Tensor | None:
    """cos(x_i, x̄) for every row of a CPU float64 input in two passes over it: the column sums, then by
    row blocks of ~4 MiB (cached for both) each row's squared norm and its product with x̄. None where
    the scaled route must decide (a square outside [1e-280, 1e300]: zero rows, extreme magnitudes; a
    mean within 1e6 times that route's zero-mean noise bound, which uses max|x| ≤ max_i ‖x_i‖)."""
    if not (on_numpy(x) and x.dtype == torch.float64 and x.numel()):
        return None
    a = x.numpy()
    n, d = a.shape
    with np.errstate(over="ignore", invalid="ignore"):
        mean = column_sums(a)
        mean /= n
        rows = max(1, (1 << 19) // d)
        squares, dots = np.empty(n), np.empty(n)
        for start in range(0, n, rows):
            block = a[start:start + rows]
            squares[start:start + rows] = np.matmul(block[:, None, :], block[:, :, None]).reshape(-1)
            dots[start:start + rows] = block @ mean
    if not (squares.min() >= 1e-280 and squares.max() <= 1e300):
        return None
    mean_norm = float(np.linalg.norm(mean))
    noise = math.sqrt(d) * n * np.finfo(np.float64).eps * math.sqrt(float(squares.max()))
    if not mean_norm > 1e6 * noise:
        return None
    return torch.from_numpy(dots / (np.sqrt(squares) * mean_norm))


def _instance_concentricities(name: str, x: torch.Tensor) -> torch.Tensor:
    """cos(x_i, x̄) for every row (N values), after an exact power-of-two rescaling (cosines ignore it;
    it keeps the mean finite). Zero rows and a mean instance that is zero up to rounding raise."""
    n, d = x.shape
    scaled, _ = scale_to_unit(x)
    mean = scaled.mean(dim=0)
    # Summing N entries of magnitude ≤ 1 leaves a rounding error of up to about N·eps per column:
    # a mean instance no larger than that has no direction (e.g. column-centred inputs).
    noise = math.sqrt(d) * n * torch.finfo(x.dtype).eps
    if torch.linalg.vector_norm(mean) <= noise:
        raise UndefinedMeasureError(f"{name}: the mean instance is zero (to rounding), its direction is undefined")
    direction = mean / torch.linalg.vector_norm(mean)
    return mm(unit_rows(name, scaled), direction[:, None])[:, 0]


@register(
    "concentricity_difference",
    family="statistics",
    kind="distance",
    range=(0.0, 2.0),
    symmetric=True,
    invariances=("permutation", "orthogonal", "isotropic_scaling"),
    reference="Wang et al. Towards Understanding the Instability of Network Embedding. IEEE TKDE 2020",
    cost="O(N·D)",
    checks_finite=True,
)
def concentricity_difference(X: torch.Tensor, Y: torch.Tensor, *, form: str = "difference") -> torch.Tensor | float:
    """Absolute difference of the mean cosine similarity between each instance and the mean instance.

    Formula: D = |c(X) - c(Y)| with c(X) = (1/N) Σ_i cos(x_i, x̄). Range [0, 2] (each c lies in
    [-1, 1]); 0 means equal concentricity; symmetric; not a metric. Invariant to permutation,
    orthogonal maps and isotropic scaling; not to translation or invertible linear maps.
    Conventions: a zero row has no cosine and a mean instance that is zero up to rounding
    (‖x̄‖ ≤ √D·N·eps·max|x|, e.g. column-centred data) has no direction: both raise
    ``UndefinedMeasureError``.

    ``form="nrmse"``: ReSi's ``concentricity_nrmse``, the mean over instances of the normalised RMSE of
    the two per-instance concentricities α_i = cos(x_i, x̄), β_i = cos(y_i, ȳ) about their mean,
    NRMSE_i = √(((α_i − m_i)² + (β_i − m_i)²)/2) / |α_i − β_i| with m_i = (α_i + β_i)/2 and 0/0 = 0.
    As for ``magnitude_difference(form="nrmse")`` every term is 1/2 where α_i ≠ β_i and 0 where equal,
    so the value is (1/2)·#{i : α_i ≠ β_i}/N on the computed cosines: range [0, 1/2], a step function
    that scores 1/2 for any pair whose per-instance cosines all differ (round-off included). Same zero-row
    and zero-mean rules; O(N·D); the metadata's invariances are those of the default form.
    """
    name = "concentricity_difference"
    check_choice(name, "form", form, ("difference", "nrmse"))
    if form == "nrmse":
        values = []
        for z, what in ((X, "input 1"), (Y, "input 2")):
            cosines = _instance_concentricities_numpy(z)
            # a fast result proves every entry finite (its row squares are); else validation's own test
            if cosines is None:
                require_finite(name, z, what, float(z.sum()))
                cosines = _instance_concentricities(name, z)
            values.append(cosines)
        return _nrmse_of_pairs(*values)
    return (_concentricity(name, X, "input 1") - _concentricity(name, Y, "input 2")).abs()


def _log_uniformity(name: str, x: torch.Tensor, t: float, normalize: bool, include_diagonal: bool) -> torch.Tensor:
    # The exact power-of-two rescale keeps ‖a‖² + ‖b‖² - 2aᵀb finite (its factor 4^e moves into the
    # coefficient of d², which may overflow to inf); distances ignore translation, and centring keeps
    # that expansion accurate after large translations.
    z, before = scale_to_unit(unit_rows(name, x) if normalize else x)
    z, after = scale_to_unit(center_columns(z))
    exponent = before + after
    coefficient = torch.ldexp(torch.tensor(t, dtype=z.dtype, device=z.device), 2 * exponent)
    n = z.shape[0]
    pairs = n * n if include_diagonal else n * (n - 1)
    if on_numpy(z):
        value = torch.tensor(
            _log_sum_exp_numpy(z.numpy(), float(coefficient), include_diagonal) - math.log(pairs), dtype=z.dtype
        )
        if not torch.isfinite(value):
            raise UndefinedMeasureError(f"{name}: every pairwise term exp(-t·d²) is beyond the floating-point range")
        return value
    sq_norms = z.square().sum(dim=1)
    rows_per_block = max(1, BLOCK_ELEMENTS // n)
    block_lse = []
    for start in range(0, n, rows_per_block):
        block = z[start : start + rows_per_block]
        sq_dist = torch.addmm(sq_norms[start : start + block.shape[0], None] + sq_norms, block, z.T, alpha=-2.0)
        sq_dist.clamp_(min=0.0)
        # exp(-t·0) = 1 also where the coefficient overflowed (inf·0 would be NaN)
        exponent_values = torch.where(sq_dist > 0, -coefficient * sq_dist, 0.0)
        rows = torch.arange(block.shape[0], device=z.device)
        # Self-pairs: exp(0) = 1 exactly when included, left out (exp = 0) otherwise.
        exponent_values[rows, start + rows] = 0.0 if include_diagonal else -math.inf
        block_lse.append(torch.logsumexp(exponent_values, dim=1))
    value = torch.logsumexp(torch.cat(block_lse), dim=0) - math.log(pairs)
    if not torch.isfinite(value):
        raise UndefinedMeasureError(f"{name}: every pairwise term exp(-t·d²) is beyond the floating-point range")
    return value


def _log_sum_exp_numpy(z: np.ndarray, coefficient: float, include_diagonal: bool) -> float:
    """log Σ_ij exp(−coefficient·‖z_i − z_j‖²) with numpy (the torch loop above on the CPU; numpy's BLAS
    and ``exp`` are the faster ones on one thread).

    The sum is symmetric: each unordered pair i < j is computed once, by row blocks of ~32 MiB multiplied
    only with the rows after the block's first row (half the GEMM flops and half the ``exp`` calls of the
    full N x N matrix), counted twice, plus N·exp(0) for the diagonal when it is included. Every exponent
    −c·d²_ij is the same floating-point number as in the full-matrix loop; each block is stabilised by its
    largest exponent (terms that underflow against it are below 1e-300 of the block's sum).
    """
    n = z.shape[0]
    sq_norms = np.einsum("ij,ij->i", z, z)
    overflowed = math.isinf(coefficient)
    peaks, sums = [], []
    start = 0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        while start < n - 1:
            # At most N/8 rows per block, so the wasted lower triangle of each block stays small.
            rows = max(1, min(n - 1 - start, BLOCK_ELEMENTS // (n - start), -(-n // 8)))
            stop = start + rows
            values = z[start:stop] @ z[start + 1:].T  # row i of the block: pairs (i, j) for j > start
            values *= -2.0
            values += sq_norms[start:stop, None]
            values += sq_norms[start + 1:]
            np.maximum(values, 0.0, out=values)
            if overflowed:  # exp(-t·0) = 1 also where the coefficient overflowed (inf·0 would be NaN)
                values = np.where(values > 0, -math.inf, 0.0)
            else:
                values *= -coefficient
            values[:, :rows][np.tri(rows, rows, -1, dtype=bool)] = -math.inf  # pairs j <= i: not this block's
            peak = float(values.max())
            if not math.isfinite(peak):
                peak = 0.0
            values -= peak
            np.exp(values, out=values)
            peaks.append(peak)
            sums.append(float(values.sum()))
            start = stop
        peaks_a, sums_a = np.array(peaks), 2.0 * np.array(sums)
        if include_diagonal:  # exp(0) = 1 for each of the N self-pairs
            peaks_a, sums_a = np.append(peaks_a, 0.0), np.append(sums_a, float(n))
        if not peaks_a.size:
            return -math.inf
        top = peaks_a.max()
        return float(top + np.log(np.sum(sums_a * np.exp(peaks_a - top))))


@register(
    "uniformity_difference",
    family="statistics",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    invariances=("permutation", "orthogonal", "translation"),
    reference=(
        "Wang & Isola. Understanding Contrastive Representation Learning through Alignment and Uniformity "
        "on the Hypersphere. ICML 2020"
    ),
    cost="O(N²·D) in row blocks",
)
def uniformity_difference(
    X: torch.Tensor, Y: torch.Tensor, *, t: float = 2.0, normalize: bool = False, include_diagonal: bool = False
) -> torch.Tensor:
    """Absolute difference of the uniformity (log mean Gaussian potential over pairs) of the two representations.

    Formula: D = |u(X) - u(Y)| with u(X) = log((1/P) Σ_{(i,j)} exp(-t‖x_i - x_j‖²)) over the P = N(N-1)
    ordered pairs i ≠ j (``include_diagonal=False``) or all P = N² pairs (``include_diagonal=True``).
    Computed as logsumexp(-t·d²) - log P in row blocks, so large distances in high dimension never
    underflow to log(0). Range [0, ∞); 0 means equal uniformity; symmetric; not a metric.
    Invariances (defaults, raw features): permutation, orthogonal maps and translation; not isotropic
    scaling or invertible linear maps. With ``normalize=True`` (rows L2-normalised first, zero rows
    raise ``UndefinedMeasureError``) it is invariant to isotropic scaling but not to translation.
    Conventions: ``t`` = 2 (Wang & Isola) must be positive. Wang & Isola use L2-normalised features and
    distinct pairs; ReSi uses raw features and includes the i = j terms. The defaults keep ReSi's raw
    features (the invariances of the survey's table) but exclude i = j as Wang & Isola do: with the N
    self-terms exp(0) = 1, u(X) collapses to -log N for every representation once distances are large
    (high dimension, raw features), and the difference to 0 whatever the inputs.
    """
    if not (isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0):
        raise ValueError(f"measure 'uniformity_difference': t must be a positive finite number, got {t!r}")
    stats = [one_sided("uniformity", z, lambda z=z: _log_uniformity("uniformity_difference", z, float(t), normalize,
                                                                    include_diagonal),
                       t=float(t), normalize=normalize, include_diagonal=include_diagonal) for z in (X, Y)]
    return (stats[0] - stats[1]).abs()


def _two_nn(name: str, x: torch.Tensor, discard_fraction: float, method: str, duplicates: str) -> torch.Tensor:
    if duplicates == "collapse":
        x = torch.unique(x, dim=0)
    if x.shape[0] < 3:
        raise UndefinedMeasureError(f"{name}: TwoNN needs at least 3 distinct rows, got {x.shape[0]}")
    z = prepare_rows(name, x, "euclidean")
    # Exact distances from differences (duplicates at exactly 0), to the two nearest rows found by the
    # shared kNN search (self excluded by index).
    r1, r2 = pair_values(z, nearest_neighbours(z, 2, "euclidean"), squared_distance=True).sqrt().unbind(dim=1)
    has_ratio = r1 > 0  # r1 = 0 (an exact duplicate) leaves mu = r2/r1 undefined: such points are dropped
    log_mu = torch.log(r2[has_ratio] / r1[has_ratio]).sort().values
    n = log_mu.shape[0]
    n_keep = int(n * (1 - discard_fraction))
    if n_keep < 2:
        raise UndefinedMeasureError(f"{name}: fewer than 2 neighbour ratios left after discarding ({n} points)")
    log_mu = log_mu[:n_keep]
    if method == "mle":
        denominator = log_mu.sum() + (n - n_keep) * log_mu[-1]
        numerator = torch.tensor(float(n_keep - 1), dtype=log_mu.dtype, device=log_mu.device)
    else:
        if n_keep == n:
            raise ValueError(
                f"measure {name!r}: method='linear' needs discard_fraction large enough to drop at least one "
                f"ratio (the empirical CDF reaches 1 and -log(1 - F) is infinite), got {discard_fraction}"
            )
        cdf = torch.arange(1, n_keep + 1, dtype=log_mu.dtype, device=log_mu.device) / n
        # least-squares slope through the origin of -log(1 - F_emp(mu)) against log(mu)
        numerator, denominator = (log_mu * -torch.log1p(-cdf)).sum(), log_mu.square().sum()
    if denominator <= 0:
        raise UndefinedMeasureError(f"{name}: every kept ratio r2/r1 is 1, the TwoNN slope is undefined")
    return numerator / denominator


@register(
    "intrinsic_dimension_difference",
    family="statistics",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    invariances=("permutation", "orthogonal", "isotropic_scaling", "translation"),
    min_rows=3,
    reference=(
        "Facco, d'Errico, Rodriguez, Laio. Estimating the intrinsic dimension of datasets by a minimal "
        "neighborhood information. Sci. Rep. 2017 (TwoNN); Camastra & Staiano 2016 (survey)"
    ),
    cost="O(N²·D) chunked 2-NN search",
)
def intrinsic_dimension_difference(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    discard_fraction: float = 0.1,
    method: str = "linear",
    duplicates: str = "collapse",
) -> torch.Tensor:
    """Absolute difference of the TwoNN intrinsic-dimension estimates of the two representations.

    Formula: D = |d(X) - d(Y)|. TwoNN (Facco et al. 2017): with r1, r2 each point's Euclidean distances
    to its first and second nearest neighbours, mu = r2/r1 follows a Pareto(1, d) law. The n ratios are
    sorted and the largest fraction ``discard_fraction`` dropped, keeping n_keep = int(n·(1 -
    discard_fraction)). ``method="linear"`` (Facco et al.; skdim default): d = Σ x_i y_i / Σ x_i², the
    least-squares slope through the origin of y_i = -log(1 - i/n) against x_i = log mu_(i), i ≤ n_keep.
    ``method="mle"``: d = (n_keep - 1) / (Σ_{i≤n_keep} log mu_(i) + (n - n_keep) log mu_(n_keep)), the
    unbiased exponential-rate estimate under type-II censoring. Range [0, ∞); 0 means equal estimates;
    symmetric; not a metric. Invariant to permutation, orthogonal maps, isotropic scaling and
    translation (it sees only ratios of Euclidean distances); not to invertible linear maps.
    Duplicates: a point whose nearest neighbour is an exact duplicate (r1 = 0) has no ratio.
    ``duplicates="collapse"`` (default) first keeps one copy of each distinct row, so the estimate is
    that of the distinct support; ``duplicates="drop"`` keeps all rows and drops the points with r1 = 0
    from the fit, which is what ``skdim.id.TwoNN`` (scikit-dimension 0.5) does; the other points may
    then still have a duplicate pair as their two nearest neighbours (mu = 1). These, fewer than 3
    distinct rows or fewer than 2 kept ratios raise ``UndefinedMeasureError``.
    Elsewhere: skdim finds neighbours with ``pairwise_distances`` for D > 25, whose rounding may give
    duplicates a tiny non-zero distance; here distances come from exact differences.
    """
    name = "intrinsic_dimension_difference"
    if method not in ("linear", "mle"):
        raise ValueError(f"measure {name!r}: method must be 'linear' or 'mle', got {method!r}")
    if duplicates not in ("collapse", "drop"):
        raise ValueError(f"measure {name!r}: duplicates must be 'collapse' or 'drop', got {duplicates!r}")
    if not (isinstance(discard_fraction, (int, float)) and 0 <= discard_fraction < 1):
        raise ValueError(f"measure {name!r}: discard_fraction must lie in [0, 1), got {discard_fraction!r}")
    estimates = [one_sided("two_nn", z, lambda z=z: _two_nn(name, z, float(discard_fraction), method, duplicates),
                           discard_fraction=float(discard_fraction), method=method, duplicates=duplicates)
                 for z in (X, Y)]
    return (estimates[0] - estimates[1]).abs()
