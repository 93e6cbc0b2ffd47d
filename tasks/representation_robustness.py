"""Representation-level robustness: how much do scores move under additive noise, one outlier row, subsampling?

On the first seed pair (X, Y) of the sweep's first architecture, final hidden layer, ``N_ROWS`` probe rows
(a seeded subset, same rows for both models), every representational measure of the sweep (those its scores
hold, each with its own defaults) is computed on

* **additive noise**: m(X, X + ε), ε ~ N(0, (σ·s)²) with s the mean per-unit standard deviation of X, for σ in
  ``NOISE``; drift |m(X, X + ε) − m(X, X)|;
* **one outlier row**: m(X', Y) with row 0 of X replaced by the centroid plus ``OUTLIER_FACTOR`` times its
  deviation; drift |m(X', Y) − m(X, Y)|;
* **row subsampling**: m on ``SUBSAMPLE_FRACTION`` of the rows (``SUBSAMPLE_REPEATS`` seeded draws); spread
  = standard deviation over the draws, and |mean − m(X, Y)|.

Every drift is also given in **seed units**: divided by |m(X, Y) − m(X, X)|, the distance between two
seeds on this measure (1 = the perturbation moves the score as much as retraining from another seed).
Outputs ``tables/representation_robustness.csv`` and ``figures/representation_robustness.png``. Cost: 34 s
CPU on the default benchmark (measured on a loaded 2-core machine; ``N_ROWS`` = 200 is the knob).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import measures  # noqa: E402
from tasks import plotting  # noqa: E402
from tasks.base import AnalysisContext, AnalysisResult, analysis, representational_measures  # noqa: E402
from tasks.sample_size import _real_pairs  # noqa: E402

N_ROWS = 200
NOISE = (0.01, 0.1, 0.5)
OUTLIER_FACTOR = 100.0
SUBSAMPLE_FRACTION = 0.5
SUBSAMPLE_REPEATS = 3
SEED = 0


def _value(name: str, x: np.ndarray, y: np.ndarray) -> float:
    try:
        return measures.compute(name, x, y)
    except measures.UndefinedMeasureError:
        return float("nan")


def with_outlier(x: np.ndarray, factor: float = OUTLIER_FACTOR) -> np.ndarray:
    """``x`` with row 0 moved to centroid + factor · (row 0 − centroid)."""
    out = x.copy()
    centroid = x.mean(axis=0)
    out[0] = centroid + factor * (x[0] - centroid)
    return out


def perturbations(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> list[tuple[str, float, np.ndarray, np.ndarray]]:
    """(kind, level, first input, second input) of every perturbed comparison, in a fixed seeded order."""
    scale = float(x.std(axis=0).mean())
    out = [("noise", s, x, x + rng.normal(0.0, s * scale, size=x.shape)) for s in NOISE]
    out.append(("outlier", OUTLIER_FACTOR, with_outlier(x), y))
    n = int(round(SUBSAMPLE_FRACTION * len(x)))
    for _ in range(SUBSAMPLE_REPEATS):
        rows = np.sort(rng.choice(len(x), size=n, replace=False))
        out.append(("subsample", SUBSAMPLE_FRACTION, x[rows], y[rows]))
    return out


@analysis("representation_robustness", reads_previous=False)
def representation_robustness(ctx: AnalysisContext) -> AnalysisResult:
    names = representational_measures(ctx.scores)
    if not names:
        return AnalysisResult(pd.DataFrame(), "no representational measure in this sweep")
    pairs = _real_pairs(ctx)
    if not pairs:
        return AnalysisResult(pd.DataFrame(), "no seed pair with cached representations")
    arch = sorted(pairs)[0]
    x, y = pairs[arch]
    rng = np.random.default_rng(SEED)
    rows = np.sort(rng.choice(len(x), size=min(N_ROWS, len(x)), replace=False))
    x, y = x[rows], y[rows]
    cases = perturbations(x, y, rng)
    records = []
    for name in tqdm(names, desc="representation robustness", leave=False):
        self_value, pair_value = _value(name, x, x), _value(name, x, y)
        unit = abs(pair_value - self_value)
        values = {(kind, level): [] for kind, level, _, _ in cases}
        for kind, level, a, b in cases:
            values[(kind, level)].append(_value(name, a, b))
        base = {"arch": arch, "measure": name, "family": measures.info(name).family, "n": len(x)}
        for (kind, level), v in values.items():
            v = np.asarray(v)
            reference = self_value if kind == "noise" else pair_value
            drift = abs(float(np.mean(v)) - reference)
            records.append({**base, "perturbation": kind, "level": level, "value": float(np.mean(v)),
                            "statistic": "drift", "drift": drift, "seed_units": drift / unit if unit > 0 else np.nan})
            if kind == "subsample":
                spread = float(np.std(v, ddof=1)) if len(v) > 1 else np.nan
                records.append({**base, "perturbation": kind, "level": level, "value": float(np.mean(v)),
                                "statistic": "spread", "drift": spread,
                                "seed_units": spread / unit if unit > 0 else np.nan})
    table = pd.DataFrame(records)
    table.to_csv(ctx.table_path("representation_robustness"), index=False)
    figure = _plot(table, ctx)
    evaluations = table.assign(statistic=table["statistic"] + "_" + table["perturbation"] + "_seed_units")[
        ["arch", "measure", "statistic", "level", "n"]].assign(value=table["seed_units"])
    outlier = table[table["perturbation"].eq("outlier")].sort_values("seed_units", ascending=False)
    summary = (f"{table['measure'].nunique()} measures on {arch} ({len(x)} rows); one outlier row moves most: "
               + ", ".join(f"{r.measure} {r.seed_units:.2f}" for r in outlier.head(3).itertuples())
               + " seed units")
    return AnalysisResult(evaluations, summary, [figure])


def _plot(table: pd.DataFrame, ctx: AnalysisContext):
    columns = [("noise", level, "drift") for level in NOISE] + [("outlier", OUTLIER_FACTOR, "drift"),
                                                                ("subsample", SUBSAMPLE_FRACTION, "spread")]
    order = table[["family", "measure"]].drop_duplicates().sort_values(["family", "measure"])
    matrix = np.array([[table[(table["measure"] == m) & (table["perturbation"] == k) & (table["level"] == lv)
                              & (table["statistic"] == st)]["seed_units"].mean() for k, lv, st in columns]
                       for m in order["measure"]])
    fig, ax = plt.subplots(figsize=(7.5, 0.24 * len(order) + 1.8))
    image = ax.imshow(np.log10(np.clip(matrix, 1e-4, None)), cmap="magma_r", vmin=-4, vmax=1, aspect="auto")
    for i, j in np.ndindex(matrix.shape):
        if np.isfinite(matrix[i, j]):
            ax.text(j, i, f"{matrix[i, j]:.2g}", ha="center", va="center", fontsize=6,
                    color="white" if matrix[i, j] > 0.3 else "black")
    ax.set_xticks(range(len(columns)), [f"noise σ={lv:g}" if k == "noise" else
                                        (f"outlier ×{lv:g}" if k == "outlier" else f"{lv:g} of rows (sd)")
                                        for k, lv, _ in columns], fontsize=8, rotation=30, ha="right")
    ax.set_yticks(range(len(order)), [f"{m} ({f})" for f, m in zip(order["family"], order["measure"])], fontsize=7)
    fig.colorbar(image, ax=ax, label="log10 drift in seed units (0: another seed)")
    ax.set_title(f"Representation-level robustness ({table['arch'].iloc[0]}, {int(table['n'].iloc[0])} rows)\n"
                 "cells: drift in seed units; \"0.5 of rows (sd)\": spread over half-row subsamples; white: no value",
                 fontsize=9)
    return plotting.save(fig, ctx, "representation_robustness", dpi=120)
