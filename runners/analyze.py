"""Analyze a collected sweep: run every analysis task, write evaluations, tables and figures.

Usage: ``python -m runners.analyze [--sweep benchmark] [--results results]``.
Outputs under ``results/<sweep>/``: ``evaluations.parquet`` (task, measure, statistic, value, ...),
``tables/*.csv``, ``figures/*.png`` and ``report.html`` (one self-contained page of all of them,
:mod:`runners.report`); a short summary is printed.

Analyses are content-addressed: each result is stored under ``results/<sweep>/cache/analyses/`` with the
key of its inputs (the bytes of ``scores.parquet``, the keys of the analyses before it, whose evaluations
it may read, the sweep's name) and of its code (the source of its module and of every project module that
module imports, directly or not, and the versions of the numerical libraries). A rerun with the same key
reads the stored evaluations and summary instead of recomputing them, provided the tables and figures
the analysis wrote are still there unchanged; a changed shard, measure, parameter or line of code
recomputes exactly the analyses it reaches. The sweep command and this one share the store, so they give
the same evaluations.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import json
import logging
import os
import pickle
import sys
import time
import warnings
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Callable

import pandas as pd
from filelock import FileLock
from scipy.stats import ConstantInputWarning

from runners.collect import check_sweep_dir
from runners.job import torch_threads
from runners.report import write_report
from tasks.storage import atomic_write, content_key, read_parquet, write_json, write_parquet
from tasks.base import INDEPENDENT, OWN_SWEEP_ONLY, AnalysisContext, AnalysisResult, load_analyses

log = logging.getLogger(__name__)


class AnalysisError(RuntimeError):
    """One or more analysis tasks raised; the message names them (the other tasks' results are written)."""


def analyze(sweep_dir: Path, scores: pd.DataFrame | None = None, scores_key: str | None = None,
            materialise: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run every analysis on the sweep's scores (``scores``, or its ``scores.parquet``, read only when an
    analysis has to run), reusing each stored result whose key still holds (see the module docstring).
    ``scores_key``: the sha256 of the ``scores.parquet`` that ``scores`` was read from or written to (the
    sweep command's, so that it and a standalone run share keys). ``materialise(variant_key)`` (the sweep
    command's) extracts representations an analysis needs that the model cache lacks."""
    sweep_dir = Path(sweep_dir)
    source = _Scores(sweep_dir, scores, scores_key)
    (sweep_dir / "figures").mkdir(parents=True, exist_ok=True)
    (sweep_dir / "tables").mkdir(parents=True, exist_ok=True)
    (sweep_dir / CACHE).mkdir(parents=True, exist_ok=True)
    frames, lines, failed, keys = [], [], [], []
    # Analyses write their tables and figures in place: two processes analysing one sweep folder at once
    # (two identical sweeps) take turns, and the second reuses the first one's stored results.
    with FileLock(str(sweep_dir / CACHE / "analyze.lock")):
        # One torch thread, as in the sweep's jobs: a standalone `runners.analyze` on a many-core machine
        # must give the same numbers (and ranks) as the sweep's own analysis.
        with torch_threads(1):
            _run_analyses(sweep_dir, source, materialise, frames, lines, failed, keys)
        evaluations = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["task", "measure", "statistic", "value"])
        first = ["task", "measure", "statistic", "value"]
        evaluations = evaluations[first + [c for c in evaluations.columns if c not in first]]
        _write_unless_current(evaluations, sweep_dir / "evaluations.parquet", content_key(keys), sweep_dir)
        figures = sorted(p.name for p in (sweep_dir / "figures").glob("*.png"))
        lines.append(f"report:      {_report(sweep_dir, source, keys)}")
    print(_summary(sweep_dir, source.summary(), evaluations, lines, figures))
    if failed:
        raise AnalysisError(f"{len(failed)} analysis task(s) failed (the others' results are written): "
                            + "; ".join(failed))
    return evaluations


class _Scores:
    """The scores the analyses read: their content key at once, the table itself only when needed."""

    def __init__(self, sweep_dir: Path, scores: pd.DataFrame | None, key: str | None = None) -> None:
        self.path = sweep_dir / "scores.parquet"
        self._table = scores
        self.cache = sweep_dir / CACHE / "scores_summary.json"
        if key is not None:
            self.key = key
        elif scores is None:
            try:
                self.key = hashlib.sha256(self.path.read_bytes()).hexdigest()
            except FileNotFoundError:
                raise FileNotFoundError(f"no scores.parquet under {sweep_dir}; run `python -m runners.collect` "
                                        "first") from None
        else:  # a table handed over in memory: its content, not a file's bytes
            self.key = hashlib.sha256(pd.util.hash_pandas_object(scores, index=False).values.tobytes()
                                      + repr(list(scores.columns)).encode()).hexdigest()

    def from_file(self) -> bool:
        """Whether the scores are those of ``scores.parquet`` byte for byte (another process may read it)."""
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest() == self.key
        except OSError:
            return False

    @property
    def table(self) -> pd.DataFrame:
        if self._table is None:
            self._table = read_parquet(self.path)
            if self._table is None:
                raise ValueError(f"{self.path} is corrupt (not a readable, checksum-valid Parquet file); re-create "
                                 f"it with `python -m runners.collect --sweep {self.path.parent.name} "
                                 f"--results {self.path.parent.parent}`")
        return self._table

    def summary(self) -> dict:
        """Row count, status counts, measures and models of the scores (stored with their key)."""
        try:
            stored = json.loads(self.cache.read_text())
            if stored["key"] == self.key:
                return stored["summary"]
        except (OSError, ValueError, KeyError):
            pass
        scores = self.table
        summary = {"rows": len(scores), "status": {str(k): int(v) for k, v in scores["status"].value_counts().items()},
                   "measures": int(scores["measure"].nunique()),
                   "models": len(set(scores["model_a"]) | set(scores["model_b"]))}
        write_json({"key": self.key, "summary": summary}, self.cache)
        return summary


#: where a sweep's analysis results are stored, under results/<sweep>/
CACHE = "cache"
#: libraries whose version enters every analysis key (their numerics decide the numbers)
LIBRARIES = ("numpy", "scipy", "pandas", "scikit-learn", "torch", "matplotlib")
_ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ("measures", "tasks", "runners")


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in _PACKAGES:
        return None
    base = _ROOT.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=None)
