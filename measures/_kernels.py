"""CPU kernels through numpy for the hot operations of the measures; other devices stay in torch.

Measured on the project's 2-core development machine (one thread, float64; BENCHMARKS.md, "Which
backend runs the CPU path"): torch's bundled BLAS runs a GEMM at about half the rate of numpy's
OpenBLAS (XᵀX at 2000x256: 7.0 ms vs 3.5 ms; XXᵀ at 5000x512: 0.64 s vs 0.29 s), and
``vector_norm(dim=0)`` (9x), ``isfinite().all()`` (10x), ``exp`` and selection
(``topk``/``kthvalue`` vs ``np.argpartition``) are also slower in torch there. Every function here
takes and returns torch tensors: for a CPU tensor without autograd it runs numpy on a zero-copy view
(``Tensor.numpy()`` shares memory, also for transposed views), otherwise the torch operation, so CUDA
inputs keep running on the GPU. The results agree with torch's to round-off (≈1e-15 relative).
"""

from __future__ import annotations

import numpy as np
import torch
from threadpoolctl import threadpool_limits

_blas_threads: int | None = None


def _follow_torch_threads() -> None:
    """Give numpy's BLAS as many threads as torch has (``torch.set_num_threads``, the runner's
    ``runtime.num_threads``): by default OpenBLAS starts one per core, which oversubscribes the CPU
    when jobs run side by side, and its spinning threads then cost more CPU time than they save."""
    global _blas_threads
    n = torch.get_num_threads()
    if n != _blas_threads:
        threadpool_limits(n, user_api="blas")
        _blas_threads = n


