"""A composite sweep (``parts: [...]``, like the default benchmark) on the joblib launcher runs the jobs of
all its parts in one process pool (runners.sweep.run_cells); with another launcher it runs part by part.
Both must give the same rows with bit-identical values, train each model once, keep a log per job; a
pooled run stopped by SIGTERM ends all its workers and resumes, and a rerun of the finished sweep
launches nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.integration.conftest import (
    ROOT,
    assert_same_values,
    count,
    log_tail,
    session_alive,
    session_processes,
    wait_for,
)

#: two parts of the smoke composite (vision and graphs), one cheap measure, two seeds each
COMPOSITE = ("sweep=smoke_domains", "parts=[smoke,smoke_graph]", "measures.include=[cka_linear,knn_jaccard]")


def _run(results: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "runners.sweep", *COMPOSITE, f"results_dir={results}", *overrides]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _scores(results: Path) -> pd.DataFrame:
    return pd.read_parquet(results / "smoke_domains" / "scores.parquet")


def test_composite_in_one_pool_matches_part_by_part(tmp_path):
    by_part = tmp_path / "by_part"
    _run(by_part, "hydra/launcher=basic")
    pooled = tmp_path / "pooled"
    pool = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    log = tmp_path / "stopped.log"
    with open(log, "wb") as out:
        stopped = subprocess.Popen([sys.executable, "-m", "runners.sweep", *COMPOSITE, f"results_dir={pooled}", *pool],
                                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    # Stopped as soon as the first model is stored: on an idle 2-core machine all six jobs finish within
    # ~0.5 s of that, so waiting (0.2 s polls) for the first finished job let the whole sweep end before
    # the signal, and the rerun had nothing to launch.
    wait_for(lambda: "trained " in log.read_text(errors="replace"), 600, "the first model to be trained", 0.01,
             detail=log_tail(log))
    os.kill(stopped.pid, signal.SIGTERM)
    assert stopped.wait(timeout=60) == 128 + signal.SIGTERM and "stopped by SIGTERM" in log.read_text()
    wait_for(lambda: not session_alive(stopped.pid), 30, "the pool's workers to end",
             detail=session_processes(stopped.pid))
    proc = _run(pooled, *pool)
    assert "one pool for all 2 parts" in proc.stdout
    # the stopped pool leaves nothing for the resource trackers (tqdm's semaphores, joblib's folders)
    assert "leaked" not in proc.stderr, proc.stderr[-2000:]
    # the workers start during the plan, before the progress folder exists: each job is told where it is
    assert re.search(r"jobs (\d+)/\1 done", proc.stderr), proc.stderr[-2000:]
    assert "part 1/2" not in proc.stdout  # no part-by-part subprocesses
    expected = _scores(by_part)
    assert len(expected) > 0 and expected["domain"].nunique() == 2
    assert_same_values(_scores(pooled), expected)
    logs = "".join(p.read_text() for p in sorted((pooled / "logs").rglob("simbench.log")))  # both pooled runs
    n_models = len(list((by_part / "cache" / "models").glob("*.pt")))
    assert n_models > 0 and len(list((pooled / "cache" / "models").glob("*.pt"))) == n_models
    assert count(r"trained \w+ seed=", logs) == n_models, "a model was trained twice, or a job log is missing"
    again = _run(pooled, *pool)
    assert "job(s) of" not in again.stdout and "0 rows computed" in again.stdout
