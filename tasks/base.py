"""Analysis-task registry: the context a task reads and the result it returns."""


from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import measures
from tasks.storage import read_arrays


@dataclass
class AnalysisContext:
    sweep_dir: Path
    scores: pd.DataFrame
    cache_dir: Path
    #: evaluations of the tasks that ran before this one (each with its ``task`` column)
    previous: list[pd.DataFrame] = field(default_factory=list)
    #: extracts a variant's representations into ``cache_dir`` by its key (given by the sweep command,
    #: which knows every job's config): a finished sweep's jobs are not rerun to refill a deleted model cache
    materialise: Callable[[str], None] | None = None
    #: every table and figure path the task asked for (its outputs: analyses running at the same time in
    #: other processes write into the same folders, so a before/after listing cannot tell whose a file is)
    written: set[Path] = field(default_factory=set)

    def figure_path(self, name: str) -> Path:
        path = self.sweep_dir / "figures" / f"{name}.png"
        self.written.add(path)
        return path

    def table_path(self, name: str) -> Path:
        path = self.sweep_dir / "tables" / f"{name}.csv"
        self.written.add(path)
        return path

    def representations(self, variant_key: str) -> dict[str, np.ndarray]:
        path = self.cache_dir / "representations" / f"{variant_key}.npz"
        arrays = read_arrays(path)
        if arrays is None and self.materialise is not None:
            self.materialise(variant_key)
            arrays = read_arrays(path)
        if arrays is None:
            raise FileNotFoundError(f"representations {variant_key} are not in the cache; re-run the sweep")
        return arrays

    def measure_params(self, names: Iterable[str]) -> dict[str, dict]:
        """Each measure's keyword parameters as the sweep computed it (the ``params`` of its first score
        row: one setting per measure in a collected table), for analyses that compute measures again."""
        return {m: json.loads(self.scores.loc[self.scores["measure"].eq(m), "params"].iloc[0]) for m in names}


@dataclass
class AnalysisResult:
    evaluations: pd.DataFrame
    summary: str = ""
    figures: list[Path] = field(default_factory=list)


def representational_measures(scores: pd.DataFrame) -> list[str]:
    """The measures on representations that the sweep's scores hold, in the registry's (sorted) order: a
    sweep of a few measures (``measures.include=[...]``, the smoke sweep's ``measures=fast``) is analysed
    on those, not on the whole catalogue (the default benchmark has every one)."""
    present = set(scores["measure"].unique()) if "measure" in scores else set()
    return [m for m in measures.names(inputs="representations") if m in present]


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


def trained_from_scratch(rows: pd.DataFrame, side: str) -> pd.Series:
    """Rows whose model on ``side`` was not warm-started (tables without the column have no warm starts)."""
    column = f"warm_start_{side}"
    return rows[column].isna() if column in rows else pd.Series(True, index=rows.index)


def seed_pairs(scores: pd.DataFrame) -> pd.DataFrame:
    """The finished pairs of independently trained seeds of one configuration, with a ``configuration`` label.

    Kept: ``pair_type == "seed"``, both models unperturbed, at default interventions and trained from
    scratch. Left out: warm-started and perturbed copies (not independent seeds) and ``group`` pairs
    (different configurations). A sweep can hold several configurations of one architecture (e.g. a
    ``compare.groups`` axis over ``arch.width``: its seed pairs are within one width); since a seed pair
    always joins two models of the same configuration, the configurations are the connected components
    of the seed-pair graph. ``configuration`` is the architecture name, suffixed ``#k`` (k = 1, 2, ...,
    largest first) where an architecture has more than one.
    """
    rows = standard_rows(scores)
    rows = rows[rows["status"].eq("ok") & rows["pair_type"].eq("seed") & rows["scale_a"].eq(0) & rows["scale_b"].eq(0)
                & trained_from_scratch(rows, "a") & trained_from_scratch(rows, "b")].copy()
    if rows.empty:
        return rows.assign(configuration=pd.Series(dtype=str))
    keyed = rows["model_a"].notna() & rows["model_b"].notna()
    if not keyed.all():  # rows made by an analysis without model keys (flicker's variants): by architecture
        unkeyed = rows[~keyed].assign(configuration=rows.loc[~keyed, "arch_a"])
        return pd.concat([seed_pairs(rows[keyed]) if keyed.any() else None, unkeyed]).loc[rows.index]
    models = pd.Index(sorted(set(rows["model_a"]) | set(rows["model_b"])))
    a, b = models.get_indexer(rows["model_a"]), models.get_indexer(rows["model_b"])
    graph = coo_matrix((np.ones(len(rows)), (a, b)), shape=(len(models), len(models)))
    _, component = connected_components(graph, directed=False)
    # a seed pair joins two models of one architecture, so arch_a names the component's architecture
    arch = dict(zip(component[a], rows["arch_a"]))
    labels = {}
    for name in sorted(set(arch.values())):
        members = sorted((c for c in arch if arch[c] == name),
                         key=lambda c: (-int((component == c).sum()), models[np.flatnonzero(component == c)[0]]))
        for k, c in enumerate(members, start=1):
            labels[c] = name if len(members) == 1 else f"{name}#{k}"
    rows["configuration"] = [labels[c] for c in component[a]]
    return rows


