"""Does a score mean anything? The per-row permutation nulls and bootstrap CIs a sweep recorded.

Rows computed with ``significance.n_permutations`` / ``significance.n_resamples`` > 0 (see
``conf/sweep/significance.yaml``) carry a one-sided permutation p-value (rows of model B shuffled), the null's
5/50/95% quantiles and a bootstrap CI over probe inputs. Per architecture, measure, layer and pair type: the
share of rows significant at 5%, the median and largest p-value, the median value, null median and 95%
quantile, and the median CI width — is a score of two seeds (or of a model and its noisy copy) far from what
unpaired inputs give? Table ``tables/significance.csv``, figure ``figures/significance.png`` (each measure's
values against its null band). Not applicable when no row carries a p-value (the default benchmark). Cost:
reads the recorded columns only; the nulls themselves cost the sweep n_permutations + n_resamples evaluations
per row (kernel measures' nulls permute prepared N x N matrices).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tasks.base import AnalysisContext, AnalysisResult, analysis  # noqa: E402

ALPHA = 0.05


@analysis("significance", reads_previous=False)
def significance(ctx: AnalysisContext) -> AnalysisResult:
    scores = ctx.scores
    if "p_value" not in scores or "ci_low" not in scores:
        return AnalysisResult(pd.DataFrame(), "no row carries a permutation null (set significance.n_permutations)")
    rows = scores[scores["status"].eq("ok") & (scores["p_value"].notna() | scores["ci_low"].notna())]
    if rows.empty:
        return AnalysisResult(pd.DataFrame(), "no row carries a permutation null (set significance.n_permutations)")
    rows = rows.assign(significant=rows["p_value"] < ALPHA, ci_width=rows["ci_high"] - rows["ci_low"])
    keys = ["arch_a", "measure", "layer_a", "pair_type"]
    table = rows.groupby(keys).agg(
        share_significant=("significant", "mean"), median_p=("p_value", "median"), max_p=("p_value", "max"),
        median_value=("value", "median"),
        median_null_q50=("null_q50", "median"), median_null_q95=("null_q95", "median"),
        median_ci_width=("ci_width", "median"), n_pairs=("value", "size")).reset_index()
    table.rename(columns={"arch_a": "arch", "layer_a": "layer"}).to_csv(ctx.table_path("significance"), index=False)
    evaluations = table.melt(id_vars=[*keys, "n_pairs"], var_name="statistic", value_name="value").rename(
        columns={"arch_a": "arch", "layer_a": "layer"})
    figure = _plot(rows, ctx)
    seeds = table[table["pair_type"].eq("seed")]
    summary = (f"{len(rows)} rows with nulls; seed pairs significant at {ALPHA:g}: "
               + ", ".join(f"{r.measure} {r.share_significant:.0%}" for r in seeds.itertuples())) if len(seeds) else \
        f"{len(rows)} rows with nulls"
    return AnalysisResult(evaluations, summary, [figure])


def _plot(rows: pd.DataFrame, ctx: AnalysisContext):
    names = sorted(rows["measure"].unique())
    archs = sorted(rows["arch_a"].unique())
    fig, axes = plt.subplots(len(archs), len(names), figsize=(2.6 * len(names), 3.2 * len(archs)), squeeze=False)
    colours = {"seed": "tab:blue", "perturbation": "tab:orange", "group": "tab:green"}
    for i, arch in enumerate(archs):
        for j, name in enumerate(names):
            ax = axes[i][j]
            part = rows[rows["arch_a"].eq(arch) & rows["measure"].eq(name)].reset_index(drop=True)
            x = np.arange(len(part))
            ax.fill_between(x, part["null_q05"], part["null_q95"], color="lightgrey", step="mid",
                            label="null 5-95%")
            for pair_type, g in part.groupby("pair_type"):
                err = np.vstack([g["value"] - g["ci_low"], g["ci_high"] - g["value"]])
                ax.errorbar(g.index, g["value"], yerr=np.where(np.isfinite(err), np.abs(err), 0), fmt="o", ms=3,
                            color=colours.get(pair_type, "black"), label=f"{pair_type} (95% CI)")
            ax.set_title(f"{arch}: {name}", fontsize=8)
            ax.set_xticks([])
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("value")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle("Each row's score (with its bootstrap CI) against its permutation null (rows of B shuffled)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path = ctx.figure_path("significance")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
