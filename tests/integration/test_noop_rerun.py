"""A rerun of a finished sweep does no work: no job is launched (their manifests hold), the shards are
not collected again and no analysis is recomputed (their stored results are keyed by the content of
their inputs and code). A changed input recomputes what depends on it, and nothing else."""

from __future__ import annotations

import ast
import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runners import analyze as analyze_module
from tasks.base import ANALYSES, load_analyses
from tasks.storage import read_parquet, write_parquet
from tests.integration.conftest import count, run_sweep, scores, shard_files

ROOT = Path(__file__).resolve().parents[2]

N_JOBS = 4  # the smoke grid: 2 seeds x 2 noise scales


def _copy(baseline, tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(baseline.results, results)  # with logs: the report lists the runs' configs
    return results


def _mtimes(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_a_second_run_launches_no_job_and_recomputes_no_analysis(baseline, tmp_path):
    results = _copy(baseline, tmp_path)
    before = _mtimes(results / "smoke") | _mtimes(results / "cache")
    proc = run_sweep(results)
    out = proc.stdout + proc.stderr
    assert f"{N_JOBS} job(s) validated, {N_JOBS} finished earlier (not launched)" in out
    assert "Launching" not in out and "nothing to compute" not in out  # Hydra started no job
    assert "not collected again" in out
    ran = count(r"\[simbench\] analysis \d+/\d+ ", out)
    assert ran > 0 and count(r"stored result reused", out) == ran, out[-3000:]
    assert "0 rows computed in this run" in out
    changed = sorted(p.name for p, mtime in before.items() if p.stat().st_mtime_ns != mtime)
    assert not changed, f"the rerun rewrote {changed}"


def test_a_changed_shard_relaunches_its_job_and_recomputes_the_analyses(baseline, tmp_path):
    results = _copy(baseline, tmp_path)
    path = shard_files(results)[0]
    shard = read_parquet(path)
    shard.loc[0, "value"] = shard.loc[0, "value"] + 0.125
    write_parquet(shard, path)
    proc = run_sweep(results)
    out = proc.stdout + proc.stderr
    # the changed shard's job runs again (its manifest no longer holds); the other three are not launched
    assert f"{N_JOBS - 1} finished earlier (not launched)" in out
    assert "not collected again" not in out and "collected " in out
    assert count(r"stored result reused", out) == 0, out[-3000:]
    table = scores(results).set_index("row_key")
    assert table.loc[shard.loc[0, "row_key"], "value"] == shard.loc[0, "value"]
    # ... and the run after it finds everything current again
    again = run_sweep(results)
    assert f"{N_JOBS} finished earlier (not launched)" in again.stdout
    assert count(r"\[simbench\] analysis \d+/\d+ ", again.stdout) == count(r"stored result reused", again.stdout)


@pytest.fixture
def counted(monkeypatch) -> list[str]:
    """The names of the analyses that actually run (every registered analysis wrapped in a counter)."""
    calls: list[str] = []
    for name, fn in list(load_analyses().items()):
        def wrapper(ctx, fn=fn, name=name):
            calls.append(name)
            return fn(ctx)
        monkeypatch.setitem(ANALYSES, name, functools.wraps(fn)(wrapper))
    return calls


def test_analyses_are_recomputed_exactly_when_their_inputs_or_code_change(baseline, tmp_path, counted, monkeypatch):
    monkeypatch.setattr(analyze_module, "ANALYSIS_PROCESSES", 1)  # counted here: every analysis in this process
    results = _copy(baseline, tmp_path)
    sweep_dir = results / "smoke"
    first = analyze_module.analyze(sweep_dir)
    assert counted == []  # the baseline sweep stored every result

    # a changed score: every analysis reads the scores, so every one runs again, and the next run reuses them
    table = read_parquet(sweep_dir / "scores.parquet")
    table.loc[0, "value"] = table.loc[0, "value"] + 0.25
    write_parquet(table, sweep_dir / "scores.parquet")
    analyze_module.analyze(sweep_dir)
    expected = [n for n in ANALYSES if n not in ("flicker", "solutions")]  # those run on their own sweeps only
    assert counted == expected
    counted.clear()
    analyze_module.analyze(sweep_dir)
    assert counted == []

    # a deleted table: the analysis that wrote it runs again (and only it)
    (sweep_dir / "tables" / "robustness.csv").unlink()
    analyze_module.analyze(sweep_dir)
    assert counted == ["robustness"] and (sweep_dir / "tables" / "robustness.csv").exists()
    counted.clear()

    # changed code of one analysis module: that module's analyses run again
    real = analyze_module.code_version
    monkeypatch.setattr(analyze_module, "code_version",
                        lambda *modules: real(*modules) + ("-edited" if modules == ("tasks.invariance",) else ""))
    analyze_module.analyze(sweep_dir)
    assert counted == ["invariance"]

    # the stored results are the computed ones: a run from an empty store gives the same evaluations
    shutil.rmtree(sweep_dir / "cache")
    fresh = analyze_module.analyze(sweep_dir)
    stored = analyze_module.analyze(sweep_dir)
    assert fresh.equals(stored) and not fresh.equals(first)


def test_analyses_in_two_processes_equal_one_after_the_other(baseline, tmp_path, monkeypatch):
    """The independent analyses run in two worker processes give the evaluations, tables and figures of
    a run in this process, one after the other, and each stored result names the same outputs (the
    paths the analysis asked for, not a listing of the folders that the other process writes into)."""
    runs = {}
    monkeypatch.setattr(analyze_module, "PROCESSES_FROM_ROWS", 0)  # the smoke sweep's few rows too
    for processes in (1, 2):
        monkeypatch.setattr(analyze_module, "ANALYSIS_PROCESSES", processes)
        sweep_dir = _copy(baseline, tmp_path / str(processes)) / "smoke"
        for folder in ("cache", "tables", "figures"):
            shutil.rmtree(sweep_dir / folder)
        evaluations = analyze_module.analyze(sweep_dir)
        records = {p.stem: json.loads(p.read_text())["outputs"] for p in (sweep_dir / "cache" / "analyses").glob("*.json")}
        runs[processes] = (evaluations, records, sweep_dir)
    (serial, serial_records, serial_dir), (parallel, parallel_records, parallel_dir) = runs[1], runs[2]
    assert parallel.equals(serial)
    assert {k: sorted(v) for k, v in parallel_records.items()} == {k: sorted(v) for k, v in serial_records.items()}
    assert sorted(serial_records["robustness"]) == ["figures/robustness.png", "tables/robustness.csv"]
    for folder in ("tables", "figures"):
        names = sorted(p.name for p in (serial_dir / folder).iterdir())
        assert names == sorted(p.name for p in (parallel_dir / folder).iterdir())
        for name in names:
            if name != "sample_size.csv":  # its cpu_s column is a timing
                assert (serial_dir / folder / name).read_bytes() == (parallel_dir / folder / name).read_bytes(), name


def test_code_version_follows_imports():
    """An analysis module's code version covers the project modules it imports (here tasks.stats via
    tasks.benchmark_tests) and differs between modules."""
    path = Path(analyze_module.__file__).resolve().parent.parent / "tasks" / "benchmark_tests.py"
    imported = analyze_module._imported(path, "tasks.benchmark_tests")
    assert "tasks.stats" in imported and "tasks.base" in imported
    assert analyze_module.code_version("tasks.invariance") != analyze_module.code_version("tasks.robustness")


def test_run_order_does_not_depend_on_import_order():
    """The analyses run in one order whichever task module a process imported first (a stored result is
    keyed by the evaluations of the analyses before it): a fresh interpreter that imports
    tasks.significance and tasks.benchmark_tests first gets the order of one that imports nothing first."""
    script = "import {}; from tasks.base import load_analyses; print(list(load_analyses()))"
    orders = [subprocess.run([sys.executable, "-c", script.format(first)], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout for first in ("sys", "tasks.significance, tasks.benchmark_tests")]
    assert orders[0] == orders[1]
    order = ast.literal_eval(orders[0])
    assert order[0] == "robustness" and order[-1] == "ranks"
