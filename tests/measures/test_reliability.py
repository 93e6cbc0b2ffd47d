"""Hostile input to every registered measure (issue 13, items 3, 6, 8, 9, 10 and the fuzz test).

The fuzz test calls every measure with each class of bad input (NaN, Inf, empty, 1-2 rows, complex, bool,
int, float16, 1e±200 scales, 3-D, lists, DataFrames, mismatched rows; for the model-based measures
non-finite weights, arrays instead of models, bad probe sets) and accepts exactly two outcomes: a
ValueError (UndefinedMeasureError is one) whose message names the measure, or a finite value inside the
measure's declared range; every call must finish within a time bound. The other tests pin the fixed
defects against independent references (the unscaled value, a direct gudhi computation).
"""

from __future__ import annotations

import copy
import math
import time

import gudhi
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import measures
from measures.topology import _row_subsets, relative_living_times
from tests.measures.conftest import example_inputs
from tests.measures.test_activation_region import probe, trained_ish

#: CPU seconds one call may take on the fuzz test's small inputs (the slowest measure needs ~0.5 s)
CALL_BOUND_S = 10.0
ARRAY_MEASURES = [n for n in measures.names() if measures.info(n).inputs != "models"]
MODEL_MEASURES = measures.names(inputs="models")


def outcome(name: str, *args, **kwargs) -> str:
    """Call the measure; assert one of the two allowed outcomes and the time bound; say which it was."""
    info = measures.info(name)
    start = time.process_time()
    try:
        value = measures.compute(name, *args, **kwargs)
    except ValueError as exc:
        result = "refused"
        assert name in str(exc), f"{name}: the message does not name the measure: {exc}"
    else:
        result = "value"
        assert isinstance(value, float) and math.isfinite(value), f"{name}: non-finite result {value!r}"
        low, high = info.range
        assert low <= value <= high, f"{name}: {value!r} outside the declared range {info.range}"
    spent = time.process_time() - start
    assert spent < CALL_BOUND_S, f"{name}: one call took {spent:.1f} s of CPU"
    return result


def _side(info: measures.MeasureInfo, args: tuple, transform) -> tuple:
    """Apply ``transform`` (array -> anything) to every array of the measure's positional inputs."""
    if info.inputs == "outputs_group":
        return ([transform(g) for g in args[0]],)
    if info.inputs == "preactivations":
        return tuple([transform(layer) for layer in side] for side in args)
    return tuple(transform(a) for a in args)


def _inject(value: float, position: int):
    def put(a: np.ndarray) -> np.ndarray:
        a = np.array(a, dtype=np.float64)
        a.flat[position % a.size] = value
        return a
    return put


def bad_inputs(info: measures.MeasureInfo, args: tuple, kwargs: dict, position: int, exponent: int):
    """(class name, positional inputs, keyword inputs) for every bad-input class of the issue."""
    n = len(kwargs["labels"]) if "labels" in kwargs else None

    def rows(k: int):  # the first k rows of every input (labels too)
        return _side(info, args, lambda a: a[:k]), ({**kwargs, "labels": kwargs["labels"][:k]} if n else kwargs)

    yield "nan", _side(info, args, _inject(np.nan, position)), kwargs
    # score outputs accept −Inf below a finite row maximum (a masked class; test_functional checks its
    # value), so they get +Inf, which they must refuse
    yield "inf", _side(info, args, _inject(np.inf if info.inputs == "outputs" else -np.inf, position)), kwargs
    for k in (0, 1, 2):
        yield f"{k} rows", *rows(k)
    yield "complex", _side(info, args, lambda a: a + 1j * a), kwargs
    yield "bool", _side(info, args, lambda a: a > np.median(a)), kwargs
    yield "int", _side(info, args, lambda a: np.round(a * 3).astype(np.int64)), kwargs
    yield "float16", _side(info, args, lambda a: a.astype(np.float16)), kwargs
    yield "scale 1e200", _side(info, args, lambda a: a * 10.0 ** exponent), kwargs
    yield "scale 1e-200", _side(info, args, lambda a: a * 10.0 ** -exponent), kwargs
    yield "3-D", _side(info, args, lambda a: a[:, :, None]), kwargs
    yield "lists", _side(info, args, lambda a: a.tolist()), kwargs
    yield "DataFrame", _side(info, args, pd.DataFrame), kwargs
    if info.inputs == "outputs_group":
        group = list(args[0])
        yield "mismatched rows", ([*group[:-1], group[-1][:-1]],), kwargs
    elif info.inputs == "preactivations":
        yield "mismatched rows", (args[0], [layer[:-1] for layer in args[1]]), kwargs
    else:
        yield "mismatched rows", (args[0], args[1][:-1]), kwargs
    if info.requires_labels:
        yield "string labels", args, {**kwargs, "labels": np.array([f"c{i}" for i in kwargs["labels"]])}
        yield "NaN labels", args, {**kwargs, "labels": np.where(np.arange(n) == 0, np.nan, kwargs["labels"])}


