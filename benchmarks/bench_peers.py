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
  written, by default twice the last-level cache; the peers' calls get the same flush): the cost of a
  pair seen for the first time.
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
(cold) over the matched cases of rounds 1-5 and over all of them (with the sixth round's
``SIXTH_ROUND``: ReSi functions matched by a parameter, e.g. ``rsm_norm_difference[spectral]``), and
the smallest fastest-peer/ours ratio. ``--measures`` takes measure names or row labels.
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
from pathlib import Path

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
    #: the row's name in the table (the measure, with its parameters where one measure has several rows)
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or self.measure


#: The ReSi cases of the sixth round (ReSi functions matched by a parameter): the table prints the
#: geometric mean over the earlier 20 cases and over all of them.
SIXTH_ROUND = frozenset({
    "magnitude_difference[nrmse]", "concentricity_difference[nrmse]", "rsm_norm_difference[spectral]",
    "procrustes_angular[center=False]", "procrustes_permutation[angular]", "aligned_cosine[permutation]",
    "procrustes_orthogonal[raw]", "rsm_norm_difference[frobenius_upper]", "rsa[euclidean]", "disagreement",
})


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
             "linear_regression", "rsa", "statistics", "nearest_neighbor", "cca", "rsm_norm_difference",
             "output_similarity")
    return types.SimpleNamespace(**{n: importlib.import_module(f"repsim.measures.{n}") for n in names})


def resi_cases(path: str) -> dict[str, tuple[str, PeerFn, Callable[[float], float], dict]]:
    """row label -> (our measure, ReSi function, transform of our value, our params), where ReSi's
    definition matches. The label is the measure's name, with its parameters where a measure has
    several rows (:data:`SIXTH_ROUND`)."""
    r = _load_resi(path)
    from loguru import logger  # ReSi's dependency; its INFO lines would interleave with the table

    logger.remove()
    nn, nd, proc, stats = r.nearest_neighbor, "nd", r.procrustes, r.statistics
    cases = {
        "cka_linear": (lambda x, y: r.cka.centered_kernel_alignment(x, y, nd), _same, {}),
        "procrustes_orthogonal": (lambda x, y: proc.orthogonal_procrustes_centered_and_normalized(x, y, nd), _same, {}),
        "procrustes_angular": (lambda x, y: proc.orthogonal_angular_shape_metric_centered(x, y, nd), _same, {}),
        "procrustes_size_shape": (lambda x, y: proc.procrustes_size_and_shape_distance(x, y, nd), _same, {}),
        "procrustes_permutation": (lambda x, y: proc.permutation_procrustes(x, y, nd), _same, {}),
        "aligned_cosine": (lambda x, y: proc.aligned_cossim(x, y, nd), _same, {}),
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
        "magnitude_difference": (lambda x, y: stats.magnitude_difference(x, y, nd), _same, {}),
        "concentricity_difference": (lambda x, y: stats.concentricity_difference(x, y, nd), _same, {}),
        "uniformity_difference": (
            lambda x, y: stats.uniformity_difference(x, y, nd, n_jobs=1), _same, {"include_diagonal": True}),
        "knn_jaccard": (lambda x, y: nn.jaccard_similarity(x, y, nd, n_jobs=1), _same, {}),
        "rank_similarity": (lambda x, y: nn.rank_similarity(x, y, nd, n_jobs=1), _same, {}),
        "joint_rank_jaccard": (lambda x, y: nn.joint_rank_jaccard_similarity(x, y, nd, n_jobs=1), _same, {}),
        "second_order_cosine": (
            lambda x, y: nn.second_order_cosine_similarity(x, y, nd, n_jobs=1, n_jobs_neighbors=1), _same,
            {"entries": "distance"}),
    }
    out = {label: (label, fn, transform, params) for label, (fn, transform, params) in cases.items()}
    # Sixth round: ReSi functions whose definition one of our measures gives with a parameter.
    out.update({
        "magnitude_difference[nrmse]": (
            "magnitude_difference", lambda x, y: stats.magnitude_nrmse(x, y, nd), _same, {"form": "nrmse"}),
        "concentricity_difference[nrmse]": (
            "concentricity_difference", lambda x, y: stats.concentricity_nrmse(x, y, nd), _same, {"form": "nrmse"}),
        "rsm_norm_difference[spectral]": (
            "rsm_norm_difference", lambda x, y: r.rsm_norm_difference.rsm_norm_diff(x, y, nd, n_jobs=1), _same,
            {"norm": "spectral"}),
        "procrustes_angular[center=False]": (
            "procrustes_angular", lambda x, y: proc.orthogonal_angular_shape_metric(x, y, nd), _same,
            {"center": False}),
        "procrustes_permutation[angular]": (
            "procrustes_permutation", lambda x, y: proc.permutation_angular_shape_metric(x, y, nd), _same,
            {"form": "angular"}),
        "aligned_cosine[permutation]": (
            "aligned_cosine", lambda x, y: proc.permutation_aligned_cossim(x, y), _same, {"alignment": "permutation"}),
        # ReSi's plain orthogonal_procrustes (neither centred nor scaled; a function, not in its CLASSES)
        "procrustes_orthogonal[raw]": (
            "procrustes_orthogonal", lambda x, y: proc.orthogonal_procrustes(x, y, nd), _same,
            {"center": False, "normalize": False}),
        # ReSi's RSA with a Euclidean outer is the 2-norm of the difference of the condensed RDMs
        "rsm_norm_difference[frobenius_upper]": (
            "rsm_norm_difference",
            lambda x, y: r.rsa.representational_similarity_analysis(x, y, nd, inner="euclidean", outer="euclidean",
                                                                    n_jobs=1),
            _same, {"norm": "frobenius_upper"}),
        "rsa[euclidean]": (
            "rsa", lambda x, y: r.rsa.representational_similarity_analysis(x, y, nd, inner="euclidean", n_jobs=1),
            _same, {"inner": "euclidean"}),
        # a functional measure: the inputs read as N x D scores (the argmax per row)
        "disagreement": ("disagreement", lambda x, y: float(r.output_similarity.Disagreement()(x, y)), _same, {}),
    })
    assert SIXTH_ROUND <= set(out), sorted(SIXTH_ROUND - set(out))
    return out


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


