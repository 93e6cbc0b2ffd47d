"""Bad configurations are refused before any job runs, with a message that names the offending key and
what would be valid. One table, every row planned in-process exactly as ``python -m runners.sweep``
plans a sweep (compose + validate every job); one row also through the command line.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import measures
from runners.config import _check_measure_params
from runners.sweep import plan
from tests.integration.conftest import ROOT

SMOKE = ["sweep=smoke", "measures=fast"]


# (overrides, the key the message must name, words the message must list as valid)
TABLE = [
    # -- unknown options of config groups: Hydra lists the available ones
    pytest.param(["arch=perceiver"], "arch", ["cnn", "mlp", "vit_tiny"], id="unknown-arch"),
    pytest.param(["data=imagenet"], "data", ["digits", "synthetic", "cifar10"], id="unknown-data"),
    pytest.param(["train=slow"], "train", ["default", "fast"], id="unknown-train"),
    pytest.param(["intervention=dropout"], "intervention", ["none"], id="unknown-intervention"),
    pytest.param(["perturbation=uniform"], "perturbation", ["gaussian"], id="unknown-perturbation"),
    pytest.param(["measures=everything"], "measures", ["all", "fast"], id="unknown-measure-set"),
    pytest.param(["sweep=huge"], "sweep", ["smoke", "benchmark"], id="unknown-sweep"),
    pytest.param(["hydra/launcher=pbs"], "hydra/launcher", ["basic", "joblib", "local", "slurm", "slurm_gpu"],
                 id="unknown-launcher"),
    # -- unknown keys: the valid keys of the parent node are listed
    pytest.param(["foo=1"], "foo", ["arch", "seed", "perturbation", "cluster"], id="unknown-top-level-key"),
    pytest.param(["arch.widht=32"], "arch.widht", ["depth", "name", "width"], id="typo-in-nested-key"),
    pytest.param(["hydra.launcher.partition=cpu"], "hydra.launcher.partition", ["cluster.*"],
                 id="slurm-key-on-basic-launcher"),
    pytest.param(["hydra/launcher=slurm", "hydra.launcher.partitoin=cpu"], "hydra.launcher.partitoin",
                 ["partition", "timeout_min", "array_parallelism"], id="typo-in-launcher-key"),
    # -- wrong types
    pytest.param(["seed=abc"], "seed", ["integer >= 0"], id="seed-not-a-number"),
    pytest.param(["hydra/launcher=joblib", "hydra.launcher.n_jobs=abc"], "hydra.launcher.n_jobs", ["Integer"],
                 id="launcher-value-wrong-type"),
    pytest.param(["hydra/launcher=slurm", "cluster.timeout_min=abc"], "cluster.timeout_min", ["Integer"],
                 id="site-value-wrong-type"),
    # -- out-of-range values
    pytest.param(["perturbation.scale=0,-0.1"], "perturbation.scale", [">= 0"], id="negative-noise-scale"),
    pytest.param(["intervention.label_randomization=1.5"], "intervention.label_randomization", ["[0, 1]"],
                 id="rate-above-one"),
    pytest.param(["intervention.shortcut=2"], "intervention.shortcut", ["null", "[0, 1]"], id="shortcut-above-one"),
    pytest.param(["intervention.input_noise=-1"], "intervention.input_noise", [">= 0"], id="negative-input-noise"),
    pytest.param(["seed=-1"], "seed", [">= 0"], id="negative-seed"),
    pytest.param(["train.epochs=0"], "train.epochs", [">= 1"], id="zero-epochs"),
    pytest.param(["train.batch_size=0"], "train.batch_size", [">= 1"], id="zero-batch-size"),
    pytest.param(["train.lr=0"], "train.lr", ["> 0"], id="zero-learning-rate"),
    pytest.param(["train.lr=inf"], "train.lr", ["finite", "> 0"], id="infinite-learning-rate"),
    pytest.param(["train.lr=1e400"], "train.lr", ["finite", "> 0"], id="overflowing-learning-rate"),
    pytest.param(["train.weight_decay=-1"], "train.weight_decay", [">= 0"], id="negative-weight-decay"),
    pytest.param(["train.weight_decay=nan"], "train.weight_decay", ["finite"], id="nan-weight-decay"),
    pytest.param(["perturbation.scale=nan"], "perturbation.scale", ["finite", ">= 0"], id="nan-noise-scale"),
    pytest.param(["perturbation.scale=inf"], "perturbation.scale", ["finite", ">= 0"], id="infinite-noise-scale"),
    pytest.param(["intervention.input_noise=inf"], "intervention.input_noise", ["finite", ">= 0"],
                 id="infinite-input-noise"),
    pytest.param(["+measures.params.cka_linear.bogus=1"], "measures.params.cka_linear", ["bogus", "none"],
                 id="unknown-measure-parameter"),
    pytest.param(["measures.include=[rtd]", "+measures.params.rtd.n_points=2"], "measures.params.rtd.n_points",
                 ["n_points must be an integer >= 4"], id="measure-parameter-out-of-range"),
    pytest.param(["measures.include=[rtd]", "+measures.params.rtd.quantile=abc"], "measures.params.rtd.quantile",
                 ["quantile must lie in (0, 1]"], id="measure-parameter-wrong-type"),
    pytest.param(["runtime.num_threads=0"], "runtime.num_threads", [">= 1"], id="zero-threads"),
    pytest.param(["hydra/launcher=slurm", "cluster.timeout_min=0"], "cluster.timeout_min", [">= 1"],
                 id="zero-time-limit"),
    pytest.param(["hydra/launcher=slurm", "cluster.array_parallelism=0"], "cluster.array_parallelism", [">= 1"],
                 id="zero-array-parallelism"),
    pytest.param(["hydra/launcher=slurm_gpu", "cluster.mem_gb=-1"], "cluster.mem_gb", [">= 1", "null"],
                 id="negative-memory"),
    pytest.param(["arch.width=0"], "arch.width", [">= 1"], id="zero-width"),
    pytest.param(["arch.depth=-1"], "arch.depth", [">= 1"], id="negative-depth"),
    pytest.param(["data.n_samples=0"], "data.n_samples", [">= 4"], id="empty-dataset"),
    pytest.param(["perturbation.seed=-1"], "perturbation.seed", [">= 0"], id="negative-perturbation-seed"),
    # -- values outside a closed set
    pytest.param(["compare.layers=diagonal"], "compare.layers", ["same", "all", "last"], id="unknown-layer-mode"),
    pytest.param(["compare.seed_pairs=higher"], "compare.seed_pairs", ["lower", "none"], id="unknown-pair-mode"),
    pytest.param(["runtime.device=tpu"], "runtime.device", ["cpu", "cuda", "auto"], id="unknown-device"),
    pytest.param(["measures.include=[cka_linear,bogus]"], "measures.include", ["cka_linear", "procrustes_orthogonal"],
                 id="unknown-measure"),
    pytest.param(["measures.exclude=[bogus]"], "measures.exclude", ["cka_linear"], id="unknown-excluded-measure"),
    pytest.param(["+measures.params.bogus={}"], "measures.params", ["cka_linear"], id="params-for-unknown-measure"),
    pytest.param(["compare.groups={axis:intervention.nonexistent,levels:[0],n_seeds:2}"], "compare.groups.axis",
                 ["intervention.label_randomization"], id="unknown-group-axis"),
    pytest.param(["compare.groups={axis:intervention.label_randomization,levels:[0.5],n_seeds:2}"],
                 "intervention.label_randomization", ["compare.groups.levels", "0.5"], id="level-outside-group"),
    # -- a sweep over the job limit
    pytest.param(["limits.max_jobs=3"], "limits.max_jobs", ["4 jobs", "limit 3"], id="over-the-job-limit"),
    pytest.param(["seed=range(0,5000)"], "limits.max_jobs", ["10000 jobs", "limit 2000"], id="huge-grid"),
    # -- combinations that cannot work
    pytest.param(["arch=cnn"], "arch", ["mlp"], id="conv-net-on-vector-data"),
    # The activation-region measure needs ReLU units; vit_tiny has none (GELU, attention).
    pytest.param(["data=digits", "arch=vit_tiny", "measures.include=[activation_region]"], "activation_region",
                 ["mlp", "cnn"], id="activation-region-without-relu"),
]


@pytest.mark.parametrize("overrides,key,valid", TABLE)
def test_bad_configuration_is_refused_naming_key_and_choices(overrides, key, valid):
    with pytest.raises(Exception) as failure:
        plan([*SMOKE, *overrides])
    message = str(failure.value)
    assert key in message, f"the message does not name {key!r}: {message}"
    missing = [word for word in valid if word not in message]
    assert not missing, f"the message does not list {missing}: {message}"


def test_command_line_refuses_before_anything_runs(tmp_path):
    """The same check through ``python -m runners.sweep``: exit code 2, the message on stderr, no job."""
    proc = subprocess.run([sys.executable, "-m", "runners.sweep", *SMOKE, f"results_dir={tmp_path}", "arch.widht=32"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert re.search(r"Invalid configuration: arch\.widht: no such key; valid keys of 'arch': .*width", proc.stderr)
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused sweep"


def test_a_slurm_array_over_the_clusters_limit_is_refused(monkeypatch):
    """submitit submits a sweep as one array and cannot split it: more jobs than the cluster's
    MaxArraySize (here 3, for the smoke grid's 4 jobs) fail at planning, naming the launcher and the
    limit. The same sweep with the basic launcher is not concerned."""
    import runners.sweep

    monkeypatch.setattr(runners.sweep, "slurm_max_array_size", lambda: 3)
    with pytest.raises(Exception) as failure:
        plan([*SMOKE, "hydra/launcher=slurm"])
    message = str(failure.value)
    assert "hydra/launcher" in message and "4 jobs" in message and "MaxArraySize (3)" in message
    assert plan(SMOKE).n_jobs == 4
    monkeypatch.setattr(runners.sweep, "slurm_max_array_size", lambda: 4)
    assert plan([*SMOKE, "hydra/launcher=slurm"]).n_jobs == 4


def test_every_measure_accepts_its_defaults_on_the_parameter_probe():
    """Parameter values are checked by one call on small synthetic inputs (runners.config): with its own
    defaults every measure must compute there, so an error with overridden values is the values' fault."""
    for name in measures.names():
        _check_measure_params(name, "{}")
