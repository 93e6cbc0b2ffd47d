"""Shared helpers for the integration tests: real sweeps in subprocesses, in temporary results dirs.

Every sweep here is the smoke grid (2 seeds x 2 noise scales of a small MLP on synthetic data, 4 jobs)
with the cheap measure set, so a run costs seconds of work plus the interpreter start-up. The
``baseline`` fixture runs it once, uninterrupted, with Hydra's basic launcher; the other tests compare
their collected scores with it value by value (keyed by ``row_key``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The sweep every integration test runs (on top of it: launcher and results_dir).
SMOKE = ("sweep=smoke", "measures=fast")


def sweep_command(results: Path, *overrides: str) -> list[str]:
    """``python -m runners.sweep`` with the interpreter of this venv (what ``uv run python`` runs)."""
    return [sys.executable, "-m", "runners.sweep", *SMOKE, f"results_dir={results}", *overrides]


def run_sweep(results: Path, *overrides: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(sweep_command(results, *overrides), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"sweep failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def start_sweep(results: Path, log: Path, *overrides: str) -> subprocess.Popen:
    """Start a sweep in the background, in its own process group, its output going to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(sweep_command(results, *overrides), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the sweep and every process it started (joblib workers, submitit controllers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2, detail=None):
    """Poll ``predicate`` until it returns a true value (returned) or ``timeout`` seconds pass (an
    AssertionError naming ``what``, followed by ``detail()`` when given: the state that explains it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    message = f"timed out after {timeout:.0f}s waiting for {what}"
    raise AssertionError(message + (f"\n{detail()}" if detail is not None else ""))


def log_tail(path: Path, chars: int = 3000):
    """A ``wait_for`` detail: the end of a sweep's log (what it did before the wait timed out)."""
    return lambda: f"--- end of {path.name}:\n" + (path.read_text(errors="replace")[-chars:] if path.exists()
                                                    else "(not written)")


def session_processes(pgid: int):
    """A ``wait_for`` detail: the processes still in process group ``pgid`` (a sweep started in its own
    session: pgid = its pid), with their state, age and command line."""
    def show() -> str:
        listing = subprocess.run(["ps", "-A", "-o", "pid=,pgid=,stat=,etime=,args="], capture_output=True,
                                 text=True).stdout
        alive = [line.strip() for line in listing.splitlines() if line.split()[1:2] == [str(pgid)]]
        return "processes still in the group (pid pgid stat elapsed command):\n" + "\n".join(alive)
    return show


def session_alive(pgid: int) -> bool:
    """Whether any process of the session / process group ``pgid`` still runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def scores(results: Path) -> pd.DataFrame:
    return pd.read_parquet(results / "smoke" / "scores.parquet")


def values(table: pd.DataFrame) -> pd.Series:
    """The measured values keyed by row key (the identity of a comparison), in a canonical order."""
    return table.set_index("row_key")["value"].sort_index()


def assert_same_values(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Exactly the rows of ``expected`` (no lost rows, no duplicates) with bit-identical values."""
    assert table["row_key"].is_unique, "duplicate rows"
    assert set(table["row_key"]) == set(expected["row_key"]), "lost or extra rows"
    assert table["status"].eq("ok").all()
    pd.testing.assert_series_equal(values(table), values(expected), check_exact=True)


def shard_files(results: Path) -> list[Path]:
    return sorted((results / "smoke" / "shards").glob("*.parquet"))


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


def job_logs(results: Path) -> str:
    """Every job's own log file (Hydra writes <sweep dir>/<job num>/<job name>.log), concatenated."""
    return "".join(p.read_text(errors="replace") for p in sorted((results / "logs").rglob("simbench.log")))


@dataclass
class Baseline:
    results: Path
    scores: pd.DataFrame
    job_phase_s: float       # wall time from "jobs validated" to the end of the last job
    n_models: int
    n_shards: int


def timed_run(results: Path, log: Path, *overrides: str, timeout: float = 600) -> tuple[int, float]:
    """Run a sweep to its end; return its exit code and the wall time of its job phase (from the "jobs
    validated" line to the "collected" line, i.e. the time the jobs themselves took)."""
    tic = time.monotonic()
    proc = start_sweep(results, log, *overrides)
    marks: dict[str, float] = {}
    while proc.poll() is None and time.monotonic() - tic < timeout:
        text = log.read_text(errors="replace")
        for key, line in (("validated", "job(s) validated"), ("collected", "collected ")):
            if key not in marks and line in text:
                marks[key] = time.monotonic()
        time.sleep(0.05)
    if proc.poll() is None:
        kill_group(proc)
    job_phase = marks.get("collected", time.monotonic()) - marks.get("validated", tic)
    return proc.returncode, job_phase


@pytest.fixture(scope="session")
def baseline(tmp_path_factory) -> Baseline:
    """The smoke sweep run once, uninterrupted, with the basic launcher: the reference for every test."""
    results = tmp_path_factory.mktemp("baseline")
    log = results / "sweep.log"
    code, job_phase = timed_run(results, log)
    assert code == 0, log.read_text()[-4000:]
    table = scores(results)
    assert len(table) > 0 and table["status"].eq("ok").all()
    return Baseline(results, table, job_phase, len(list((results / "cache" / "models").glob("*.pt"))),
                    len(shard_files(results)))
