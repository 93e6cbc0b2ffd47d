"""The benchmark tests: what a good similarity measure should do, scored for every measure.

Protocols: ReSi (Klabunde et al. ICLR 2025) tests 1-6, Kornblith et al. (ICML 2019) layer
identification, Ding, Denain & Steinhardt (NeurIPS 2021) principal-component deletion; statistics in
:mod:`tasks.stats`. Each test reads the rows it needs from the sweep's scores (and the representation
cache for PC deletion), so a sweep that lacks the models of a test simply reports it as not applicable.
Nothing here lists measures: every registered measure found in the scores is tested.

* ``output_correlation`` (ReSi 1-2): over pairs of standard models (seeds), Spearman between the
  representational distance at the final hidden layer and |Δ accuracy|, JSD and disagreement, with a
  pairings permutation p-value (ReSi's) and a Mantel p-value (model relabelling).
* ``group_separation`` (ReSi 3-5): for each intervention axis with several levels (label randomisation,
  shortcut marker, input noise), AUPRC of within-level vs cross-level pairs beside its prevalence and
  permutation null, the conformity rate, and the dose-response of similarity to the level-0 models.
* ``layer_monotonicity`` (ReSi 6): within each model, does similarity fall with layer distance?
* ``layer_identification`` (Kornblith): is layer i of one seed most similar to layer i of another?
* ``pc_deletion`` (Ding): delete principal components of a representation, lowest variance first; does
  the measure move when a linear probe's accuracy drops?
* ``ranks``: ReSi's ranking rule over every test's quality statistic, aggregated by median then mean,
  with a bootstrap interval of every rank score (tests, then each test's architectures, resampled) and
  the pairwise rank-score differences that are significant (``tables/rank_differences.csv``);
  overall and per domain (vision, language, graph: ``tables/ranks_by_domain.*``).

Every statistic gets a seeded percentile bootstrap interval over models (seeds), where a test has them.
"""

from __future__ import annotations

import warnings
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import ConstantInputWarning, spearmanr  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import measures  # noqa: E402
from tasks import plotting, stats  # noqa: E402
from tasks.base import (INTERVENTION_AXES, AnalysisContext, AnalysisResult, analysis, is_default,  # noqa: E402
                        representational_measures, seed_pairs)
from tasks.robustness import last_hidden_layer  # noqa: E402
from tasks.zoo.datasets import DOMAINS  # noqa: E402

N_BOOT = 100  # bootstrap replicates per statistic (seeded; a coarse 95% percentile interval, kept cheap)
N_BOOT_RANKS = 10_000  # replicates of the rank-score bootstrap (vectorised: ~1 s for 40 measures)
N_PERM = 999  # permutation resamples for p-values
SEED = 0


def _representational(measure: str) -> bool:
    return measure in measures.names(inputs="representations")


def _higher(measure: str) -> bool:
    return measures.info(measure).higher_is_more_similar


def _model_pairs(scores: pd.DataFrame, except_axis: str | None = None) -> pd.DataFrame:
    """Unperturbed cross-model pairs (seed and group pairs), both models at default interventions
    (except ``except_axis``, which must be set on both)."""
    rows = scores[scores["status"].eq("ok") & scores["pair_type"].isin(["seed", "group"])
                  & scores["scale_a"].eq(0) & scores["scale_b"].eq(0)]
    return rows[is_default(rows, "a", except_axis) & is_default(rows, "b", except_axis)]


def _square(rows: pd.DataFrame, models: list[str], symmetric: bool) -> np.ndarray:
    """Matrix over ``models`` with m[a, b] = value(model_a=a, model_b=b); mirrored for symmetric measures."""
    index = {m: i for i, m in enumerate(models)}
    out = np.full((len(models), len(models)), np.nan)
    a = rows["model_a"].map(index).to_numpy()
    b = rows["model_b"].map(index).to_numpy()
    ok = ~(pd.isna(a) | pd.isna(b))
    out[a[ok].astype(int), b[ok].astype(int)] = rows["value"].to_numpy()[ok]
    if symmetric:
        out[b[ok].astype(int), a[ok].astype(int)] = rows["value"].to_numpy()[ok]
    return out


def _boot(units: np.ndarray, statistic: Callable[[np.ndarray], float]) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over bootstrap resamples of ``units`` (model indices)."""
    if len(units) < 3:
        return np.nan, np.nan
    ci = stats.bootstrap_ci(units, statistic, n_boot=N_BOOT, seed=SEED)
    return float(ci.low), float(ci.high)


def _boot_resampled(n_units: int, statistic: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
    """:func:`_boot` over ``np.arange(n_units)`` for a statistic vectorised over resamples: ``statistic``
    maps the (N_BOOT x n_units) index draws to one value per resample. Same draws, same interval."""
    if n_units < 3:
        return np.nan, np.nan
    return stats.percentile_interval(statistic(stats.bootstrap_indices(n_units, N_BOOT, seed=SEED)))


def _final_rows(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per architecture, the rows at its final hidden layer (same layer on both sides)."""
    out = {}
    for arch, g in rows[rows["layer_a"].eq(rows["layer_b"])].groupby("arch_a"):
        layer = last_hidden_layer(sorted(set(g["layer_a"]) - {"output", "network", "weights"}) or ["output"])
        out[arch] = g[g["layer_a"].eq(layer)]
    return out


