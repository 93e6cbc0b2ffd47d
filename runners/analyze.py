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
from runners.job import torch_threads
from runners.report import write_report
from tasks.storage import read_parquet, write_parquet
from tasks.base import OWN_SWEEP_ONLY, AnalysisContext, load_analyses

log = logging.getLogger(__name__)


class AnalysisError(RuntimeError):
    """One or more analysis tasks raised; the message names them (the other tasks' results are written)."""


def analyze(sweep_dir: Path, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    sweep_dir = Path(sweep_dir)
    if scores is None:
        path = sweep_dir / "scores.parquet"
        scores = read_parquet(path)
        if scores is None and path.exists():
            raise ValueError(f"{path} is corrupt (not a readable, checksum-valid Parquet file); re-create it with "
                             f"`python -m runners.collect --sweep {sweep_dir.name} --results {sweep_dir.parent}`")
        if scores is None:
            raise FileNotFoundError(f"no scores.parquet under {sweep_dir}; run `python -m runners.collect` first")
    ctx = AnalysisContext(sweep_dir=sweep_dir, scores=scores, cache_dir=sweep_dir.parent / "cache")
    (sweep_dir / "figures").mkdir(parents=True, exist_ok=True)
    (sweep_dir / "tables").mkdir(parents=True, exist_ok=True)
    frames, lines, failed = [], [], []
    # One torch thread, as in the sweep's jobs: a standalone `runners.analyze` on a many-core machine
    # must give the same numbers (and ranks) as the sweep's own analysis.
    with torch_threads(1):
        _run_analyses(ctx, frames, lines, failed)
    evaluations = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["task", "measure", "statistic", "value"])
    first = ["task", "measure", "statistic", "value"]
    evaluations = evaluations[first + [c for c in evaluations.columns if c not in first]]
    write_parquet(evaluations, sweep_dir / "evaluations.parquet")
    figures = sorted(p.name for p in (sweep_dir / "figures").glob("*.png"))
    lines.append(f"report:      {write_report(sweep_dir, scores)}")
    print(_summary(sweep_dir, scores, evaluations, lines, figures))
    if failed:
        raise AnalysisError(f"{len(failed)} analysis task(s) failed (the others' results are written): "
                            + "; ".join(failed))
    return evaluations


def _run_analyses(ctx: AnalysisContext, frames: list[pd.DataFrame], lines: list[str], failed: list[str]) -> None:
    """Run every registered analysis on ``ctx``, appending its evaluations, summary line or failure."""
    sweep_dir = ctx.sweep_dir
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
            try:
                result = analysis(ctx)
            except Exception as exc:  # one broken analysis must not take the others' tables with it
                log.exception("analysis %s failed", name)
                failed.append(f"{name} ({type(exc).__name__}: {exc})")
                lines.append(f"{name}: FAILED ({type(exc).__name__}: {exc})")
                continue
        print(f"[simbench] analysis {i}/{len(analyses)} {name}: {time.perf_counter() - tic:.1f}s", flush=True)
        if result.evaluations.empty:
            lines.append(f"{name}: not applicable ({result.summary})")
            continue
        frames.append(result.evaluations.assign(task=name))
        ctx.previous.append(frames[-1])
        lines.append(f"{name}: {result.summary}")


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
    except (OSError, ValueError, AnalysisError) as exc:  # one line, not a traceback
        print(f"[simbench] analyze: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
