"""Time every measure that a peer library computes with the same definition, side by side (prints a table).

Usage (peers live outside the repository; each is skipped when its path is not given)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE uv run python -m benchmarks.bench_peers \\
        --resi /work/peers/resi --netrep /work/peers/netrep --platonic /work/peers/platonic \\
        --extra-path /work/peers/site

``--resi``: a checkout of github.com/mklabunde/resi (its ``repsim`` package; needs ``loguru`` and
``einops``, which ``--extra-path`` may provide); ``--netrep``: github.com/ahwillia/netrep;
``--platonic``: github.com/minyoungg/platonic-rep (its ``metrics.py``; torchaudio is stubbed, it is only
imported there). POT, rsatoolbox and dcor are the project's own (dev) dependencies.

Inputs: X ~ N(0, 1) (N x D, float64), Y = 0.3·X·W + E with W, E ~ N(0, 1) (W scaled by 1/√D).
Every time is CPU time of this process (``time.process_time``) with one thread everywhere (torch,
OpenBLAS/MKL through threadpoolctl, sklearn ``n_jobs=1``), the minimum over ``--repeats`` rounds; the
rounds interleave all implementations (round r times every implementation once before round r + 1).

- **ours cold**: every cache cleared before the call (the per-input memo of ``measures._memo`` and the
  thin-SVD cache of ``measures.cca``) and the CPU caches flushed (``--evict-cache-mb`` of scratch
  written; the peers' calls get the same flush): the cost of a pair seen for the first time.
- **ours warm**: one input against many partners, as in a sweep: X was seen before (its one-sided work
  is cached), the partner is a fresh Y' every call.
- an implementation under 10 ms in round 1 is timed ``--short-calls`` times per later round (each call
  after its own flush), ours and the peers' alike: sub-millisecond calls move by ±100 % with the load.
- every implementation is called once untimed on 64 x 8 inputs first (one-time import and setup costs).
- odd rounds time the peers before ours (see the loop: code left warm in the instruction cache
  favours whoever runs right after the other side's call of the same measure).
- a peer slower than ``--max-peer-seconds`` in round 1 is not run again (its one time is reported).

Values are checked: a peer whose value differs from ours by more than ``--rtol`` (relative) is shown
as ``differs`` and left out of the ratios. The last lines print the geometric mean of ReSi/ours
(cold) over the matched measures and, per measure, the fastest peer.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import measures  # noqa: E402
from measures import _memo, cca  # noqa: E402

PeerFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass
class Case:
    """One of our measures (with parameters) and the peers that compute the same number."""

    measure: str
    params: dict = field(default_factory=dict)
    #: peer label -> (function of numpy X, Y, transform of our value to the peer's convention)
    peers: dict[str, tuple[PeerFn, Callable[[float], float]]] = field(default_factory=dict)


def clear_caches() -> None:
    _memo.clear()
    cca._SVD_CACHE.clear()


def _same(v: float) -> float:
    return v


def _load_resi(path: str) -> types.ModuleType:
    """The ``repsim.measures`` modules of a ReSi checkout (imported one by one, not its package __init__)."""
    sys.path.insert(0, path)
    pkg = types.ModuleType("repsim")
    pkg.__path__ = [os.path.join(path, "repsim")]
    sub = types.ModuleType("repsim.measures")
    sub.__path__ = [os.path.join(path, "repsim", "measures")]
    sys.modules["repsim"], sys.modules["repsim.measures"] = pkg, sub
    names = ("cka", "procrustes", "correlation_match", "distance_correlation", "eigenspace_overlap", "gulp",
             "linear_regression", "rsa", "statistics", "nearest_neighbor", "cca")
    return types.SimpleNamespace(**{n: importlib.import_module(f"repsim.measures.{n}") for n in names})


def resi_cases(path: str) -> dict[str, tuple[PeerFn, Callable[[float], float], dict]]:
    """our measure -> (ReSi function, transform of our value, our params), where ReSi's definition matches."""
    r = _load_resi(path)
    from loguru import logger  # ReSi's dependency; its INFO lines would interleave with the table

    logger.remove()
    nn, nd = r.nearest_neighbor, "nd"
    return {
        "cka_linear": (lambda x, y: r.cka.centered_kernel_alignment(x, y, nd), _same, {}),
        "procrustes_orthogonal": (
            lambda x, y: r.procrustes.orthogonal_procrustes_centered_and_normalized(x, y, nd), _same, {}),
        "procrustes_angular": (
            lambda x, y: r.procrustes.orthogonal_angular_shape_metric_centered(x, y, nd), _same, {}),
        "procrustes_size_shape": (lambda x, y: r.procrustes.procrustes_size_and_shape_distance(x, y, nd), _same, {}),
        "procrustes_permutation": (lambda x, y: r.procrustes.permutation_procrustes(x, y, nd), _same, {}),
        "aligned_cosine": (lambda x, y: r.procrustes.aligned_cossim(x, y, nd), _same, {}),
        "correlation_match_hard": (
            lambda x, y: r.correlation_match.hard_correlation_match(x, y, nd, n_jobs=1), _same, {}),
        "correlation_match_soft": (
            lambda x, y: r.correlation_match.soft_correlation_match(x, y, nd, n_jobs=1), _same, {}),
        "distance_correlation": (
            lambda x, y: r.distance_correlation.distance_correlation(x, y, nd, n_jobs=1), _same, {}),
        "eigenspace_overlap": (
            lambda x, y: r.eigenspace_overlap.eigenspace_overlap_score(x, y, nd), _same, {"center": False}),
        # ReSi returns the squared GULP distance.
        "gulp": (lambda x, y: r.gulp.gulp(x, y, nd), lambda v: v * v, {}),
        # ReSi's LinearRegression(R, R') predicts R from R'.
        "linear_regression": (lambda x, y: r.linear_regression.linear_reg(x, y, nd), _same, {"predictor": "y"}),
        "rsa": (lambda x, y: r.rsa.representational_similarity_analysis(x, y, nd, n_jobs=1), _same, {}),
        "magnitude_difference": (lambda x, y: r.statistics.magnitude_difference(x, y, nd), _same, {}),
        "concentricity_difference": (lambda x, y: r.statistics.concentricity_difference(x, y, nd), _same, {}),
        "uniformity_difference": (
            lambda x, y: r.statistics.uniformity_difference(x, y, nd, n_jobs=1), _same, {"include_diagonal": True}),
        "knn_jaccard": (lambda x, y: nn.jaccard_similarity(x, y, nd, n_jobs=1), _same, {}),
        "rank_similarity": (lambda x, y: nn.rank_similarity(x, y, nd, n_jobs=1), _same, {}),
        "joint_rank_jaccard": (lambda x, y: nn.joint_rank_jaccard_similarity(x, y, nd, n_jobs=1), _same, {}),
        "second_order_cosine": (
            lambda x, y: nn.second_order_cosine_similarity(x, y, nd, n_jobs=1, n_jobs_neighbors=1), _same,
            {"entries": "distance"}),
    }


