"""Validation of a composed job config, run for every job of a sweep before any job starts.

Hydra already rejects unknown config-group options (an unknown ``arch=`` or ``data=`` lists the
available ones); this module checks values: ranges, measure names, compare modes.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig, OmegaConf

import measures
from measures._catalogue import measure_names
from measures._suggest import suggest, unknown_measure

if TYPE_CHECKING:
    import torch

# torch and the zoo are imported by the checks that build a model (the last ones), so that a bad value
# is refused without loading them.

COMPARE_SEED_PAIRS = ("lower", "none")
COMPARE_LAYERS = ("same", "all", "last")


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and the valid choices."""


@lru_cache(maxsize=1)
def _builtin_measure_names() -> tuple[str, ...]:
    """:func:`measure_names` once per process: it reads the catalogue and the installed entry points
    (~15 ms), and a sweep's plan validates hundreds of jobs."""
    return tuple(measure_names())


def selected_measures(cfg: DictConfig) -> list[str]:
    """The measure names a job computes: ``measures.include`` (or ``all``) minus ``measures.exclude``."""
    modules = list(cfg.measures.get("modules") or [])
    if modules:  # the user's own measure modules (measures.modules=[my_pkg.my_measure]) register on import
        try:
            measures.load_modules(modules)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    valid = measures.names() if modules else list(_builtin_measure_names())
    include = cfg.measures.include
    chosen = valid if include == "all" else list(include)
    exclude = list(cfg.measures.exclude)  # read once: each read of an omegaconf list resolves every node
    for key, names in (("measures.include", chosen), ("measures.exclude", exclude),
                       ("measures.params", list(cfg.measures.params))):
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise ConfigError(f"{key}: {unknown_measure(unknown[0], valid)}")
    excluded = set(exclude)
    return [n for n in chosen if n not in excluded]


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first invalid key and its valid values."""
    scale = cfg.perturbation.scale
    if not _finite_number(scale) or scale < 0:
        raise ConfigError(f"perturbation.scale: must be a finite number >= 0, got {scale!r}")
    rate = cfg.intervention.label_randomization
    if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ConfigError(f"intervention.label_randomization: must be a rate in [0, 1], got {rate!r}")
    shortcut = cfg.intervention.shortcut
    if shortcut is not None and (not isinstance(shortcut, (int, float)) or not 0 <= shortcut <= 1):
        raise ConfigError(f"intervention.shortcut: must be null or a probability in [0, 1], got {shortcut!r}")
    noise = cfg.intervention.input_noise
    if not _finite_number(noise) or noise < 0:
        raise ConfigError(f"intervention.input_noise: must be a finite number >= 0, got {noise!r}")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed: must be an integer >= 0, got {cfg.seed!r}")
    for key in ("epochs", "batch_size"):
        if not isinstance(cfg.train[key], int) or cfg.train[key] < 1:
            raise ConfigError(f"train.{key}: must be an integer >= 1, got {cfg.train[key]!r}")
    for key, value, low, what in (("train.lr", cfg.train.lr, 0, "> 0"),
                                  ("train.weight_decay", cfg.train.get("weight_decay", 0.0), 0, ">= 0")):
        if not _finite_number(value) or value < low or (what == "> 0" and value == 0):
            raise ConfigError(f"{key}: must be a finite number {what}, got {value!r}")
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
    for name, params in cfg.measures.params.items():
        _check_measure_params(str(name), json.dumps(OmegaConf.to_container(params, resolve=True), sort_keys=True))
    from tasks.zoo import architectures, datasets

    if cfg.arch.name not in architectures.ARCHITECTURES:
        raise ConfigError(f"arch.name: unknown architecture {cfg.arch.name!r}"
                          f"{suggest(cfg.arch.name, architectures.ARCHITECTURES)}")
    if cfg.data.name not in datasets.DATASETS:
        raise ConfigError(f"data.name: unknown dataset {cfg.data.name!r}{suggest(cfg.data.name, datasets.DATASETS)}")
    _check_model(cfg, chosen)
    _check_significance(cfg, chosen)


def _check_significance(cfg: DictConfig, chosen: list[str]) -> None:
    sig = cfg.get("significance")
    if sig is None:
        return
    for key in ("n_permutations", "n_resamples", "seed"):
        value = sig.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"significance.{key}: must be an integer >= 0, got {value!r}")
    if not 0 < sig.get("confidence", 0.95) < 1:
        raise ConfigError(f"significance.confidence: must lie in (0, 1), got {sig.confidence!r}")
    names = sig.get("measures", "all")
    if names != "all":
        unknown = sorted(set(names) - set(measures.names()))
        if unknown:
            raise ConfigError(f"significance.measures: unknown measure(s) {unknown}; valid: {measures.names()}")


def _finite_number(value: object) -> bool:
    """A real number (not a bool, not NaN or ±Inf); YAML reads ``1e400`` as inf and ``.nan`` as NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: rows of the small synthetic inputs a measure's parameters are tried on
_PROBE_ROWS = 40


