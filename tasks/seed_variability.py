"""Seed variability: how similar are models of one configuration trained from different seeds?

Per architecture, measure and layer: the mean and spread of the measure over all pairs of seeds, and
the *equivalent noise scale*: the relative weight-noise scale at which a model's drift from itself
(the robustness curve, interpolated on a log scale) equals the drift between two seeds. A small
equivalent scale means the measure sees retraining as a tiny change; ``inf`` means even the largest
noise in the sweep moves the measure less than retraining does.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tasks import plotting  # noqa: E402
from tasks.base import AnalysisContext, AnalysisResult, analysis, seed_pairs, standard_rows  # noqa: E402
from tasks.robustness import drift_table, last_hidden_layer  # noqa: E402


def equivalent_scale(scales: np.ndarray, drifts: np.ndarray, target: float) -> float:
    """Smallest scale where the drift curve reaches ``target`` (log-linear interpolation between grid
    points, linear on a segment that starts at scale 0); ``inf`` if it never does, the smallest scale
    if it starts above."""
    order = np.argsort(scales)
    s, d = np.asarray(scales, float)[order], np.asarray(drifts, float)[order]
    if not np.isfinite(target) or len(s) == 0:
        return np.nan
    above = np.nonzero(d >= target)[0]
    if len(above) == 0:
        return np.inf
    i = above[0]
    if i == 0:
        return float(s[0])
    t = (target - d[i - 1]) / (d[i] - d[i - 1])
    if s[i - 1] <= 0:  # a segment from scale 0 has no log scale (log 0 = -inf gave NaN): interpolate linearly
        return float(t * s[i])
    return float(np.exp(np.log(s[i - 1]) + t * (np.log(s[i]) - np.log(s[i - 1]))))


@analysis("seed_variability", reads_previous=False)
def seed_variability(ctx: AnalysisContext) -> AnalysisResult:
    scores = standard_rows(ctx.scores)
    # independent seeds of one configuration only (no warm starts, perturbed copies or group levels)
    seeds = seed_pairs(scores)
    seeds = seeds[seeds["layer_a"].eq(seeds["layer_b"])]
    if seeds.empty:
        return AnalysisResult(pd.DataFrame(), "no seed pairs in this sweep (needs at least two seeds at scale 0)")
    keys = ["arch_a", "configuration", "measure", "layer_a"]
    stats = seeds.groupby(keys)["value"].agg(seed_mean="mean", seed_std="std", n_pairs="size").reset_index()
    curves = drift_table(scores)
    # the weight-noise curves belong to the configuration whose models were perturbed
    perturbed = set(scores.loc[scores["pair_type"].eq("perturbation"), "model_a"])
    noised = {c for c, g in seeds.groupby("configuration") if perturbed & (set(g["model_a"]) | set(g["model_b"]))}
    eq = []
    for _, row in stats.iterrows():
        part = curves[(curves["arch_a"] == row["arch_a"]) & (curves["measure"] == row["measure"])
                      & (curves["layer_a"] == row["layer_a"])] if not curves.empty else curves
        if part.empty or row["configuration"] not in noised:
            eq.append(np.nan)
        else:
            eq.append(equivalent_scale(part["scale"].to_numpy(), part["drift"].to_numpy(), part["seed_drift"].iloc[0]))
    stats["equivalent_noise_scale"] = eq
    evaluations = stats.melt(id_vars=[*keys, "n_pairs"], value_vars=["seed_mean", "seed_std", "equivalent_noise_scale"],
                             var_name="statistic", value_name="value").rename(columns={"arch_a": "arch", "layer_a": "layer"})
    evaluations.to_csv(ctx.table_path("seed_variability"), index=False)
    figure = _plot(stats, ctx)
    finite = stats["equivalent_noise_scale"].replace(np.inf, np.nan).dropna()
    summary = (f"{len(stats)} (arch, measure, layer) cells over {int(stats['n_pairs'].max())} seed pairs; "
               + (f"median equivalent noise scale {finite.median():.3g}" if len(finite) else "no finite equivalent scale"))
    return AnalysisResult(evaluations, summary, [figure])


def _plot(stats: pd.DataFrame, ctx: AnalysisContext):
    finite = stats["equivalent_noise_scale"].replace(np.inf, np.nan).notna().groupby(stats["configuration"]).any()
    archs = sorted(finite.index[finite]) or sorted(finite.index)  # configurations with weight-noise models
    without = sorted(finite.index[~finite]) if finite.any() else []
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 0.2 * stats["measure"].nunique() + 2),
                             squeeze=False, layout="constrained")
    for ax, arch in zip(axes[0], archs):
        part = stats[stats["configuration"].eq(arch)]
        layer = last_hidden_layer(sorted(part["layer_a"].unique()))
        part = part[part["layer_a"].isin([layer, "output", "network", "weights"])].sort_values("equivalent_noise_scale")
        values = part["equivalent_noise_scale"].replace(np.inf, np.nan)
        top = np.nanmax(values) * 3 if values.notna().any() else 1.0
        ax.barh(part["measure"], values.fillna(top), color=np.where(values.isna(), "lightgrey", "tab:blue"))
        ax.set_xscale("log")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("weight-noise scale that moves the measure\nas much as retraining from another seed")
        ax.set_title(f"{arch}, layer {layer}\n(grey: beyond the largest scale)", fontsize=10)
    if without:
        fig.suptitle(f"Not shown (no weight-noise models in the sweep): {', '.join(without)}", fontsize=9)
    return plotting.save(fig, ctx, "seed_variability")
