"""Config tests: every option of every config group composes, and every sweep config is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runners.config import ConfigError, validate_config

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ["arch", "data", "train", "intervention", "perturbation", "measures", "sweep"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group, option):
    overrides = [f"{group}={option}"]
    if group == "data" and option == "synthetic":
        overrides.append("arch=mlp")
    cfg = _compose(overrides)
    OmegaConf.resolve(cfg.arch)
    validate_config(cfg)


def test_default_sweep_is_the_benchmark_grid():
    cfg = _compose([])
    assert cfg.hydra.mode.name == "MULTIRUN"
    params = cfg.hydra.sweeper.params
    assert params["arch"] == "mlp,cnn" and params["seed"] == "range(0,5)"
    assert cfg.data.name == "digits" and cfg.measures.include == "all"


@pytest.mark.parametrize(
    "override,message",
    [
        ("perturbation.scale=-0.1", "perturbation.scale: must be a number >= 0"),
        ("intervention.label_randomization=1.5", r"label_randomization: must be a rate in \[0, 1\]"),
        ("measures.include=[cka_linear,not_a_measure]", "unknown measure.*not_a_measure.*valid measures: .*cka_linear"),
        ("measures.exclude=[nope]", "measures.exclude: unknown measure"),
        ("compare.layers=diagonal", r"compare.layers: 'diagonal'; valid choices: \['same', 'all', 'last'\]"),
        ("train.epochs=0", "train.epochs: must be an integer >= 1"),
        ("seed=-1", "seed: must be an integer >= 0"),
    ],
)
def test_bad_values_name_the_key(override, message):
    cfg = _compose([override])
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)
