"""CPU time of the command line's fast paths: `measures list`, `measures info`, a rejected override, and
planning the default benchmark (160 jobs).

    uv run python benchmarks/bench_cli.py [--repeats 3] [--baseline DIR]

Each command runs in a fresh interpreter; its CPU time (user + system, from ``getrusage`` of the child)
is the minimum over ``--repeats`` interleaved runs, which is what a noisy shared machine can measure
fairly. ``--baseline DIR`` runs the same commands on another checkout of the project (e.g.
``git archive <commit> | tar -x -C DIR``) with this environment, and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAN = "from runners.sweep import plan; p = plan([]); assert p.n_jobs == 160, p.n_jobs"
CASES = {
    "measures list": ["-m", "measures", "list"],
    "measures info cka_linear": ["-m", "measures", "info", "cka_linear"],
    "sweep perturbation.scale=-1 (refused)": ["-m", "runners.sweep", "perturbation.scale=-1"],
    "sweep arch=mlpp (refused)": ["-m", "runners.sweep", "arch=mlpp"],
    "plan the default benchmark (160 jobs)": ["-c", PLAN],
}


def cpu_seconds(args: list[str], checkout: Path) -> float:
    """CPU seconds (user + system) of one run of ``python args`` with ``checkout`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, *args], cwd=checkout, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    checkouts = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    times = {(case, name): [] for case in CASES for name in checkouts}
    for _ in range(args.repeats):  # interleaved: every case and checkout once per round
        for case, command in CASES.items():
            for name, checkout in checkouts.items():
                times[case, name].append(cpu_seconds(command, checkout))
    header = f"| command | CPU s (min of {args.repeats}) |" + (" baseline CPU s | ratio |" if args.baseline else "")
    print(header)
    print("|---|---|" + ("---|---|" if args.baseline else ""))
    for case in CASES:
        ours = min(times[case, "this"])
        row = f"| `{case}` | {ours:.2f} |"
        if args.baseline:
            base = min(times[case, "baseline"])
            row += f" {base:.2f} | {base / ours:.1f}x |"
        print(row)


if __name__ == "__main__":
    main()
