"""Cost of exact vs MinHash Jaccard for the activation-region metric, and where MinHash starts to pay.

Usage::

    uv run python -m benchmarks.bench_activation_region            # full grid (minutes)
    uv run python -m benchmarks.bench_activation_region --quick    # small grid, < 30 s
    uv run python -m benchmarks.bench_activation_region --threads 8 --repeats 3

One cell compares two random networks' layers of n units on N probe samples (activity rates uniform in
[0.1, 0.9]) and times, as the median of ``--repeats`` calls after one warm-up:

- ``exact``: all n x n Jaccards by one GEMM (``jaccard_exact``), on the CPU and, when
  ``torch.cuda.is_available()``, on the GPU;
- ``sketch``: the vectorised MinHash sketches of both layers with k permutations (``minhash_sketch``,
  torch backend, CPU; and GPU when available), and ``compare``: Ĵ for all pairs from the sketches
  (``jaccard_minhash``); ``minhash`` = sketch + compare (fresh sketches, one pair of networks);
- ``datasketch``: the same sketches with datasketch (Python loop over units; only where n·N is small);
- ``lsa``: the Hungarian matching of the n x n matrix, for scale (it is the same for both routes).

``exact`` and ``lsa`` do not depend on k and are timed once per (n, N).

Crossovers: for each (n, k), the smallest N of the grid where MinHash beats the exact GEMM, with fresh
sketches (one comparison) and with cached sketches (a zoo of M models sketches each once and pays only
``compare`` per pair), plus the N where straight-line fits of both costs in N cross.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from measures.activation_region import jaccard_exact, jaccard_minhash, minhash_sketch

FULL = {"n": (32, 512, 2048), "N": (1024, 16384, 65536), "k": (64, 128, 512)}
QUICK = {"n": (32, 256), "N": (1024, 8192), "k": (64, 128)}
#: datasketch hashes every active (unit, sample) in Python: only time it below this many bits.
DATASKETCH_MAX_BITS = 2**20


def timed(fn: Callable[[], object], repeats: int, device: str) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call (synchronising CUDA)."""
    times = []
    for i in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def random_signatures(n_units: int, n_samples: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((n_samples, n_units)) < rng.uniform(0.1, 0.9, n_units))


def cells(n: int, n_samples: int, ks: tuple[int, ...], devices: list[str], repeats: int) -> list[dict[str, float]]:
    """One row per k for two random n-unit layers on N samples (exact and LSA timed once, they ignore k)."""
    sig_a, sig_b = random_signatures(n, n_samples, 0), random_signatures(n, n_samples, 1)
    common: dict[str, float] = {}
    for device in devices:
        a, b = sig_a.to(device), sig_b.to(device)
        common[f"exact_{device}"] = timed(lambda: jaccard_exact(a, b), repeats, device)
    sim = jaccard_exact(sig_a, sig_b).numpy()
    common["lsa"] = timed(lambda: linear_sum_assignment(sim, maximize=True), repeats, "cpu")
    rows = []
    for k in ks:
        row = {"n": n, "N": n_samples, "k": k, **common}
        for device in devices:
            a, b = sig_a.to(device), sig_b.to(device)
            row[f"sketch_{device}"] = timed(
                lambda: (minhash_sketch(a, num_perm=k), minhash_sketch(b, num_perm=k)), repeats, device
            )
            ska, skb = minhash_sketch(a, num_perm=k), minhash_sketch(b, num_perm=k)
            row[f"compare_{device}"] = timed(lambda: jaccard_minhash(ska, skb), repeats, device)
            row[f"minhash_{device}"] = row[f"sketch_{device}"] + row[f"compare_{device}"]
        row["datasketch"] = float("nan")
        if n * n_samples <= DATASKETCH_MAX_BITS:
            row["datasketch"] = timed(
                lambda: (minhash_sketch(sig_a, num_perm=k, backend="datasketch"),
                         minhash_sketch(sig_b, num_perm=k, backend="datasketch")),
                max(1, repeats // 2), "cpu",
            )
        rows.append(row)
    return rows


def crossover(rows: list[dict[str, float]], cost: str) -> tuple[str, str]:
    """(smallest grid N where ``cost`` < exact on the CPU, N where linear fits in N cross)."""
    rows = sorted(rows, key=lambda r: r["N"])
    observed = next((f"{r['N']:.0f}" for r in rows if r[cost] < r["exact_cpu"]), "none in grid")
    if len(rows) < 2:
        return observed, "—"
    n_values = np.array([r["N"] for r in rows], dtype=float)
    slope_e, icpt_e = np.polyfit(n_values, [r["exact_cpu"] for r in rows], 1)
    slope_m, icpt_m = np.polyfit(n_values, [r[cost] for r in rows], 1)
    if slope_e <= slope_m:
        fitted = "never (MinHash cost grows as fast in N)"
    else:
        fitted = f"{max(0.0, (icpt_m - icpt_e) / (slope_e - slope_m)):.3g}"
    return observed, fitted


def fmt(x: float) -> str:
    return "—" if not np.isfinite(x) else (f"{x:.4f}" if x < 10 else f"{x:.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid that finishes in < 30 s")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per cell (default 3, quick 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    grid = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 3)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, threads={args.threads}, devices={devices}, repeats={repeats}, "
          f"grid={grid}\n")

    columns = ["n", "N", "k"]
    for device in devices:
        columns += [f"exact_{device}", f"sketch_{device}", f"compare_{device}", f"minhash_{device}"]
    columns += ["datasketch", "lsa"]
    print("| " + " | ".join(c + ("" if c in ("n", "N", "k") else " (s)") for c in columns) + " |")
    print("|" + "---|" * len(columns))
    rows = []
    for n in grid["n"]:
        for n_samples in grid["N"]:
            for row in cells(n, n_samples, grid["k"], devices, repeats):
                rows.append(row)
                print("| " + " | ".join(
                    f"{row[c]:.0f}" if c in ("n", "N", "k") else fmt(row[c]) for c in columns) + " |", flush=True)

    print("\nWhere MinHash beats the exact GEMM (CPU), per (n, k): first N of the grid / linear-fit crossover")
    print("\n| n | k | fresh sketches | fitted | cached sketches (zoo) | fitted |")
    print("|---|---|---|---|---|---|")
    for n in grid["n"]:
        for k in grid["k"]:
            group = [r for r in rows if r["n"] == n and r["k"] == k]
            fresh, cached = crossover(group, "minhash_cpu"), crossover(group, "compare_cpu")
            print(f"| {n} | {k} | {fresh[0]} | {fresh[1]} | {cached[0]} | {cached[1]} |")


if __name__ == "__main__":
    main()
