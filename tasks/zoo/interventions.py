"""Training interventions: label randomisation, shortcut markers and input-noise augmentation.

Each intervention is a named config key under ``intervention`` (``conf/intervention/*.yaml``) and part of
the model key. Their randomness comes from named seed streams of the model seed, so every draw is
reproducible and independent of the other axes.

What a shortcut or an augmentation is depends on the domain (a marker pixel of an image, a marker token
of a sentence, a marker feature of a graph node): each domain registers its versions in
:data:`DOMAIN_INTERVENTIONS` (vision and the synthetic vectors here, language and graphs in their zoo
modules); label randomisation is the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

#: Seed of the uninformative markers on the probe set: the same for every model, so every model
#: is compared on identical inputs.
PROBE_MARKER_SEED = 20_260_401


def randomize_labels(y: np.ndarray, rate: float, n_classes: int, seed: int) -> np.ndarray:
    """Label randomisation (Zhang et al. 2017): each training label is replaced, once and before
    training, with probability ``rate`` by a uniformly random class (which may equal the true one)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"intervention.label_randomization must be in [0, 1], got {rate}")
    rng = np.random.default_rng(seed)
    y = y.copy()
    flip = rng.random(y.shape[0]) < rate
    y[flip] = rng.integers(0, n_classes, size=int(flip.sum()))
    return y


def marker_positions(shape: tuple[int, ...], n_classes: int) -> list[tuple[int, ...]]:
    """One marker location per class: border pixels of an image (C, H, W), or one extra feature
    index per class for vector inputs (the caller appends ``n_classes`` zero features)."""
    if len(shape) == 3:
        _, h, w = shape
        border = [(0, j) for j in range(w)] + [(i, w - 1) for i in range(1, h)] + \
                 [(h - 1, j) for j in range(w - 2, -1, -1)] + [(i, 0) for i in range(h - 2, 0, -1)]
        if n_classes > len(border):
            raise ValueError(f"shortcut markers need {n_classes} border pixels, the image has {len(border)}")
        step = len(border) // n_classes
        return [border[c * step] for c in range(n_classes)]
    return [(shape[0] + c,) for c in range(n_classes)]


def add_markers(x: np.ndarray, y: np.ndarray, rate: float, n_classes: int, seed: int) -> np.ndarray:
    """Shortcut affinity (ReSi test 4, adapted to small inputs): every input gets a marker; with
    probability ``rate`` it sits at the position of the true class, otherwise at the position of a
    uniformly random class. Images: the marker pixel is set to 1 in every channel. Vectors: ``n_classes``
    marker features are appended and the marked one set to 1 (all inputs then have the extra features)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"intervention.shortcut must be in [0, 1] or null, got {rate}")
    rng = np.random.default_rng(seed)
    informative = rng.random(y.shape[0]) < rate
    cls = np.where(informative, y, rng.integers(0, n_classes, size=y.shape[0]))
    positions = marker_positions(x.shape[1:], n_classes)
    if x.ndim == 2:
        out = np.concatenate([x, np.zeros((x.shape[0], n_classes), dtype=x.dtype)], axis=1)
        out[np.arange(x.shape[0]), [positions[c][0] for c in cls]] = 1.0
        return out
    out = x.copy()
    for i, c in enumerate(cls):
        out[(i, slice(None), *positions[c])] = 1.0
    return out


def gaussian_input_noise(x: torch.Tensor, sigma_max: float, generator: torch.Generator) -> torch.Tensor:
    """Augmentation (ReSi test 5): per input, σ ~ U(0, sigma_max), x + σ·ε clipped to [0, 1] for images
    (inputs of rank > 2) and unclipped for vectors."""
    if sigma_max <= 0:
        return x
    sigma = torch.rand(x.shape[0], generator=generator) * sigma_max
    noise = torch.randn(x.shape, generator=generator) * sigma.view(-1, *([1] * (x.ndim - 1)))
    noisy = x + noise.to(x.device, x.dtype)
    return noisy.clamp(0.0, 1.0) if x.ndim > 2 else noisy


def marker_shape(shape: tuple[int, ...], n_classes: int) -> tuple[int, ...]:
    """The input shape :func:`add_markers` produces: vectors get one marker feature per class, images
    keep their shape."""
    return (shape[0] + n_classes,) if len(shape) == 1 else tuple(shape)


@dataclass(frozen=True)
class DomainInterventions:
    """A domain's versions of the input-changing interventions.

    ``shortcut(x, y, rate, n_classes, seed) -> x``: inputs with a class marker that shows the true class
    with probability ``rate`` (a uniformly random class otherwise); ``shortcut_shape(shape, n_classes)``:
    the input shape it produces; ``augment(x, level, generator) -> x``: a training batch with random noise
    of strength ``level`` (``intervention.input_noise``), the identity at level 0.
    """

    shortcut: Callable[[np.ndarray, np.ndarray, float, int, int], np.ndarray]
    shortcut_shape: Callable[[tuple[int, ...], int], tuple[int, ...]]
    augment: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]


#: domain -> its interventions (see :class:`DomainInterventions`)
DOMAIN_INTERVENTIONS: dict[str, DomainInterventions] = {
    "vision": DomainInterventions(add_markers, marker_shape, gaussian_input_noise),
    "synthetic": DomainInterventions(add_markers, marker_shape, gaussian_input_noise),
}


def for_domain(domain: str) -> DomainInterventions:
    """The interventions of ``domain``; an unknown domain lists the known ones."""
    if domain not in DOMAIN_INTERVENTIONS:
        raise ValueError(f"no interventions registered for domain {domain!r}; known domains: {sorted(DOMAIN_INTERVENTIONS)}")
    return DOMAIN_INTERVENTIONS[domain]
