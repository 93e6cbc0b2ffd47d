"""The per-input memo (measures/_memo.py) never changes a value: memoised and fresh results agree exactly."""

import numpy as np
import pytest
import torch

import measures
from measures import _memo
from tasks.storage import atomic_write

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


# --- the shared store (one_sided_shared): values another process computed ----------------------------


@pytest.mark.parametrize("name", ["geometry_score", "imd"])
def test_shared_store_values_equal_fresh_values(name, reps, tmp_path):
    """A value read back from the shared folder (as another worker would, with an empty in-process memo)
    is bit-identical to the value computed without any store."""
    a, b, c = reps
    _memo.clear()
    fresh = [measures.compute(name, a, b), measures.compute(name, c, a)]
    with _memo.shared_dir(tmp_path, atomic_write):
        _memo.clear()
        assert [measures.compute(name, a, b), measures.compute(name, c, a)] == fresh  # computes and stores
        assert len(list(tmp_path.glob("*.npy"))) == 3  # one file per input: each one-sided result once
        _memo.clear()  # "another process": only the folder is left
        assert [measures.compute(name, a, b), measures.compute(name, c, a)] == fresh
    assert not list(tmp_path.glob(".*.tmp"))


def test_shared_store_reads_instead_of_computing(tmp_path):
    x = torch.arange(12.0, dtype=torch.float64).reshape(4, 3)
    calls = []

    def compute(kind):
        calls.append(kind)
        return torch.tensor([1.0, 2.5], dtype=torch.float64) if kind == "tensor" else np.array([3, 4], dtype=np.int32)

    with _memo.shared_dir(tmp_path, atomic_write):
        for kind in ("tensor", "array"):
            _memo.clear()
            first = _memo.one_sided_shared(f"t.{kind}", x, lambda kind=kind: compute(kind), k=1)
            _memo.clear()
            again = _memo.one_sided_shared(f"t.{kind}", x, lambda kind=kind: compute(kind), k=1)
            assert type(again) is type(first) and again.dtype == first.dtype
            assert np.array_equal(np.asarray(again), np.asarray(first))
        assert calls == ["tensor", "array"]  # the second call of each read the file
        _memo.clear()
        _memo.one_sided_shared("t.array", x, lambda: compute("array"), k=2)  # other parameters: computed
        assert calls[-1] == "array" and len(calls) == 3


def test_shared_store_damaged_or_other_code_is_recomputed(tmp_path, monkeypatch):
    x = torch.ones(5, 2, dtype=torch.float64)
    calls = []

    def compute():
        calls.append(1)
        return np.arange(4.0)

    with _memo.shared_dir(tmp_path, atomic_write):
        _memo.one_sided_shared("t", x, compute)
        (path,) = tmp_path.glob("*.npy")
        path.write_bytes(path.read_bytes()[:-8])  # truncated (a reader must not trust it)
        _memo.clear()
        assert np.array_equal(_memo.one_sided_shared("t", x, compute), np.arange(4.0))
        assert len(calls) == 2
        _memo.clear()
        _memo.one_sided_shared("t", x, compute)  # the replaced file is whole again: read, not computed
        assert len(calls) == 2
        monkeypatch.setattr(_memo, "code_version", lambda: "other code")
        _memo.clear()
        _memo.one_sided_shared("t", x, compute)  # a value stored by other code is never reused
        assert len(calls) == 3


def test_shared_store_unwritable_folder_still_returns_the_value(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    x = torch.ones(3, 2, dtype=torch.float64)
    with _memo.shared_dir(blocked / "memo", atomic_write):
        _memo.clear()
        assert np.array_equal(_memo.one_sided_shared("t", x, lambda: np.arange(3.0)), np.arange(3.0))


def test_shared_folder_without_a_writer_is_refused(tmp_path):
    with pytest.raises(ValueError, match="write function"):
        _memo.use_shared_dir(tmp_path)
    with _memo.shared_dir(tmp_path, atomic_write):
        x = torch.ones(3, 2, dtype=torch.float64)
        _memo.clear()
        _memo.one_sided_shared("t", x, lambda: np.arange(3.0))
    assert len(list(tmp_path.glob("*.npy"))) == 1 and not list(tmp_path.glob(".*.tmp"))
