"""Integration tests: real Hydra sweeps in subprocesses, on synthetic data, in a temporary results dir."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import measures

ROOT = Path(__file__).resolve().parents[2]


def sweep(results: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "runners.sweep", "sweep=smoke", f"results_dir={results}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"sweep failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    first = sweep(results)
    second = sweep(results)
    return results, first, second


def test_smoke_sweep_writes_tables_and_figures(smoke):
    results, first, _ = smoke
    out = results / "smoke"
    scores = pd.read_parquet(out / "scores.parquet")
    evaluations = pd.read_parquet(out / "evaluations.parquet")
    assert {"measure", "value", "model_a", "model_b", "layer_a", "layer_b", "seed_a", "seed_b", "scale_a", "scale_b",
            "label_randomization_a", "label_randomization_b", "arch_a", "arch_b", "runtime_s", "git_commit",
            "versions", "status"} <= set(scores.columns)
    assert {"task", "measure", "statistic", "value"} <= set(evaluations.columns)
    assert {"invariance", "robustness", "seed_variability"} <= set(evaluations["task"])
    assert len(list((out / "figures").glob("*.png"))) >= 3
    # 2 seeds x scales {0, 0.05}: one seed pair, two perturbation pairs and the group {seed 0, seed 1} of the
    # group-wise measures (one row each).
    assert set(scores["pair_type"]) == {"seed", "perturbation", "seed_group"}
    groups = scores[scores["pair_type"].eq("seed_group")]
    assert sorted(groups["measure"]) == sorted(measures.names(inputs="outputs_group"))
    assert groups["n_models"].eq(2).all()
    assert scores["row_key"].is_unique
    assert "Summary of sweep 'smoke'" in first.stdout


def test_rerun_computes_nothing_and_gives_identical_values(smoke):
    results, first, second = smoke
    log = second.stdout + second.stderr
    n_rows = len(pd.read_parquet(results / "smoke" / "scores.parquet"))
    assert f"0 rows computed in this run, {n_rows} reused" in log
    assert "rows (0 cached" in first.stdout + first.stderr and "rows (0 cached" not in log
    assert "trained mlp" not in log
    scores = pd.read_parquet(results / "smoke" / "scores.parquet")
    errors = scores[scores["status"].eq("error")]
    assert errors.empty, errors[["measure", "error"]].drop_duplicates("measure").to_string()
    assert scores["status"].isin(["ok", "undefined"]).all()
    assert (scores.loc[scores["status"].eq("undefined"), "error"].str.len() > 0).all()


def test_identical_values_from_an_empty_cache(smoke, tmp_path):
    results, _, _ = smoke
    sweep(tmp_path)
    a = pd.read_parquet(results / "smoke" / "scores.parquet").set_index("row_key")["value"].sort_index()
    b = pd.read_parquet(tmp_path / "smoke" / "scores.parquet").set_index("row_key")["value"].sort_index()
    pd.testing.assert_series_equal(a, b, check_exact=True)


def test_adding_a_measure_computes_only_its_rows(smoke, tmp_path):
    results, _, _ = smoke
    sweep(tmp_path, "measures=fast")
    proc = sweep(tmp_path, "measures.include=[cka_linear,disagreement,cka_linear_debiased]")
    scores = pd.read_parquet(tmp_path / "smoke" / "scores.parquet")
    log = proc.stdout + proc.stderr
    assert "trained mlp" not in log and "trained 0 models, extracted 0" in log  # models and reps from the cache
    # every job with pairs computed only the new measure's rows (3 layers) and reused the 4 old ones
    assert re.findall(r"computed (\d+) rows \((\d+) cached", log) == [("3", "4")] * 3, log[-2000:]
    assert set(scores["measure"]) == {"cka_linear", "disagreement", "cka_linear_debiased"}


@pytest.mark.parametrize(
    "override,message",
    [
        ("arch=perceiver", "Could not find 'arch/perceiver'"),
        ("data=imagenet", "Could not find 'data/imagenet'"),
        ("perturbation.scale=0,-1", "perturbation.scale: must be a finite number >= 0"),
        ("intervention.label_randomization=2", "label_randomization: must be a rate in"),
        ("measures.include=[bogus]", "unknown measure"),
        ("limits.max_jobs=1", "limits.max_jobs: the sweep would launch 4 jobs"),
    ],
)
def test_bad_sweeps_fail_before_training(tmp_path, override, message):
    proc = sweep(tmp_path, override, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out or re.search(message, out), out[-2000:]
    assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").glob("*.pt"))


def test_joblib_launcher_runs_jobs_in_parallel(tmp_path):
    sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    scores = pd.read_parquet(tmp_path / "smoke" / "scores.parquet")
    assert scores["row_key"].is_unique and len(scores) > 0


def test_composite_sweep_runs_its_parts_in_parallel_then_analyses_once(tmp_path):
    """A sweep with ``parts`` (the default benchmark has 13) runs the jobs of its parts into one results
    folder, with the composite's ``default_launcher`` (joblib here: all parts' jobs in one pool of its
    n_jobs processes, runners.sweep.run_cells), then collects and analyses."""
    proc = sweep(tmp_path, "sweep=none", "name=combo", "+parts=[smoke]", "measures=fast",
                 '+default_launcher=["hydra/launcher=joblib","hydra.launcher.n_jobs=2"]')
    log = proc.stdout + proc.stderr
    assert "4 job(s) of 4 to run, 2 at a time (one pool for its one part)" in log
    assert "Summary of sweep 'combo'" in proc.stdout
    scores = pd.read_parquet(tmp_path / "combo" / "scores.parquet")
    assert set(scores["pair_type"]) == {"seed", "perturbation"} and scores["row_key"].is_unique


def test_a_launcher_on_the_command_line_replaces_the_default_launcher():
    from omegaconf import OmegaConf

    from runners.sweep import launcher_overrides, part_overrides

    master = OmegaConf.create({"default_launcher": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=-1"]})
    assert launcher_overrides(master, ["seed=1"]) == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=-1"]
    assert launcher_overrides(master, ["hydra/launcher=slurm"]) == []
    assert launcher_overrides(OmegaConf.create({}), ["seed=1"]) == []
    assert part_overrides(["hydra/launcher=basic", "sweep=benchmark", "+parts=[a]", "seed=1"]) == [
        "hydra/launcher=basic", "seed=1"]