# --------------------------------------------------------------------------------------------------
# ReSi tests 1-2: grounding by prediction
# --------------------------------------------------------------------------------------------------


@analysis("output_correlation", reads_previous=False)
def output_correlation(ctx: AnalysisContext) -> AnalysisResult:
    # Only pairs of independent seeds of one configuration: warm-started and perturbed copies and other
    # configurations (group levels, widths) are not "the same training with another seed".
    seeds = seed_pairs(ctx.scores)
    if seeds.empty:
        return AnalysisResult(pd.DataFrame(), "no pairs of standard models")
    rows = []
    for configuration, pairs in seeds.groupby("configuration"):
        arch, final = next(iter(_final_rows(pairs).items()))
        everything = pairs
        models = sorted(set(everything["model_a"]) | set(everything["model_b"]))
        if len(models) < 4:
            continue
        accuracy = pd.concat([everything.set_index("model_a")["accuracy_a"], everything.set_index("model_b")["accuracy_b"]])
        acc = accuracy.groupby(level=0).first().reindex(models).to_numpy()
        functional = {"accuracy_difference": np.abs(acc[:, None] - acc[None, :])}
        outputs = everything[everything["layer_a"].eq("output")]
        for name in ("jsd", "disagreement"):
            part = outputs[outputs["measure"].eq(name)]
            if not part.empty:
                functional[name] = _square(part, models, True)
        for measure, g in final.groupby("measure"):
            if not _representational(measure):
                continue
            rep = -stats.orient(_square(g, models, measures.info(measure).symmetric), _higher(measure))
            for fname, fmat in functional.items():
                test = stats.correlation_test(rep, fmat, n_resamples=N_PERM, seed=SEED)
                low, high = _boot_resampled(len(models), lambda idx: stats.correlation_statistic_resampled(
                    rep, fmat, idx))
                rows.append({"arch": arch, "configuration": configuration, "layer": g["layer_a"].iloc[0], "measure": measure,
                             "statistic": f"spearman_{fname}", "value": test.statistic, "ci_low": low,
                             "ci_high": high, "p_pairings": test.pvalue_pairings, "p_mantel": test.pvalue_mantel,
                             "n_pairs": test.n_pairs, "baseline": 0.0})
    evaluations = pd.DataFrame(rows)
    if evaluations.empty:
        return AnalysisResult(evaluations, "fewer than 4 standard models per architecture")
    evaluations.to_csv(ctx.table_path("output_correlation"), index=False)
    jsd = evaluations[evaluations["statistic"].eq("spearman_jsd")]
    best = jsd.sort_values("value", ascending=False).head(3)
    return AnalysisResult(evaluations, f"{evaluations['measure'].nunique()} measures; highest Spearman with JSD: "
                          + ", ".join(f"{r.measure} ({r.arch}) {r.value:.2f}" for r in best.itertuples()))


# --------------------------------------------------------------------------------------------------
# ReSi tests 3-5: grounding by design (intervention groups) and dose-response curves
# --------------------------------------------------------------------------------------------------