@pytest.mark.parametrize("name", ARRAY_MEASURES)
@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(6, 40), d1=st.integers(1, 6), d2=st.integers(1, 6), seed=st.integers(0, 2**16),
       position=st.integers(0, 10**6), exponent=st.integers(150, 300))
def test_fuzz_array_measures(name, n, d1, d2, seed, position, exponent):
    info = measures.info(name)
    rng = np.random.default_rng(seed)
    args, kwargs = example_inputs(info, rng, n=n, d1=d1, d2=d2)
    outcome(name, *args, **kwargs)  # the valid input itself
    for what, bad_args, bad_kwargs in bad_inputs(info, args, kwargs, position, exponent):
        got = outcome(name, *bad_args, **bad_kwargs)
        too_few = what.endswith(" rows") and what != "mismatched rows" and int(what.split()[0]) < info.min_rows
        if too_few or what in ("nan", "inf", "complex", "3-D", "mismatched rows", "string labels", "NaN labels"):
            assert got == "refused", f"{name} accepted {what} input"


@pytest.fixture(scope="module")
def models():
    a = trained_ish("mlp")
    b = trained_ish("mlp", seed=1)
    return a, b, probe("mlp", n=64)


def _poisoned(model, value):
    bad = copy.deepcopy(model)
    with torch.no_grad():
        next(bad.parameters()).view(-1)[0] = value
    return bad


@pytest.mark.parametrize("name", MODEL_MEASURES)
def test_fuzz_model_measures(name, models):
    a, b, x = models
    info = measures.info(name)
    with torch.no_grad():
        labels = a(x).argmax(1)  # A's own predictions: every measure has correctly classified inputs to use
    kwargs = {"probe": x, **({"labels": labels} if info.requires_labels else {})}
    if name == "stitching":
        kwargs["fit_fraction"] = 0.5
    assert outcome(name, a, b, **kwargs) == "value"
    for bad in (np.nan, np.inf, -np.inf):  # item 6: no measure may return nan/inf for such a model
        assert outcome(name, _poisoned(a, bad), b, **kwargs) == "refused"
        assert outcome(name, a, _poisoned(b, bad), **kwargs) == "refused"
    assert outcome(name, np.ones((4, 4)), b, **kwargs) == "refused"
    assert outcome(name, a, None, **kwargs) == "refused"
    if "probe" in info.params and name != "weight_distance":  # weight_distance ignores the probe by default
        for probe_set in (x.clone().fill_(np.nan), x[:0], x.to(torch.complex128)):
            assert outcome(name, a, b, **{**kwargs, "probe": probe_set}) == "refused"


# -- item 8: RTD declares isotropic-scaling invariance, also at the ends of float64 ------------------


@pytest.mark.parametrize("factor", [1e200, 1e-200, 2.0**1000])
def test_rtd_of_extreme_scales_is_the_unscaled_value(factor):
    (x, y), _ = example_inputs(measures.info("rtd"), np.random.default_rng(3), n=40)
    reference = measures.compute("rtd", x, y)
    assert reference > 0
    assert measures.compute("rtd", x * factor, y * factor) == pytest.approx(reference, rel=1e-6)
    assert measures.compute("rtd", x * factor, y) == pytest.approx(reference, rel=1e-6)


# -- item 9: complex input ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ARRAY_MEASURES)
def test_complex_input_is_refused(name, rng):
    info = measures.info(name)
    args, kwargs = example_inputs(info, rng, n=20)
    for convert in (lambda a: a.astype(np.complex128), lambda a: torch.from_numpy(a).to(torch.complex64)):
        with pytest.raises(ValueError, match=rf"measure '{name}': .*complex"):
            measures.compute(name, *_side(info, args, convert), **kwargs)


