"""Read rates of one thread for the one-pass kernels of the cheap measures (prints a table).

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        uv run python -m benchmarks.bench_memory --sizes 2000x256,5000x512

The cheapest measures read their inputs once (``disagreement``: two ``argmax``; ``magnitude_difference``:
two column sums), so their floor is the rate at which one thread reads an array, and that rate depends on
the kernel and on the machine more than the arithmetic does (BENCHMARKS.md, "Against ReSi, twelfth
session"). For each N x D float64 input this times, in CPU time, the minimum over ``--repeats`` calls:

- ``sum``: ``np.add.reduce`` of the raveled array (one flat pass);
- ``argmax(axis=1)``: numpy's row argmax, as ``disagreement`` and ReSi's ``Disagreement`` use it;
- ``column_sums``: ``measures._kernels.column_sums``, the column sums of ``magnitude_difference``;
- ``sum(axis=0)``: numpy's own column sums;
- ``GEMV 1ᵀX``: the same column sums by OpenBLAS's matrix-vector product.

"from memory": before each call a scratch buffer of ``--evict-cache-mb`` is written (as in
``bench_peers``: twice the last-level cache by default), so the input comes from main memory. "from
cache": the same call right after another call on the same array; for an input smaller than the
last-level cache that is a read from it (from the L2 for the smallest). The rate is the input's bytes
over the time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

# First: bench_peers pins the BLAS and OpenMP pools to one thread before numpy loads.
from benchmarks.bench_peers import evict_cpu_caches, eviction_mb

import numpy as np  # noqa: E402

from measures._kernels import column_sums  # noqa: E402


def kernels(a: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
    """The one-pass kernels timed, each a call on ``a`` (see the module's docstring)."""
    ones = np.ones(a.shape[0])
    flat = a.reshape(-1)
    return {
        "sum": lambda: np.add.reduce(flat),
        "argmax(axis=1)": lambda: a.argmax(axis=1),
        "column_sums": lambda: column_sums(a),
        "sum(axis=0)": lambda: a.sum(axis=0),
        "GEMV 1ᵀX": lambda: ones @ a,
    }


def timed(call: Callable[[], object], evict_mb: int) -> float:
    """CPU time of one call after a cache flush of ``evict_mb`` (0: none, so the array is still in the
    caches from the call before)."""
    evict_cpu_caches(evict_mb)
    start = time.process_time()
    call()
    return time.process_time() - start


def table(sizes: list[tuple[int, int]], repeats: int, evict_mb: int) -> list[str]:
    """The Markdown table: one row per (size, kernel), µs and GB/s from memory and from cache."""
    rows = ["| input | kernel | from memory: µs (GB/s) | from cache: µs (GB/s) |", "|---|---|---|---|"]
    rng = np.random.default_rng(0)
    for n, d in sizes:
        a = rng.standard_normal((n, d))
        for name, call in kernels(a).items():
            call()  # first touch of the kernel's code and of any result buffer
            cold = warm = float("inf")
            for _ in range(repeats):  # interleaved: each cold call is followed by a warm one
                cold = min(cold, timed(call, evict_mb))
                warm = min(warm, timed(call, 0))
            cells = [f"{t * 1e6:.0f} ({a.nbytes / t / 1e9:.1f})" if t > 0 else "—" for t in (cold, warm)]
            rows.append(f"| {n}x{d} ({a.nbytes / 2**20:.0f} MiB) | {name} | {cells[0]} | {cells[1]} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000x256,5000x512", help="comma-separated NxD")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--evict-cache-mb", type=int, default=None,
                        help="MiB of scratch written before each 'from memory' call (default: twice the "
                             "last-level cache, at least 64)")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    evict_mb = eviction_mb(args.evict_cache_mb)
    print(f"One thread, CPU time, minimum of {args.repeats} calls; {evict_mb} MiB written before each "
          "'from memory' call\n")
    print("\n".join(table(sizes, args.repeats, evict_mb)))


if __name__ == "__main__":
    main()
