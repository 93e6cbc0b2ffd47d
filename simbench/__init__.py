"""simbench: a benchmark of similarity measures between neural networks.

The library API (the same objects as the ``measures`` package; torch is imported on first use)::

    import simbench
    simbench.names()                          # every registered measure, sorted
    simbench.info("cka_linear")               # family, kind, range, invariances, params, reference, ...
    simbench.compute("cka_linear", X, Y)      # -> float; X, Y: N x D numpy arrays or torch tensors
    simbench.register(...)                    # decorator for a measure of your own (see README)
    simbench.permutation_test(...), simbench.bootstrap_ci(...)   # a null and an interval for one score

The command line is ``simbench`` (``simbench --help``): ``simbench sweep [overrides]``,
``simbench measures list``, ``simbench collect|analyze --sweep NAME``.
"""

from __future__ import annotations

from typing import Any

import measures

#: the library API is the ``measures`` package's, re-exported (one list, kept there)
__all__ = list(measures.__all__)


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(measures, name)
    raise AttributeError(f"module 'simbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
