"""Validation of a composed job config, run for every job of a sweep before any job starts.

Hydra already rejects unknown config-group options (an unknown ``arch=`` or ``data=`` lists the
available ones); this module checks values: ranges, measure names, compare modes.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

import measures
from tasks.zoo import architectures, datasets, interventions

COMPARE_SEED_PAIRS = ("lower", "none")
COMPARE_LAYERS = ("same", "all", "last")


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and the valid choices."""


def selected_measures(cfg: DictConfig) -> list[str]:
    """The measure names a job computes: ``measures.include`` (or ``all``) minus ``measures.exclude``."""
    valid = measures.names()
    include = cfg.measures.include
    chosen = valid if include == "all" else list(include)
    for key, names in (("measures.include", chosen), ("measures.exclude", list(cfg.measures.exclude)),
                       ("measures.params", list(cfg.measures.params))):
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise ConfigError(f"{key}: unknown measure(s) {unknown}; valid measures: {', '.join(valid)}")
    return [n for n in chosen if n not in set(cfg.measures.exclude)]


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first invalid key and its valid values."""
    if cfg.arch.name not in architectures.ARCHITECTURES:
        raise ConfigError(f"arch.name: unknown architecture {cfg.arch.name!r}; valid choices: {sorted(architectures.ARCHITECTURES)}")
    if cfg.data.name not in datasets.DATASETS:
        raise ConfigError(f"data.name: unknown dataset {cfg.data.name!r}; valid choices: {sorted(datasets.DATASETS)}")
    scale = cfg.perturbation.scale
    if not isinstance(scale, (int, float)) or scale < 0:
        raise ConfigError(f"perturbation.scale: must be a number >= 0, got {scale!r}")
    rate = cfg.intervention.label_randomization
    if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ConfigError(f"intervention.label_randomization: must be a rate in [0, 1], got {rate!r}")
    shortcut = cfg.intervention.shortcut
    if shortcut is not None and (not isinstance(shortcut, (int, float)) or not 0 <= shortcut <= 1):
        raise ConfigError(f"intervention.shortcut: must be null or a probability in [0, 1], got {shortcut!r}")
    noise = cfg.intervention.input_noise
    if not isinstance(noise, (int, float)) or noise < 0:
        raise ConfigError(f"intervention.input_noise: must be a number >= 0, got {noise!r}")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed: must be an integer >= 0, got {cfg.seed!r}")
    for key in ("epochs", "batch_size"):
        if not isinstance(cfg.train[key], int) or cfg.train[key] < 1:
            raise ConfigError(f"train.{key}: must be an integer >= 1, got {cfg.train[key]!r}")
    if not cfg.train.lr > 0:
        raise ConfigError(f"train.lr: must be > 0, got {cfg.train.lr!r}")
    if cfg.compare.seed_pairs not in COMPARE_SEED_PAIRS:
        raise ConfigError(f"compare.seed_pairs: {cfg.compare.seed_pairs!r}; valid choices: {list(COMPARE_SEED_PAIRS)}")
    groups = cfg.compare.groups
    if groups is not None and groups.axis:
        value = OmegaConf.select(cfg, groups.axis, default="<missing>")
        if value == "<missing>":
            raise ConfigError(f"compare.groups.axis: no config key {groups.axis!r} (e.g. intervention.label_randomization)")
        if value not in list(groups.levels):
            raise ConfigError(f"{groups.axis}: {value!r} is not one of compare.groups.levels {list(groups.levels)}")
        if not isinstance(groups.n_seeds, int) or not 0 <= cfg.seed < groups.n_seeds:
            raise ConfigError(f"compare.groups.n_seeds: must be an integer > seed ({cfg.seed}), got {groups.n_seeds!r}")
    if cfg.compare.layers not in COMPARE_LAYERS:
        raise ConfigError(f"compare.layers: {cfg.compare.layers!r}; valid choices: {list(COMPARE_LAYERS)}")
    if not isinstance(cfg.runtime.num_threads, int) or cfg.runtime.num_threads < 1:
        raise ConfigError(f"runtime.num_threads: must be an integer >= 1, got {cfg.runtime.num_threads!r}")
    seed = cfg.perturbation.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"perturbation.seed: must be an integer >= 0, got {seed!r}")
    device = str(cfg.runtime.device)
    if device not in ("cpu", "auto") and not device.startswith("cuda"):
        raise ConfigError(f"runtime.device: {device!r}; valid choices: cpu, cuda, cuda:<index>, auto")
    chosen = selected_measures(cfg)
    _check_model(cfg, chosen)


def _input(cfg: DictConfig) -> tuple[tuple[int, ...], int]:
    """The input shape and class count the model of ``cfg`` sees (no data loaded)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    name = data.pop("name")
    try:
        shape, n_classes = datasets.describe(name, **data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data ({name}): {exc}") from None
    if cfg.intervention.shortcut is not None:  # e.g. vector inputs get one marker feature per class
        shape = interventions.for_domain(datasets.domain_of(name)).shortcut_shape(shape, n_classes)
    return shape, n_classes


def _build_on_meta(name: str, shape: tuple[int, ...], n_classes: int, **params) -> torch.nn.Module:
    """Build an architecture without allocating weights (the meta device), to check its config."""
    with torch.device("meta"):
        return architectures.build(name, shape, n_classes, **params)


def _check_model(cfg: DictConfig, chosen: list[str]) -> None:
    """The architecture builds for this data, and the chosen measures can apply to it."""
    shape, n_classes = _input(cfg)
    params = OmegaConf.to_container(cfg.arch, resolve=True)
    name = params.pop("name")
    try:
        model = _build_on_meta(name, shape, n_classes, **params)
    except (TypeError, ValueError) as exc:
        fitting = [a for a in sorted(architectures.ARCHITECTURES) if _builds(a, shape, n_classes)]
        raise ConfigError(f"arch ({name}) on data {cfg.data.name!r} with input shape {shape}: {exc}; "
                          f"architectures that fit this data: {', '.join(fitting)}") from None
    if "activation_region" in chosen and not architectures.preactivation_layers(model):
        relu = [a for a in sorted(architectures.ARCHITECTURES)
                if _builds(a, shape, n_classes) and architectures.preactivation_layers(_build_on_meta(a, shape, n_classes))]
        raise ConfigError(f"measures: activation_region needs ReLU pre-activations, and arch {name!r} has none "
                          f"(GELU, attention or residual streams); use an architecture with ReLU units "
                          f"({', '.join(relu)}) or measures.exclude=[activation_region]")


def _builds(name: str, shape: tuple[int, ...], n_classes: int) -> bool:
    try:
        _build_on_meta(name, shape, n_classes)
        return True
    except (TypeError, ValueError):
        return False
