"""numpy/scipy against torch for the CPU kernels the measures run, on this machine: a table to choose from.

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        uv run python -m benchmarks.bench_backends --sizes 2000x256,5000x512 --repeats 5

``measures/_kernels.py`` runs numpy (OpenBLAS in numpy's wheel, LAPACK through scipy) on zero-copy views of CPU
tensors, and torch (MKL in its x86 wheels) elsewhere; which is faster depends on the CPU (BENCHMARKS.md, "Kernels
since issue 15: which backend runs the CPU path", measured on AMD EPYC machines). This script times both backends
for each operation on the same float64 inputs, one thread each (torch's and numpy's BLAS pools limited through
``torch.set_num_threads`` and threadpoolctl), CPU time, interleaved (each round times every operation on both
backends, alternating which goes first), minimum over ``--repeats`` rounds, and checks that both backends give
the same result (relative tolerance 1e-8, up to sign for singular vectors and factors) before timing it.
A row whose results differ is printed with "differs" and no ratio.

Operations (N x D inputs X, Y; a D x D matrix M = XᵀY / N and a positive definite G = XᵀX / N + I):
XᵀY, XᵀX, XXᵀ (GEMM, SYRK); eigvalsh(G), eigh(G), svd(M) with and without vectors, cholesky(G) (D x D
LAPACK); thin SVD and QR of X (N x D LAPACK); sort and argsort of the N(N−1)/2 entries of one RDM's upper
triangle; k-th smallest of those (the RBF median); argmax of each row of X; column norms of X; the finiteness
check of X; the 10 smallest of each row of an N x N distance block.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Callable
from dataclasses import dataclass

# First: bench_peers pins the BLAS and OpenMP pools to one thread before numpy loads.
from benchmarks.bench_peers import inputs
from benchmarks.bench_memory import timed

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


@dataclass(frozen=True)
class Operation:
    name: str
    numpy: Callable[[], object]
    torch: Callable[[], object]
    #: maps a backend's result to a numpy array (or tuple of arrays) for the value check
    canonical: Callable[[object], object] = lambda r: r


def _arrays(result: object) -> object:
    if isinstance(result, torch.Tensor):
        return result.numpy()
    if isinstance(result, (tuple, list)):
        return tuple(_arrays(r) for r in result)
    return np.asarray(result)


def _column_signs(columns: np.ndarray) -> np.ndarray:
    """The sign of each column's largest-magnitude entry (1 for a zero column): SVD and eigh factors are
    unique only up to the sign of each column, and dividing by these fixes it."""
    rows = np.abs(columns).argmax(axis=0)
    signs = np.sign(columns[rows, np.arange(columns.shape[1])])
    signs[signs == 0] = 1.0
    return signs


def _agree(a: object, b: object) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_agree(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-300)
    return bool(np.abs(a - b).max(initial=0.0) <= 1e-8 * scale)


def operations(n: int, d: int, seed: int = 0) -> list[Operation]:
    """The operations at (n, d), on inputs drawn once (``bench_peers``'s; the same arrays for both backends)."""
    x, y = inputs(n, d, seed)
    m = x.T @ y / n
    g = x.T @ x / n + np.eye(d)
    squares = np.einsum("ij,ij->i", x, x)
    rdm = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2.0 * (x @ x.T), 0.0))
    np.fill_diagonal(rdm, 0.0)  # the Gram route leaves ~1e-8 of round-off there
    entries = np.ascontiguousarray(rdm[np.triu_indices(n, 1)])
    block = np.ascontiguousarray(rdm[: min(n, 1024)])
    half = entries.size // 2
    tx, ty, tm, tg = (torch.from_numpy(a) for a in (x, y, m, g))
    tentries, tblock = torch.from_numpy(entries), torch.from_numpy(block)

    def svd_canonical(r: object) -> tuple:
        u, s, vh = _arrays(r)
        signs = _column_signs(u)  # u and vᵀ share one sign per singular pair
        return u * signs, s, vh * signs[:, None]

    def eigh_canonical(r: object) -> tuple:
        w, v = _arrays(r)
        return w, v * _column_signs(v)

    def qr_canonical(r: object) -> tuple:
        q, r_ = _arrays(r)
        signs = np.sign(np.diag(r_))
        signs[signs == 0] = 1.0
        return q * signs, r_ * signs[:, None]

    return [
        Operation("XᵀY (GEMM)", lambda: x.T @ y, lambda: tx.T @ ty),
        Operation("XᵀX (SYRK)", lambda: x.T @ x, lambda: tx.T @ tx),
        Operation("XXᵀ", lambda: x @ x.T, lambda: tx @ tx.T),
        Operation("eigvalsh, D x D", lambda: scipy.linalg.eigvalsh(g, check_finite=False),
                  lambda: torch.linalg.eigvalsh(tg)),
        Operation("eigh, D x D", lambda: scipy.linalg.eigh(g, check_finite=False), lambda: torch.linalg.eigh(tg),
                  eigh_canonical),
        Operation("svd with vectors, D x D", lambda: scipy.linalg.svd(m, full_matrices=False, check_finite=False),
                  lambda: torch.linalg.svd(tm, full_matrices=False), svd_canonical),
        Operation("singular values, D x D", lambda: scipy.linalg.svdvals(m, check_finite=False),
                  lambda: torch.linalg.svdvals(tm)),
        Operation("cholesky, D x D", lambda: scipy.linalg.cholesky(g, lower=True, check_finite=False),
                  lambda: torch.linalg.cholesky(tg)),
        Operation("thin SVD, N x D", lambda: scipy.linalg.svd(x, full_matrices=False, check_finite=False),
                  lambda: torch.linalg.svd(tx, full_matrices=False), svd_canonical),
        Operation("thin QR, N x D", lambda: scipy.linalg.qr(x, mode="economic", check_finite=False),
                  lambda: torch.linalg.qr(tx), qr_canonical),
        Operation("sort, N(N−1)/2 entries", lambda: np.sort(entries), lambda: torch.sort(tentries).values),
        Operation("argsort, N(N−1)/2 entries", lambda: np.argsort(entries, kind="stable"),
                  lambda: torch.sort(tentries, stable=True).indices),
        Operation("k-th smallest, N(N−1)/2 entries", lambda: np.partition(entries, half)[half],
                  lambda: torch.kthvalue(tentries, half + 1).values),
        Operation("argmax of each row", lambda: x.argmax(axis=1), lambda: tx.argmax(dim=1)),
        Operation("column norms", lambda: np.sqrt(np.einsum("ij,ij->j", x, x)),
                  lambda: torch.linalg.vector_norm(tx, dim=0)),
        Operation("all finite", lambda: bool(np.isfinite(x).all()), lambda: bool(torch.isfinite(tx).all())),
        # np.argpartition leaves the k smallest unordered: compare the sorted distances
        Operation("10 smallest of each row, block x N",
                  lambda: np.sort(np.take_along_axis(block, np.argpartition(block, 10, axis=1)[:, :10], 1), axis=1),
                  lambda: torch.topk(tblock, 10, dim=1, largest=False, sorted=True).values),
    ]


