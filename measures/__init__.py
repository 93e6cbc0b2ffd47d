"""Similarity measures between neural-network representations and outputs.

Public API::

    import measures
    measures.names()                      # every registered name, sorted
    measures.info("cka_linear")           # metadata (family, kind, range, invariances, params, ...)
    measures.compute("cka_linear", X, Y)  # -> float
    measures.permutation_test("cka_linear", X, Y)  # p-value and null of the score (rows of Y shuffled)
    measures.bootstrap_ci("cka_linear", X, Y)      # confidence interval over probe inputs

Each family lives in its own module; importing this package registers every measure.
"""

import importlib
import pkgutil

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
from measures.significance import BootstrapResult, PermutationResult, bootstrap_ci, permutation_test

# Importing every public module of this package registers its measures: a new measure needs only a
# new file here (or a function in an existing family module). Sorted, so the order is reproducible;
# the registry sorts names anyway.
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "BootstrapResult",
    "FAMILIES",
    "INPUT_KINDS",
    "INVARIANCES",
    "MeasureInfo",
    "PermutationResult",
    "UndefinedMeasureError",
    "bootstrap_ci",
    "compute",
    "info",
    "names",
    "permutation_test",
    "register",
]
