"""Session-wide test set-up."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, import dcor once in the controller before the workers start.

    dcor compiles its numba functions when it is imported (explicit signatures, ``cache=True``). Every
    xdist worker collects every test file, so on a fresh environment both workers compiled them at once;
    once, LLVM aborted one worker during that collection (xdist replaced it and the run passed). Compiled
    here first, the functions are in numba's on-disk cache and the workers only load them.
    """
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    import dcor  # noqa: F401
