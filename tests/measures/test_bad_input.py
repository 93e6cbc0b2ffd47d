"""Bad input to every array measure raises ValueError naming the measure and the problem."""

from __future__ import annotations

import numpy as np
import pytest

import measures
from tests.measures.conftest import example_inputs

ARRAY_MEASURES = [n for n in measures.names() if measures.info(n).inputs != "models"]


def _pairwise(name):
    return measures.info(name).inputs in ("representations", "outputs", "probabilities")


def raises(name, match, *args, **kwargs):
    with pytest.raises(ValueError, match=match) as exc:
        measures.compute(name, *args, **kwargs)
    assert repr(name) in str(exc.value), f"message does not name the measure: {exc.value}"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ARRAY_MEASURES)
def test_non_finite(name, bad, rng):
    args, kwargs = example_inputs(measures.info(name), rng)
    if measures.info(name).inputs == "outputs_group":
        group = [g.copy() for g in args[0]]
        group[1][3, 0] = bad
        raises(name, "NaN or Inf", group, **kwargs)
    elif measures.info(name).inputs == "preactivations":
        a = [layer.copy() for layer in args[0]]
        a[1][2, 1] = bad
        raises(name, "NaN or Inf", a, args[1], **kwargs)
    elif measures.info(name).inputs == "outputs" and bad == -np.inf:
        # Score outputs: −Inf below a finite row maximum is a masked class (probability 0), accepted; the
        # value is the one with a finite score in its place below every other (argmax-only measures).
        b = args[1].copy()
        b[3, 0] = bad
        finite = args[1].copy()
        finite[3, 0] = finite.min() - 1.0
        assert measures.compute(name, args[0], b, **kwargs) == measures.compute(name, args[0], finite, **kwargs)
        b[3, :] = bad  # a row without a finite maximum has no prediction
        raises(name, "NaN or Inf", args[0], b, **kwargs)
    else:
        b = args[1].copy()
        b[3, 0] = bad
        raises(name, "NaN or Inf", args[0], b, **kwargs)


@pytest.mark.parametrize("name", [n for n in ARRAY_MEASURES if _pairwise(n)])
def test_row_counts_differ(name, rng):
    (a, b), kwargs = example_inputs(measures.info(name), rng)
    raises(name, "row counts differ", a, b[:-3], **kwargs)


@pytest.mark.parametrize("name", [n for n in ARRAY_MEASURES if _pairwise(n)])
def test_wrong_rank(name, rng):
    (a, b), kwargs = example_inputs(measures.info(name), rng)
    raises(name, "must be 2-D", a[:, :, None], b, **kwargs)
    raises(name, "must be 2-D", a, b.ravel(), **kwargs)


@pytest.mark.parametrize("name", [n for n in ARRAY_MEASURES if _pairwise(n)])
def test_too_few_rows(name, rng):
    info = measures.info(name)
    (a, b), kwargs = example_inputs(info, rng)
    k = info.min_rows - 1
    if "labels" in kwargs:
        kwargs["labels"] = kwargs["labels"][:k]
    raises(name, "at least", a[:k], b[:k], **kwargs)


@pytest.mark.parametrize("name", measures.names(inputs="outputs") + measures.names(inputs="probabilities"))
def test_class_counts_differ(name, rng):
    (a, b), kwargs = example_inputs(measures.info(name), rng)
    b = np.hstack([b, np.zeros((b.shape[0], 1))])
    raises(name, "class counts differ", a, b, **kwargs)


@pytest.mark.parametrize("name", measures.names(inputs="probabilities") + measures.names(inputs="outputs_group"))
def test_not_probabilities(name, rng):
    args, kwargs = example_inputs(measures.info(name), rng)
    if measures.info(name).inputs == "outputs_group":
        group = list(args[0])
        group[0] = group[0] * 1.5
        raises(name, "do not sum to one", group, **kwargs)
    else:
        raises(name, "do not sum to one", args[0] * 1.5, args[1], **kwargs)


@pytest.mark.parametrize("name", ARRAY_MEASURES)
def test_unknown_parameter(name, rng):
    args, kwargs = example_inputs(measures.info(name), rng)
    raises(name, "unknown parameter", *args, not_a_parameter=1, **kwargs)


def test_unknown_measure_lists_valid_names():
    with pytest.raises(ValueError, match="valid measures: .*cka_linear"):
        measures.compute("no_such_measure", np.zeros((3, 2)), np.zeros((3, 2)))


def test_duplicate_registration_rejected():
    with pytest.raises(ValueError, match="already registered"):
        measures.register("cka_linear", family="rsm", kind="similarity", range=(0, 1), symmetric=True, reference="x")(
            lambda X, Y: 0.0
        )


def test_mistyped_measure_suggests_the_close_name():
    with pytest.raises(ValueError, match="did you mean 'svcca'"):
        measures.compute("svcaa", np.zeros((3, 2)), np.zeros((3, 2)))
