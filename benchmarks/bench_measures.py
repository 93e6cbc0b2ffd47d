"""Time every array measure at fixed sizes and print a Markdown table (for BENCHMARKS.md).

Usage::

    uv run python -m benchmarks.bench_measures                    # (N, D) = (2000, 256) and (5000, 512), CPU
    uv run python -m benchmarks.bench_measures --sizes 720x512 --repeats 3
    uv run python -m benchmarks.bench_measures --device cuda      # on a GPU machine

Each cell is the median time of ``--repeats`` calls after one warm-up call, with torch limited to
``--threads`` threads: wall-clock time by default, or CPU time of this process with ``--clock cpu``
(robust to other load on a shared machine; equals wall time for single-threaded runs on an idle one). Representational measures get two N x D inputs; output measures N x 10
probabilities; group-wise measures a list of 5 of them. Model-based measures are timed elsewhere.
The per-input memo (``measures/_memo.py``) and the thin-SVD cache of ``measures/cca.py`` are cleared
before every call, so each time is that of a pair
of representations seen for the first time (in a sweep, one-sided work is reused across partners).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import measures
from measures import _memo, cca

TOPOLOGY = "topology"


def inputs_for(name: str, n: int, d: int, device: str, rng: np.random.Generator):
    info = measures.info(name)
    to = lambda a: torch.as_tensor(a, device=device, dtype=torch.float64 if device == "cpu" else torch.float32)  # noqa: E731
    if info.inputs == "representations":
        x = rng.standard_normal((n, d))
        y = np.tanh(x @ rng.standard_normal((d, d)) / np.sqrt(d)) + 0.3 * rng.standard_normal((n, d))
        args = (to(x), to(y))
    elif info.inputs in ("outputs", "probabilities", "outputs_group"):
        def probs():
            z = rng.standard_normal((n, 10)) * 2
            p = np.exp(z - z.max(1, keepdims=True))
            return to(p / p.sum(1, keepdims=True))
        args = ([probs() for _ in range(5)],) if info.inputs == "outputs_group" else (probs(), probs())
    elif info.inputs == "preactivations":
        args = tuple([to(rng.standard_normal((n, d))) for _ in range(2)] for _ in range(2))
    else:
        return None
    kwargs = {"labels": rng.integers(0, 10, n)} if info.requires_labels else {}
    return args, kwargs


def time_measure(name: str, n: int, d: int, device: str, repeats: int, clock=time.perf_counter) -> tuple[float, str]:
    rng = np.random.default_rng(0)
    prepared = inputs_for(name, n, d, device, rng)
    if prepared is None:
        return float("nan"), "model-based"
    args, kwargs = prepared
    times = []
    try:
        for i in range(repeats + 1):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            # cold: time the whole pair, as for two representations seen for the first time (every cache)
            _memo.clear()
            cca._SVD_CACHE.clear()
            t0 = clock()
            measures.compute(name, *args, **kwargs)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i:  # the first call is a warm-up
                times.append(clock() - t0)
    except measures.UndefinedMeasureError as exc:
        return float("nan"), f"undefined: {exc}"
    except Exception as exc:  # report, do not hide, a measure that fails at this size
        return float("nan"), f"{type(exc).__name__}: {str(exc)[:80]}"
    return statistics.median(times), ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000x256,5000x512", help="comma-separated NxD")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--measures", default="", help="comma-separated names (default: all array measures)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall-clock or process CPU time")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    names = args.measures.split(",") if args.measures else [
        n for n in measures.names() if measures.info(n).inputs != "models"]
    header = ["measure", "family", "cost"] + [f"{n}x{d} (s)" for n, d in sizes]
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"device={args.device}, torch threads={args.threads}, torch {torch.__version__}, repeats={args.repeats}, "
          f"clock={args.clock}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    totals = [0.0] * len(sizes)
    notes = []
    for name in names:
        info = measures.info(name)
        cells = []
        for i, (n, d) in enumerate(sizes):
            seconds, note = time_measure(name, n, d, args.device, args.repeats, clock)
            cells.append(f"{seconds:.3f}" if np.isfinite(seconds) else "—")
            if np.isfinite(seconds) and info.family != TOPOLOGY:
                totals[i] += seconds
            if note:
                notes.append(f"{name} at {n}x{d}: {note}")
        print(f"| {name} | {info.family} | {info.cost or '—'} | " + " | ".join(cells) + " |", flush=True)
    print("| **sum, non-topology** | | | " + " | ".join(f"**{t:.2f}**" for t in totals) + " |")
    for note in notes:
        print(f"\n- {note}", end="")
    print()


if __name__ == "__main__":
    main()
