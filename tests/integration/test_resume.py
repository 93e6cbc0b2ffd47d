"""Kill-and-resume: a local sweep killed with SIGKILL at random points (seeded) and then rerun ends with
exactly the scores of an uninterrupted run (no lost rows, no duplicates, no partial shard read as
data), and the rerun recomputes nothing that was finished. Damaged cache and shard files are detected
and recomputed, never read as data."""

from __future__ import annotations

import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.storage import read_arrays, read_parquet
from tasks.zoo.cache import _load_state
from tests.integration.conftest import (
    assert_same_values,
    count,
    kill_group,
    log_tail,
    run_sweep,
    scores,
    shard_files,
    start_sweep,
    wait_for,
)

KILL_SEED = 20260611
N_KILLS = 3


def _snapshot(results: Path) -> dict[Path, int]:
    """mtime of every finished file of the sweep: shards, trained models, extracted representations."""
    files = [*shard_files(results), *(results / "cache").glob("models/*.pt"),
             *(results / "cache").glob("representations/*.npz")]
    return {p: p.stat().st_mtime_ns for p in files}


def _plant_decoys(results: Path, shard: pd.DataFrame) -> None:
    """Temporary files like those a killed writer leaves, but holding whole, valid tables with wrong
    values: collect and the jobs must never read them."""
    decoy = shard.assign(value=12345.0, timestamp=pd.Timestamp.now(tz="UTC"))
    decoy.loc[decoy.index[0], "row_key"] = "decoy-row"
    for name in (".decoy.parquet.x1y2z3.tmp", ".0123abcd.parquet.tmp"):
        decoy.to_parquet(results / "smoke" / "shards" / name, index=False)


def test_sigkill_at_random_points_then_rerun(baseline, tmp_path):
    results = tmp_path / "results"
    rng = random.Random(KILL_SEED)
    killed_alive = 0
    for i in range(N_KILLS):
        log = tmp_path / f"killed-{i}.log"
        proc = start_sweep(results, log)
        wait_for(lambda: "job(s) validated" in log.read_text(errors="replace"), 600, "the jobs to start",
                 detail=log_tail(log))
        # A uniformly random point of the jobs' own run time (measured on the uninterrupted baseline):
        # training, extraction, measuring, the atomic shard writes, or the lock hand-over between jobs.
        time.sleep(rng.uniform(0.0, 1.0) * baseline.job_phase_s)
        killed_alive += proc.poll() is None
        kill_group(proc)

    # The first run starts from nothing, so its kill lands mid-work; later runs reuse what earlier ones
    # finished and may be done before their kill point.
    assert killed_alive >= 1, "no kill hit a running sweep"
    before = _snapshot(results)
    rows_before = {k for p in shard_files(results) for k in read_parquet(p)["row_key"]}
    models_before = len(list((results / "cache").glob("models/*.pt")))
    (results / "smoke" / "shards").mkdir(parents=True, exist_ok=True)
    _plant_decoys(results, baseline.scores.head(3))

    final = run_sweep(results)
    out = final.stdout + final.stderr
    table = scores(results)

    # Exactly the uninterrupted run's rows and values.
    assert_same_values(table, baseline.scores)
    assert "decoy-row" not in set(table["row_key"]) and not table["value"].eq(12345.0).any()
    for path in shard_files(results):
        shard = read_parquet(path)
        assert shard is not None and shard["row_key"].is_unique, f"{path.name} is damaged or has duplicates"
    assert len(shard_files(results)) == baseline.n_shards
    assert len(list((results / "cache").glob("models/*.pt"))) == baseline.n_models

    # Finished work is not recomputed: finished files untouched, only the missing models trained and
    # only the missing rows computed.
    changed = [p.name for p, mtime in before.items() if p.stat().st_mtime_ns != mtime]
    assert not changed, f"finished files were rewritten by the rerun: {changed}"
    assert count(r"trained mlp seed=", out) == baseline.n_models - models_before
    missing = len(baseline.scores) - len(rows_before)
    done = re.search(r"(\d+) rows computed in this run, (\d+) reused", out)
    assert done and int(done.group(1)) == missing and int(done.group(2)) == len(rows_before), out[-3000:]


def _damage(path: Path, how: str, rng: np.random.Generator) -> None:
    raw = path.read_bytes()
    if how == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "random":
        path.write_bytes(rng.bytes(len(raw)))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flip":  # one flipped bit in the middle of the file (bit rot)
        data = bytearray(raw)
        data[len(raw) // 2] ^= 0x04
        path.write_bytes(bytes(data))


READERS = {".parquet": read_parquet, ".npz": read_arrays, ".pt": _load_state}


def test_damaged_cache_and_shard_files_are_recomputed(baseline, tmp_path):
    """Every model, representation and shard of a finished sweep is damaged (truncated, random bytes,
    emptied; shards also a flipped bit); the rerun detects each one, recomputes exactly what it lost and
    ends with the same values."""
    results = tmp_path / "results"
    shutil.copytree(baseline.results, results, ignore=shutil.ignore_patterns("logs", "*.log"))
    rng = np.random.default_rng(KILL_SEED)
    shards = shard_files(results)
    originals = {p: read_parquet(p) for p in shards}
    damaged = {}
    for files, ways in ((shards, ["truncate", "random", "flip", "empty"]),
                        (sorted((results / "cache").glob("models/*.pt")), ["truncate", "random"]),
                        (sorted((results / "cache").glob("representations/*.npz")), ["empty", "random", "truncate"])):
        for i, path in enumerate(files):
            damaged[path] = ways[i % len(ways)]
            _damage(path, damaged[path], rng)
    # A damaged file reads as None; a flipped bit may also be harmless (then the data is unchanged).
    kept = 0
    for path, how in damaged.items():
        got = READERS[path.suffix](path)
        if how == "flip" and got is not None:
            assert got.equals(originals[path]), f"{path.name} (flipped bit) was read as different data"
            kept += len(got)
        else:
            assert got is None, f"{path.name} ({how}) was read as data"

    proc = run_sweep(results)
    out = proc.stdout + proc.stderr
    assert_same_values(scores(results), baseline.scores)
    assert count(r"corrupt model checkpoint", out) == baseline.n_models
    assert count(r"trained mlp seed=", out) == baseline.n_models
    assert f"{len(baseline.scores) - kept} rows computed in this run, {kept} reused" in out
    for path in damaged:  # every damaged file was rewritten whole
        assert READERS[path.suffix](path) is not None, f"{path.name} was not recomputed"
