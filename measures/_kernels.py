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