def _imported(path: Path, module: str) -> tuple[str, ...]:
    """Every module ``path`` (the module ``module``) imports anywhere in its source, and their packages."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]  # a name may be a submodule
    parents = {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 1)}
    return tuple(sorted(set(names) | parents))


def code_version(*modules: str) -> str:
    """Content key of the code of ``modules``: their source and that of every project module they reach
    by imports (also imports inside functions), plus the versions of the numerical libraries."""
    sources, todo = {}, list(modules)
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or path in sources:
            continue
        sources[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        todo += _imported(path, name)
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return content_key([sorted((str(p.relative_to(_ROOT)), d) for p, d in sources.items()), versions])


def measures_version() -> str:
    """Content key of every registered measure: name, version and the code of its module (the registry
    imports its family modules by name, and a user's measure module lives outside the project), so an
    analysis that computes measures itself is recomputed when one changes."""
    import measures

    modules, outside = set(), {}
    for name in measures.names():
        module = sys.modules[measures.info(name).function.__module__]
        if _module_file(module.__name__) is not None:
            modules.add(module.__name__)
        elif getattr(module, "__file__", None):
            outside[module.__name__] = hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()
    return content_key([[(n, measures.info(n).version) for n in measures.names()], code_version(*sorted(modules)),
                        sorted(outside.items())])


_OUTPUT_DIRS = ("tables", "figures")


def _outputs(sweep_dir: Path) -> dict[str, list[int]]:
    """Size and mtime of every table and figure of the sweep."""
    out = {}
    for folder in _OUTPUT_DIRS:
        for path in (sweep_dir / folder).glob("*"):
            st = path.stat()
            out[f"{folder}/{path.name}"] = [st.st_size, st.st_mtime_ns]
    return out


def _stored(sweep_dir: Path, name: str, key: str) -> AnalysisResult | None:
    """The stored result of analysis ``name`` if it has ``key`` and its tables and figures are unchanged."""
    folder = sweep_dir / CACHE / "analyses"
    try:
        record = json.loads((folder / f"{name}.json").read_text())
        if record["key"] != key:
            return None
        now = _outputs(sweep_dir)
        if any(now.get(path) != stat for path, stat in record["outputs"].items()):
            return None
        data = (folder / f"{name}.pickle").read_bytes()
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            return None
        # the file's digest is in the record, written after it by this module: the pickle is our own
        stored = pickle.loads(data)
        return AnalysisResult(stored["evaluations"], stored["summary"])
    except (OSError, ValueError, KeyError, TypeError, pickle.UnpicklingError, EOFError):
        return None


def _store(sweep_dir: Path, name: str, key: str, result: AnalysisResult, outputs: dict[str, list[int]]) -> None:
    """Store an analysis result (a pickle: the evaluations come back with their exact dtypes), then the
    record naming its key, the pickle's digest and the outputs it wrote: a store cut short is no hit."""
    folder = sweep_dir / CACHE / "analyses"
    data = pickle.dumps({"evaluations": result.evaluations, "summary": result.summary}, protocol=5)
    atomic_write(folder / f"{name}.pickle", lambda fh: fh.write(data))
    write_json({"key": key, "sha256": hashlib.sha256(data).hexdigest(), "outputs": outputs}, folder / f"{name}.json")


#: the independent analyses, longest first, by their seconds on the default benchmark's two workers
#: (pc_deletion 8.6, group_separation 8.6, invariance 7.6, sample_size 5.4, output_correlation 2.8,
#: layer_identification 2.7, then 1.0-1.8 each): each process takes the next longest when it is free,
#: so neither is left with a long one at the end (with only the four longest ordered, the rest in the
#: registry's order, one process ended ~2.5 s after the other)
_LONGEST_FIRST = ("pc_deletion", "group_separation", "invariance", "sample_size", "output_correlation",
                  "layer_identification", "representation_robustness", "seed_variability", "layer_monotonicity",
                  "measure_agreement", "robustness", "cross_model", "stop_searching")
#: processes that run the independent analyses (1: one after the other in this process) ...
ANALYSIS_PROCESSES = 2
#: ... on scores of at least this many rows: on a small sweep (a smoke test, seconds of analyses) starting
#: worker processes (torch, pandas and matplotlib imports) would cost more than it saves
PROCESSES_FROM_ROWS = 10_000


def _outputs_of(sweep_dir: Path, written: set[Path]) -> dict[str, list[int]]:
    """Size and mtime of the tables and figures an analysis wrote (the paths it asked its context for)."""
    out = {}
    for path in sorted(written):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        out[f"{path.parent.name}/{path.name}"] = [st.st_size, st.st_mtime_ns]
    return out


def _run_one(name: str, ctx: AnalysisContext) -> tuple[AnalysisResult | None, str | None, float]:
    """Run analysis ``name`` on ``ctx``: (its result, or None and the error), seconds."""
    tic = time.perf_counter()
    with warnings.catch_warnings(), torch_threads(1):
        # NaN cells (undefined measures, too few pairs) are expected and handled explicitly;
        # numpy's and scipy's warnings about them would only bury the summary.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConstantInputWarning)
        try:
            return load_analyses()[name](ctx), None, time.perf_counter() - tic
        except Exception as exc:  # one broken analysis must not take the others' tables with it
            log.exception("analysis %s failed", name)
            return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - tic


#: the scores a worker process read, by (path, content key): a worker runs several analyses
_worker_scores: dict[tuple[str, str], pd.DataFrame] = {}


def _run_in_worker(name: str, sweep_dir: Path, scores_key: str) -> tuple[AnalysisResult | None, str | None, float,
                                                                          set[Path]]:
    """:func:`_run_one` in a worker process: the scores are read from ``scores.parquet`` (the file whose
    content key the parent computed); no ``materialise`` callback (the parent reruns a failed analysis
    with it). Returns the paths written too."""
    path = sweep_dir / "scores.parquet"
    scores = _worker_scores.get((str(path), scores_key))
    if scores is None:
        scores = read_parquet(path)
        if scores is None or hashlib.sha256(path.read_bytes()).hexdigest() != scores_key:
            return None, f"{path} changed while the analyses ran", 0.0, set()
        _worker_scores.clear()
        _worker_scores[(str(path), scores_key)] = scores
    ctx = AnalysisContext(sweep_dir=sweep_dir, scores=scores, cache_dir=sweep_dir.parent / "cache")
    return (*_run_one(name, ctx), ctx.written)


def _run_analyses(sweep_dir: Path, source: _Scores, materialise: Callable[[str], None] | None,
                  frames: list[pd.DataFrame], lines: list[str], failed: list[str], keys: list[str]) -> None:
    """Run (or reuse) every registered analysis, appending its evaluations, summary line or failure, and
    the key of each analysis that ran to ``keys``, in the registry's order.

    Independent analyses (``tasks.base.INDEPENDENT``: they do not read the evaluations of those before
    them) are keyed without those evaluations and, when two or more must run, run in
    :data:`ANALYSIS_PROCESSES` processes (joblib's loky pool: the sweep's job workers when they are still
    up), reading ``scores.parquet`` there; each result records the tables and figures it wrote (the
    paths it asked its context for). The others run afterwards in this process, in order, each with the
    evaluations of every analysis before it."""
    analyses = load_analyses()
    registry = measures_version()
    ctx = None
    order = [(i, name) for i, name in enumerate(analyses, start=1)]
    skipped = {name for _, name in order if OWN_SWEEP_ONLY.get(name) not in (None, sweep_dir.name)}
    results: dict[str, tuple[str, AnalysisResult | None, str | None]] = {}  # name -> (key, result, error)

    def context() -> AnalysisContext:
        nonlocal ctx
        if ctx is None:  # the scores are read when the first analysis has to run, outside its try
            ctx = AnalysisContext(sweep_dir=sweep_dir, scores=source.table, cache_dir=sweep_dir.parent / "cache",
                                  materialise=materialise)
        return ctx

    def finish(i: int, name: str, key: str, result: AnalysisResult | None, error: str | None, seconds: float,
               written: set[Path]) -> None:
        results[name] = (key, result, error)
        if result is not None:
            _store(sweep_dir, name, key, result, _outputs_of(sweep_dir, written))
            print(f"[simbench] analysis {i}/{len(analyses)} {name}: {seconds:.1f}s", flush=True)

    def run_here(i: int, name: str, key: str, previous: list[pd.DataFrame]) -> None:
        here = dataclasses.replace(context(), previous=previous, written=set())
        finish(i, name, key, *_run_one(name, here), here.written)

    def reused(i: int, name: str, key: str) -> bool:
        """Whether a result stored under ``key`` was found (then it is the analysis's result)."""
        stored = _stored(sweep_dir, name, key)
        if stored is None:
            return False
        results[name] = (key, stored, None)
        print(f"[simbench] analysis {i}/{len(analyses)} {name}: inputs and code unchanged, stored result reused",
              flush=True)
        return True

    # independent analyses: keyed by their own inputs, run in a pool when two or more must run
    pending = []
    for i, name in order:
        if name in skipped or name not in INDEPENDENT:
            continue
        key = content_key([name, code_version(analyses[name].__module__), registry, source.key, sweep_dir.name])
        if not reused(i, name, key):
            pending.append((i, name, key))
    processes = min(ANALYSIS_PROCESSES, len(pending), os.cpu_count() or 1)
    if processes > 1 and source.summary()["rows"] >= PROCESSES_FROM_ROWS and source.from_file():
        from joblib import Parallel, delayed

        pending.sort(key=lambda job: _LONGEST_FIRST.index(job[1]) if job[1] in _LONGEST_FIRST else len(_LONGEST_FIRST))
        done = Parallel(n_jobs=processes, backend="loky", batch_size=1)(
            delayed(_run_in_worker)(name, sweep_dir, source.key) for _, name, _ in pending)
        for (i, name, key), (result, error, seconds, written) in zip(pending, done):
            if result is None and materialise is not None:
                run_here(i, name, key, [])  # e.g. representations only the sweep's callback can extract
            else:
                finish(i, name, key, result, error, seconds, written)
    else:
        for i, name, key in pending:
            run_here(i, name, key, [])

    # in the registry's order: the others run here, with the evaluations of every analysis before them
    previous: list[pd.DataFrame] = []
    for i, name in order:
        if name in skipped:
            lines.append(f"{name}: runs on `sweep={OWN_SWEEP_ONLY[name]}` results only")
            continue
        if name not in INDEPENDENT:
            key = content_key([name, code_version(analyses[name].__module__), registry, source.key, sweep_dir.name,
                               [_frame_digest(f) for f in previous]])
            if not reused(i, name, key):
                run_here(i, name, key, list(previous))
        key, result, error = results[name]
        keys.append(key)
        if result is None:
            failed.append(f"{name} ({error})")
            lines.append(f"{name}: FAILED ({error})")
            continue
        if result.evaluations.empty:
            lines.append(f"{name}: not applicable ({result.summary})")
            continue
        frames.append(result.evaluations.assign(task=name))
        previous.append(frames[-1])
        lines.append(f"{name}: {result.summary}")


def _frame_digest(frame: pd.DataFrame) -> str:
    """Content digest of a table of evaluations (values, index, column names and dtypes)."""
    try:
        rows = pd.util.hash_pandas_object(frame, index=True).values.tobytes()
    except TypeError:  # unhashable cells (lists): the pickled table instead
        rows = pickle.dumps(frame, protocol=5)
    return hashlib.sha256(rows + repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode()).hexdigest()


def _write_unless_current(evaluations: pd.DataFrame, path: Path, key: str, sweep_dir: Path) -> None:
    """Write ``evaluations.parquet`` unless the file there was written from the same analysis keys."""
    record = sweep_dir / CACHE / "evaluations.json"
    try:
        stored = json.loads(record.read_text())
        if stored["key"] == key and stored["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest():
            return
    except (OSError, ValueError, KeyError):
        pass
    write_parquet(evaluations, path)
    write_json({"key": key, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}, record)


def _report(sweep_dir: Path, source: _Scores, keys: list[str]) -> Path:
    """``report.html``, rewritten unless its inputs (scores, analyses, tables, figures, run configs) and
    the report's code are those it was written from."""
    configs = sorted((sweep_dir.parent / "logs" / sweep_dir.name).glob("*/*/multirun.yaml"))
    key = content_key([code_version("runners.report"), source.key, keys, _outputs(sweep_dir),
                       [str(p.relative_to(sweep_dir.parent)) for p in configs]])
    record, out = sweep_dir / CACHE / "report.json", sweep_dir / "report.html"
    try:
        stored = json.loads(record.read_text())
        if stored["key"] == key and stored["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest():
            return out
    except (OSError, ValueError, KeyError):
        pass
    path = write_report(sweep_dir, source.table)
    write_json({"key": key, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}, record)
    return path


def _summary(sweep_dir: Path, scores: dict, evaluations: pd.DataFrame, lines: list[str], figures: list[str]) -> str:
    out = [
        "",
        f"=== Summary of sweep {sweep_dir.name!r} ===",
        f"scores:      {scores['rows']} rows ({', '.join(f'{k} {v}' for k, v in scores['status'].items())}), "
        f"{scores['measures']} measures, {scores['models']} models",
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
