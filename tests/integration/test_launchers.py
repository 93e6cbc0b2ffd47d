"""The launcher configs compose with site values from the `cluster:` node, and the site-file template
is valid: uncommented into conf/local/default.yaml it composes with every launcher (no cluster needed)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runners.sweep import CONF_DIR

SITE = ["cluster.partition=cpu", "cluster.gpu_partition=gpu", "cluster.account=lab", "cluster.qos=normal",
        "cluster.timeout_min=30", "cluster.mem_gb=8", "cluster.array_parallelism=16", "runtime.num_threads=4",
        "cluster.setup='module load cuda'"]


def _launcher(conf_dir: Path, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["sweep=smoke", *overrides], return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


@pytest.mark.parametrize("name,partition,gpus", [("slurm", "cpu", None), ("slurm_gpu", "gpu", 1)])
def test_slurm_launchers_take_site_values_from_cluster(name, partition, gpus):
    launcher = _launcher(CONF_DIR, f"hydra/launcher={name}", *SITE)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["account"], launcher["qos"]) == (partition, "lab", "normal")
    assert (launcher["timeout_min"], launcher["mem_gb"], launcher["array_parallelism"]) == (30, 8, 16)
    assert launcher["cpus_per_task"] == 4 and launcher["gpus_per_node"] == gpus
    assert launcher["max_num_timeout"] >= 1, "timed-out jobs must be resubmitted (they resume)"
    assert launcher["setup"][0] == "export OMP_NUM_THREADS=4 MKL_NUM_THREADS=4"
    assert launcher["setup"][-1] == "module load cuda"
    assert ("export CUBLAS_WORKSPACE_CONFIG=:4096:8" in launcher["setup"]) == (name == "slurm_gpu")


def test_slurm_launcher_defaults_leave_site_flags_out():
    """Without a site file: no partition/account/qos/--mem lines (the cluster's defaults apply)."""
    launcher = _launcher(CONF_DIR, "hydra/launcher=slurm")
    assert launcher["partition"] is launcher["account"] is launcher["qos"] is launcher["mem_gb"] is None


def test_local_launcher_is_submitit_local():
    launcher = _launcher(CONF_DIR, "hydra/launcher=local", "cluster.timeout_min=5")
    assert launcher["_target_"].endswith("LocalLauncher") and launcher["timeout_min"] == 5


def _site_file(**cluster: object) -> str:
    """conf/local/template.yaml as a user would edit it: the given `cluster:` keys set."""
    text = (CONF_DIR / "local" / "template.yaml").read_text()
    for key, value in cluster.items():
        text, n = re.subn(rf"^(  {key}:) [^#\n]*", rf"\1 {value}  ", text, flags=re.M)
        assert n == 1, f"the template has no cluster.{key}"
    return text


@pytest.mark.parametrize("launcher", ["basic", "joblib", "local", "slurm", "slurm_gpu"])
@pytest.mark.parametrize("edited", [False, True], ids=["as-copied", "edited"])
def test_site_file_template_composes_with_every_launcher(tmp_path, launcher, edited):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf, ignore=shutil.ignore_patterns("default.yaml"))
    values = dict(partition="cpu", gpu_partition="gpu", account="my_project", timeout_min=120, mem_gb=8,
                  setup='"module load cuda/12.1"') if edited else {}
    (conf / "local" / "default.yaml").write_text(_site_file(**values))
    resolved = _launcher(conf, f"hydra/launcher={launcher}")
    if launcher.startswith("slurm") and edited:
        assert resolved["partition"] == ("cpu" if launcher == "slurm" else "gpu")
        assert (resolved["account"], resolved["timeout_min"], resolved["mem_gb"]) == ("my_project", 120, 8)
        assert resolved["setup"][-1] == "module load cuda/12.1"
    elif launcher.startswith("slurm"):
        assert resolved["partition"] is None and resolved["timeout_min"] == 60
