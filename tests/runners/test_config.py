"""Config tests: every option of every config group composes, and every sweep config is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runners.config import ConfigError, validate_config
from runners.sweep import plan

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ["arch", "data", "train", "intervention", "perturbation", "measures", "sweep"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


FITS = {"synthetic": ["arch=mlp"], "mnist": ["arch=resnet_small", "measures.exclude=[activation_region]"],
        "fashion_mnist": ["arch=resnet_small", "measures.exclude=[activation_region]"],
        "cifar10": ["arch=resnet_small", "measures.exclude=[activation_region]"],
        "cifar100": ["arch=resnet_small", "measures.exclude=[activation_region]"],
        "dyck": ["arch=transformer", "measures.exclude=[activation_region]"], "transformer": ["data=dyck"],
        "sbm": ["arch=gcn", "measures.exclude=[activation_region]"], "gcn": ["data=sbm"], "sage": ["data=sbm"],
        "gat": ["data=sbm"]}
# architectures without flat ReLU pre-activations
NO_RELU = {"resnet_small", "resnet18", "vit_tiny", "transformer", "gcn", "sage", "gat"}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS if g != "sweep" for o in options(g)])
def test_every_group_option_composes(group, option):
    overrides = [f"{group}={option}", *FITS.get(option, [])]
    if group == "arch" and option in NO_RELU:
        overrides.append("measures.exclude=[activation_region]")
    cfg = _compose(overrides)
    OmegaConf.resolve(cfg.arch)
    validate_config(cfg)


@pytest.mark.parametrize("option", options("sweep"))
def test_every_sweep_plans(option):
    """Every sweep config composes, and every job of its grid validates (as before a real launch)."""
    sweep = plan([f"sweep={option}"])
    assert sweep.n_jobs >= 1 and sweep.sweep_dir.name


def test_default_sweep_is_the_whole_benchmark():
    cfg = _compose([])
    assert cfg.name == "benchmark" and cfg.data.name == "digits" and cfg.measures.include == "all"
    assert list(cfg.parts) == ["noise", "layer_id", "resi_labels", "resi_shortcut", "resi_augmentation",
                               "language_layers", "language_labels", "language_shortcut", "language_augmentation",
                               "graph_layers", "graph_labels", "graph_shortcut", "graph_augmentation"]
    noise = _compose(["sweep=noise"])
    assert noise.hydra.mode.name == "MULTIRUN"
    assert noise.hydra.sweeper.params["arch"] == "mlp,cnn" and noise.hydra.sweeper.params["seed"] == "range(0,5)"


@pytest.mark.parametrize(
    "override,message",
    [
        ("perturbation.scale=-0.1", "perturbation.scale: must be a finite number >= 0"),
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
