"""Scaling of the O(N²) and O(N³) measures with N at fixed D: CPU time and peak memory (prints a table).

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        uv run python -m benchmarks.bench_scaling --sizes 1000,2000,4000,8000,16000 --dim 256

Each (measure, N) runs in a fresh child process (one thread, caches cold) so that its peak resident
memory (``ru_maxrss`` of the child, inputs and interpreter included) belongs to that call alone; the
time is the child's CPU time of the one call. The flop floor is N²·(D1 + D2) multiply-adds for the
N x N products of the two inputs divided by the GEMM rate measured in the same child on an N x D
by D x N product (``--floor``), so "time / floor" says how far a measure is from its BLAS bound. That
block is a copy: for N ≤ 2048 it used to be all of x, and numpy runs x @ x.T as a symmetric rank-k
update (half the flops), which doubled the apparent GEMM rate and halved the floor there.
``--calls 2`` times a second cold call in the same child (caches cleared again): this VM pays heavily
for the first touch of new memory, which a long-running sweep process pays once.

Measures whose cost is sorting the N(N−1)/2 entries of each input's RDM (``SORTS``: ``rsa``'s ranks) get
a second floor, GEMM plus those sorts: ``np.sort`` of N(N−1)/2 uniform doubles in place, timed in the same
child after the calls (on an array already touched, best of two), once per input.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

#: Sorts of N(N−1)/2 entries a measure needs (one per input), beyond its GEMM: the second floor.
SORTS = {"rsa": 2}

DEFAULT_MEASURES = ("distance_correlation", "rsm_norm_difference", "cka_rbf", "rsa", "uniformity_difference",
                    "knn_jaccard", "second_order_cosine", "cknna", "riemannian_distance")

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
import measures
name, n, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
x = rng.standard_normal((n, d))
y = 0.3 * x @ (rng.standard_normal((d, d)) / np.sqrt(d)) + rng.standard_normal((n, d))
block = x[: min(n, (1 << 22) // n)].copy()  # a copy: x[:n] @ x.T would run as a SYRK (half the flops)
gemm = 0.0
for _ in range(3):
    t0 = time.process_time(); block @ x.T; gemm = max(gemm, 2.0 * block.shape[0] * n * d / (time.process_time() - t0))
X, Y = torch.from_numpy(x), torch.from_numpy(y)
try:  # imports every measure module: not the call's time
    measures.compute(name, X[:64].clone(), Y[:64].clone())
except measures.UndefinedMeasureError:  # e.g. eigenspace_overlap: D >= N on the 64-row warm-up
    pass
from measures import _memo, cca
seconds = []
for _ in range(int(sys.argv[4])):  # every call cold (caches cleared); later calls reuse the process's memory
    _memo.clear(); cca._SVD_CACHE.clear()
    t0 = time.process_time()
    value = measures.compute(name, X, Y)
    seconds.append(time.process_time() - t0)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sort = 0.0
if int(sys.argv[5]):  # the sort floor, after the calls and their peak (its array would lend the calls touched memory)
    _memo.clear()
    entries = np.empty(n * (n - 1) // 2)
    times = []
    for _ in range(2):
        rng.random(out=entries)
        t0 = time.process_time()
        entries.sort()
        times.append(time.process_time() - t0)
    sort = min(times)
print(json.dumps({"seconds": seconds, "value": value, "gemm": gemm, "sort": sort, "peak_mb": peak_mb}))
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000,4000,8000,16000")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--measures", default=",".join(DEFAULT_MEASURES))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per (measure, N) before giving up")
    parser.add_argument("--calls", type=int, default=1,
                        help="cold calls per process (2: the second call shows the time without this VM's first "
                             "touch of new memory; cells then read first / second)")
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",")]
    print(f"D = {args.dim}; CPU time of one call (s) / peak resident memory of the process (MB) / time over the "
          "flop floor 2·N²·(D1 + D2) / GEMM rate (for " + ", ".join(SORTS) + " also over GEMM + np.sort of the RDMs' "
          "N(N−1)/2 entries, once per input)\n")
    print("| measure | " + " | ".join(f"N = {n}" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name in args.measures.split(","):
        cells = []
        for n in sizes:
            try:
                out = subprocess.run([sys.executable, "-c", CHILD, name, str(n), str(args.dim), str(args.calls),
                                      str(SORTS.get(name, 0))],
                                     capture_output=True, text=True, timeout=args.timeout, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                floor = 2.0 * n * n * 2 * args.dim / r["gemm"]
                times = " / ".join(f"{t:.2f}" for t in r["seconds"])
                ratios = " / ".join(f"{t / floor:.1f}" for t in r["seconds"])
                sorted_floor = floor + SORTS.get(name, 0) * r["sort"]
                with_sorts = (" (GEMM + sorts: " + " / ".join(f"{t / sorted_floor:.1f}" for t in r["seconds"]) + "x)"
                              if name in SORTS else "")
                cells.append(f"{times} s / {r['peak_mb']:.0f} MB / {ratios}x{with_sorts}")
            except subprocess.TimeoutExpired:
                cells.append(f"> {args.timeout:.0f} s")
            except subprocess.CalledProcessError as exc:
                cells.append(f"failed: {exc.stderr.strip().splitlines()[-1][:60]}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
