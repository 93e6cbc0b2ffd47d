"""Robustness: how far each measure moves when a model's weights get relative Gaussian noise.

For every architecture, measure and layer, the similarity of a model to its own weight-perturbed copies
as a function of the noise scale, averaged over seeds, next to prediction disagreement. The drift is
reported in units of "another seed": |m(scale) − m(X, X)| divided by the mean |m − m(X, X)| over pairs
of models trained from different seeds, so 1.0 means "as different as a retrained model" and every
measure fits on one axis.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

import measures  # noqa: E402
from tasks import plotting  # noqa: E402
from tasks.base import AnalysisContext, AnalysisResult, analysis, seed_pairs, standard_rows  # noqa: E402


def identity_value(measure: str) -> float:
    return measures.info(measure).identity_value if measure in measures.names() else np.nan


def drift_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """The finished same-layer perturbation and seed rows of standard models, with ``scale`` (the noisy
    model's noise scale; NaN for seed pairs) and ``drift`` = |m(A, B) − m(A, A)|.

    Asymmetric measures also store the reverse direction of a perturbation pair (the noisy model first):
    its scale is ``scale_a`` and its reference is the clean model's m(A, A). m(A, A) is read from the
    sweep's self pairs (``compare.self_pairs``) where it was computed, and is the measure's identity
    value (the end of its range) otherwise; the two differ where a measure's convention keeps it off its
    extreme on identical inputs (dead units in correlation matching)."""
    scores = standard_rows(scores)
    seeds = seed_pairs(scores).drop(columns="configuration")  # independent seeds only: no warm starts
    ok = pd.concat([scores[scores["status"].eq("ok") & scores["pair_type"].eq("perturbation")], seeds])
    ok = ok[ok["layer_a"].eq(ok["layer_b"])].copy()
    if ok.empty:
        return ok.assign(scale=pd.Series(dtype=float), drift=pd.Series(dtype=float))
    reverse = ok["scale_a"] > ok["scale_b"]
    ok["clean_model"] = ok["model_a"].where(~reverse, ok["model_b"])
    selves = scores[scores["status"].eq("ok") & scores["pair_type"].eq("self")]
    self_value = selves.groupby(["model_a", "measure", "layer_a"])["value"].first().rename("self_value")
    reference = ok.join(self_value, on=["clean_model", "measure", "layer_a"])["self_value"].astype(float)
    ok["drift"] = (ok["value"] - reference.fillna(ok["measure"].map(identity_value))).abs()
    ok["scale"] = np.where(ok["pair_type"].eq("perturbation"), ok[["scale_a", "scale_b"]].max(axis=1), np.nan)
    return ok


def drift_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean drift |m(A, B) − m(A, A)| (see :func:`drift_rows`) per (arch, measure, layer, scale) of the
    perturbation pairs, with the mean seed-pair drift of the same (arch, measure, layer) as the unit."""
    return _summarise_drift(drift_rows(scores))


def _summarise_drift(ok: pd.DataFrame) -> pd.DataFrame:
    """:func:`drift_table` of rows already prepared by :func:`drift_rows`."""
    if ok.empty:
        return pd.DataFrame()
    keys = ["arch_a", "measure", "layer_a"]
    seed_unit = ok[ok["pair_type"].eq("seed")].groupby(keys)["drift"].mean().rename("seed_drift")
    pert = ok[ok["pair_type"].eq("perturbation")]
    table = pert.groupby([*keys, "scale"]).agg(mean_value=("value", "mean"), drift=("drift", "mean"),
                                               n_pairs=("value", "size")).reset_index()
    table = table.join(seed_unit, on=keys)
    table["drift_in_seed_units"] = table["drift"] / table["seed_drift"].where(table["seed_drift"] > 0)
    return table


def last_hidden_layer(layers: list[str]) -> str:
    """The layer before the logits (the "final layer" of ReSi's tests), or the only one."""
    hidden = sorted((l for l in layers if l not in ("logits", "output", "network", "weights")),
                    key=lambda l: int("".join(ch for ch in l if ch.isdigit()) or 0))
    return hidden[-1] if hidden else layers[0]


@analysis("robustness", reads_previous=False)
def robustness(ctx: AnalysisContext) -> AnalysisResult:
    drifts = drift_rows(ctx.scores)
    table = _summarise_drift(drifts)
    if table.empty:
        return AnalysisResult(pd.DataFrame(), "no perturbation pairs in this sweep")
    rows = []
    for stat in ("mean_value", "drift_in_seed_units"):
        part = table.rename(columns={stat: "value", "arch_a": "arch", "layer_a": "layer"})
        rows.append(part[["arch", "measure", "layer", "scale", "value", "n_pairs"]].assign(statistic=stat))
    # Monotonicity of the response: Spearman between scale and drift over all perturbation rows.
    pert = drifts[drifts["pair_type"].eq("perturbation")]
    mono = []
    for (arch, measure, layer), g in pert.groupby(["arch_a", "measure", "layer_a"]):
        drift = g["drift"]
        rho = spearmanr(g["scale"], drift).statistic if g["scale"].nunique() > 1 and drift.nunique() > 1 else np.nan
        mono.append({"arch": arch, "measure": measure, "layer": layer, "statistic": "spearman_drift_vs_scale",
                     "value": rho, "n_pairs": len(g)})
    evaluations = pd.concat([*rows, pd.DataFrame(mono)], ignore_index=True)
    evaluations.to_csv(ctx.table_path("robustness"), index=False)
    figure = _plot(table, ctx)
    n_mono = int((pd.DataFrame(mono)["value"] > 0.5).sum()) if mono else 0
    return AnalysisResult(
        evaluations,
        f"{table['measure'].nunique()} measures x {table['scale'].nunique()} noise scales; "
        f"{n_mono}/{len(mono)} (measure, layer) curves drift monotonically with scale (Spearman > 0.5)",
        [figure],
    )


def _plot(table: pd.DataFrame, ctx: AnalysisContext):
    """Per architecture, a heatmap: rows are measures (by family; functional ones on the outputs, the
    others at the last hidden layer), columns the noise scales, the colour log10 of the drift in units of
    a seed pair, centred on 0 (as far as another seed)."""
    archs = sorted(table["arch_a"].unique())
    fig, axes = plotting.figure(len(archs), table["measure"].nunique())
    norm = TwoSlopeNorm(vmin=-3, vcenter=0, vmax=1)
    for ax, arch in zip(axes[0], archs):
        part = table[table["arch_a"].eq(arch)]
        layer = last_hidden_layer(sorted(part["layer_a"].unique()))
        part = part[part["layer_a"].isin([layer, "output"])]
        grid = part.pivot_table(index="measure", columns="scale", values="drift_in_seed_units", aggfunc="mean")
        grid = grid.dropna(how="all")
        shown = np.log10(grid.clip(lower=10 ** norm.vmin).where(grid.notna()))
        image = plotting.measure_heatmap(ax, shown, cmap="RdBu_r", norm=norm, xlabel="relative weight-noise scale")
        ax.set_title(f"{arch}: layer {layer} (functional measures: outputs)")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.5, extend="both",
                 label="drift from m(X, X) in seed-pair units, log10\n(0 = as far as another seed; clipped at 1e-3)")
    path = ctx.figure_path("robustness")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
