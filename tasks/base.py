"""Analysis-task registry: the context a task reads and the result it returns."""


from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from runners.storage import read_arrays


@dataclass
class AnalysisContext:
    sweep_dir: Path
    scores: pd.DataFrame
    cache_dir: Path
    #: evaluations of the tasks that ran before this one (each with its ``task`` column)
    previous: list[pd.DataFrame] = field(default_factory=list)

    def figure_path(self, name: str) -> Path:
        return self.sweep_dir / "figures" / f"{name}.png"

    def table_path(self, name: str) -> Path:
        return self.sweep_dir / "tables" / f"{name}.csv"

    def representations(self, variant_key: str) -> dict[str, np.ndarray]:
        arrays = read_arrays(self.cache_dir / "representations" / f"{variant_key}.npz")
        if arrays is None:
            raise FileNotFoundError(f"representations {variant_key} are not in the cache; re-run the sweep")
        return arrays


@dataclass
class AnalysisResult:
    evaluations: pd.DataFrame
    summary: str = ""
    figures: list[Path] = field(default_factory=list)


#: intervention axes recorded per side in the scores (``<axis>_a``, ``<axis>_b``)
INTERVENTION_AXES = ("label_randomization", "shortcut", "input_noise")


def is_default(rows: pd.DataFrame, side: str, except_axis: str | None = None) -> pd.Series:
    """Rows whose model on ``side`` ("a" or "b") has every intervention at its default (no label
    randomisation, no shortcut marker, no input noise), except ``except_axis``, which must be set."""
    keep = pd.Series(True, index=rows.index)
    for axis in INTERVENTION_AXES:
        column = rows[f"{axis}_{side}"]
        if axis == except_axis:
            keep &= column.notna()
        else:
            keep &= column.isna() if axis == "shortcut" else column.eq(0)
    return keep


def standard_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """Rows comparing two models that both have default interventions (the standard zoo)."""
    return scores[is_default(scores, "a") & is_default(scores, "b")]


ANALYSES: dict[str, Callable[[AnalysisContext], AnalysisResult]] = {}


def analysis(name: str) -> Callable[[Callable[[AnalysisContext], AnalysisResult]], Callable[[AnalysisContext], AnalysisResult]]:
    def decorator(fn: Callable[[AnalysisContext], AnalysisResult]) -> Callable[[AnalysisContext], AnalysisResult]:
        if name in ANALYSES:
            raise ValueError(f"analysis {name!r} is already registered")
        ANALYSES[name] = fn
        return fn

    return decorator


TASK_MODULES = ("invariance", "robustness", "seed_variability", "flicker", "solutions", "benchmark_tests")
#: tasks that need their own dedicated grid (``sweep=flicker``, ``sweep=solutions``) and run only on that
#: sweep's results: on other sweeps they would be expensive and answer a question nobody designed for.
OWN_SWEEP_ONLY = {"flicker": "flicker", "solutions": "solutions"}


def load_analyses() -> dict[str, Callable[[AnalysisContext], AnalysisResult]]:
    """Import every analysis module (which registers it) and return the registry, in run order."""
    import importlib

    for module in TASK_MODULES:
        importlib.import_module(f"tasks.{module}")
    return ANALYSES
