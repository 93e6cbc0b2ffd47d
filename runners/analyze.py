"""Analyze a collected sweep: run every analysis task, write evaluations, tables and figures.

Usage: ``python -m runners.analyze [--sweep benchmark] [--results results]``.
Outputs under ``results/<sweep>/``: ``evaluations.parquet`` (task, measure, statistic, value, ...),
``tables/*.csv``, ``figures/*.png`` and ``report.html`` (one self-contained page of all of them,
:mod:`runners.report`); a short summary is printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
from scipy.stats import ConstantInputWarning

from runners.collect import check_sweep_dir
from runners.report import write_report
from runners.storage import read_parquet, write_parquet
from tasks.base import OWN_SWEEP_ONLY, AnalysisContext, load_analyses

log = logging.getLogger(__name__)


def analyze(sweep_dir: Path, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    sweep_dir = Path(sweep_dir)
    if scores is None:
        scores = read_parquet(sweep_dir / "scores.parquet")
        if scores is None:
            raise FileNotFoundError(f"no scores.parquet under {sweep_dir}; run `python -m runners.collect` first")
    ctx = AnalysisContext(sweep_dir=sweep_dir, scores=scores, cache_dir=sweep_dir.parent / "cache")
    (sweep_dir / "figures").mkdir(parents=True, exist_ok=True)
    (sweep_dir / "tables").mkdir(parents=True, exist_ok=True)
    frames, lines = [], []
    analyses = load_analyses()
    for i, (name, analysis) in enumerate(analyses.items(), start=1):
        own = OWN_SWEEP_ONLY.get(name)
        if own is not None and sweep_dir.name != own:
            lines.append(f"{name}: runs on `sweep={own}` results only")
            continue
        tic = time.perf_counter()
        with warnings.catch_warnings():
            # NaN cells (undefined measures, too few pairs) are expected and handled explicitly;
            # numpy's and scipy's warnings about them would only bury the summary.
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", ConstantInputWarning)
            result = analysis(ctx)
        print(f"[simbench] analysis {i}/{len(analyses)} {name}: {time.perf_counter() - tic:.1f}s", flush=True)
        if result.evaluations.empty:
            lines.append(f"{name}: not applicable ({result.summary})")
            continue
        frames.append(result.evaluations.assign(task=name))
        ctx.previous.append(frames[-1])
        lines.append(f"{name}: {result.summary}")
    evaluations = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["task", "measure", "statistic", "value"])
    first = ["task", "measure", "statistic", "value"]
    evaluations = evaluations[first + [c for c in evaluations.columns if c not in first]]
    write_parquet(evaluations, sweep_dir / "evaluations.parquet")
    figures = sorted(p.name for p in (sweep_dir / "figures").glob("*.png"))
    lines.append(f"report:      {write_report(sweep_dir, scores)}")
    print(_summary(sweep_dir, scores, evaluations, lines, figures))
    return evaluations


def _summary(sweep_dir: Path, scores: pd.DataFrame, evaluations: pd.DataFrame, lines: list[str], figures: list[str]) -> str:
    status = scores["status"].value_counts().to_dict()
    out = [
        "",
        f"=== Summary of sweep {sweep_dir.name!r} ===",
        f"scores:      {len(scores)} rows ({', '.join(f'{k} {v}' for k, v in status.items())}), "
        f"{scores['measure'].nunique()} measures, {len(set(scores['model_a']) | set(scores['model_b']))} models",
        f"evaluations: {len(evaluations)} rows -> {sweep_dir / 'evaluations.parquet'}",
        f"figures:     {', '.join(figures)} -> {sweep_dir / 'figures'}",
        *lines,
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.analyze", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="benchmark",
                        help="sweep name: the folder under --results, i.e. the sweep's name= (default: benchmark, "
                             "what `python -m runners.sweep` writes; sweep=smoke writes smoke, ...)")
    parser.add_argument("--results", default="results", help="results directory")
    parser.add_argument("--modules", nargs="*", default=[], metavar="MODULE",
                        help="your own measure modules (the sweep's measures.modules), e.g. my_pkg.my_measure")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        import measures

        measures.load_modules(args.modules, source="--modules")
        analyze(check_sweep_dir(Path(args.results), args.sweep))
    except (FileNotFoundError, ValueError) as exc:  # a missing folder or table: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
