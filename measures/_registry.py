"""The measure registry: registration by decorator, metadata next to the code, one compute path.

A measure is a plain function ``f(*inputs, **params) -> float`` registered with :func:`register`.
The decorator wraps it so that calling the function directly and calling
``measures.compute(name, ...)`` do exactly the same thing: validate the inputs (raising
``ValueError`` that names the measure and the problem), convert them to torch tensors on the
input's device (float64 on the CPU), check the keyword parameters, and return a Python float.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import torch

from measures import _validation
from measures._suggest import unknown_measure

#: The invariance classes a measure can declare (transform applied to either argument).
INVARIANCES = ("permutation", "orthogonal", "isotropic_scaling", "translation", "invertible_linear")
#: The input kinds a measure can take; each has its own validation in ``_validation``.
INPUT_KINDS = (
    "representations",  # two N x D arrays, rows paired
    "outputs",  # two N x C score arrays (logits or probabilities; only the argmax is used)
    "probabilities",  # two N x C arrays whose rows lie on the probability simplex
    "outputs_group",  # one list of M >= 2 N x C probability arrays
    "preactivations",  # two lists of per-layer N x D_l pre-activation arrays
    "models",  # two torch modules plus a probe set (model-based functional measures)
)
FAMILIES = (
    "cca",
    "alignment",
    "rsm",
    "neighbours",
    "topology",
    "statistics",
    "functional_outputs",
    "functional_models",
    "activation_region",
    "weight_space",
)


class UndefinedMeasureError(ValueError):
    """Valid inputs on which a measure has no meaningful value (the message says why).

    Example: the CCA family when D >= N - 1, where every canonical correlation is forced to 1.
    The runners record such a comparison as ``status="undefined"`` with the reason, never as a number.
    """


@dataclass(frozen=True)
class MeasureInfo:
    """Metadata of one registered measure (what ``measures.info(name)`` returns)."""

    name: str
    family: str
    kind: Literal["similarity", "distance"]
    range: tuple[float, float]
    symmetric: bool
    metric: bool
    invariances: frozenset[str]
    inputs: str
    params: dict[str, Any]
    reference: str
    version: str
    min_rows: int
    requires_labels: bool
    stochastic: bool
    cost: str
    summary: str
    doc: str = field(repr=False)
    function: Callable[..., float] = field(repr=False, compare=False)
    #: The measure checks its inputs' finiteness itself, fused into a pass it makes anyway (validation
    #: then skips its own pass); it raises validation's ValueError (``_validation.require_finite``).
    #: It also takes inputs of any magnitude as they are: ``rescale_extreme`` is not applied (without
    #: validation's Σ x² its test would cost two passes of its own).
    checks_finite: bool = field(default=False, repr=False)

    @property
    def higher_is_more_similar(self) -> bool:
        return self.kind == "similarity"

    @property
    def identity_value(self) -> float:
        """The value of m(X, X): the top of the range for similarities, 0 for distances."""
        return self.range[1] if self.kind == "similarity" else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly metadata (no function, infinities as strings)."""

        def _num(v: float) -> float | str:
            return v if np.isfinite(v) else ("inf" if v > 0 else "-inf")

        return {
            "name": self.name,
            "family": self.family,
            "kind": self.kind,
            "range": [_num(self.range[0]), _num(self.range[1])],
            "symmetric": self.symmetric,
            "metric": self.metric,
            "invariances": sorted(self.invariances),
            "inputs": self.inputs,
            "params": {k: _jsonable(v) for k, v in self.params.items()},
            "reference": self.reference,
            "version": self.version,
            "min_rows": self.min_rows,
            "requires_labels": self.requires_labels,
            "stochastic": self.stochastic,
            "cost": self.cost,
            "summary": self.summary,
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return repr(v)


_REGISTRY: dict[str, MeasureInfo] = {}


def register(
    name: str,
    *,
    family: str,
    kind: Literal["similarity", "distance"],
    range: tuple[float, float],
    symmetric: bool,
    metric: bool = False,
    invariances: tuple[str, ...] | frozenset[str] = (),
    inputs: str = "representations",
    reference: str,
    version: str = "1",
    min_rows: int = 2,
    requires_labels: bool = False,
    cost: str = "",
    checks_finite: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., float]]:
    """Register a measure function under ``name`` with its metadata.

    The decorated function keeps its name and docstring; its keyword-only parameters (with their
    defaults) become the measure's documented parameters. A parameter called ``seed`` marks the
    measure as stochastic; a keyword-only ``labels`` marks it as needing labels (``requires_labels``
    must then be true). Registering a name twice raises ``ValueError``.
    """
    if family not in FAMILIES:
        raise ValueError(f"measure {name!r}: unknown family {family!r}; valid families: {FAMILIES}")
    if kind not in ("similarity", "distance"):
        raise ValueError(f"measure {name!r}: kind must be 'similarity' or 'distance', got {kind!r}")
    if inputs not in INPUT_KINDS:
        raise ValueError(f"measure {name!r}: unknown input kind {inputs!r}; valid: {INPUT_KINDS}")
    bad = set(invariances) - set(INVARIANCES)
    if bad:
        raise ValueError(f"measure {name!r}: unknown invariances {sorted(bad)}; valid: {INVARIANCES}")

    def decorator(impl: Callable[..., Any]) -> Callable[..., float]:
        if name in _REGISTRY:
            raise ValueError(f"measure {name!r} is already registered (by {_REGISTRY[name].function.__module__})")
        signature = inspect.signature(impl)
        params = {
            p.name: p.default
            for p in signature.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "labels"
        }
        has_labels = "labels" in signature.parameters
        if has_labels != requires_labels:
            raise ValueError(f"measure {name!r}: a 'labels' parameter and requires_labels must go together")
        missing = [k for k, v in params.items() if v is inspect.Parameter.empty]
        if missing:
            raise ValueError(f"measure {name!r}: keyword parameters need defaults: {missing}")

        @functools.wraps(impl)
        def measure(*args: Any, **kwargs: Any) -> float:
            return _call(_REGISTRY[name], impl, args, kwargs)

        doc = inspect.cleandoc(impl.__doc__ or "")
        _REGISTRY[name] = MeasureInfo(
            name=name,
            family=family,
            kind=kind,
            range=(float(range[0]), float(range[1])),
            symmetric=symmetric,
            metric=metric,
            invariances=frozenset(invariances),
            inputs=inputs,
            params=params,
            reference=reference,
            version=version,
            min_rows=min_rows,
            requires_labels=requires_labels,
            stochastic="seed" in params,
            cost=cost,
            summary=doc.splitlines()[0] if doc else "",
            doc=doc,
            function=measure,
            checks_finite=checks_finite,
        )
        return measure

    return decorator