@lru_cache(maxsize=None)
def _check_measure_params(name: str, params_json: str) -> None:
    """``measures.params.<name>``: known keys, and values the measure accepts.

    Values are checked by calling the measure once on small synthetic inputs of its kind (every measure
    computes on these with its defaults, see tests/integration/test_bad_configs.py), so a value the
    measure refuses (a ValueError naming the parameter) is refused here, before any job runs, instead
    of becoming an ``error`` row in every job. Model-based measures are only checked for known keys.
    """
    params = json.loads(params_json)
    info = measures.info(name)
    if not isinstance(params, dict):
        raise ConfigError(f"measures.params.{name}: must be a mapping of parameter names to values, got {params!r}")
    unknown = sorted(set(params) - set(info.params))
    if unknown:
        raise ConfigError(f"measures.params.{name}: unknown parameter(s) {unknown}; valid parameters of {name}: "
                          f"{', '.join(sorted(info.params)) or 'none'}")
    if info.inputs == "models":
        return
    try:
        measures.compute(name, *probe_inputs(info), **params, **({"labels": _probe_labels()} if info.requires_labels else {}))
    except measures.UndefinedMeasureError:
        pass  # a property of the synthetic data, not of the parameters
    except Exception as exc:
        keys = ", ".join(f"measures.params.{name}.{k}" for k in sorted(params))
        raise ConfigError(f"{keys}: {name} refuses {params}: {exc}") from None


def probe_inputs(info: measures.MeasureInfo) -> tuple:
    """Small synthetic inputs of the measure's kind (fixed seed): what parameter values are tried on."""
    rng = np.random.default_rng(0)

    def probabilities() -> np.ndarray:
        logits = rng.normal(size=(_PROBE_ROWS, 3))
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    if info.inputs == "representations":
        return rng.normal(size=(_PROBE_ROWS, 6)), rng.normal(size=(_PROBE_ROWS, 5))
    if info.inputs == "outputs":
        return rng.normal(size=(_PROBE_ROWS, 3)), rng.normal(size=(_PROBE_ROWS, 3))
    if info.inputs == "probabilities":
        return probabilities(), probabilities()
    if info.inputs == "outputs_group":
        return ([probabilities() for _ in range(3)],)
    if info.inputs == "preactivations":
        return tuple([rng.normal(size=(_PROBE_ROWS, 6)), rng.normal(size=(_PROBE_ROWS, 4))] for _ in range(2))
    raise ValueError(f"no synthetic inputs for measures of kind {info.inputs!r}")


def _probe_labels() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 3, size=_PROBE_ROWS)


def _input(cfg: DictConfig) -> tuple[tuple[int, ...], int]:
    """The input shape and class count the model of ``cfg`` sees (no data loaded)."""
    from tasks.zoo import datasets, interventions

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
    """Build an architecture without allocating weights (the meta device), to check its config.

    The weights' random initialisation is skipped (:func:`_skip_random_init`): a meta tensor holds no
    values, and torch's meta kernel of ``normal_`` is Python code whose first call imports ~900 modules
    (``torch._dynamo``, sympy): 1.8 s of a no-op rerun on the Intel VM of BENCHMARKS.md, for the
    transformer's embeddings (resnet18 imports them anyway, through torchvision's detection ops).
    """
    import torch

    from tasks.zoo import architectures

    with _skip_random_init(), torch.device("meta"):
        return architectures.build(name, shape, n_classes, **params)


@lru_cache(maxsize=1)
def _skip_random_init_mode() -> type:
    """The torch function mode class of :func:`_skip_random_init`, defined once (torch is imported
    lazily in this module: see the note above)."""
    import torch
    from torch.overrides import TorchFunctionMode

    fills = {getattr(torch.Tensor, f) for f in ("normal_", "uniform_", "random_", "exponential_", "log_normal_",
                                               "cauchy_", "geometric_", "bernoulli_")}

    class SkipRandomInit(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            first = args[0] if args else (kwargs or {}).get("tensor")  # torch.nn.init passes tensor=...
            if (isinstance(first, torch.Tensor) and first.is_meta
                    and (func in fills or getattr(func, "__module__", None) == "torch.nn.init")):
                return first
            return func(*args, **(kwargs or {}))

    return SkipRandomInit


def _skip_random_init():
    """A torch function mode under which ``torch.nn.init``'s functions and the tensors' in-place random
    fills (``normal_``, ``uniform_``, ...) return a meta tensor as it is (other tensors as usual)."""
    return _skip_random_init_mode()()


#: (arch, data, shortcut marker, activation_region chosen) combinations already checked: a sweep's plan
#: validates hundreds of jobs over a few architectures (building one on the meta device: ~3-10 ms)
_MODELS_CHECKED: set[str] = set()


def _check_model(cfg: DictConfig, chosen: list[str]) -> None:
    """The architecture builds for this data, and the chosen measures can apply to it."""
    from tasks.zoo import architectures

    params = OmegaConf.to_container(cfg.arch, resolve=True)
    checked = json.dumps([params, OmegaConf.to_container(cfg.data, resolve=True), cfg.intervention.shortcut is not None,
                          "activation_region" in chosen], sort_keys=True, default=repr)
    if checked in _MODELS_CHECKED:
        return
    shape, n_classes = _input(cfg)
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
    _MODELS_CHECKED.add(checked)


def _builds(name: str, shape: tuple[int, ...], n_classes: int) -> bool:
    try:
        _build_on_meta(name, shape, n_classes)
        return True
    except (TypeError, ValueError):
        return False