def run(sizes: list[tuple[int, int]], repeats: int, only: set[str] | None = None) -> list[dict]:
    """One row per (size, operation): the best CPU seconds of each backend and whether the results agree."""
    torch.set_num_threads(1)
    rows = []
    with threadpool_limits(1):
        for n, d in sizes:
            ops = [op for op in operations(n, d) if only is None or op.name in only]
            agree = {op.name: _agree(op.canonical(_arrays(op.numpy())), op.canonical(_arrays(op.torch())))
                     for op in ops}  # also the untimed first call of each
            best = {(op.name, side): float("inf") for op in ops for side in ("numpy", "torch")}
            gc.disable()
            try:
                for round_ in range(repeats):
                    for op in ops:
                        sides = (("numpy", op.numpy), ("torch", op.torch))
                        for side, call in sides if round_ % 2 == 0 else sides[::-1]:
                            best[op.name, side] = min(best[op.name, side], timed(call, 0))
            finally:
                gc.enable()
            rows += [{"size": f"{n}x{d}", "operation": op.name, "numpy_s": best[op.name, "numpy"],
                      "torch_s": best[op.name, "torch"], "agree": agree[op.name]} for op in ops]
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| (N, D) | operation | numpy / scipy (ms) | torch (ms) | torch / numpy |", "|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['torch_s'] / r['numpy_s']:.2f}" if r["agree"] and r["numpy_s"] > 0 else "differs"
        times = f"{r['numpy_s'] * 1e3:.3g} | {r['torch_s'] * 1e3:.3g}"
        lines.append(f"| {r['size']} | {r['operation']} | {times} | {ratio} |")
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    n, d = text.lower().split("x")
    return int(n), int(d)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000x256,5000x512", help="comma-separated NxD (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the minimum is kept")
    args = parser.parse_args(argv)
    sizes = [_size(s) for s in args.sizes.split(",")]
    print(f"torch {torch.__version__} ({'MKL' if torch.backends.mkl.is_available() else 'no MKL'}), numpy "
          f"{np.__version__}, scipy {scipy.__version__}; one thread, CPU time, minimum of {args.repeats} rounds")
    print(table(run(sizes, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