ANALYSES: dict[str, Callable[[AnalysisContext], AnalysisResult]] = {}
#: analysis name -> (its module, its place among the module's registrations): the run order's key
_REGISTERED_AT: dict[str, tuple[str, int]] = {}
#: analyses registered with ``reads_previous=False``: they never read ``ctx.previous``, so they may run at
#: the same time as each other (runners.analyze runs them in two processes) and their stored results are
#: keyed without the evaluations of the analyses before them
INDEPENDENT: set[str] = set()


def analysis(name: str, *, reads_previous: bool = True) -> Callable[[Callable[[AnalysisContext], AnalysisResult]],
                                                                   Callable[[AnalysisContext], AnalysisResult]]:
    """Register an analysis task under ``name``. ``reads_previous=False`` declares that it does not read
    ``ctx.previous`` (it is then given an empty list); the default keeps it after every analysis before
    it, with their evaluations."""
    def decorator(fn: Callable[[AnalysisContext], AnalysisResult]) -> Callable[[AnalysisContext], AnalysisResult]:
        if name in ANALYSES:
            raise ValueError(f"analysis {name!r} is already registered")
        ANALYSES[name] = fn
        if not reads_previous:
            INDEPENDENT.add(name)
        module = fn.__module__.rpartition(".")[2]
        _REGISTERED_AT[name] = (module, sum(m == module for m, _ in _REGISTERED_AT.values()))
        return fn

    return decorator


#: analysis modules in run order (an analysis may read the evaluations of those before it: ranks, last, reads all)
TASK_MODULES = ("robustness", "invariance", "seed_variability", "flicker", "solutions", "stop_searching", "significance",
                "sample_size", "representation_robustness", "measure_agreement", "cross_model",
                "benchmark_tests")
#: tasks that need their own dedicated grid (``sweep=flicker``, ``sweep=solutions``) and run only on that
#: sweep's results: on other sweeps they would be expensive and answer a question nobody designed for.
OWN_SWEEP_ONLY = {"flicker": "flicker", "solutions": "solutions"}


def load_analyses() -> dict[str, Callable[[AnalysisContext], AnalysisResult]]:
    """Import every analysis module (which registers it) and return the registry, in run order."""
    import importlib

    for module in TASK_MODULES:
        importlib.import_module(f"tasks.{module}")
    # The run order is TASK_MODULES', then each module's own, never the order in which this process happened
    # to import the modules: each analysis's stored result is keyed by the evaluations of those before it.
    def place(name: str) -> tuple[int, int]:
        module, index = _REGISTERED_AT.get(name, ("", 0))
        return (TASK_MODULES.index(module) if module in TASK_MODULES else len(TASK_MODULES), index)

    ordered = sorted(ANALYSES.items(), key=lambda item: place(item[0]))
    ANALYSES.clear()
    ANALYSES.update(ordered)
    return ANALYSES