def _call(info: MeasureInfo, impl: Callable[..., Any], args: tuple, kwargs: dict) -> float:
    if kwargs:
        unknown = set(kwargs) - set(info.params) - ({"labels"} if info.requires_labels else set())
        if unknown:
            raise ValueError(
                f"measure {info.name!r}: unknown parameter(s) {sorted(unknown)}; "
                f"valid parameters: {sorted(info.params) or 'none'}"
            )
    squares: list[float | None] = []
    inputs = _validation.validate(info, args, squares)
    if info.inputs == "models":
        _validation.check_probe(info.name, kwargs.get("probe"))
    if info.requires_labels:
        if kwargs.get("labels") is None:
            raise ValueError(f"measure {info.name!r}: needs labels=... (one class index per row)")
        if info.inputs != "models":  # model-based measures check labels against their own probe set
            kwargs["labels"] = _validation.check_labels(info.name, kwargs["labels"], _validation.n_rows(inputs))
    value = impl(*_validation.rescale_extreme(info, inputs, squares), **kwargs)
    if isinstance(value, torch.Tensor):
        value = value.item()
    return _checked_result(info, float(value))


#: A result this far outside the declared range (relative to the bound, at least absolute) is round-off
#: and is clipped to the range. Values farther out are returned as they are: some parameters move the
#: range (distance_correlation with unbiased=True can be negative, unnormalised Procrustes is unbounded).
RANGE_TOLERANCE = 1e-6


def _checked_result(info: MeasureInfo, value: float) -> float:
    """``value`` with round-off outside the declared range clipped; a non-finite value is an error."""
    if not math.isfinite(value):
        raise UndefinedMeasureError(
            f"{info.name}: the result is {value} (not finite): the computation overflowed or divided by zero "
            "on these inputs (e.g. magnitudes near the float64 limits, or degenerate rows)"
        )
    low, high = info.range
    if low - RANGE_TOLERANCE * max(1.0, abs(low)) <= value < low:
        return low
    if high < value <= high + RANGE_TOLERANCE * max(1.0, abs(high)):
        return high
    return value


def names(*, family: str | None = None, inputs: str | None = None) -> list[str]:
    """Every registered measure name, sorted (optionally only one family or one input kind)."""
    return sorted(
        n
        for n, i in _REGISTRY.items()
        if (family is None or i.family == family) and (inputs is None or i.inputs == inputs)
    )


def info(name: str) -> MeasureInfo:
    """The metadata of a registered measure; unknown names list the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(unknown_measure(name, names())) from None


def compute(name: str, *inputs: Any, **params: Any) -> float:
    """Compute measure ``name`` on ``inputs`` with keyword ``params``; returns a float."""
    return info(name).function(*inputs, **params)
