"""The generated catalogue of the built-in measures (``measures/catalogue.json``): every measure's
metadata and documentation, so that ``python -m measures list|info`` and config validation answer
without importing torch and the family modules (seconds of CPU on a loaded machine).

Regenerate with ``python -m measures catalogue`` after adding or changing a measure;
``tests/measures/test_catalogue.py`` fails while the file differs from the registry. The catalogue is
used only where it is known to be complete: when the set of family modules is the one it was generated
from and no ``simbench.measures`` entry point is installed; otherwise the registry is imported.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import measures

PATH = Path(__file__).with_name("catalogue.json")


def generate() -> dict[str, Any]:
    """The catalogue of the live registry (imports every measure)."""
    entries = []
    for name in measures.names():
        i = measures.info(name)
        entries.append({**i.as_dict(), "doc": i.doc, "param_reprs": {k: repr(v) for k, v in i.params.items()}})
    return {"modules": measures.family_modules(), "measures": entries}


def write() -> Path:
    PATH.write_text(json.dumps(generate(), indent=1, ensure_ascii=False) + "\n")
    return PATH


def load() -> list[dict[str, Any]] | None:
    """The catalogue's measure entries, or None where it may be incomplete (missing, generated from
    another set of family modules, plug-in measures installed)."""
    if not PATH.exists():
        return None
    data = json.loads(PATH.read_text())
    if data.get("modules") != measures.family_modules() or entry_points(group="simbench.measures"):
        return None
    return data["measures"]


def entries() -> list[dict[str, Any]]:
    """Every measure's catalogue entry: from the file where it is complete, else from the registry."""
    found = load()
    return found if found is not None else generate()["measures"]


def measure_names() -> list[str]:
    """Every built-in measure name (plus installed plug-ins), without importing torch where possible."""
    return [e["name"] for e in entries()]