def other_peers(args: argparse.Namespace) -> dict[str, list[tuple[str, PeerFn, Callable[[float], float]]]]:
    """our measure (with ReSi's parameters where both apply) -> [(peer label, function, transform)]."""
    out: dict[str, list] = {}
    import dcor
    import ot
    import rsatoolbox

    def rsa_toolbox(x: np.ndarray, y: np.ndarray) -> float:
        rdms = [rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(z), method="correlation") for z in (x, y)]
        return float(rsatoolbox.rdm.compare(rdms[0], rdms[1], method="spearman")[0, 0])

    def cka_toolbox(x: np.ndarray, y: np.ndarray) -> float:
        rdms = [rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(z), method="euclidean") for z in (x, y)]
        return float(rsatoolbox.rdm.compare(rdms[0], rdms[1], method="cosine_cov")[0, 0])

    def soft_matching_pot(x: np.ndarray, y: np.ndarray) -> float:
        d1, d2 = x.shape[1], y.shape[1]
        cost = ot.dist(x.T, y.T)  # squared Euclidean, one GEMM
        return math.sqrt(max(ot.emd2(np.full(d1, 1 / d1), np.full(d2, 1 / d2), cost, numItermax=10_000_000), 0.0))

    out.setdefault("distance_correlation", []).append(
        ("dcor", lambda x, y: float(dcor.distance_correlation(x, y)), _same))
    out.setdefault("rsa", []).append(("rsatoolbox", rsa_toolbox, _same))
    out.setdefault("cka_linear", []).append(("rsatoolbox", cka_toolbox, _same))
    out.setdefault("soft_matching", []).append(("POT", soft_matching_pot, _same))
    if args.netrep:
        sys.path.insert(0, args.netrep)
        from netrep.metrics import LinearMetric

        def netrep_angular(x: np.ndarray, y: np.ndarray) -> float:
            metric = LinearMetric(alpha=1.0, center_columns=True, score_method="angular")
            return float(metric.fit(x, y).score(x, y))

        out.setdefault("procrustes_angular", []).append(("netrep", netrep_angular, _same))
    if args.platonic:
        sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
        sys.modules.setdefault("torchaudio.functional", types.ModuleType("torchaudio.functional"))
        sys.path.insert(0, args.platonic)
        from metrics import AlignmentMetrics

        def platonic(metric: str, **kw) -> PeerFn:
            return lambda x, y: float(AlignmentMetrics.measure(metric, torch.from_numpy(x), torch.from_numpy(y), **kw))

        out.setdefault("cka_linear", []).append(("platonic-rep", platonic("cka"), _same))
        out.setdefault("mutual_knn", []).append(("platonic-rep", platonic("mutual_knn", topk=10), _same))
        out.setdefault("cknna", []).append(("platonic-rep", platonic("cknna", topk=10), _same))
    return out


