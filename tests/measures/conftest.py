"""Shared fixtures for measure tests: random inputs of every input kind, generated from a seed."""

from __future__ import annotations

import numpy as np
import pytest

import measures


def representations(rng: np.random.Generator, n: int, d1: int, d2: int) -> tuple[np.ndarray, np.ndarray]:
    """A pair of related but different representations (Y is a noisy linear read-out of X)."""
    x = rng.standard_normal((n, d1)) @ np.diag(np.linspace(2.0, 0.3, d1)) + rng.standard_normal(d1)
    y = np.tanh(x @ rng.standard_normal((d1, d2)) / np.sqrt(d1)) + 0.4 * rng.standard_normal((n, d2))
    return x, y


def probabilities(rng: np.random.Generator, n: int, c: int, temperature: float = 1.0) -> np.ndarray:
    logits = rng.standard_normal((n, c)) * 2.0 / temperature
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def example_inputs(info: measures.MeasureInfo, rng: np.random.Generator, n: int = 60, d1: int = 8, d2: int = 6):
    """Positional inputs and extra keyword arguments for one call of ``info``'s measure."""
    n = max(n, info.min_rows)
    if info.inputs == "representations":
        args = representations(rng, n, d1, d2)
    elif info.inputs in ("outputs", "probabilities"):
        a = probabilities(rng, n, 5)
        b = 0.5 * a + 0.5 * probabilities(rng, n, 5)
        args = (a, b)
    elif info.inputs == "outputs_group":
        base = probabilities(rng, n, 5)
        args = ([0.6 * base + 0.4 * probabilities(rng, n, 5) for _ in range(4)],)
    elif info.inputs == "preactivations":
        x, y = representations(rng, n, d1, d1)
        args = ([x, x @ rng.standard_normal((d1, d1))], [y, y @ rng.standard_normal((d1, d1))])
    else:
        raise NotImplementedError(info.inputs)
    kwargs = {"labels": rng.integers(0, 5, size=n)} if info.requires_labels else {}
    return args, kwargs


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