def last_level_cache_mb(root: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """The largest CPU cache of this machine in MiB, rounded up, from Linux's sysfs (None where it is
    not readable).

    Read from sysfs because Python's ``os.sysconf`` has no name for the cache sizes on every build (3.11
    on glibc raises for ``SC_LEVEL3_CACHE_SIZE``). Sizes there read like ``307200K``.
    """
    sizes = []
    for entry in Path(root).glob("index*/size"):
        try:
            text = entry.read_text().strip().upper()
        except OSError:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * unit)
    return -(-max(sizes) // (1 << 20)) if sizes else None


def eviction_mb(requested: int | None) -> int:
    """The scratch size for :func:`evict_cpu_caches`: ``requested`` where given (0: no flush), else twice
    the last-level cache and at least 64 MiB. A fixed 64 MiB flushed the 32 MiB L3 of the AMD machines of
    BENCHMARKS.md but not the 300 MiB L3 of the Intel one, where "cold" calls then read their inputs
    from the L3."""
    if requested is not None:
        return requested
    return max(64, 2 * (last_level_cache_mb() or 0))


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
    parser.add_argument("--evict-cache-mb", type=int, default=None,
                        help="before every cold call (ours and the peers'), write this many MiB of scratch to push "
                             "the inputs out of the CPU caches (default: twice the last-level cache read from "
                             "sysfs, at least 64; 0: off)")
    args = parser.parse_args(argv)
    args.evict_cache_mb = eviction_mb(args.evict_cache_mb)
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
    for label, (name, fn, transform, params) in resi.items():
        cases[label] = Case(name, params, {"ReSi": (fn, transform)}, label)
    for name, peers in others.items():
        case = cases.setdefault(name, Case(name))
        for label, fn, transform in peers:
            case.peers[label] = (fn, transform)
    if args.measures:
        wanted = args.measures.split(",")
        cases = {k: v for k, v in cases.items() if k in wanted or v.measure in wanted}

    print(f"torch {torch.__version__}, numpy {np.__version__}, one thread, CPU time, min of {args.repeats} "
          f"interleaved rounds, {args.evict_cache_mb} MiB cache flush before each cold call; "
          f"peers: {', '.join(sorted({p for c in cases.values() for p in c.peers}))}\n")
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
            for _ in range(calls(case.label, "cold")):
                clear_caches()
                evict_cpu_caches(args.evict_cache_mb)
                seconds, value = cpu_time(lambda: measures.compute(case.measure, xt, yt, **case.params))
                best[case.label, "cold"] = min(best.get((case.label, "cold"), math.inf), seconds)
                values[case.label, "ours"] = value
            # warm: X seen before (with another partner), the partner fresh
            clear_caches()
            measures.compute(case.measure, xt, torch.from_numpy(partners[r - 1]), **case.params)
            yr = torch.from_numpy(partners[r])
            seconds, _ = cpu_time(lambda: measures.compute(case.measure, xt, yr, **case.params))
            best[case.label, "warm"] = min(best.get((case.label, "warm"), math.inf), seconds)

        def time_peers(case: Case, r: int) -> None:
            """Each peer's call on the numpy inputs, CPU caches flushed before each."""
            for label, (fn, _) in case.peers.items():
                if (case.label, label) in slow:
                    continue
                try:
                    for _ in range(calls(case.label, label)):
                        evict_cpu_caches(args.evict_cache_mb)
                        seconds, value = cpu_time(lambda: fn(x, y))
                        best[case.label, label] = min(best.get((case.label, label), math.inf), seconds)
                except Exception as exc:  # a peer that fails is reported, not fatal
                    values[case.label, label] = math.nan
                    print(f"  {case.label} / {label} failed: {type(exc).__name__}: {str(exc)[:100]}")
                    slow.add((case.label, label))
                    continue
                values[case.label, label] = value
                if seconds > args.max_peer_seconds:
                    slow.add((case.label, label))

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
            ours_cold, ours_warm = best[case.label, "cold"], best[case.label, "warm"]
            ours_value = values[case.label, "ours"]
            cells, fastest = {}, math.inf
            for label, (_, transform) in case.peers.items():
                if (case.label, label) not in best:
                    cells[label] = "failed"
                    continue
                expected = transform(ours_value)
                got = values[case.label, label]
                agree = abs(got - expected) <= args.rtol * max(abs(expected), abs(got), 1e-12) + 1e-12
                t = best[case.label, label]
                once = " (1 run)" if (case.label, label) in slow else ""
                cells[label] = f"{t:.3g}{once}" if agree else f"{t:.3g} differs ({got:.6g} vs {expected:.6g})"
                if agree:
                    fastest = min(fastest, t)
                    if label == "ReSi":
                        resi_ratios.append((t / ours_cold, case.label in SIXTH_ROUND))
            resi_cell = cells.pop("ReSi", "—")
            ratio = (f"{best[case.label, 'ReSi'] / ours_cold:.2f}"
                     if "ReSi" in case.peers and "differs" not in resi_cell and resi_cell != "failed" else "—")
            other = "; ".join(f"{k} {v}" for k, v in cells.items()) or "—"
            fast = f"{fastest / ours_cold:.2f}" if math.isfinite(fastest) else "—"
            if math.isfinite(fastest):
                worst.append((fastest / ours_cold, case.label))
            print(f"| {case.measure} {case.params or ''} | {ours_cold:.3g} | {ours_warm:.3g} | {resi_cell} | {ratio} "
                  f"| {other} | {fast} |")
        earlier = [v for v, new in resi_ratios if not new]
        for kept, what in ((earlier, "the earlier (rounds 1-5)"), ([v for v, _ in resi_ratios], "all")):
            if kept:
                geo = math.exp(sum(math.log(v) for v in kept) / len(kept))
                print(f"\nGeometric mean ReSi/ours (cold) over {what} {len(kept)} matched cases at {n}x{d}: "
                      f"**{geo:.2f}x**")
        if worst:
            ratio, name = min(worst)
            print(f"Smallest fastest-peer/ours ratio: {ratio:.2f} ({name})")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
