"""The collected table holds exactly the rows the sweep as run asks for, nothing older and nothing twice:
rows of a measure since removed or excluded, of changed parameters or of an older measure version stay
in their shard (switching back reuses them) but are flagged stale and left out of ``scores.parquet``;
the sweep command collects only its own jobs' shards; runs of the same job at once merge their rows."""

from __future__ import annotations

import multiprocessing
import re
import shutil

import pandas as pd

from runners.collect import collect
from runners.job import _update_shard
from tasks.storage import read_parquet, write_parquet
from tests.integration.conftest import assert_same_values, run_sweep, scores, shard_files

THREE = "measures.include=[cka_linear,disagreement,knn_jaccard]"
COMPARISON = ["model_a", "model_b", "layer_a", "layer_b", "measure"]


def _computed(proc) -> tuple[int, int]:
    done = re.search(r"(\d+) rows computed in this run, (\d+) reused", proc.stdout)
    assert done, proc.stdout[-3000:]
    return int(done.group(1)), int(done.group(2))


def test_tables_follow_the_measure_selection_and_parameters(baseline, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(baseline.results, results, ignore=shutil.ignore_patterns("logs", "*.log"))
    fast = baseline.scores  # cka_linear and disagreement

    # A third measure: only its rows are computed.
    run_sweep(results, THREE)
    three = scores(results)
    knn = three[three["measure"] == "knn_jaccard"]
    assert set(three["measure"]) == {"cka_linear", "disagreement", "knn_jaccard"} and len(knn) > 0
    assert_same_values(three[three["measure"] != "knn_jaccard"], fast)

    # Back to two measures: nothing is computed, the table is the two-measure table again, and the
    # third measure's rows are still in the shards, flagged stale.
    assert _computed(run_sweep(results)) == (0, len(fast))
    assert_same_values(scores(results), fast)
    shards = pd.concat([read_parquet(p) for p in shard_files(results)])
    assert shards.loc[shards["measure"] == "knn_jaccard", "stale"].all()
    assert not shards.loc[shards["measure"] != "knn_jaccard", "stale"].any()

    # And forward again: the stale rows are current again, nothing recomputed.
    assert _computed(run_sweep(results, THREE)) == (0, len(three))
    assert_same_values(scores(results), three)

    # Changed parameters replace the measure's rows in the table (one row per comparison, never two).
    proc = run_sweep(results, THREE, "+measures.params.knn_jaccard={k:5}")
    assert _computed(proc) == (len(knn), len(three) - len(knn))
    table = scores(results)
    assert not table.duplicated(COMPARISON).any() and len(table) == len(three)
    assert table.loc[table["measure"] == "knn_jaccard", "params"].str.contains('"k": 5').all()
    assert_same_values(table[table["measure"] != "knn_jaccard"], fast)


def test_failed_rows_are_retried_by_the_next_run(baseline, tmp_path):
    """A row whose measure raised (status "error", e.g. out of memory) is not finished work: the rerun
    computes it again, replaces it in its shard and reuses every other row."""
    results = tmp_path / "results"
    shutil.copytree(baseline.results, results, ignore=shutil.ignore_patterns("logs", "*.log"))
    path = shard_files(results)[0]
    shard = read_parquet(path)
    failed = shard["row_key"].iloc[0]
    shard.loc[0, ["status", "error", "value"]] = ["error", "MemoryError: out of memory", float("nan")]
    write_parquet(shard, path)
    assert _computed(run_sweep(results)) == (1, len(baseline.scores) - 1)
    assert_same_values(scores(results), baseline.scores)
    repaired = read_parquet(path)
    assert (repaired["row_key"] == failed).sum() == 1 and repaired["status"].eq("ok").all()


def test_the_sweep_collects_only_its_own_jobs(baseline, tmp_path):
    """A narrower rerun (two of the four jobs) gives the table of that grid; the other jobs' shards are
    kept, and collecting the folder by hand still sees them."""
    results = tmp_path / "results"
    shutil.copytree(baseline.results, results, ignore=shutil.ignore_patterns("logs", "*.log"))
    proc = run_sweep(results, "perturbation.scale=0.05")
    subgrid = baseline.scores[baseline.scores["scale_b"] == 0.05]
    assert 0 < len(subgrid) < len(baseline.scores)
    assert _computed(proc) == (0, len(subgrid))
    assert_same_values(scores(results), subgrid)
    assert len(shard_files(results)) == baseline.n_shards
    assert_same_values(collect(results / "smoke"), baseline.scores)


def _writer(path, rows, expected):
    for row in rows:
        _update_shard(path, [row], expected)


def test_concurrent_runs_of_one_job_merge_their_rows(baseline, tmp_path):
    """Two processes add rows to the same shard at the same time, one row per write (as two runs of the
    same job with different measure selections would): no row of either is lost."""
    path = tmp_path / "shards" / "job.parquet"
    rows = baseline.scores.head(24).to_dict("records")
    expected = {r["row_key"] for r in rows}
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(path, rows[i::2], expected)) for i in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0]
    shard = read_parquet(path)
    assert sorted(shard["row_key"]) == sorted(expected) and not shard["stale"].any()
