"""Similarity measures between neural-network representations and outputs.

Public API::

    import measures
    measures.names()                      # every registered name, sorted
    measures.info("cka_linear")           # metadata (family, kind, range, invariances, params, ...)
    measures.compute("cka_linear", X, Y)  # -> float
    measures.permutation_test("cka_linear", X, Y)  # p-value and null of the score (rows of Y shuffled)
    measures.bootstrap_ci("cka_linear", X, Y)      # confidence interval over probe inputs

Each family lives in its own module. Importing this package is cheap: the family modules (and torch,
scikit-learn, POT, ...) are imported on first use of the API, which registers every measure. The
command line (``python -m measures list|info``) reads the generated catalogue
(``measures/catalogue.json``) instead, so it answers without importing torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

__all__ = [
    "BootstrapResult",
    "FAMILIES",
    "INPUT_KINDS",
    "INVARIANCES",
    "MeasureInfo",
    "UndefinedMeasureError",
    "compute",
    "info",
    "names",
    "permutation_test",
    "PermutationResult",
    "bootstrap_ci",
    "register",
    "load_modules",
]

_loaded = False
# The public API that lives in measures.significance rather than in the registry.
_SIGNIFICANCE_API = ("BootstrapResult", "PermutationResult", "bootstrap_ci", "permutation_test")


def family_modules() -> list[str]:
    """The public modules of this package, sorted (each registers its measures when imported)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def _load_all() -> None:
    """Import every public module of this package and every installed ``simbench.measures`` entry point
    (which registers their measures): a new measure needs only a new file here, or a package of its own."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # set first: a module that reads the registry while being imported does not recurse
    for module in family_modules():
        importlib.import_module(f"{__name__}.{module}")
    from importlib.metadata import entry_points

    for point in entry_points(group="simbench.measures"):
        load_modules([point.value.partition(":")[0]], source=f"entry point {point.name!r} (group simbench.measures)")


def load_modules(modules: list[str] | tuple[str, ...], *, source: str = "measures.modules") -> None:
    """Import the user modules ``modules`` (dotted names on ``sys.path``), whose ``@register`` calls add
    their measures to the registry; importing one twice is a no-op. A module that cannot be imported
    raises ``ValueError`` naming it, where it was configured and why."""
    _load_all()
    for name in modules:
        try:
            importlib.import_module(str(name))
        except ImportError as exc:
            raise ValueError(f"{source}: cannot import measure module {name!r}: {exc} "
                             "(is its folder on PYTHONPATH, or its package installed?)") from None


def __getattr__(name: str) -> Any:
    if name.startswith("_"):  # private submodules and dunders: left to the import system
        raise AttributeError(name)
    _registry = importlib.import_module(f"{__name__}._registry")
    _load_all()
    if name in globals():  # a family module, imported by _load_all
        return globals()[name]
    if name in _SIGNIFICANCE_API:
        value = getattr(importlib.import_module(f"{__name__}.significance"), name)
    elif name in __all__:
        value = getattr(_registry, name)
    else:
        raise AttributeError(f"module 'measures' has no attribute {name!r}")
    # Bound as a module attribute from now on: later accesses (``measures.compute`` in hot loops) no
    # longer pass through this function (and its import and load checks).
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
