"""Planning: compose-once-then-vary gives every job the config Hydra composes for it alone; the
command line is normalised so README examples do what they look like; a bad override is refused
before torch is imported."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError

from runners.sweep import CONF_DIR, Composer, _compose, normalise, plan

ROOT = Path(__file__).resolve().parents[2]


def _jobs(overrides: list[str]) -> list[list[str]]:
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


@pytest.mark.parametrize("grid", [
    ["sweep=none", "arch=mlp,cnn", "seed=0,3", "perturbation.scale=0,0.1"],
    ["sweep=none", "arch=mlp", "arch.depth=3", "arch.width=128", "intervention.label_randomization=0,0.5",
     "++measures.params.svcca.tau=0.95", "measures.include=[cka_linear,svcca]"],
    ["sweep=resi_shortcut", "name=x", "hydra/launcher=joblib", "intervention.shortcut=0.75,1.0", "seed=1,4"],
])
def test_compose_once_equals_composing_each_job(grid):
    composer = Composer()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for job in _jobs(grid):
            alone = _compose(job)  # the second path: Hydra composes this job from scratch
            expected = OmegaConf.to_container(OmegaConf.masked_copy(alone, [k for k in alone if k != "hydra"]),
                                              resolve=True)
            assert OmegaConf.to_container(composer(job), resolve=True) == expected, job
    assert len(composer._base) <= 2  # one composition per distinct set of group choices


def test_composed_jobs_are_independent_configs_in_struct_mode():
    """Each job gets its own config (as a deep copy would give): changing one job's config changes no
    other job's, and an unknown key is refused as in Hydra's struct mode."""
    composer = Composer()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        first, second = (composer(job) for job in _jobs(["sweep=none", "arch=mlp", "seed=0,1",
                                                           "measures.include=[cka_linear,svcca]"]))
        third = composer(["sweep=none", "arch=mlp", "seed=0", "measures.include=[cka_linear,svcca]"])
    before = OmegaConf.to_container(third, resolve=True)
    first.perturbation.scale, first.train.lr, first.arch.width = 0.5, 1.0, 7
    first.measures.include.append("rtd")  # a list value parsed once and set on every job
    assert second.perturbation.scale != 0.5 and second.train.lr != 1.0 and second.arch.width != 7
    assert list(second.measures.include) == ["cka_linear", "svcca"]
    assert OmegaConf.to_container(third, resolve=True) == before
    with pytest.raises(ConfigAttributeError, match="no_such_key"):
        third.no_such_key = 1


def test_a_grid_without_sweep_runs_alone_into_its_own_folder():
    argv, notes = normalise(["arch=mlp,cnn", "seed=range(5)", "perturbation.scale=0,0.01,0.1"])
    assert argv[-1] == "sweep=grid" and "running that grid alone" in notes[0]
    p = plan(argv)
    assert (p.n_jobs, p.sweep_dir.name, p.parts) == (30, "grid", [])
    # asked for explicitly, the grid applies to every part of the benchmark
    assert normalise(["sweep=benchmark", "seed=0,1"]) == (["sweep=benchmark", "seed=0,1"], [])
    # a single value is not a grid: the benchmark with that change
    assert normalise(["measures.include=[cka_linear,svcca,disagreement]", "name=quick"])[1] == []


def test_measure_parameters_need_no_plus():
    argv, _ = normalise(["sweep=smoke", "measures.params.svcca.tau=0.95", "measures.params.rtd.n_repeats=5"])
    assert argv[1:] == ["++measures.params.svcca.tau=0.95", "++measures.params.rtd.n_repeats=5"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = _compose(argv)
    assert cfg.measures.params.svcca.tau == 0.95 and cfg.measures.params.rtd.n_repeats == 5


@pytest.mark.parametrize("override,message", [
    ("perturbation.scale=-1", "perturbation.scale: must be a finite number >= 0"),
    ("arch=mlpp", "did you mean 'mlp'"),
    ("data=digit", "did you mean 'digits'"),
    ("measures.include=[cka_liner]", "did you mean 'cka_linear'"),
    ("perturbation.scal=0.1", "perturbation.scal: no such key; valid keys of 'perturbation': scale, seed"),
    ("perturbation.scal=0,0.1", "perturbation.scal: no such key; valid keys of 'perturbation': scale, seed"),
])
def test_a_bad_override_is_refused_before_torch_loads(override, message):
    code = ("import sys; from runners.sweep import cli; rc = cli([sys.argv[1]]); "
            "assert rc == 2, rc; assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code, override], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_compose_cache_keeps_the_newest_entries(tmp_path, monkeypatch):
    import os

    from runners import sweep

    monkeypatch.setattr(sweep, "COMPOSE_CACHE", tmp_path)
    for i in range(6):
        entry = tmp_path / f"{i}.pickle"
        entry.write_bytes(b"x")
        os.utime(entry, (1000 + i, 1000 + i))
    sweep._prune_compose_cache(keep=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2.pickle", "3.pickle", "4.pickle", "5.pickle"]
