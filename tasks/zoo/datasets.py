"""Datasets of the zoo. Each is one function returning a :class:`Dataset` with a fixed train/probe split.

The probe set (the held-out split) is what every model's representations are extracted on, so every
compared representation holds the same N instances in the same order.

To add a dataset: write ``name(**cfg) -> Dataset`` decorated with ``@dataset("name", shape=...)`` (a
function of the same config returning the input shape and class count without loading data) and add
``conf/data/name.yaml`` with ``name: name`` and the function's keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.model_selection import train_test_split

DATASETS: dict[str, Callable[..., "Dataset"]] = {}
#: name -> function(**cfg) -> (input shape, number of classes), answered from the config alone (no data
#: is loaded), so a sweep can check architectures against the data before any job runs.
SHAPES: dict[str, Callable[..., tuple[tuple[int, ...], int]]] = {}
#: name -> the dataset's domain ("vision", "language", "graph", ...): the ``domain`` column of the result rows,
#: which the ranks analysis aggregates by, and the key of the domain's interventions
#: (:data:`tasks.zoo.interventions.DOMAIN_INTERVENTIONS`).
DOMAINS: dict[str, str] = {}


@dataclass(frozen=True)
class Dataset:
    """A classification dataset split into a training set and a fixed probe set (float32 inputs)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_probe: np.ndarray
    y_probe: np.ndarray
    n_classes: int
    #: set by :func:`load` from the registry (``@dataset(..., domain=...)``)
    domain: str = "vision"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def dataset(name: str, *, shape: Callable[..., tuple[tuple[int, ...], int]],
            domain: str = "vision") -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Register a dataset function under ``name``; ``shape(**cfg)`` returns (input shape, n_classes)
    from the config alone and raises ``ValueError`` for invalid size parameters; ``domain`` names the
    domain its rows are ranked in and whose interventions apply to it."""

    def decorator(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        DATASETS[name] = fn
        SHAPES[name] = shape
        DOMAINS[name] = domain
        return fn

    return decorator


def domain_of(name: str) -> str:
    """The domain of dataset ``name`` (vision, language, graph, ...)."""
    if name not in DOMAINS:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {sorted(DATASETS)}")
    return DOMAINS[name]


def describe(name: str, **cfg) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of dataset ``name`` with ``cfg``, without loading it."""
    if name not in SHAPES:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {sorted(DATASETS)}")
    return SHAPES[name](**cfg)


def _fixed_shape(input_shape: tuple[int, ...], n_classes: int) -> Callable[..., tuple[tuple[int, ...], int]]:
    def shape(probe_fraction: float = 0.4, **_: object) -> tuple[tuple[int, ...], int]:
        if not 0 < probe_fraction < 1:
            raise ValueError(f"data.probe_fraction must be in (0, 1), got {probe_fraction}")
        return input_shape, n_classes

    return shape


def _synthetic_shape(n_samples: int = 600, n_features: int = 16, n_classes: int = 4, probe_fraction: float = 0.5,
                     **_: object) -> tuple[tuple[int, ...], int]:
    for key, value, low in (("n_samples", n_samples, 4), ("n_features", n_features, 2), ("n_classes", n_classes, 2)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"data.{key} must be an integer >= {low}, got {value!r}")
    if n_samples < 4 * n_classes:
        raise ValueError(f"data.n_samples must be >= 4 x n_classes = {4 * n_classes}, got {n_samples}")
    if not 0 < probe_fraction < 1:
        raise ValueError(f"data.probe_fraction must be in (0, 1), got {probe_fraction}")
    return (n_features,), n_classes


def load(name: str, **cfg) -> Dataset:
    """Load dataset ``name``; unknown names list the valid ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {sorted(DATASETS)}")
    return replace(DATASETS[name](**cfg), domain=DOMAINS[name])


def _split(name: str, x: np.ndarray, y: np.ndarray, probe_fraction: float, split_seed: int) -> Dataset:
    if not 0 < probe_fraction < 1:
        raise ValueError(f"data.probe_fraction must be in (0, 1), got {probe_fraction}")
    x_train, x_probe, y_train, y_probe = train_test_split(
        x, y, test_size=probe_fraction, stratify=y, random_state=split_seed
    )
    return Dataset(
        name=name,
        x_train=x_train.astype(np.float32),
        y_train=y_train.astype(np.int64),
        x_probe=x_probe.astype(np.float32),
        y_probe=y_probe.astype(np.int64),
        n_classes=int(y.max()) + 1,
    )


@dataset("digits", shape=_fixed_shape((1, 8, 8), 10))
def digits(probe_fraction: float = 0.4, split_seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes), pixels scaled to
    [0, 1], shape (1, 8, 8); stratified split, the probe set is the held-out part."""
    bunch = load_digits()
    x = (bunch.images / 16.0)[:, None, :, :]
    return _split("digits", x, bunch.target, probe_fraction, split_seed)


@dataset("synthetic", shape=_synthetic_shape, domain="synthetic")
def synthetic(
    n_samples: int = 600,
    n_features: int = 16,
    n_classes: int = 4,
    probe_fraction: float = 0.5,
    split_seed: int = 0,
    generator_seed: int = 0,
) -> Dataset:
    """Generated Gaussian-cluster classification data (scikit-learn's make_classification), for fast
    tests; inputs are vectors of ``n_features``."""
    x, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=max(2, n_features // 2),
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=generator_seed,
    )
    return _split("synthetic", x, y, probe_fraction, split_seed)
