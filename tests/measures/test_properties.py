"""Property tests generated from every registered measure's metadata.

A wrong flag fails here: identity, range, declared symmetry (and asymmetry), the metric axioms of
declared metrics, every declared invariance on both arguments, and a violation of every invariance
class a representational measure does *not* declare (the theory says it is not invariant, so a
random transform of that class must move the value).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

import measures
from measures import UndefinedMeasureError
from tests.measures.conftest import example_inputs, representations

ARRAY_MEASURES = [n for n in measures.names() if measures.info(n).inputs != "models"]
REPRESENTATION_MEASURES = measures.names(inputs="representations")
# (N, D1, D2): N > D, unequal widths, and D > N (where the CCA family is degenerate).
SHAPES = [(60, 8, 8), (50, 5, 12), (24, 30, 26)]


def value(name, *args, **kwargs):
    """The measure's value, or the string 'undefined' for a documented UndefinedMeasureError."""
    try:
        return measures.compute(name, *args, **kwargs)
    except UndefinedMeasureError:
        return "undefined"


def close(a, b, tol=1e-6):
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def transform(kind: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = x.shape[1]
    if kind == "permutation":
        return x[:, rng.permutation(d)]
    if kind == "orthogonal":
        return x @ ortho_group.rvs(d, random_state=rng) if d > 1 else -x
    if kind == "isotropic_scaling":
        return 3.7 * x
    if kind == "translation":
        return x + 4.0 * x.std() * rng.standard_normal(d)
    if kind == "invertible_linear":
        q1, q2 = ortho_group.rvs(d, random_state=rng), ortho_group.rvs(d, random_state=rng)
        return x @ (q1 @ np.diag(np.geomspace(0.2, 5.0, d)) @ q2)
    raise ValueError(kind)


@pytest.mark.parametrize("name", ARRAY_MEASURES)
def test_metadata_is_complete(name):
    info = measures.info(name)
    assert info.reference and info.summary and info.version
    assert info.range[0] < info.range[1]
    assert not (info.metric and info.kind != "distance"), "metric=True is for distances"
    implied = {"invertible_linear": {"orthogonal", "isotropic_scaling", "permutation"}, "orthogonal": {"permutation"}}
    for inv, needs in implied.items():
        if inv in info.invariances:
            assert needs <= info.invariances, f"{inv} invariance implies {needs}"


@pytest.mark.parametrize("name", ARRAY_MEASURES)
def test_identity_and_range(name, rng):
    info = measures.info(name)
    args, kwargs = example_inputs(info, rng)
    v = value(name, *args, **kwargs)
    assert v != "undefined"
    assert info.range[0] - 1e-9 <= v <= info.range[1] + 1e-9, f"{v} outside {info.range}"
    if info.inputs == "outputs_group":
        same = value(name, [args[0][0]] * len(args[0]), **kwargs)
    else:
        same = value(name, args[0], args[0], **kwargs)
    assert close(same, info.identity_value), f"m(X, X) = {same}, expected {info.identity_value}"


def _as_float64_tensors(args):
    """Every array of a measure's positional inputs as a float64 torch tensor (lists stay lists)."""
    def one(a):
        return torch.from_numpy(np.array(a, dtype=np.float64))
    return tuple([one(a) for a in x] if isinstance(x, list) else one(x) for x in args)


def _flat(args):
    return [t for x in args for t in (x if isinstance(x, list) else [x])]


@pytest.mark.parametrize("name", ARRAY_MEASURES)
def test_inputs_are_left_unchanged(name, rng):
    """A measure never writes to its inputs. Validation hands float64 CPU arrays and tensors to the measure as
    views of the caller's memory, and a sweep job gives all the rows of a pair the same arrays (the kept
    representations of ``ZooCache``): a measure that changed them would change the later rows' values.
    Checked bit for bit (writes through numpy views do not bump torch's version counter) and by a second
    call with the same tensors, which must give the same value (the memo's kept results are read-only too)."""
    info = measures.info(name)
    args, kwargs = example_inputs(info, rng)
    tensors = _as_float64_tensors(args)
    before = [t.clone() for t in _flat(tensors)]
    versions = [t._version for t in _flat(tensors)]
    first = value(name, *tensors, **kwargs)
    for t, b, v in zip(_flat(tensors), before, versions):
        assert torch.equal(t, b), f"{name} changed one of its inputs"
        assert t._version == v, f"{name} wrote to one of its inputs in place"
    again = value(name, *tensors, **kwargs)
    assert again == first, f"{name}: a second call on the same tensors gave {again}, the first {first}"


@pytest.mark.parametrize("name", [n for n in ARRAY_MEASURES if measures.info(n).inputs != "outputs_group"])
def test_symmetry_flag(name, rng):
    info = measures.info(name)
    values = []
    for _ in range(3):
        args, kwargs = example_inputs(info, rng, d1=7, d2=7)
        values.append((value(name, *args, **kwargs), value(name, *args[::-1], **kwargs)))
    if info.symmetric:
        for ab, ba in values:
            assert close(ab, ba, 1e-9), f"declared symmetric but m(X,Y)={ab} != m(Y,X)={ba}"
    else:
        assert any(not close(ab, ba, 1e-9) for ab, ba in values), "declared asymmetric but always symmetric"


@pytest.mark.parametrize("name", [n for n in ARRAY_MEASURES if measures.info(n).metric])
def test_triangle_inequality(name, rng):
    info = measures.info(name)
    for _ in range(20):
        (a, b), kwargs = example_inputs(info, rng, n=31, d1=10, d2=10)
        (c, _), _ = example_inputs(info, rng, n=31, d1=10, d2=10)
        ab, bc, ac = value(name, a, b, **kwargs), value(name, b, c, **kwargs), value(name, a, c, **kwargs)
        assert min(ab, bc, ac) >= -1e-12
        assert ac <= ab + bc + 1e-9, f"d(a,c)={ac} > d(a,b)+d(b,c)={ab + bc}"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", REPRESENTATION_MEASURES)
def test_invariances(name, shape):
    """Declared invariances hold on both sides; undeclared ones are violated on at least one side."""
    info = measures.info(name)
    rng = np.random.default_rng(7)
    n, d1, d2 = shape
    x, y = representations(rng, max(n, info.min_rows), d1, d2)
    kwargs = {"labels": rng.integers(0, 5, size=x.shape[0])} if info.requires_labels else {}
    # A second pair that half matches: the first columns of Y are noisy copies of X's columns, the
    # rest are independent. Step-like measures (e.g. max_match) can sit on a plateau for the unrelated
    # pair, where no transform can move them; a partial match is where they are informative.
    half = max(1, min(x.shape[1], y.shape[1]) // 2)
    near = np.hstack([x[:, :half], rng.standard_normal((x.shape[0], y.shape[1] - half)) * x.std()])
    near = near + 0.05 * x.std() * rng.standard_normal(near.shape)
    for first, second in ((x, y), (x, near)):
        base = value(name, first, second, **kwargs)
        for kind in measures.INVARIANCES:
            moved_x = value(name, transform(kind, first, rng), second, **kwargs)
            moved_y = value(name, first, transform(kind, second, rng), **kwargs)
            if kind in info.invariances:
                assert close(base, moved_x), f"declared {kind}-invariant but X side moved {base} -> {moved_x}"
                assert close(base, moved_y), f"declared {kind}-invariant but Y side moved {base} -> {moved_y}"
    for kind in set(measures.INVARIANCES) - info.invariances:
        moved = False
        for first, second in ((x, y), (x, near)):
            base = value(name, first, second, **kwargs)
            if base == "undefined":
                continue
            moved_x = value(name, transform(kind, first, rng), second, **kwargs)
            moved_y = value(name, first, transform(kind, second, rng), **kwargs)
            moved |= not (close(base, moved_x, 1e-4) and close(base, moved_y, 1e-4))
        undefined = value(name, x, y, **kwargs) == "undefined" and value(name, x, near, **kwargs) == "undefined"
        assert moved or undefined, f"not declared {kind}-invariant, but the value never moved"