@analysis("group_separation", reads_previous=False)
def group_separation(ctx: AnalysisContext) -> AnalysisResult:
    rows, curves, lines = [], [], []
    for axis in INTERVENTION_AXES:
        pairs = _model_pairs(ctx.scores, except_axis=axis)
        pairs = pairs[pairs["arch_a"].eq(pairs["arch_b"])]
        # The design: models that take part in at least one cross-level pair, and every pair among them.
        design = set(pairs.loc[pairs["pair_type"].eq("group"), "model_a"]) | set(pairs.loc[pairs["pair_type"].eq("group"), "model_b"])
        pairs = pairs[pairs["model_a"].isin(design) & pairs["model_b"].isin(design)]
        levels = sorted(set(pairs[f"{axis}_a"]) | set(pairs[f"{axis}_b"]))
        if len(levels) < 2:
            continue
        for arch, final in _final_rows(pairs).items():
            level_of = pd.concat([final.set_index("model_a")[f"{axis}_a"], final.set_index("model_b")[f"{axis}_b"]])
            level_of = level_of.groupby(level=0).first()
            models = sorted(level_of.index, key=lambda m: (level_of[m], m))
            groups = level_of.reindex(models).to_numpy()
            if len(set(groups)) < 2:
                continue
            sizes = pd.Series(groups).value_counts()
            n_within = int(sum(n * (n - 1) // 2 for n in sizes))
            null = np.mean([stats.auprc_null(int(n * (n - 1) // 2), int(n * (len(models) - n)), n_draws=2000, seed=SEED)
                            for n in sizes])
            for measure, g in final.groupby("measure"):
                if not _representational(measure):
                    continue
                higher = _higher(measure)
                sim = _square(g, models, measures.info(measure).symmetric)
                sep = stats.group_separation(sim, list(groups), higher_is_more_similar=higher)
                low, high = _boot_resampled(len(models), lambda idx: stats.group_separation_auprc_resampled(
                    sim, list(groups), idx, higher_is_more_similar=higher))
                base = {"arch": arch, "layer": g["layer_a"].iloc[0], "measure": measure, "axis": axis,
                        "n_pairs": n_within}
                rows += [
                    {**base, "statistic": f"auprc_{axis}", "value": sep.auprc, "ci_low": low, "ci_high": high,
                     "baseline": sep.prevalence, "null_auprc": null},
                    {**base, "statistic": f"auprc_normalised_{axis}", "value": sep.auprc_normalised},
                    {**base, "statistic": f"conformity_{axis}", "value": sep.conformity_rate},
                ]
                # Dose-response: similarity of every model to the models of the lowest level.
                first = groups == groups[0]
                dose_levels, dose_scores = [], []
                for j in range(len(models)):
                    for i in np.nonzero(first)[0]:
                        if i != j and np.isfinite(sim[i, j]):
                            dose_levels.append(groups[j])
                            dose_scores.append(sim[i, j])
                dose = stats.dose_response(dose_levels, dose_scores, higher_is_more_similar=higher)
                rows += [{**base, "statistic": f"dose_spearman_{axis}", "value": dose.spearman},
                         {**base, "statistic": f"dose_effect_size_{axis}", "value": dose.effect_size}]
                frame = pd.DataFrame({"level": dose_levels, "score": stats.orient(dose_scores, higher)})
                curve = frame.groupby("level")["score"].mean()
                curves.append(pd.DataFrame({"arch": arch, "axis": axis, "measure": measure,
                                            "level": curve.index, "score": curve.to_numpy()}))
            lines.append(f"{axis} ({arch}: levels {levels}, prevalence {sizes.size and n_within / (n_within + sum(n * (len(models) - n) for n in sizes)):.3f})")
    evaluations = pd.DataFrame(rows)
    if evaluations.empty:
        return AnalysisResult(evaluations, "no intervention axis with two or more levels")
    evaluations.to_csv(ctx.table_path("group_separation"), index=False)
    _plot_dose(pd.concat(curves, ignore_index=True), ctx)
    return AnalysisResult(evaluations, "; ".join(lines))


def _plot_dose(curves: pd.DataFrame, ctx: AnalysisContext) -> None:
    """One heatmap per architecture: rows are measures (by family), columns the intervention levels, the
    colour the mean similarity to the models of the lowest level, min-max scaled per measure over the levels (so
    measures on different scales share one colour bar; the scaling hides the size of the change)."""
    for axis, by_axis in curves.groupby("axis"):
        archs = sorted(by_axis["arch"].unique())
        fig, axes = plotting.figure(len(archs), by_axis["measure"].nunique())
        for ax, arch in zip(axes[0], archs):
            grid = by_axis[by_axis["arch"].eq(arch)].pivot_table(index="measure", columns="level", values="score")
            low, high = grid.min(axis=1), grid.max(axis=1)
            scaled = grid.sub(low, axis=0).div((high - low).where(high > low), axis=0)
            image = plotting.measure_heatmap(ax, scaled, norm=plt.Normalize(0, 1), xlabel=f"{axis} level")
            ax.set_title(arch)
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.5,
                     label="similarity to the lowest level's models,\nmin-max scaled per measure (1 = most similar level)")
        fig.suptitle(f"Dose-response, {axis}: {by_axis['level'].nunique()} levels; grey: no variation or no value")
        fig.savefig(ctx.figure_path(f"dose_response_{axis}"), dpi=110)
        plt.close(fig)


# --------------------------------------------------------------------------------------------------
# ReSi test 6 and Kornblith's layer identification
# --------------------------------------------------------------------------------------------------


def _layer_matrix(rows: pd.DataFrame, n_layers: int) -> np.ndarray:
    out = np.full((n_layers, n_layers), np.nan)
    out[rows["layer_index_a"].to_numpy(), rows["layer_index_b"].to_numpy()] = rows["value"].to_numpy()
    return out


@analysis("layer_monotonicity", reads_previous=False)
def layer_monotonicity(ctx: AnalysisContext) -> AnalysisResult:
    within = ctx.scores[ctx.scores["status"].eq("ok") & ctx.scores["pair_type"].eq("layers")]
    within = within[is_default(within, "a") & within["scale_a"].eq(0)]
    if within.empty:
        return AnalysisResult(pd.DataFrame(), "no within-model layer pairs (run with compare.within_model=true)")
    rows = []
    for (arch, measure), g in within.groupby(["arch_a", "measure"]):
        n_layers = int(max(g["layer_index_a"].max(), g["layer_index_b"].max())) + 1
        per_model = [stats.layer_monotonicity(_layer_matrix(m, n_layers), higher_is_more_similar=_higher(measure))
                     for _, m in g.groupby("model_a")]
        scores = np.array([r.score for r in per_model])
        low, high = _boot(scores, np.nanmean) if np.isfinite(scores).sum() >= 3 else (np.nan, np.nan)
        rows += [{"arch": arch, "measure": measure, "statistic": "monotonicity", "value": float(np.nanmean(scores)),
                  "ci_low": low, "ci_high": high, "n_models": len(per_model), "baseline": 0.0},
                 {"arch": arch, "measure": measure, "statistic": "monotonicity_violation_rate",
                  "value": float(np.nanmean([r.violation_rate for r in per_model])), "n_models": len(per_model)}]
    evaluations = pd.DataFrame(rows)
    evaluations.to_csv(ctx.table_path("layer_monotonicity"), index=False)
    mono = evaluations[evaluations["statistic"].eq("monotonicity")]
    return AnalysisResult(evaluations, f"{mono['measure'].nunique()} measures; mean score {mono['value'].mean():.2f}, "
                          f"{int((mono['value'] > 0.9).sum())}/{len(mono)} (measure, arch) above 0.9")


@analysis("layer_identification", reads_previous=False)
def layer_identification(ctx: AnalysisContext) -> AnalysisResult:
    pairs = _model_pairs(ctx.scores)
    pairs = pairs[pairs["pair_type"].eq("seed") & pairs["layer_index_a"].ge(0) & pairs["layer_index_b"].ge(0)]
    cross = pairs[pairs["layer_a"].ne(pairs["layer_b"])]
    if cross.empty:
        return AnalysisResult(pd.DataFrame(), "no cross-layer seed pairs (run with compare.layers=all)")
    pairs = pairs[pairs.set_index(["model_a", "model_b", "measure"]).index.isin(
        cross.set_index(["model_a", "model_b", "measure"]).index)]
    rows, per_pair = [], []
    for (arch, measure), g in pairs.groupby(["arch_a", "measure"]):
        info = measures.info(measure)
        n_layers = int(max(g["layer_index_a"].max(), g["layer_index_b"].max())) + 1
        keyed = {k: m for k, m in g.groupby(["model_a", "model_b"])}
        accs = []
        for (a, b), m in keyed.items():
            if a > b and not info.symmetric and (b, a) in keyed:
                continue  # the reverse direction is used inside the pair (a, b)
            reverse = keyed.get((b, a)) if not info.symmetric else None
            result = stats.layer_identification(
                _layer_matrix(m, n_layers), info.symmetric,
                similarity_reverse=None if reverse is None else _layer_matrix(reverse, n_layers),
                higher_is_more_similar=info.higher_is_more_similar)
            accs.append(result.accuracy)
        accs = np.array(accs)
        low, high = _boot(accs, np.nanmean)
        rows.append({"arch": arch, "measure": measure, "statistic": "layer_identification", "value": float(np.nanmean(accs)),
                     "ci_low": low, "ci_high": high, "n_pairs": len(accs), "baseline": 1.0 / n_layers})
        per_pair.append(accs)
    evaluations = pd.DataFrame(rows)
    evaluations.to_csv(ctx.table_path("layer_identification"), index=False)
    _plot_bars(evaluations, "layer_identification", "fraction of layers matched to the same layer of another seed", ctx)
    by_family = evaluations.assign(family=evaluations["measure"].map(lambda m: measures.info(m).family)) \
        .groupby("family")["value"].mean()
    return AnalysisResult(evaluations, "mean accuracy by family: " + ", ".join(f"{f} {v:.2f}" for f, v in by_family.items()))


def layer_identification_summary(evaluations: pd.DataFrame) -> pd.DataFrame:
    """The layer-identification table (``tables/layer_identification.csv``) as a small tracked summary: per
    architecture and measure the accuracy, its bootstrap 95% interval over seed pairs, the number of seed
    pairs, chance (1 / number of compared layers) and the measure's family; rounded to 4 decimals, sorted
    by architecture, then accuracy (best first), then measure. ``paper/data/vision_deep_layer_identification.csv``
    is this for ``sweep=vision_deep`` (written by ``python -m runners.layer_id_summary``)."""
    table = evaluations[evaluations["statistic"].eq("layer_identification")]
    summary = pd.DataFrame({
        "arch": table["arch"], "measure": table["measure"],
        "family": table["measure"].map(lambda m: measures.info(m).family),
        "accuracy": table["value"], "ci_low": table["ci_low"], "ci_high": table["ci_high"],
        "n_pairs": table["n_pairs"].astype(int), "chance": table["baseline"],
    })
    summary[["accuracy", "ci_low", "ci_high", "chance"]] = summary[["accuracy", "ci_low", "ci_high", "chance"]].round(4)
    return summary.sort_values(["arch", "accuracy", "measure"], ascending=[True, False, True]).reset_index(drop=True)


def _plot_bars(evaluations: pd.DataFrame, name: str, xlabel: str, ctx: AnalysisContext) -> None:
    archs = sorted(evaluations["arch"].unique())
    n = evaluations["measure"].nunique()
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 0.25 * n + 2), squeeze=False, layout="constrained")
    for ax, arch in zip(axes[0], archs):
        part = evaluations[evaluations["arch"].eq(arch)].sort_values("value")
        err = np.vstack([part["value"] - part["ci_low"], part["ci_high"] - part["value"]]) if "ci_low" in part else None
        ax.barh(part["measure"], part["value"], xerr=None if err is None else np.nan_to_num(err.clip(0)), color="tab:blue")
        if "baseline" in part and part["baseline"].notna().any():
            ax.axvline(part["baseline"].iloc[0], color="grey", ls=":", label="chance")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_title(arch)
        ax.tick_params(axis="y", labelsize=7)
    fig.savefig(ctx.figure_path(name), dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Ding et al.: principal-component deletion
# --------------------------------------------------------------------------------------------------

MAX_PC_ROWS = 400  # probe rows used for PC deletion (seeded subsample; the O(N²) measures stay quick)
ROUND_OFF = 1e-9  # a drift at most this (relative to the measure's scale) is round-off, counted as none


def delete_components(x: np.ndarray, k: int) -> np.ndarray:
    """Remove the k lowest-variance principal directions of the centred representation (the mean is
    kept), i.e. project onto the span of the remaining rank(X) − k leading directions."""
    return deletion_series(x, [k])[k]


def deletion_series(x: np.ndarray, ks: list[int]) -> dict[int, np.ndarray]:
    """:func:`delete_components` for every k in ``ks`` from one SVD of the centred ``x`` (it does not
    depend on k: one SVD per representation instead of one per k, the same arrays bit for bit).

    Constant columns (dead ReLU units) stay exactly constant. In exact arithmetic the right singular
    vectors have zeros there (a zero column of the centred input is outside its row space), but the
    SVD returns ~1e-17 instead, and the reconstruction gave such a unit ~1e-14 of spread: enough for a
    correlation-based measure (which scores a constant unit 0) to see an O(1) correlation of noise, so
    that e.g. ``correlation_match_soft`` of X against its own reconstruction with nothing deleted was
    0.83 instead of 0.80, and the drift curves depended on which BLAS kernel summed the round-off.
    """
    mean = x.mean(axis=0)
    constant = (x == x[:1]).all(axis=0) if x.shape[0] else np.zeros(x.shape[1], dtype=bool)
    mean[constant] = x[0, constant]  # the exact mean: those centred columns are exact zeros
    centred = x - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    vt[:, constant] = 0.0  # exact arithmetic's zeros: every reconstruction keeps those columns at the mean
    rank = int((s > s[0] * 1e-10).sum()) if s.size else 0
    deleted = {}
    for k in ks:
        v = vt[:max(rank - k, 0)]
        deleted[k] = centred @ v.T @ v + mean
    return deleted


def probe_accuracy(x: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of a linear probe (standardised features, L2 logistic regression, 2-fold stratified CV,
    fixed folds). Standardising makes L-BFGS converge on raw activations of any scale."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(cross_val_score(model, x, labels, cv=2).mean())


@analysis("pc_deletion", reads_previous=False)
def pc_deletion(ctx: AnalysisContext) -> AnalysisResult:
    standard = _model_pairs(ctx.scores)
    chosen = representational_measures(ctx.scores)
    # only representational rows name layers with representations (ok rows of weight_distance alone: none)
    standard = standard[standard["measure"].isin(chosen)]
    if standard.empty or not chosen:
        return AnalysisResult(pd.DataFrame(), "no standard models or representational measures")
    params = ctx.measure_params(chosen)
    rows, curves = [], []
    for arch, final in _final_rows(standard).items():
        first = final.sort_values(["seed_a", "seed_b"]).iloc[0]
        layer = first["layer_a"]
        arrays = ctx.representations(first["model_a"])
        if "labels" not in arrays:  # user feature files without labels (sweep=byo): no probe to train
            continue
        rng = np.random.default_rng(SEED)
        keep = np.sort(rng.choice(arrays["labels"].shape[0], size=min(MAX_PC_ROWS, arrays["labels"].shape[0]), replace=False))
        x, labels = arrays[f"rep/{layer}"][keep].astype(np.float64), arrays["labels"][keep]
        rank = np.linalg.matrix_rank(x - x.mean(0))
        ks = sorted({int(round(f * rank)) for f in np.linspace(0, 1, 9)} - {rank}) or [0]
        deleted = deletion_series(x, ks)
        acc = np.array([probe_accuracy(deleted[k], labels) for k in ks])
        for measure in chosen:
            info = measures.info(measure)
            values = []
            for k in ks:
                try:
                    values.append(measures.compute(measure, x, deleted[k], **params[measure]))
                except ValueError:
                    values.append(np.nan)
            values = np.array(values)
            drift = np.abs(values - values[0])
            # A measure that cannot see the deletion (e.g. linear_regression predicting X_k from X: R² = 1
            # at every k) drifts by round-off only; that is no reaction, and ranking its noise would make
            # the statistics depend on which BLAS path summed the products.
            drift[drift <= ROUND_OFF * max(1.0, float(np.nanmax(np.abs(values), initial=0.0)))] = 0.0
            acc_drop = acc[0] - acc
            with warnings.catch_warnings():  # a constant drift (no reaction at all) has no rank correlation: NaN
                warnings.simplefilter("ignore", ConstantInputWarning)
                sensitivity = (spearmanr(acc_drop, drift, nan_policy="omit").statistic
                               if np.isfinite(drift).sum() > 2 else np.nan)
            span = np.nanmax(drift) if np.isfinite(drift).any() else np.nan
            react = next((ks[i] / rank for i in range(len(ks)) if span > 0 and drift[i] >= 0.1 * span), np.nan)
            acc_react = next((ks[i] / rank for i in range(len(ks)) if acc_drop[i] >= 0.05), np.nan)
            base = {"arch": arch, "layer": layer, "measure": measure}
            rows += [{**base, "statistic": "pc_sensitivity", "value": sensitivity, "baseline": 0.0, "n_points": len(ks)},
                     {**base, "statistic": "pc_fraction_at_reaction", "value": react,
                      "baseline": acc_react}]
            curves.append(pd.DataFrame({"arch": arch, "measure": measure, "fraction_deleted": np.array(ks) / rank,
                                        "drift": drift / span if span > 0 else drift, "probe_accuracy": acc,
                                        "family": info.family}))
    if not rows:
        return AnalysisResult(pd.DataFrame(), "no labels on the probe set to train a linear probe on")
    evaluations = pd.DataFrame(rows)
    evaluations.to_csv(ctx.table_path("pc_deletion"), index=False)
    _plot_pc(pd.concat(curves, ignore_index=True), ctx)
    cka = evaluations[evaluations["measure"].eq("cka_linear") & evaluations["statistic"].eq("pc_fraction_at_reaction")]
    def share(v: float) -> str:
        return "never" if not np.isfinite(v) else f"after {v:.0%} of the PCs are deleted"

    note = "; ".join(f"{r.arch}: linear CKA moves (10% of its span) {share(r.value)}, "
                     f"a linear probe loses 5 accuracy points {share(r.baseline)}" for r in cka.itertuples())
    return AnalysisResult(evaluations, note or f"{evaluations['measure'].nunique()} measures")


def _plot_pc(curves: pd.DataFrame, ctx: AnalysisContext) -> None:
    """Per architecture: the linear probe's accuracy (top, on a 0-1 axis so a small loss looks small) and
    a heatmap of every measure's drift from the intact representation, scaled to its largest drift."""
    archs = sorted(curves["arch"].unique())
    n = curves["measure"].nunique()
    fig, axes = plt.subplots(2, len(archs), figsize=(5.5 * len(archs), 0.2 * n + 3.2), squeeze=False,
                             layout="constrained", height_ratios=[1, max(3, 0.2 * n)])
    for col, arch in enumerate(archs):
        part = curves[curves["arch"].eq(arch)].assign(fraction=lambda d: d["fraction_deleted"].round(3))
        grid = part.pivot_table(index="measure", columns="fraction", values="drift")
        acc = part.drop_duplicates("fraction").set_index("fraction")["probe_accuracy"].reindex(grid.columns)
        top = axes[0][col]
        top.plot(range(len(acc)), acc.to_numpy(), color="tab:red", marker="o", ms=3)
        top.set_xlim(-0.5, len(acc) - 0.5)
        top.set_ylim(0, 1.02)
        top.set_xticks([])
        top.grid(axis="y", lw=0.5)
        top.set_ylabel("probe\naccuracy")
        top.set_title(f"{arch}: probe accuracy {acc.iloc[0]:.3f} -> {acc.iloc[-1]:.3f}")
        image = plotting.measure_heatmap(axes[1][col], grid, norm=plt.Normalize(0, 1), cmap="magma",
                                         xlabel="fraction of principal components deleted (lowest variance first)")
    fig.colorbar(image, ax=axes[1].tolist(), shrink=0.5, label="drift from the intact representation\n(1 = the measure's largest drift)")
    fig.savefig(ctx.figure_path("pc_deletion"), dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Ranks over all tests
# --------------------------------------------------------------------------------------------------

#: test name -> (task, statistic prefix); higher is better for every quality statistic here.
QUALITY = {
    "accuracy_correlation": ("output_correlation", "spearman_accuracy_difference"),
    "jsd_correlation": ("output_correlation", "spearman_jsd"),
    "disagreement_correlation": ("output_correlation", "spearman_disagreement"),
    "label_randomization": ("group_separation", "auprc_label_randomization"),
    "shortcut_affinity": ("group_separation", "auprc_shortcut"),
    "augmentation": ("group_separation", "auprc_input_noise"),
    "layer_monotonicity": ("layer_monotonicity", "monotonicity"),
    "layer_identification": ("layer_identification", "layer_identification"),
    "pc_deletion": ("pc_deletion", "pc_sensitivity"),
}


@analysis("ranks")
def ranks(ctx: AnalysisContext) -> AnalysisResult:
    if not ctx.previous:
        return AnalysisResult(pd.DataFrame(), "no test results to rank")
    done = pd.concat(ctx.previous, ignore_index=True)
    frames = []
    for test, (task, statistic) in QUALITY.items():
        part = done[done["task"].eq(task) & done["statistic"].eq(statistic)]
        if part.empty:
            continue
        frames.append(stats.resi_ranks(part[["arch", "measure", "value"]].assign(test=test), "value", ["test", "arch"]))
    if not frames:
        return AnalysisResult(pd.DataFrame(), "no quality statistics to rank")
    ranked = pd.concat(frames, ignore_index=True)
    table = stats.aggregate_ranks(ranked, ["arch"])
    boot = stats.rank_score_bootstrap(ranked, ["arch"], n_boot=N_BOOT_RANKS, seed=SEED)
    table = _with_rank_uncertainty(table, boot)
    table["family"] = table["measure"].map(lambda m: measures.info(m).family)
    per_test = ranked.pivot_table(index="measure", columns="test", values="rank", aggfunc="mean")
    full = table.set_index("measure").join(per_test).reset_index()
    full.to_csv(ctx.table_path("ranks"), index=False)
    boot.differences.to_csv(ctx.table_path("rank_differences"), index=False)
    tests = [test for test in QUALITY if test in full.columns]
    ctx.table_path("ranks").with_suffix(".tex").write_text(  # the paper's appendix table (escaped: it compiles)
        full[["measure", "family", "rank_score", "rank_score_ci_low", "rank_score_ci_high", *tests]]
        .to_latex(index=False, float_format="%.1f", na_rep="--", escape=True))
    families = (full.assign(position=full["rank_score"].rank(method="average"))
                .groupby("family")["position"].agg(measures="size", mean_position="mean", best_position="min")
                .sort_values("mean_position").reset_index())
    ctx.table_path("ranks").with_suffix(".md").write_text(
        _markdown(full[["measure", "family", "rank_score", "rank_score_ci_low", "rank_score_ci_high", *tests]])
        + "\n" + _significance_statement(boot, len(full)) + "\n\n"
        + f"Position in the rank order by family (1 = best of {len(full)}; ties share the mean position):\n\n"
        + _markdown(families))
    _plot_ranks(ranked, table, ctx)
    ranked["domain"] = ranked["arch"].map(arch_domains(ctx.scores)).astype(object).fillna("unknown")
    by_domain = _ranks_by_domain(ranked, table, ctx)
    evaluations = pd.concat([
        table.melt(id_vars=["measure"], value_vars=["rank_score", "rank_score_ci_low", "rank_score_ci_high",
                                                    "median_rank", "mean_rank", "n_significantly_better_than",
                                                    "n_significantly_worse_than"],
                   var_name="statistic", value_name="value"),
        ranked.drop(columns="value").rename(columns={"rank": "value"}).assign(
            statistic=lambda d: "rank_" + d["test"])[["measure", "statistic", "value", "arch"]],
        by_domain,
    ], ignore_index=True)
    top = ", ".join(f"{r.measure} {r.rank_score:.1f}" for r in table.head(5).itertuples())
    bottom = ", ".join(f"{r.measure} {r.rank_score:.1f}" for r in table.tail(3).itertuples())
    by_family = ", ".join(f"{r.family} {r.mean_position:.1f}" for r in families.itertuples())
    n_significant = int(boot.differences["significant"].sum())
    return AnalysisResult(evaluations, f"{ranked['test'].nunique()} tests; best: {top}; worst: {bottom}; "
                                       f"mean position by family: {by_family}; {n_significant} of "
                                       f"{len(boot.differences)} pairwise rank-score differences significant")


def _with_rank_uncertainty(table: pd.DataFrame, boot: stats.RankBootstrap) -> pd.DataFrame:
    """``table`` (from :func:`stats.aggregate_ranks`) with the rank score's bootstrap interval after the score,
    and per measure how many measures it beats / loses to significantly (BH-adjusted, over all pairs)."""
    sig = boot.differences[boot.differences["significant"]]
    # rank score: lower is better, so a negative difference a - b means a beats b
    beats = pd.concat([sig.loc[sig["difference"] < 0, "measure_a"], sig.loc[sig["difference"] > 0, "measure_b"]])
    loses = pd.concat([sig.loc[sig["difference"] > 0, "measure_a"], sig.loc[sig["difference"] < 0, "measure_b"]])
    ci = boot.scores.set_index("measure")[["rank_score_ci_low", "rank_score_ci_high"]]
    out = table.join(ci, on="measure")
    out["n_significantly_better_than"] = out["measure"].map(beats.value_counts()).fillna(0).astype(int)
    out["n_significantly_worse_than"] = out["measure"].map(loses.value_counts()).fillna(0).astype(int)
    first = ["measure", "rank_score", "rank_score_ci_low", "rank_score_ci_high"]
    return out[first + [c for c in out.columns if c not in first]]


def _significance_statement(boot: stats.RankBootstrap, n_measures: int) -> str:
    """One paragraph: how the intervals were made and which differences are significant."""
    d = boot.differences
    sig = d[d["significant"]]
    scores = boot.scores.sort_values("rank_score", kind="stable")
    best = scores["measure"].iloc[0]
    beaten_by_best = int(((sig["measure_a"] == best) | (sig["measure_b"] == best)).sum())
    return (f"Rank-score intervals: {boot.level:.0%} percentile bootstrap ({boot.n_boot} replicates; tests resampled, "
            f"then each drawn test's architectures). {len(sig)} of {len(d)} pairwise differences between the "
            f"{n_measures} measures are significant (paired bootstrap, Benjamini-Hochberg over all pairs, "
            f"FDR 5%; `tables/rank_differences.csv`); the best-ranked measure, {best}, differs significantly "
            f"from {beaten_by_best} of the other {n_measures - 1}.")


def arch_domains(scores: pd.DataFrame) -> dict[str, str]:
    """Architecture -> domain of the data it was trained on, from the score rows (rows written before the
    ``domain`` column existed: from their dataset's registered domain). An architecture trained in several
    domains gets them joined with "+" (its cells then form a domain of their own)."""
    if "arch_a" not in scores or "dataset" not in scores:
        return {}
    domain = scores["domain"] if "domain" in scores else pd.Series(np.nan, index=scores.index, dtype=object)
    domain = domain.fillna(scores["dataset"].map(lambda d: DOMAINS.get(d, "unknown")))
    pairs = pd.DataFrame({"arch": scores["arch_a"].to_numpy(), "domain": domain.to_numpy()}).drop_duplicates()
    return {arch: "+".join(sorted(g["domain"])) for arch, g in pairs.groupby("arch")}


def _ranks_by_domain(ranked: pd.DataFrame, table: pd.DataFrame, ctx: AnalysisContext) -> pd.DataFrame:
    """ReSi's aggregation per domain (the ranks are already per cell, i.e. per (test, architecture), and an
    architecture belongs to one domain): rank_score within each domain's cells and overall; written to
    ``tables/ranks_by_domain.{csv,md}`` with the Spearman correlation of the domains' rank orders, and
    ``figures/ranks_by_domain.png``. Returns the rows for the evaluations table."""
    domains = sorted(ranked["domain"].dropna().unique())
    columns = {d: stats.aggregate_ranks(ranked[ranked["domain"].eq(d)], ["arch"]).set_index("measure")["rank_score"]
               for d in domains}
    wide = pd.DataFrame(columns).reindex(table["measure"])
    wide["overall"] = table.set_index("measure")["rank_score"]
    wide.insert(0, "family", [measures.info(m).family for m in wide.index])
    wide = wide.reset_index()
    wide.to_csv(ctx.table_path("ranks_by_domain"), index=False)
    cells = ranked.groupby("domain")[["test", "arch"]].apply(lambda g: len(g.drop_duplicates()))
    agreement = wide[[*domains, "overall"]].corr(method="spearman")
    ctx.table_path("ranks_by_domain").with_suffix(".md").write_text(
        "rank_score per domain (ReSi's rule within the domain's (test, architecture) cells; 1 = best) and over "
        "all cells:\n\n" + _markdown(wide) + "\nCells per domain: "
        + ", ".join(f"{d} {int(n)}" for d, n in cells.items()) + ".\n\nSpearman correlation of the rank scores "
        "between domains (measures ranked in both):\n\n" + _markdown(agreement.reset_index(names="domain")))
    _plot_domains(wide, domains, ctx)
    return wide.melt(id_vars=["measure"], value_vars=[*domains, "overall"], var_name="domain", value_name="value") \
        .assign(statistic="rank_score_by_domain")


def _plot_domains(wide: pd.DataFrame, domains: list[str], ctx: AnalysisContext) -> None:
    """Heat map of the rank score per measure (rows, in overall order) and domain (columns)."""
    columns = [*domains, "overall"]
    values = wide[columns].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 3, 0.22 * len(wide) + 1.5))
    image = ax.imshow(values, aspect="auto", cmap="viridis_r")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(wide)), wide["measure"], fontsize=7)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            dark = v < np.nanmean(values)  # light cells (good ranks) get dark text
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6, color="black" if dark else "white")
    fig.colorbar(image, ax=ax, label="rank score (1 = best)")
    ax.set_title("Rank score per domain (ReSi rule)")
    fig.tight_layout()
    fig.savefig(ctx.figure_path("ranks_by_domain"), dpi=110)
    plt.close(fig)


def _markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table, numbers to one decimal (as pasted into the README)."""
    def cell(v) -> str:
        if isinstance(v, float):
            return "--" if np.isnan(v) else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _plot_ranks(ranked: pd.DataFrame, table: pd.DataFrame, ctx: AnalysisContext) -> None:
    order = list(table["measure"])
    data = [ranked.loc[ranked["measure"].eq(m), "rank"].dropna().to_numpy() for m in order]
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(order) + 2), layout="constrained")
    ax.boxplot(data, orientation="horizontal", tick_labels=order, showfliers=True)
    y = np.arange(1, len(order) + 1)
    score = table["rank_score"].to_numpy()
    ax.errorbar(score, y, xerr=[score - table["rank_score_ci_low"], table["rank_score_ci_high"] - score],
                fmt="D", color="tab:red", ms=4, capsize=2, lw=1.2)
    ax.invert_yaxis()
    ax.set_xlabel("rank per (test, architecture); 1 = best")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("Measures ranked over all benchmark tests (ReSi rule)\n"
                 "boxes: rank per cell; red: rank score with 95% bootstrap interval", fontsize=9)
    fig.savefig(ctx.figure_path("ranks"), dpi=110)
    plt.close(fig)
