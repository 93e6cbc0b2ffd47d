"""Similarity measures between neural-network representations and outputs.

Public API::

    import measures
    measures.names()                      # every registered name, sorted
    measures.info("cka_linear")           # metadata (family, kind, range, invariances, params, ...)
    measures.compute("cka_linear", X, Y)  # -> float

Each family lives in its own module; importing this package registers every measure.
"""

from measures._registry import (
    FAMILIES,
    INPUT_KINDS,
    INVARIANCES,
    MeasureInfo,
    UndefinedMeasureError,
    compute,
    info,
    names,
    register,
)

# Importing the family modules registers their measures (order is irrelevant: names are sorted).
from measures import (  # noqa: E402,F401  isort: skip
    activation_region,
    alignment,
    cca,
    functional,
    functional_models,
    neighbours,
    rsm,
    statistics,
    topology,
    weights,
)

__all__ = [
    "FAMILIES",
    "INPUT_KINDS",
    "INVARIANCES",
    "MeasureInfo",
    "UndefinedMeasureError",
    "compute",
    "info",
    "names",
    "register",
]