def on_numpy(*tensors: torch.Tensor) -> bool:
    """True when every tensor is a CPU tensor numpy can view without a copy (no autograd, same dtype).

    Callers that answer True run numpy kernels next, so numpy's BLAS threads are matched to torch's here.
    """
    first = tensors[0]
    ok = all(t.device.type == "cpu" and not t.requires_grad and t.dtype == first.dtype for t in tensors) and (
        first.dtype in (torch.float64, torch.float32)
    )
    if ok:
        _follow_torch_threads()
    return ok


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` (numpy's BLAS on the CPU)."""
    if on_numpy(a, b):
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return a @ b


def gram(x: torch.Tensor) -> torch.Tensor:
    """``x @ x.T`` (numpy's BLAS on the CPU)."""
    return mm(x, x.T)


def col_norms(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of every column (``vector_norm(x, dim=0)``)."""
    if on_numpy(x):
        a = x.numpy()
        return torch.from_numpy(np.sqrt(np.einsum("ij,ij->j", a, a)))  # no squared N x D temporary
    return torch.linalg.vector_norm(x, dim=0)


def all_finite(x: torch.Tensor) -> bool:
    """``bool(torch.isfinite(x).all())``."""
    if x.device.type == "cpu" and not x.requires_grad and x.is_floating_point() and x.dtype != torch.bfloat16 and (
        x.dtype != torch.float16
    ):
        a = x.numpy()
        # One pass without a temporary: NaN and ±Inf propagate through a sum. A sum that overflows
        # although every entry is finite is settled by the exact elementwise test.
        with np.errstate(over="ignore", invalid="ignore"):
            return bool(np.isfinite(np.sum(a))) or bool(np.isfinite(a).all())
    return bool(torch.isfinite(x).all())


def centred_moments(x: torch.Tensor, limit: float = 1e100) -> tuple[np.ndarray, np.ndarray] | None:
    """Column means x̄ and centred squared norms ‖x_j − x̄_j‖² of a CPU float64 tensor, without a centred copy.

    Why: a centred N x D copy costs more than its arithmetic (on this machine a fresh 4 MiB array is
    ~2-3 ms of page faults at 2000x256, half a GEMM), so centred products are formed as rank-one
    corrections of the raw ones (``centred_cross``). The variance ‖x_j‖² − N x̄_j² cancels when a
    column's mean dominates its spread; this returns None (the caller makes centred copies) unless every
    column has ‖x_j‖² ≤ 16·(its centred squared norm) (|mean| ≤ ~4 standard deviations, so round-off
    stays within 16 eps of the centred route's) or is all zero, and every non-zero column's sum of
    squares lies in (1/limit², limit²) (no overflow or underflow of the squares; callers that square
    products of squares pass a smaller limit). A non-zero constant column never qualifies; an all-zero
    input returns None.
    """
    if not (on_numpy(x) and x.dtype == torch.float64 and x.numel()):
        return None
    a = x.numpy()
    # The magnitude test reads the column squares instead of max |x| (two passes fewer over the input):
    # a column whose squares sum to less than limit² has every entry below limit; one above 1/limit² has
    # its leading entries above 1/(limit·√N), far from underflow.
    squares = np.einsum("ij,ij->j", a, a)
    nonzero = squares[squares != 0.0]
    if not (nonzero.size and nonzero.max() < limit * limit and nonzero.min() > 1.0 / (limit * limit)):
        return None
    mean = a.mean(axis=0)
    centred_squares = squares - a.shape[0] * mean * mean
    if not ((squares <= 16.0 * centred_squares) | (squares == 0.0)).all():
        return None
    return mean, centred_squares


def centred_cross(x: torch.Tensor, y: torch.Tensor, mean_x: np.ndarray, mean_y: np.ndarray) -> np.ndarray:
    """X̃ᵀỸ = XᵀY − N x̄ȳᵀ from the raw inputs (means from ``centred_moments``, whose guard bounds the
    cancellation); one GEMM (a SYRK when ``x is y``) and a rank-one update, no centred copies."""
    a, b = x.numpy(), y.numpy()
    cross = a.T @ b
    cross -= a.shape[0] * np.outer(mean_x, mean_y)
    return cross


def centred_products(x: torch.Tensor, y: torch.Tensor, limit: float = 1e50) -> (
        tuple[np.ndarray, np.ndarray, np.ndarray, float, float] | None):
    """(X̃ᵀX̃, ỸᵀỸ, X̃ᵀỸ, ‖X̃‖², ‖Ỹ‖²) of column-centred inputs by rank-one corrections of the raw
    products (two SYRKs and a GEMM, no centred copies), or None where ``centred_moments`` refuses one
    of the inputs (magnitudes outside [1/limit, limit]; the default keeps Cholesky factors, solves and
    squares of these D x D products clear of overflow and underflow)."""
    moments_x, moments_y = centred_moments(x, limit), centred_moments(y, limit)
    if moments_x is None or moments_y is None:
        return None
    (mean_x, squares_x), (mean_y, squares_y) = moments_x, moments_y
    return (centred_cross(x, x, mean_x, mean_x), centred_cross(y, y, mean_y, mean_y),
            centred_cross(x, y, mean_x, mean_y), float(squares_x.sum()), float(squares_y.sum()))


def column_sums(a: np.ndarray) -> np.ndarray:
    """Σ_i a_ij of a 2-D numpy array (a fresh vector), by a reduction whose inner loop spans ~1024 entries.

    Why not ``a.sum(axis=0)``: numpy adds one row of D entries at a time, and for D of a few hundred its
    per-row loop overhead, not memory, bounds the pass (2000x256: 138 µs with cold caches, 134 µs warm).
    Viewing k = 1024 // D consecutive rows as one row of k·D entries (a free reshape of a C-contiguous
    array) and folding the k partial sums at the end runs the same pass in 78 µs (5000x512, k = 2: 381
    against 561 µs). Same additions in another order: round-off of the same size (≈ N·eps relative).
    """
    n, d = a.shape
    k = min(n, 1024 // d) if a.flags.c_contiguous else 1
    if k <= 1:
        return np.add.reduce(a, axis=0)
    m = n - n % k
    sums = np.add.reduce(np.add.reduce(a[:m].reshape(m // k, k * d), axis=0).reshape(k, d), axis=0)
    if m < n:
        sums += np.add.reduce(a[m:], axis=0)
    return sums
