"""Stop searching? How many functionally distinct solutions do N random initialisations give?

The seed question: "if N random inits give N solutions that are not different, stop searching". Per
configuration (the independently trained seeds of one architecture and training setup, see
``tasks.base.seed_pairs``), for N = 2..K seeds (seeds 0..N-1, the order the sweep trains them):

* the **group-wise measures** of the first N seeds, read from the sweep's ``seed_group`` rows
  (``fleiss_kappa``, ``ambiguity``, ``discrepancy``, ``label_entropy``; ``runners.job.seed_group``);
* the **solution classes**: seeds clustered by a functional distance (``DISTANCE``, prediction
  disagreement on the probe set) with single linkage cut at a threshold τ (``stats.solution_classes``).
  τ is **calibrated against weight noise**: the largest disagreement between a trained model and its own
  copy under relative Gaussian weight noise of scale ``CALIBRATION_SCALE`` (the noise part's pairs). Two
  seeds closer than that are "the same solution up to a nudge of the weights";
* the **saturation curve**: the number of classes among the first N seeds (``stats.saturation_curve``);
  N classes for N seeds means every seed found a new solution;
* the **stopping rule**: stop at the first N >= ``MIN_SEEDS`` at which the Good–Turing estimate of the
  chance that the next seed starts a new class, (#classes seen once) / N, is at most ``STOP_PROBABILITY``
  (``stats.probability_new_class``). ``stop_at_n`` is NaN when the sweep's seeds never reach it: keep
  searching.

Outputs ``tables/stop_searching.csv`` and ``figures/stop_searching.png``. Cost: milliseconds (it reads
rows the sweep computed: one group row per seed job and measure).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import measures  # noqa: E402
from tasks import plotting, stats  # noqa: E402
from tasks.base import AnalysisContext, AnalysisResult, analysis, seed_pairs, standard_rows, trained_from_scratch  # noqa: E402

DISTANCE = "disagreement"  # the functional distance that defines a solution class
CALIBRATION_SCALE = 0.01  # relative weight-noise scale whose disagreement calibrates the class threshold
STOP_PROBABILITY = 0.1  # stop when the estimated chance of a new class is at most this
MIN_SEEDS = 3  # ... and at least this many seeds were trained
GROUP_MEASURES = ("fleiss_kappa", "ambiguity", "discrepancy", "label_entropy")


def calibrated_threshold(scores: pd.DataFrame, arch: str) -> float:
    """Largest ``DISTANCE`` between a standard model of ``arch`` and its copy at ``CALIBRATION_SCALE`` noise."""
    rows = standard_rows(scores)
    rows = rows[rows["status"].eq("ok") & rows["pair_type"].eq("perturbation") & rows["measure"].eq(DISTANCE)
                & rows["arch_a"].eq(arch) & np.isclose(rows[["scale_a", "scale_b"]].max(axis=1), CALIBRATION_SCALE)
                & trained_from_scratch(rows, "a") & trained_from_scratch(rows, "b")]
    return float(rows["value"].max()) if len(rows) else float("nan")


def _distance_matrix(pairs: pd.DataFrame) -> tuple[list[int], np.ndarray]:
    """The seeds of one configuration (sorted) and their ``DISTANCE`` matrix (NaN where not computed)."""
    seeds = sorted(set(pairs["seed_a"]) | set(pairs["seed_b"]))
    index = {s: i for i, s in enumerate(seeds)}
    d = np.full((len(seeds), len(seeds)), np.nan)
    for a, b, v in zip(pairs["seed_a"], pairs["seed_b"], pairs["value"]):
        d[index[a], index[b]] = d[index[b], index[a]] = v
    np.fill_diagonal(d, 0.0)
    return seeds, d


@analysis("stop_searching", reads_previous=False)
def stop_searching(ctx: AnalysisContext) -> AnalysisResult:
    seeds = seed_pairs(ctx.scores)
    outputs = seeds[seeds["measure"].eq(DISTANCE) & seeds["layer_a"].eq("output")]
    if outputs.empty:
        return AnalysisResult(pd.DataFrame(), f"no seed pairs with {DISTANCE} on the outputs")
    configuration_of = dict(zip(seeds["model_b"], seeds["configuration"])) | dict(zip(seeds["model_a"], seeds["configuration"]))
    groups = standard_rows(ctx.scores)
    groups = groups[groups["pair_type"].eq("seed_group") & groups["status"].eq("ok")
                    & trained_from_scratch(groups, "a") & trained_from_scratch(groups, "b")].copy()
    groups["configuration"] = groups["model_b"].map(configuration_of)
    rows = []
    for configuration, pairs in outputs.groupby("configuration"):
        arch = pairs["arch_a"].iloc[0]
        order, d = _distance_matrix(pairs)
        if np.isnan(d).any():
            continue  # a seed pair is missing: the prefixes are not all comparable
        tau = calibrated_threshold(ctx.scores, arch)
        base = {"arch": arch, "configuration": configuration, "measure": DISTANCE, "layer": "output"}
        rows.append({**base, "statistic": "class_threshold", "value": tau, "n_models": len(order),
                     "calibration_scale": CALIBRATION_SCALE})
        stop = np.nan
        if np.isfinite(tau):
            curve = stats.saturation_curve(d, tau)
            for n in range(2, len(order) + 1):
                p_new = stats.probability_new_class(stats.solution_classes(d[:n, :n], tau))
                rows.append({**base, "statistic": "solution_classes", "value": float(curve[n - 1]), "n_models": n})
                rows.append({**base, "statistic": "p_new_class", "value": p_new, "n_models": n})
                if np.isnan(stop) and n >= MIN_SEEDS and p_new <= STOP_PROBABILITY:
                    stop = n
            rows.append({**base, "statistic": "stop_at_n", "value": stop, "n_models": len(order)})
        for n in range(2, len(order) + 1):
            upper = d[:n, :n][np.triu_indices(n, 1)]
            rows.append({**base, "statistic": "mean_pair_distance", "value": float(upper.mean()), "n_models": n})
        part = groups[groups["configuration"].eq(configuration) & groups["measure"].isin(GROUP_MEASURES)]
        for g in part.itertuples():
            rows.append({"arch": arch, "configuration": configuration, "measure": g.measure, "layer": "output",
                         "statistic": "group_value", "value": g.value, "n_models": int(g.n_models)})
    evaluations = pd.DataFrame(rows)
    if evaluations.empty:
        return AnalysisResult(evaluations, "no configuration with every seed pair on the outputs")
    evaluations.to_csv(ctx.table_path("stop_searching"), index=False)
    figure = _plot(evaluations, ctx)
    parts = []
    for configuration, e in evaluations.groupby("configuration"):
        classes = e[e["statistic"].eq("solution_classes")].sort_values("n_models")
        tau = e.loc[e["statistic"].eq("class_threshold"), "value"].iloc[0]
        stop = e.loc[e["statistic"].eq("stop_at_n"), "value"]
        verdict = ("no noise calibration" if classes.empty else
                   f"{int(classes['value'].iloc[-1])} classes in {int(classes['n_models'].iloc[-1])} seeds (τ = {tau:.3g}), "
                   + ("keep searching" if stop.isna().all() else f"stop at N = {int(stop.iloc[0])}"))
        parts.append(f"{configuration}: {verdict}")
    return AnalysisResult(evaluations, "; ".join(parts), [figure])


def _plot(evaluations: pd.DataFrame, ctx: AnalysisContext):
    """Small multiples: the saturation curve (solution classes vs N, one line per configuration with a
    calibrated threshold) and one panel per group-wise measure and for the mean pairwise disagreement, each
    with one line per configuration in one colour per configuration."""
    configurations = sorted(evaluations["configuration"].unique())
    colour = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(configurations)}
    group_measures = sorted(evaluations.loc[evaluations["statistic"].eq("group_value"), "measure"].unique())
    n_panels = 2 + len(group_measures)
    n_cols = 3
    n_rows = int(np.ceil(n_panels / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.4 * n_cols, 3.6 * n_rows), squeeze=False, layout="constrained")
    flat = list(axes.flat)
    ax = flat[0]
    n_max = int(evaluations["n_models"].max())
    ax.plot([1, n_max], [1, n_max], color="lightgrey", lw=6, zorder=1, label="every seed a new solution")
    uncalibrated, drawn = [], []
    for configuration in configurations:
        e = evaluations[evaluations["configuration"].eq(configuration)]
        classes = e[e["statistic"].eq("solution_classes")].sort_values("n_models")
        tau = e.loc[e["statistic"].eq("class_threshold"), "value"]
        if classes.empty or tau.isna().all():
            uncalibrated.append(configuration)
            continue
        # identical curves stay visible: each later one smaller and dashed on top of the earlier ones
        k = len(drawn)
        ax.plot(classes["n_models"], classes["value"], marker="o", ms=max(10 - 3 * k, 3), ls=("-", "--", ":")[k % 3],
                color=colour[configuration], label=f"{configuration} (τ = {tau.iloc[0]:.3g})")
        drawn.append(configuration)
    ax.set_title(f"solution classes: seeds whose {DISTANCE} <= τ share one\n"
                 f"(τ = largest {DISTANCE} under σ = {CALIBRATION_SCALE:g} weight noise)", fontsize=9)
    if uncalibrated:
        ax.text(0.98, 0.02, "no weight-noise models, no τ:\n" + ", ".join(uncalibrated), transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7, color="dimgrey")
    ax.set_xlabel("number of seeds N")
    ax.set_ylabel("functionally distinct solutions")
    ax.set_xticks(range(1, n_max + 1))
    ax.set_yticks(range(1, n_max + 1))
    ax.legend(fontsize=7, loc="upper left")
    panels = [(m, "group_value", f"{m} ({'similarity' if measures.info(m).higher_is_more_similar else 'distance'})")
              for m in group_measures] + [(DISTANCE, "mean_pair_distance", f"mean pairwise {DISTANCE}")]
    for ax, (measure, statistic, title) in zip(flat[1:], panels):
        for configuration in configurations:
            g = evaluations[evaluations["configuration"].eq(configuration) & evaluations["measure"].eq(measure)
                            & evaluations["statistic"].eq(statistic)].sort_values("n_models")
            if len(g):
                ax.plot(g["n_models"], g["value"], marker="o", ms=3, color=colour[configuration], label=configuration)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("number of seeds N (seeds 0..N-1)")
        ax.set_xticks(range(2, n_max + 1))
    flat[1].legend(fontsize=7, title="configuration", title_fontsize=7)
    for ax in flat[1 + len(panels):]:
        ax.axis("off")
    fig.suptitle("Stop searching? Functionally distinct solutions and group-wise measures of the first N seeds",
                 fontsize=10)
    return plotting.save(fig, ctx, "stop_searching")
