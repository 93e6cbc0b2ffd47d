"""Concurrency: jobs that need the same model at the same time train it once (a file lock per model),
and concurrent writers of the same shards never corrupt or duplicate results."""

from __future__ import annotations

import shutil

from runners.collect import collect
from tasks.storage import read_parquet
from tests.integration.conftest import (
    assert_same_values,
    count,
    job_logs,
    run_sweep,
    scores,
    shard_files,
    start_sweep,
)


def test_parallel_jobs_train_a_shared_model_once(baseline, tmp_path):
    """joblib n_jobs=2: jobs #0 (seed 0) and #1 (seed 0 + weight noise) start together and both need the
    seed-0 model; one trains it while the other waits on its lock and then loads it."""
    results = tmp_path / "results"
    proc = run_sweep(results, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    logs = job_logs(results)
    for seed in range(2):
        assert count(rf"trained mlp seed={seed}:", logs) == 1, f"model seed={seed} trained more than once:\n{logs}"
    assert len(list((results / "cache").glob("models/*.pt"))) == baseline.n_models
    # Parallel jobs give bit-identical values to the sequential launcher.
    assert_same_values(scores(results), baseline.scores)
    assert "0 reused" in proc.stdout


def test_two_identical_sweeps_at_once(baseline, tmp_path):
    """The same sweep started twice on one results dir at the same moment (a user relaunching while the
    first run is still going): both finish, each model is trained once over both runs, and the shards
    are whole with no duplicate rows."""
    results = tmp_path / "results"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    runs = [start_sweep(results, log) for log in logs]
    codes = [run.wait(timeout=900) for run in runs]
    text = [log.read_text(errors="replace") for log in logs]
    assert codes == [0, 0], "\n\n".join(t[-3000:] for t in text)
    assert sum(count(r"trained mlp seed=", t) for t in text) == baseline.n_models
    for path in shard_files(results):
        shard = read_parquet(path)
        assert shard is not None and shard["row_key"].is_unique
    assert_same_values(scores(results), baseline.scores)
    assert not [p for p in results.rglob("*.tmp")], "a writer left a temporary file behind"


def test_collect_is_idempotent(baseline, tmp_path):
    """Collecting the same shards again, or with a shard duplicated under another name (as a rerun with a
    changed job key could leave), gives the same table."""
    results = tmp_path / "results"
    shutil.copytree(baseline.results / "smoke" / "shards", results / "smoke" / "shards")
    first = shard_files(results)[0]
    shutil.copy(first, first.with_name("0000000000000000.parquet"))
    once = collect(results / "smoke")
    twice = collect(results / "smoke")
    assert_same_values(once, baseline.scores)
    assert_same_values(twice, baseline.scores)
    assert_same_values(scores(results), baseline.scores)