def inputs(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w = rng.standard_normal((d, d)) / math.sqrt(d)
    return x, 0.3 * x @ w + rng.standard_normal((n, d))


_scratch: np.ndarray | None = None


def evict_cpu_caches(megabytes: int) -> None:
    """Write a scratch buffer larger than the last-level cache, so that the next call starts with the
    inputs out of the CPU caches whoever ran before it (0: do nothing). Without it a peer timed right
    after our warm call on the same arrays finds them cache-hot, which decides a sub-millisecond
    measure's ratio (``magnitude_difference``: two passes over 8 MiB)."""
    global _scratch
    if megabytes <= 0:
        return
    if _scratch is None or _scratch.nbytes != megabytes << 20:
        _scratch = np.empty(megabytes << 20, dtype=np.uint8)
    _scratch.fill(len(_scratch) & 0xFF)


def cpu_time(fn: Callable[[], float]) -> tuple[float, float]:
    t0 = time.process_time()
    value = fn()
    return time.process_time() - t0, float(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resi", default="", help="path to a checkout of mklabunde/resi (skipped without)")
    parser.add_argument("--netrep", default="", help="path to a checkout of ahwillia/netrep")
    parser.add_argument("--platonic", default="", help="path to a checkout of minyoungg/platonic-rep")
    parser.add_argument("--extra-path", default="", help="a folder appended to sys.path (peers' own dependencies)")
    parser.add_argument("--sizes", default="2000x256,5000x512", help="comma-separated NxD")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-peer-seconds", type=float, default=30.0)
    parser.add_argument("--short-calls", type=int, default=5,
                        help="cold calls per round (after round 1) for an implementation faster than 10 ms, ours and "
                             "the peers' alike, each with its cache flush; the minimum over all of them is reported")
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--measures", default="", help="comma-separated subset of our measure names")
    parser.add_argument("--evict-cache-mb", type=int, default=64,
                        help="before every cold call (ours and the peers'), write this many MiB of scratch to push "
                             "the inputs out of the CPU caches (more than the last-level cache; 0: off)")
    args = parser.parse_args(argv)
    if args.extra_path:
        sys.path.append(args.extra_path)
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    warnings.filterwarnings("ignore")

    resi = resi_cases(args.resi) if args.resi else {}
    others = other_peers(args)
    cases: dict[str, Case] = {}
    for name, (fn, transform, params) in resi.items():
        cases[name] = Case(name, params, {"ReSi": (fn, transform)})
    for name, peers in others.items():
        case = cases.setdefault(name, Case(name))
        for label, fn, transform in peers:
            case.peers[label] = (fn, transform)
    if args.measures:
        wanted = args.measures.split(",")
        cases = {k: v for k, v in cases.items() if k in wanted}

    print(f"torch {torch.__version__}, numpy {np.__version__}, one thread, CPU time, min of {args.repeats} "
          f"interleaved rounds; peers: {', '.join(sorted({p for c in cases.values() for p in c.peers}))}\n")
    # One untimed call of every implementation on small inputs first: one-time costs (lazy imports, library
    # initialisation) would otherwise land on whichever measure comes first in round 1.
    small_x, small_y = inputs(64, 8, 0)
    for case in cases.values():
        for fn in (lambda a, b: measures.compute(case.measure, torch.from_numpy(a), torch.from_numpy(b), **case.params),
                   *(peer for peer, _ in case.peers.values())):
            try:
                fn(small_x, small_y)
            except Exception:  # a failing peer is reported in the timed rounds
                pass
    for n, d in (tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")):
        x, y = inputs(n, d, 0)
        partners = [inputs(n, d, 1 + r)[1] for r in range(args.repeats)]
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        best: dict[tuple[str, str], float] = {}
        values: dict[tuple[str, str], float] = {}
        slow: set[tuple[str, str]] = set()

        def calls(measure: str, label: str) -> int:
            """Cold calls per round: ``--short-calls`` after round 1 for an implementation under 10 ms
            (the load of this shared machine moves such a call by more than its own length), else 1."""
            return args.short_calls if best.get((measure, label), math.inf) < 0.01 else 1

        def time_ours(case: Case, r: int) -> None:
            """Our cold call (every cache cleared, CPU caches flushed) and our warm call (X seen before)."""
            for _ in range(calls(case.measure, "cold")):
                clear_caches()
                evict_cpu_caches(args.evict_cache_mb)
                seconds, value = cpu_time(lambda: measures.compute(case.measure, xt, yt, **case.params))
                best[case.measure, "cold"] = min(best.get((case.measure, "cold"), math.inf), seconds)
                values[case.measure, "ours"] = value
            # warm: X seen before (with another partner), the partner fresh
            clear_caches()
            measures.compute(case.measure, xt, torch.from_numpy(partners[r - 1]), **case.params)
            yr = torch.from_numpy(partners[r])
            seconds, _ = cpu_time(lambda: measures.compute(case.measure, xt, yr, **case.params))
            best[case.measure, "warm"] = min(best.get((case.measure, "warm"), math.inf), seconds)

        def time_peers(case: Case, r: int) -> None:
            """Each peer's call on the numpy inputs, CPU caches flushed before each."""
            for label, (fn, _) in case.peers.items():
                if (case.measure, label) in slow:
                    continue
                try:
                    for _ in range(calls(case.measure, label)):
                        evict_cpu_caches(args.evict_cache_mb)
                        seconds, value = cpu_time(lambda: fn(x, y))
                        best[case.measure, label] = min(best.get((case.measure, label), math.inf), seconds)
                except Exception as exc:  # a peer that fails is reported, not fatal
                    values[case.measure, label] = math.nan
                    print(f"  {case.measure} / {label} failed: {type(exc).__name__}: {str(exc)[:100]}")
                    slow.add((case.measure, label))
                    continue
                values[case.measure, label] = value
                if seconds > args.max_peer_seconds:
                    slow.add((case.measure, label))

        for r in range(args.repeats):
            for case in cases.values():
                # Odd rounds time the peers first: a call leaves its code in the instruction cache and
                # the branch predictors (the scratch write evicts data only), which favours whoever runs
                # right after the same measure's other implementation; alternating gives both sides
                # that position in some rounds.
                for step in (time_ours, time_peers) if r % 2 == 0 else (time_peers, time_ours):
                    step(case, r)
            print(f"  {n}x{d}: round {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)

        print(f"\n### (N, D) = ({n}, {d})\n")
        print("| measure | ours cold (s) | ours warm (s) | ReSi (s) | ReSi/ours | other peers (s) | fastest peer/ours |")
        print("|---|---|---|---|---|---|---|")
        resi_ratios, worst = [], []
        for case in cases.values():
            ours_cold, ours_warm = best[case.measure, "cold"], best[case.measure, "warm"]
            ours_value = values[case.measure, "ours"]
            cells, fastest = {}, math.inf
            for label, (_, transform) in case.peers.items():
                if (case.measure, label) not in best:
                    cells[label] = "failed"
                    continue
                expected = transform(ours_value)
                got = values[case.measure, label]
                agree = abs(got - expected) <= args.rtol * max(abs(expected), abs(got), 1e-12) + 1e-12
                t = best[case.measure, label]
                once = " (1 run)" if (case.measure, label) in slow else ""
                cells[label] = f"{t:.3g}{once}" if agree else f"{t:.3g} differs ({got:.6g} vs {expected:.6g})"
                if agree:
                    fastest = min(fastest, t)
                    if label == "ReSi":
                        resi_ratios.append(t / ours_cold)
            resi_cell = cells.pop("ReSi", "—")
            ratio = (f"{best[case.measure, 'ReSi'] / ours_cold:.2f}"
                     if "ReSi" in case.peers and "differs" not in resi_cell and resi_cell != "failed" else "—")
            other = "; ".join(f"{k} {v}" for k, v in cells.items()) or "—"
            fast = f"{fastest / ours_cold:.2f}" if math.isfinite(fastest) else "—"
            if math.isfinite(fastest):
                worst.append((fastest / ours_cold, case.measure))
            print(f"| {case.measure} {case.params or ''} | {ours_cold:.3g} | {ours_warm:.3g} | {resi_cell} | {ratio} "
                  f"| {other} | {fast} |")
        if resi_ratios:
            geo = math.exp(sum(math.log(v) for v in resi_ratios) / len(resi_ratios))
            print(f"\nGeometric mean ReSi/ours (cold) over {len(resi_ratios)} matched measures at {n}x{d}: "
                  f"**{geo:.2f}x**")
        if worst:
            ratio, name = min(worst)
            print(f"Smallest fastest-peer/ours ratio: {ratio:.2f} ({name})")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
