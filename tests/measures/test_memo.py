"""The per-input memo (measures/_memo.py) never changes a value: memoised and fresh results agree exactly."""

import numpy as np
import pytest

import measures
from measures import _memo

REPRESENTATION_MEASURES = [n for n in measures.names() if measures.info(n).inputs == "representations"]


@pytest.fixture
def reps():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((60, 5)) @ rng.standard_normal((5, 12))
    return [np.maximum(base + 0.3 * rng.standard_normal((60, 12)), 0.0) for _ in range(3)]


@pytest.mark.parametrize("name", REPRESENTATION_MEASURES)
def test_memoised_value_equals_fresh_value(name, reps):
    a, b, c = reps
    _memo.clear()
    fresh = measures.compute(name, a, b)
    _memo.clear()
    measures.compute(name, a, c)  # a and c are memoised now, b in the next call
    measures.compute(name, c, b)
    again = measures.compute(name, a, b)
    assert again == fresh or (np.isnan(again) and np.isnan(fresh))


def test_parameters_and_content_are_part_of_the_key(reps):
    a, b, _ = reps
    _memo.clear()
    spearman = measures.compute("rsa", a, b)
    euclidean = measures.compute("rsa", a, b, inner="euclidean")
    _memo.clear()
    assert measures.compute("rsa", a, b, inner="euclidean") == euclidean
    assert measures.compute("rsa", a, b) == spearman
    shifted = a.copy()
    shifted[0, 0] += 1.0  # one entry changed: a new key, not a stale hit
    _memo.clear()
    expected = measures.compute("rsa", shifted, b)
    _memo.clear()
    measures.compute("rsa", a, b)
    assert measures.compute("rsa", shifted, b) == expected


def test_failures_are_not_memoised():
    flat = np.ones((20, 4))
    flat[:, 0] = np.arange(20.0) + 2.0  # rows (i + 2, 1, 1, 1): none constant
    constant_rows = np.ones((20, 4))  # every row constant across features: correlation inner undefined
    _memo.clear()
    for _ in range(2):
        with pytest.raises(measures.UndefinedMeasureError, match="input 1"):
            measures.compute("rsa", constant_rows, flat)
    with pytest.raises(measures.UndefinedMeasureError, match="input 2"):
        measures.compute("rsa", flat, constant_rows)


def test_memo_is_bounded(reps, monkeypatch):
    monkeypatch.setattr(_memo, "MAX_ENTRIES", 3)
    _memo.clear()
    rng = np.random.default_rng(0)
    for _ in range(5):
        measures.compute("rsa", rng.standard_normal((30, 4)), rng.standard_normal((30, 4)))
    assert len(_memo._store) <= 3
    monkeypatch.setattr(_memo, "MAX_ENTRIES", 0)  # disabled: computes, stores nothing
    _memo.clear()
    measures.compute("rsa", *reps[:2])
    assert len(_memo._store) == 0 and _memo.stats["misses"] == 0
