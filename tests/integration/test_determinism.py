"""Determinism and provenance. Bit-identical values across reruns and launchers are asserted where those
runs happen (tests/runners/test_sweep.py: the same sweep twice from empty caches; test_concurrency:
joblib; test_resume: killed and resumed; test_slurm: SLURM). Here: every row records what produced it,
and a job's identity (job_key) depends on its semantic config only, never on where or how it runs; on a
GPU, jobs use deterministic cuBLAS and a rerun is bit-identical (the tolerances: docs/cluster.md §5)."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from hydra import compose, initialize_config_dir

from runners.job import job_key, resolve_device
from runners.sweep import CONF_DIR
from tests.integration.conftest import SMOKE, assert_same_values, run_sweep, scores

PROVENANCE = ["job_key", "seed_a", "seed_b", "perturb_seed_a", "perturb_seed_b", "scale_a", "scale_b", "model_a",
              "model_b", "measure_version", "params", "git_commit", "git_dirty", "versions", "device", "hostname",
              "timestamp"]


def _job_key(*overrides: str) -> str:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return job_key(compose(config_name="config", overrides=[*SMOKE, *overrides]))


def test_every_row_records_seeds_config_hash_commit_and_versions(baseline):
    table = baseline.scores
    missing = [c for c in PROVENANCE if c not in table.columns]
    assert not missing, f"rows lack {missing}"
    assert table[PROVENANCE].notna().all().all()
    assert table["job_key"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert table["git_commit"].map(lambda c: bool(re.fullmatch(r"[0-9a-f]{40}", c)) or c == "unknown").all()
    for versions in table["versions"].unique():
        libraries = json.loads(versions)
        assert {"torch", "numpy", "hydra-core", "simbench"} <= set(libraries) and all(libraries.values())
    # The rows' job keys are exactly those of the jobs that compare something: seed 0 with noise, and
    # seed 1 with and without noise (seed 0 without noise is the first model of its group).
    expected = {_job_key("seed=0", "perturbation.scale=0.05"), _job_key("seed=1", "perturbation.scale=0"),
                _job_key("seed=1", "perturbation.scale=0.05")}
    assert set(table["job_key"]) == expected


def test_job_key_ignores_launcher_paths_threads_and_site_settings():
    """Where and how a job runs never changes its identity, so a sweep moved to SLURM reuses every shard."""
    reference = _job_key("seed=1")
    for overrides in (["hydra/launcher=slurm", "cluster.partition=gpu", "cluster.account=lab", "cluster.timeout_min=5"],
                      ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                      ["hydra/launcher=local"],
                      ["runtime.num_threads=4", "results_dir=/elsewhere", "limits.max_jobs=10"]):
        assert _job_key("seed=1", *overrides) == reference, overrides
    # ... while every semantic knob does change it.
    for overrides in (["seed=2"], ["perturbation.scale=0.1"], ["perturbation.seed=3"], ["train.epochs=6"],
                      ["arch.width=32"], ["intervention.label_randomization=0.5"], ["data.n_samples=601"]):
        assert _job_key("seed=1", *overrides) != reference, overrides


def test_gpu_jobs_get_a_fixed_cublas_workspace(monkeypatch):
    """Deterministic algorithms make every cuBLAS call raise without a fixed workspace: a CUDA job sets
    one (no GPU is needed to check that), a user's own value is kept, CPU jobs leave the variable alone."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert resolve_device("cpu") == "cpu"
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert resolve_device("cuda:1") == "cuda:1"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    resolve_device("cuda")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_sweep_twice_is_bit_identical(tmp_path):
    """The tolerance docs/cluster.md states for reruns on one GPU: none. Training, extraction and the
    probe-based measures run on the GPU, from empty caches both times."""
    first, second = tmp_path / "first", tmp_path / "second"
    run_sweep(first, "runtime.device=cuda")
    run_sweep(second, "runtime.device=cuda")
    table = scores(first)
    assert table["device"].str.startswith("cuda").all()
    assert_same_values(scores(second), table)
