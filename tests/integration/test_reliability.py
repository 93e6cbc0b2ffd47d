"""Defects found by fault injection (issue 13), each pinned by a real smoke sweep in a subprocess:
diverged training, an analysis with nothing to analyse, thread counts, SIGTERM/SIGINT, repairs, stale
temporary files, corrupt or unwritable results, Hydra log folders of simultaneous sweeps."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tasks.storage import read_parquet, write_parquet
from tests.integration.conftest import (
    ROOT,
    assert_same_values,
    log_tail,
    run_sweep,
    scores,
    session_alive,
    session_processes,
    shard_files,
    start_sweep,
    sweep_command,
    wait_for,
)

#: riemannian_distance moved with runtime.num_threads before measures ran on one thread (up to 1.5e-7),
#: plus a weight-space one (its rows name no layer with representations)
THREAD_SENSITIVE = "measures.include=[cka_linear,weight_distance,riemannian_distance]"


def _analyze(results: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runners.analyze", "--sweep", "smoke", "--results", str(results),
                           *extra], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


# -- items 1 and 2: diverged training ------------------------------------------------------------------


def test_diverged_training_is_recorded_and_never_retried(tmp_path):
    results = tmp_path / "results"
    args = ("train.lr=1e20", "measures.include=[cka_linear,weight_distance]")
    first = run_sweep(results, *args)
    table = scores(results)
    assert len(table) > 0 and table["status"].eq("undefined").all(), table["status"].value_counts()
    assert table["error"].str.contains("training diverged").all()
    assert table["error"].str.contains("train.lr=1e+20", regex=False).all(), table["error"].iloc[0]
    assert not table["value"].notna().any()  # weight_distance is no NaN "ok" row
    markers = list((results / "cache" / "models").glob("*.diverged.json"))
    assert len(markers) == 2 and not list((results / "cache" / "models").glob("*.pt"))
    assert "training diverged" in first.stdout + first.stderr
    # The rerun neither trains nor computes anything: undefined rows are final answers.
    second = run_sweep(results, *args)
    out = second.stdout + second.stderr
    assert "0 rows computed in this run" in out and "trained mlp" not in out
    pd.testing.assert_frame_equal(scores(results), table)


# -- items 1 and 4: analyses with nothing to analyse; values independent of the thread count ----------


@pytest.fixture(scope="module")
def thread_runs(tmp_path_factory):
    """The smoke grid with thread-sensitive measures, once with 1 and once with 2 torch threads."""
    runs = {}
    for threads in (1, 2):
        results = tmp_path_factory.mktemp(f"threads{threads}")
        run_sweep(results, THREAD_SENSITIVE, f"runtime.num_threads={threads}")
        runs[threads] = results
    return runs


def test_values_do_not_depend_on_the_thread_count(thread_runs):
    one, two = (scores(thread_runs[t]).set_index("row_key").sort_index() for t in (1, 2))
    assert one["status"].eq("ok").all() and one.index.equals(two.index)
    pd.testing.assert_series_equal(one["value"], two["value"], check_exact=True)


def test_standalone_analyze_equals_the_sweeps_own(thread_runs, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(thread_runs[2], results, ignore=shutil.ignore_patterns("logs"))
    own = pd.read_parquet(results / "smoke" / "evaluations.parquet")
    shutil.rmtree(results / "smoke" / "cache")  # the stored analysis results: recompute every one
    env = {k: v for k, v in os.environ.items() if not k.endswith("NUM_THREADS")}  # all cores
    proc = _analyze(results, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = pd.read_parquet(results / "smoke" / "evaluations.parquet")
    pd.testing.assert_frame_equal(again, own, check_exact=True)


def test_an_analysis_with_only_weight_rows_says_so_and_the_others_run(thread_runs, tmp_path):
    """The only ok rows come from a measure without representations (weight_distance; the others failed):
    the invariance analysis crashed with KeyError: 'rep/weights' and no table was written."""
    results = tmp_path / "results"
    shutil.copytree(thread_runs[1], results, ignore=shutil.ignore_patterns("logs"))
    table = read_parquet(results / "smoke" / "scores.parquet")
    table.loc[table["measure"].ne("weight_distance"), "status"] = "error"
    write_parquet(table, results / "smoke" / "scores.parquet")
    proc = _analyze(results)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "invariance: not applicable" in proc.stdout
    assert "robustness:" in proc.stdout and "Traceback" not in proc.stderr


# -- item 7: SIGTERM / SIGINT stop the whole process tree ---------------------------------------------




def _children(pid: int) -> list[int]:
    listing = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    return [int(p) for p, pp in (line.split() for line in listing.splitlines()) if int(pp) == pid]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_worker_and_a_rerun_resumes(baseline, tmp_path, sig):
    results = tmp_path / "results"
    log = tmp_path / "sweep.log"
    proc = start_sweep(results, log, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    wait_for(lambda: len(_children(proc.pid)) >= 2, 300, "the joblib workers to start", detail=log_tail(log))
    time.sleep(1.0)
    os.kill(proc.pid, sig)  # the main process only, as `kill <pid>` or a scheduler would
    proc.wait(timeout=60)
    text = log.read_text(errors="replace")
    assert proc.returncode == 128 + sig, text[-3000:]
    assert f"stopped by {sig.name}" in text and "rerun the same command to resume" in text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    wait_for(lambda: not session_alive(proc.pid), 30, "every process of the sweep to end",
             detail=session_processes(proc.pid))
    run_sweep(results)
    assert_same_values(scores(results), baseline.scores)


@pytest.mark.parametrize("launcher", ["joblib", "basic"])
def test_a_closed_output_pipe_stops_the_sweep_quietly_and_a_rerun_resumes(baseline, tmp_path, launcher):
    """`simbench sweep | head -1`: once the reader of its output has gone, the sweep stops like a command
    killed by SIGPIPE (status 141, no traceback: the next print, or the next log line of the sweep's
    own process or of a pool worker, finds the pipe closed), every worker ends, and a rerun completes
    the rows."""
    results = tmp_path / "results"
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as stderr:
        proc = subprocess.Popen(sweep_command(results, f"hydra/launcher={launcher}"), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
    assert proc.stdout.readline().startswith(b"[simbench]")  # the first line, as `head -1` reads it
    proc.stdout.close()
    assert proc.wait(timeout=300) == 128 + signal.SIGPIPE, err.read_text()[-3000:]
    assert "Traceback" not in err.read_text() and "Logging error" not in err.read_text(), err.read_text()[-3000:]
    wait_for(lambda: not session_alive(proc.pid), 30, "every process of the sweep to end",
             detail=session_processes(proc.pid))
    run_sweep(results)
    assert_same_values(scores(results), baseline.scores)


def test_sigterm_stops_the_running_part_of_a_composite_sweep(tmp_path):
    results = tmp_path / "results"
    log = tmp_path / "sweep.log"
    proc = start_sweep(results, log, "sweep=benchmark", "measures=fast", "hydra/launcher=basic")
    wait_for(lambda: "part 1/" in log.read_text(errors="replace"), 300, "the first part to start",
             detail=log_tail(log))
    wait_for(lambda: _children(proc.pid), 60, "the part sweep process", detail=log_tail(log))
    time.sleep(2.0)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    text = log.read_text(errors="replace")
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in text, text[-3000:]
    assert "Traceback" not in text
    wait_for(lambda: not session_alive(proc.pid), 30, "the part sweep and its workers to end",
             detail=session_processes(proc.pid))


# -- item 11: repairs are reported, stale temporaries removed, bad results dirs are one line ------------


def test_repairs_are_reported_and_stale_temporaries_removed(baseline, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(baseline.results, results, ignore=shutil.ignore_patterns("logs", "*.log"))
    shard = shard_files(results)[0]
    shard.write_bytes(shard.read_bytes()[:100])
    representation = sorted((results / "cache" / "representations").glob("*.npz"))[0]
    representation.write_bytes(b"")
    model = sorted((results / "cache" / "models").glob("*.pt"))[0]  # its representations stay intact
    model.write_bytes(model.read_bytes()[:200])
    host = socket.gethostname().split(".")[0].replace("-", "_")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = shard.parent / f".{shard.name}.{host}-{dead.pid}.k3j9x.tmp"
    live = shard.parent / f".{shard.name}.{host}-{os.getpid()}.a8b7c.tmp"
    for path in (stale, live):
        path.write_bytes(b"partial")
    proc = run_sweep(results)
    out = proc.stdout + proc.stderr
    assert f"repairing damaged shard {shard}" in out
    assert f"repairing damaged representation file {representation}" in out
    assert f"corrupt model checkpoint {model}" in out and "repairing it: retraining" in out
    assert "removed 1 temporary file(s) left by interrupted writes" in out
    assert not stale.exists() and live.exists()
    assert_same_values(scores(results), baseline.scores)


def test_corrupt_scores_are_reported_as_corrupt(baseline, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(baseline.results, results, ignore=shutil.ignore_patterns("logs", "*.log"))
    path = results / "smoke" / "scores.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    proc = _analyze(results)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"[simbench] analyze: {path} is corrupt")
    assert "Traceback" not in proc.stderr


def test_an_unwritable_results_dir_is_one_line(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the results folder should be")
    proc = run_sweep(blocker / "results", check=False, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("[simbench] cannot write results:"), proc.stderr


def test_sweeps_started_together_get_their_own_log_folders(baseline, tmp_path):
    results = tmp_path / "results"
    # without the jobs' manifests, so that both sweeps launch their jobs (a finished job is not launched)
    shutil.copytree(baseline.results, results, ignore=shutil.ignore_patterns("logs", "*.log", "*.done.json"))
    procs = [start_sweep(results, tmp_path / f"sweep{i}.log") for i in range(2)]
    for proc in procs:
        assert proc.wait(timeout=600) == 0
    folders = sorted((results / "logs" / "smoke" / "multirun").iterdir())
    assert len(folders) == 2, folders
    for folder in folders:  # each holds its own 4 job folders, not a mix of both sweeps'
        assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
