"""The stage split used for GPU clusters: a train-and-extract stage (``measures.include=[]``, on GPU nodes
with ``hydra/launcher=slurm_gpu runtime.device=cuda``) fills the model and representation caches and
writes no rows; the measuring stage (any launcher, CPU) then only computes measures. On the CPU the
two stages together give exactly the one-stage scores."""

from __future__ import annotations

from tests.integration.conftest import assert_same_values, count, run_sweep, scores, shard_files


def test_extract_stage_then_measure_stage(baseline, tmp_path):
    results = tmp_path / "results"
    extract = run_sweep(results, "measures.include=[]")
    assert "no result rows yet" in extract.stdout
    assert not shard_files(results)
    assert len(list((results / "cache").glob("models/*.pt"))) == baseline.n_models

    measure = run_sweep(results)
    out = measure.stdout + measure.stderr
    assert count(r"trained mlp", out) == 0 and count(r"extracted [1-9]", out) == 0
    assert_same_values(scores(results), baseline.scores)