# -- item 10: the same input faults raise the same ValueError in every input kind ---------------------

GROUP_MEASURES = measures.names(inputs="outputs_group")
LABEL_MEASURES = [n for n in ARRAY_MEASURES if measures.info(n).requires_labels]


@pytest.mark.parametrize("name", GROUP_MEASURES)
def test_group_measures_refuse_zero_rows_and_one_class_like_the_pairwise_ones(name):
    empty = [np.zeros((0, 3))] * 3
    with pytest.raises(ValueError, match=rf"measure '{name}': needs at least"):
        measures.compute(name, empty)
    with pytest.raises(ValueError, match="measure 'jsd': needs at least"):
        measures.compute("jsd", empty[0], empty[1])
    one_class = [np.ones((10, 1))] * 3
    with pytest.raises(ValueError, match=rf"measure '{name}': outputs need at least 2 classes"):
        measures.compute(name, one_class)
    with pytest.raises(ValueError, match="measure 'jsd': outputs need at least 2 classes"):
        measures.compute("jsd", one_class[0], one_class[1])


@pytest.mark.parametrize("name", LABEL_MEASURES)
def test_string_labels_raise_value_error(name, rng):
    args, kwargs = example_inputs(measures.info(name), rng, n=20)
    words = np.array([f"class {i}" for i in kwargs["labels"]])
    for labels in (words, list(words)):
        with pytest.raises(ValueError, match=rf"measure '{name}': labels must be integer class indices"):
            measures.compute(name, *args, labels=labels)


# -- item 3: geometry_score's cost is bounded on degenerate inputs, its values are unchanged -----------


def gudhi_geometry_score(x: np.ndarray, y: np.ndarray, n_landmarks=64, gamma=1 / 128, i_max=100, n_draws=20,
                         seed=0) -> float:
    """The geometry score written out directly (second code path): pairwise distances from scipy-free
    numpy differences, one gudhi witness complex per draw over all witnesses, no deduplication."""
    draws = _row_subsets(len(x), n_landmarks, n_draws, seed)

    def mrlt(z):
        z = z - z.mean(axis=0)
        total = np.zeros(i_max)
        for rows in draws:
            d = np.sqrt(((z[:, None, :] - z[None, rows, :]) ** 2).sum(-1))
            order = np.argsort(d, axis=1, kind="stable")
            dist = np.take_along_axis(d, order, axis=1)
            alpha = gamma * dist[:, -1].max()
            tree = gudhi.WitnessComplex(nearest_landmark_table=np.dstack([order.astype(float), dist]))
            tree = tree.create_simplex_tree(max_alpha_square=alpha, limit_dimension=2)
            tree.compute_persistence(homology_coeff_field=2)
            intervals = np.asarray(tree.persistence_intervals_in_dimension(1)).reshape(-1, 2)
            total += relative_living_times(intervals, alpha, i_max)
        return total / len(draws)

    return float(np.square(mrlt(x) - mrlt(y)).sum())


@pytest.mark.parametrize("seed", range(4))
def test_geometry_score_matches_a_direct_gudhi_computation(seed):
    rng = np.random.default_rng(seed)
    (x, y), _ = example_inputs(measures.info("geometry_score"), rng, n=90, d1=6, d2=5)
    if seed >= 2:  # a few coinciding rows (below the size limit): same values as without the bound
        x[:6] = x[0]
    expected = gudhi_geometry_score(x, y, n_draws=4, seed=seed)
    assert measures.compute("geometry_score", x, y, n_draws=4, seed=seed) == pytest.approx(expected, abs=1e-9)


def test_geometry_score_is_fast_or_undefined_on_dead_units():
    """Most rows on one point (dead ReLUs): was 100 s of CPU per call at these sizes (5 s per draw)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(720, 32))
    x[:650] = 0.0
    y = rng.normal(size=(720, 32))
    start = time.process_time()
    with pytest.raises(measures.UndefinedMeasureError, match="geometry_score: the witness complex would hold"):
        measures.compute("geometry_score", x, y)
    assert time.process_time() - start < 5.0
    x[:600] = rng.normal(size=(600, 32))  # 50 coinciding rows: computed, and quickly
    start = time.process_time()
    assert 0 <= measures.compute("geometry_score", x, y) <= 2
    assert time.process_time() - start < 20.0

