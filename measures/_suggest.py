"""'Did you mean' hints for mistyped names (measures here; architectures, datasets and config keys in
the runners). Torch-free, so error paths stay fast."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(word: str, choices: Iterable[str], what: str = "choices") -> str:
    """``"; did you mean 'x'?"`` (or two or three close names), or a pointer to the full list."""
    choices = sorted(set(map(str, choices)))
    close = difflib.get_close_matches(str(word), choices, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f"; valid {what}: " + ", ".join(choices)


def unknown_measure(name: str, valid: Iterable[str]) -> str:
    return f"unknown measure {name!r}" + suggest(name, valid, "measures") + " (`python -m measures list` prints them all)"
