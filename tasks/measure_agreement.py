"""Measure agreement: do the measures order the model pairs of a sweep the same way?

Units are the unordered model pairs of the sweep (seed, group and perturbation pairs), each measured at
its architecture's final hidden layer (representational measures) and on the outputs (functional
measures); an asymmetric measure's two directions are averaged. Values are oriented so that higher means
more similar (distances negated, ``stats.orient``), then the Spearman rank correlation of every two
measures over the units both have (pairwise complete, at least ``MIN_UNITS``) forms a measure x measure
matrix. The measures are ordered by average-linkage hierarchical clustering of 1 − ρ
(``scipy.cluster.hierarchy``), and ``CLUSTER_RHO`` cuts the tree into groups of measures that rank pairs
alike. Outputs ``tables/measure_agreement.csv`` (the matrix, clustered order), ``figures/measure_agreement.png``
(heatmap with the dendrogram). Cost: under a second.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tasks import plotting, stats  # noqa: E402
from tasks.base import AnalysisContext, AnalysisResult, analysis  # noqa: E402
from tasks.robustness import last_hidden_layer  # noqa: E402

MIN_UNITS = 10
CLUSTER_RHO = 0.8  # measures joined at rank correlation >= this form one cluster


def pair_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Units (unordered model pair) x measures, similarity-oriented, final hidden layer and outputs."""
    rows = scores[scores["status"].eq("ok") & scores["pair_type"].isin(["seed", "group", "perturbation"])
                  & scores["layer_a"].eq(scores["layer_b"])]
    keep = []
    for arch, g in rows.groupby("arch_a"):
        hidden = sorted(set(g.loc[g["layer_index_a"].ge(0), "layer_a"]))
        layers = {"output", "network", "weights"} | ({last_hidden_layer(hidden)} if hidden else set())
        keep.append(g[g["layer_a"].isin(layers)])
    if not keep:
        return pd.DataFrame()
    rows = pd.concat(keep)
    first = np.where(rows["model_a"] < rows["model_b"], rows["model_a"], rows["model_b"])
    second = np.where(rows["model_a"] < rows["model_b"], rows["model_b"], rows["model_a"])
    oriented = np.where(rows["higher_is_more_similar"].astype(bool), rows["value"], -rows["value"])
    units = pd.DataFrame({"unit": pd.Series(first, index=rows.index) + "|" + second, "measure": rows["measure"],
                          "value": oriented})
    return units.pivot_table(index="unit", columns="measure", values="value", aggfunc="mean")


def agreement_matrix(table: pd.DataFrame, min_units: int = MIN_UNITS) -> pd.DataFrame:
    """Spearman ρ of every two columns over their pairwise-complete rows (NaN below ``min_units``)."""
    table = table.loc[:, table.notna().sum() >= min_units]
    table = table.loc[:, table.nunique() > 1]  # a constant measure has no ranking
    return table.corr(method="spearman", min_periods=min_units)


def cluster_order(rho: pd.DataFrame, threshold: float = CLUSTER_RHO) -> tuple[list[str], dict[str, int], np.ndarray]:
    """Leaf order and cluster labels of average linkage on 1 − ρ (NaN ρ counts as 0), and the linkage."""
    from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
    from scipy.spatial.distance import squareform

    d = 1.0 - rho.fillna(0.0).to_numpy()
    d = (d + d.T) / 2.0
    np.fill_diagonal(d, 0.0)
    z = linkage(squareform(np.clip(d, 0.0, 2.0), checks=False), method="average")
    names = list(rho.index)
    labels = fcluster(z, t=1.0 - threshold, criterion="distance")
    return [names[i] for i in leaves_list(z)], dict(zip(names, labels.tolist())), z


@analysis("measure_agreement", reads_previous=False)
def measure_agreement(ctx: AnalysisContext) -> AnalysisResult:
    table = pair_table(ctx.scores)
    if table.empty or len(table) < MIN_UNITS:
        return AnalysisResult(pd.DataFrame(), f"fewer than {MIN_UNITS} model pairs")
    rho = agreement_matrix(table)
    if len(rho) < 3:
        return AnalysisResult(pd.DataFrame(), "fewer than 3 measures with enough pairs")
    order, clusters, z = cluster_order(rho)
    rho = rho.loc[order, order]
    rho.to_csv(ctx.table_path("measure_agreement"))
    figure = _plot(rho, z, ctx)
    long = rho.rename_axis(index="measure", columns="other_measure").stack(future_stack=True).rename("value").reset_index()
    n_units = table.notna().astype(int).T @ table.notna().astype(int)
    long["n_pairs"] = [int(n_units.loc[a, b]) for a, b in zip(long["measure"], long["other_measure"])]
    long["statistic"] = "spearman"
    long["cluster"] = long["measure"].map(clusters)
    groups = pd.Series(clusters).groupby(lambda m: clusters[m]).apply(lambda s: sorted(s.index))
    big = [g for g in groups if len(g) > 1]
    upper = rho.to_numpy()[np.triu_indices(len(rho), 1)]
    summary = (f"{len(rho)} measures over {len(table)} model pairs; median ρ {np.nanmedian(upper):.2f}; "
               f"{len(groups)} clusters at ρ >= {CLUSTER_RHO:g}, largest: {', '.join(max(big, key=len)) if big else '-'}")
    return AnalysisResult(long, summary, [figure])


def _plot(rho: pd.DataFrame, z: np.ndarray, ctx: AnalysisContext):
    from scipy.cluster.hierarchy import dendrogram

    n = len(rho)
    fig = plt.figure(figsize=(0.28 * n + 4, 0.28 * n + 2.5))
    top = fig.add_axes((0.22, 0.82, 0.62, 0.13))
    dendrogram(z, ax=top, no_labels=True, color_threshold=1.0 - CLUSTER_RHO, link_color_func=None)
    top.axis("off")
    ax = fig.add_axes((0.22, 0.2, 0.62, 0.62))
    image = ax.imshow(rho.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(n), rho.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(n), rho.index, fontsize=7)
    cax = fig.add_axes((0.86, 0.2, 0.02, 0.62))
    fig.colorbar(image, cax=cax, label="Spearman ρ over model pairs (similarity-oriented)")
    top.set_title("Measure agreement: rank correlation over all model pairs, clustered (average linkage on 1 − ρ;\n"
                  f"coloured links: clusters at ρ >= {CLUSTER_RHO:g})", fontsize=11)
    return plotting.save(fig, ctx, "measure_agreement", tight=False)  # axes placed by hand
