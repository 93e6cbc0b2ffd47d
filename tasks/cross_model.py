"""Cross-model comparison: layer x layer similarity of two models, and one number per model pair.

For every pair of unperturbed models whose every layer was compared with every layer of the other
(``compare.layers=all``: the benchmark's ``layer_id`` part for two seeds of one architecture, and
``sweep=cross_model`` for different architectures, widths and depths), per representational measure: the
layer x layer matrix M (rows: layers of model A, columns: layers of model B) and the model-level
aggregate under each rule of ``stats.AGGREGATE_RULES`` (``max``: each layer's best match, averaged;
``matched_depth``: layers at the same relative depth; ``mean``: every layer pair). A model is labelled by its
architecture, number of compared layers and first-layer width (``mlp 3L d=64``), so widths and depths
of one architecture stay apart.

Outputs ``tables/cross_model.csv`` (aggregates per configuration pair, measure and rule, mean over seed
pairs), ``figures/cross_model.png`` (the heatmaps of ``HEATMAP_MEASURE`` for the first seed pair of each
configuration pair, aggregates in the titles). Cost: well under a second (reads the sweep's rows).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import measures  # noqa: E402
from tasks import plotting, stats  # noqa: E402
from tasks.base import AnalysisContext, AnalysisResult, analysis, standard_rows, trained_from_scratch  # noqa: E402

HEATMAP_MEASURE = "cka_linear"
MAX_PANELS = 12


def model_labels(rows: pd.DataFrame) -> dict[str, str]:
    """Model key -> "arch <layers>L d=<width of the first compared layer>"."""
    sides = [rows[[f"model_{s}", f"arch_{s}", f"layer_index_{s}", f"d_{s}"]].set_axis(["model", "arch", "index", "d"], axis=1)
             for s in ("a", "b")]
    both = pd.concat(sides).drop_duplicates(["model", "index"])
    labels = {}
    for model, g in both.groupby("model"):
        first = g.sort_values("index").iloc[0]
        labels[model] = f"{first['arch']} {g['index'].nunique()}L d={int(first['d'])}"
    return labels


def layer_matrices(scores: pd.DataFrame) -> dict[tuple[str, str, str], pd.DataFrame]:
    """(model A, model B, measure) -> layer x layer matrix, for pairs with every layer pair computed."""
    rows = standard_rows(scores)
    rows = rows[rows["status"].eq("ok") & rows["pair_type"].isin(["seed", "group"]) & rows["scale_a"].eq(0)
                & rows["scale_b"].eq(0) & rows["layer_index_a"].ge(0) & rows["layer_index_b"].ge(0)
                & trained_from_scratch(rows, "a") & trained_from_scratch(rows, "b")]
    # One groupby for all pairs, then each matrix from its cells: the same cells, means and order as a
    # pivot_table (mean over duplicates; layers whose cells are all NaN left out) per pair, which cost
    # about 5 ms a pair and 1781 pairs in the default benchmark.
    means = rows.groupby(["model_a", "model_b", "measure", "layer_index_a", "layer_index_b"])["value"].mean().dropna()
    out = {}
    for (a, b, measure), cells in means.groupby(level=[0, 1, 2], sort=True):
        layer_a, at = np.unique(cells.index.get_level_values(3), return_inverse=True)
        layer_b, bt = np.unique(cells.index.get_level_values(4), return_inverse=True)
        if len(layer_a) < 2 or len(layer_b) < 2 or len(cells) != len(layer_a) * len(layer_b):
            continue  # one layer, or a layer pair without a value
        m = np.full((len(layer_a), len(layer_b)), np.nan)
        m[at, bt] = cells.to_numpy()
        out[(a, b, measure)] = pd.DataFrame(m, index=pd.Index(layer_a, name="layer_index_a"),
                                            columns=pd.Index(layer_b, name="layer_index_b"))
    return out


@analysis("cross_model", reads_previous=False)
def cross_model(ctx: AnalysisContext) -> AnalysisResult:
    matrices = layer_matrices(ctx.scores)
    if not matrices:
        return AnalysisResult(pd.DataFrame(), "no model pair with every layer pair (compare.layers=all)")
    scores = ctx.scores
    labels = model_labels(scores[scores["layer_index_a"].ge(0) & scores["layer_index_b"].ge(0)])
    seed = pd.concat([scores.set_index("model_a")["seed_a"], scores.set_index("model_b")["seed_b"]])
    seed = seed[~seed.index.duplicated()]
    records = []
    for (a, b, measure), m in matrices.items():
        higher = measures.info(measure).higher_is_more_similar
        for rule in stats.AGGREGATE_RULES:
            records.append({"model_a": a, "model_b": b, "config_a": labels[a], "config_b": labels[b],
                            "seed_a": int(seed[a]), "seed_b": int(seed[b]), "measure": measure, "rule": rule,
                            "value": stats.model_aggregate(m.to_numpy(), rule, higher)})
    per_pair = pd.DataFrame(records)
    table = per_pair.groupby(["config_a", "config_b", "measure", "rule"]).agg(
        value=("value", "mean"), n_pairs=("value", "size")).reset_index()
    table.to_csv(ctx.table_path("cross_model"), index=False)
    figure = _plot(matrices, per_pair, labels, seed.to_dict(), ctx)
    evaluations = table.rename(columns={"rule": "statistic"}).assign(
        statistic=lambda t: "aggregate_" + t["statistic"])
    cross = table[table["config_a"].ne(table["config_b"]) & table["measure"].eq(HEATMAP_MEASURE)
                  & table["rule"].eq("max")]
    summary = (f"{per_pair[['model_a', 'model_b']].drop_duplicates().shape[0]} model pairs, "
               f"{table[['config_a', 'config_b']].drop_duplicates().shape[0]} configuration pairs"
               + ("; " + HEATMAP_MEASURE + " (max rule) across configurations: "
                  + ", ".join(f"{r.config_a} vs {r.config_b} {r.value:.2f}" for r in cross.head(4).itertuples())
                  if len(cross) else ""))
    return AnalysisResult(evaluations, summary, [figure])


def _plot(matrices: dict, per_pair: pd.DataFrame, labels: dict[str, str], seed: dict[str, int], ctx: AnalysisContext):
    measure = HEATMAP_MEASURE if any(k[2] == HEATMAP_MEASURE for k in matrices) else sorted({k[2] for k in matrices})[0]
    chosen = {}
    for (a, b, m), matrix in sorted(matrices.items(), key=lambda kv: (seed[kv[0][0]], seed[kv[0][1]], kv[0])):
        if m != measure:
            continue
        key = (labels[a], labels[b])
        if key not in chosen and (labels[b], labels[a]) not in chosen:
            chosen[key] = (a, b, matrix)
    panels = list(chosen.items())[:MAX_PANELS]
    n_cols = min(4, len(panels))
    n_rows = int(np.ceil(len(panels) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols + 1, 3.4 * n_rows), squeeze=False,
                             layout="constrained")
    info = measures.info(measure)
    # one colour scale for every panel, so colours compare across model pairs
    values = np.concatenate([matrix.to_numpy().ravel() for _, (_, _, matrix) in panels])
    norm = plt.Normalize(np.nanmin(values), np.nanmax(values))
    image = None
    for ax, ((la, lb), (a, b, matrix)) in zip(axes.flat, panels):
        image = ax.imshow(matrix.to_numpy(), cmap="viridis" if info.higher_is_more_similar else "viridis_r",
                          origin="lower", aspect="auto", norm=norm)
        agg = per_pair[per_pair["model_a"].eq(a) & per_pair["model_b"].eq(b) & per_pair["measure"].eq(measure)]
        text = ", ".join(f"{r.rule} {r.value:.2f}" for r in agg.itertuples())
        ax.set_title(f"{la} vs {lb}\n{text}", fontsize=7)
        ax.set_xlabel(f"layer of B ({lb})", fontsize=7)
        ax.set_ylabel(f"layer of A ({la})", fontsize=7)
        ax.set_xticks(range(matrix.shape[1]))
        ax.set_yticks(range(matrix.shape[0]))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.8, label=f"{measure} (one scale for all panels)")
    fig.suptitle(f"Layer x layer {measure} of two models (first seed pair per configuration pair; "
                 "layer 0 = first compared layer)", fontsize=9)
    return plotting.save(fig, ctx, "cross_model", dpi=120)
