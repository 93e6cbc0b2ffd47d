"""Are two trained solutions the same? Retrain a perturbed converged model and see where it lands.

The question the project grew from: train N seeds; perturb a converged model and retrain it; did
training return to the *same* solution or find a different one, and how would one tell? The sweep
(``conf/sweep/solutions.yaml``) makes warm-started models (``train.warm_start``: the converged model of
a seed, relative weight noise, then more epochs; 0 epochs = the perturbed copy, not retrained) and
compares every model with every other one. Per warm-start configuration, measure and layer:

* ``vs_origin``: the mean value between a warm-started model W and its origin O (same seed, no warm
  start); ``vs_other_seeds``: between W and the models of the other seeds; ``vs_start`` (retrained
  models): between W and its perturbed starting point; ``seed_pairs`` (configuration "none"): between
  two seeds, the scale of "a different solution".
* ``drift_in_seed_units``: |m(O, W) − m(O, O)| / mean |m(O, O') − m(O, O)| over seed pairs (the
  robustness task's unit): below 1, W is closer to its origin than another seed is.
* ``origin_closer_rate``: the fraction of (W, other seed s') in which W is closer to its own origin
  than to seed s' (1: always recognisably "its" solution).
* ``undone_fraction`` (retrained models): 1 − drift(O, W) / drift(O, P) with P the perturbed start: how
  much of the perturbation retraining undid (negative: it moved further away).

Distances are functional (disagreement, KL, Jensen-Shannon, total variation, earth mover's distance on
the class simplex, ...) and representational (whatever the sweep computed), read from the scores.

The map of models (Erhan et al., JMLR 2010): every model at every recorded checkpoint is one point, its
class probabilities on the ordered probe set concatenated into one vector (the models' files hold them,
recorded during training); t-SNE and metric MDS of the Euclidean distances between these vectors,
coloured by seed and by epoch (``figures/model_map.png``). ``map_nearest_base_is_origin``: the fraction
of warm-started models whose nearest converged seed model in this function space is their origin.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.spatial.distance import pdist, squareform  # noqa: E402
from sklearn.manifold import MDS, TSNE  # noqa: E402

import measures  # noqa: E402
from tasks import plotting  # noqa: E402
from tasks.base import AnalysisContext, AnalysisResult, analysis, standard_rows  # noqa: E402
from tasks.robustness import identity_value  # noqa: E402
from tasks.zoo.cache import ModelSpec, Variant, ZooCache  # noqa: E402

SEED = 0  # t-SNE and MDS initialisation
NONE = "none"  # the warm-start label of models trained from scratch


def warm_start_label(warm_start: dict | None) -> str:
    if warm_start is None:
        return NONE
    return f"scale={warm_start['scale']:g}, epochs={warm_start['epochs']}" + (
        f", seed={warm_start['seed']}" if warm_start["seed"] else "")


def sweep_models(scores: pd.DataFrame, cache: ZooCache) -> dict[str, ModelSpec]:
    """Variant key -> model spec of every unperturbed model in the scores that the cache holds."""
    keys = set(scores.loc[scores["scale_a"].eq(0), "model_a"]) | set(scores.loc[scores["scale_b"].eq(0), "model_b"])
    found = {}
    for spec in cache.specs():
        key = Variant(spec).key
        if key in keys:
            found[key] = spec
    return found


def family_key(spec: ModelSpec) -> str:
    """The configuration a model shares with the other seeds and its warm starts."""
    origin = spec.origin or spec
    return json.dumps({**origin.as_dict(), "seed": None}, sort_keys=True)


class Lookup:
    """Values of the scores by (measure, layer, model a, model b); symmetric measures both ways."""

    def __init__(self, rows: pd.DataFrame):
        self.values: dict[tuple, float] = {}
        for r in rows[["measure", "layer_a", "layer_b", "model_a", "model_b", "value"]].itertuples(index=False):
            if r.layer_a != r.layer_b:
                continue
            self.values[(r.measure, r.layer_a, r.model_a, r.model_b)] = r.value
            if measures.info(r.measure).symmetric:
                self.values.setdefault((r.measure, r.layer_a, r.model_b, r.model_a), r.value)

    def get(self, measure: str, layer: str, a: str, b: str) -> float:
        return self.values.get((measure, layer, a, b), np.nan)


def comparisons(rows: pd.DataFrame, specs: dict[str, ModelSpec]) -> pd.DataFrame:
    """One record per (warm-started or base model, comparison, measure, layer): ``a`` is the reference
    (origin, other seed, perturbed start), ``b`` the compared model."""
    lookup = Lookup(rows)
    cells = rows.loc[rows["layer_a"].eq(rows["layer_b"]), ["measure", "layer_a"]].drop_duplicates()
    by_family: dict[str, dict[str, ModelSpec]] = {}
    for key, spec in specs.items():
        by_family.setdefault(family_key(spec), {})[key] = spec
    records = []
    for members in by_family.values():
        bases = {spec.seed: key for key, spec in members.items() if spec.warm_start is None}
        keys_by_spec = {spec.key: key for key, spec in members.items()}
        arch = next(iter(members.values())).arch["name"]
        jobs = []
        for s, t in ((s, t) for s in bases for t in bases if s < t):
            jobs.append((NONE, "seed_pairs", bases[s], bases[t], s))
        for key, spec in members.items():
            if spec.warm_start is None or spec.seed not in bases:
                continue
            label = warm_start_label(spec.warm_start)
            jobs.append((label, "vs_origin", bases[spec.seed], key, spec.seed))
            jobs += [(label, "vs_other_seeds", bases[t], key, spec.seed) for t in bases if t != spec.seed]
            start = ModelSpec(spec.arch, spec.data, {**spec.train, "warm_start": {**spec.warm_start, "epochs": 0}},
                              spec.intervention, spec.seed)
            if spec.warm_start["epochs"] > 0 and start.key in keys_by_spec:
                jobs.append((label, "vs_start", keys_by_spec[start.key], key, spec.seed))
        for label, comparison, a, b, seed in jobs:
            for cell in cells.itertuples(index=False):
                value = lookup.get(cell.measure, cell.layer_a, a, b)
                if np.isfinite(value):
                    records.append({"arch": arch, "warm_start": label, "comparison": comparison, "seed": seed,
                                    "measure": cell.measure, "layer": cell.layer_a, "a": a, "b": b, "value": value})
    table = pd.DataFrame(records)
    if not table.empty:
        table["drift"] = (table["value"] - table["measure"].map(identity_value)).abs()
    return table


def statistics(table: pd.DataFrame) -> pd.DataFrame:
    """The task's statistics per (arch, warm start, measure, layer); see the module docstring."""
    keys = ["arch", "measure", "layer"]
    unit = table[table["comparison"].eq("seed_pairs")].groupby(keys)["drift"].mean().rename("unit")
    means = table.groupby([*keys, "warm_start", "comparison"])["value"].agg(value="mean", n="size").reset_index()
    out = [means.assign(statistic="mean_" + means["comparison"]).drop(columns="comparison")]
    for (arch, measure, layer, label), g in table[table["warm_start"].ne(NONE)].groupby([*keys, "warm_start"]):
        cell = {"arch": arch, "measure": measure, "layer": layer, "warm_start": label}
        origin = g[g["comparison"].eq("vs_origin")].set_index("seed")["drift"]
        others = g[g["comparison"].eq("vs_other_seeds")]
        seed_unit = unit.get((arch, measure, layer), np.nan)
        rows = [("drift_in_seed_units", origin.mean() / seed_unit if seed_unit > 0 else np.nan, len(origin))]
        closer = (others["seed"].map(origin) < others["drift"]).where(others["seed"].isin(origin.index))
        rows.append(("origin_closer_rate", closer.mean(), int(closer.notna().sum())))
        start = g[g["comparison"].eq("vs_start")]
        if not start.empty:
            # the perturbed start's own distance to the origin: its 0-epoch sibling's vs_origin drift
            perturbed = table[(table["arch"] == arch) & (table["measure"] == measure) & (table["layer"] == layer)
                              & table["comparison"].eq("vs_origin")]
            by_model = perturbed.set_index("b")["drift"]
            reached = start.set_index("seed")["a"].map(by_model)
            undone = 1.0 - origin / reached.where(reached > 0)
            rows.append(("undone_fraction", undone.mean(), int(undone.notna().sum())))
        out.append(pd.DataFrame([{**cell, "statistic": s, "value": v, "n": n} for s, v, n in rows]))
    return pd.concat(out, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# The map of models and checkpoints
# --------------------------------------------------------------------------------------------------


def trajectories(specs: dict[str, ModelSpec], cache: ZooCache, ctx: AnalysisContext) -> pd.DataFrame:
    """One row per (model, recorded checkpoint) with its concatenated probe probabilities. Models
    trained before probe histories were recorded contribute their final predictions only."""
    rows = []
    for key, spec in specs.items():
        history = cache.probe_history(spec)
        recorded = history is not None
        if not recorded:
            probabilities = ctx.representations(key)["probabilities"]
            final = spec.warm_start["epochs"] if spec.warm_start else spec.train["epochs"]
            history = (np.array([final]), probabilities[None].astype(np.float32))
        last = int(history[0].max())
        for epoch, probs in zip(*history):
            rows.append({"arch": spec.arch["name"], "model": key, "seed": spec.seed,
                         "warm_start": warm_start_label(spec.warm_start), "epoch": int(epoch),
                         "final": int(epoch) == last, "recorded": recorded, "vector": probs.reshape(-1)})
    return pd.DataFrame(rows)


def embed(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """t-SNE and metric MDS coordinates of the points, from their Euclidean distances."""
    distances = squareform(pdist(vectors))
    perplexity = float(min(30.0, max(2.0, (len(vectors) - 1) / 3)))
    tsne = TSNE(n_components=2, metric="precomputed", init="random", perplexity=perplexity,
                random_state=SEED).fit_transform(distances)
    mds = MDS(n_components=2, metric="precomputed", init="classical_mds", random_state=SEED).fit_transform(distances)
    return tsne, mds


def nearest_base_is_origin(points: pd.DataFrame) -> pd.DataFrame:
    """Per (arch, warm start): how often the nearest converged seed model of a warm-started model's final
    predictions (Euclidean, in function space) is its own origin."""
    final = points[points["final"]]
    rows = []
    for arch, g in final.groupby("arch"):
        bases = g[g["warm_start"].eq(NONE)]
        if len(bases) < 2:
            continue
        base_vectors = np.stack(bases["vector"].to_list())
        for label, w in g[g["warm_start"].ne(NONE)].groupby("warm_start"):
            hits = []
            for r in w.itertuples():
                nearest = np.linalg.norm(base_vectors - r.vector, axis=1).argmin()
                hits.append(bases["seed"].iloc[nearest] == r.seed)
            rows.append({"arch": arch, "warm_start": label, "measure": "function_space_euclidean", "layer": "output",
                         "statistic": "map_nearest_base_is_origin", "value": float(np.mean(hits)), "n": len(hits)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------------


@analysis("solutions", reads_previous=False)
def solutions(ctx: AnalysisContext) -> AnalysisResult:
    scores = standard_rows(ctx.scores)
    if "warm_start_b" not in scores.columns or scores["warm_start_b"].isna().all():
        return AnalysisResult(pd.DataFrame(), "no warm-started models in this sweep (train.warm_start)")
    rows = scores[scores["status"].eq("ok") & scores["pair_type"].isin(["seed", "group"])
                  & scores["scale_a"].eq(0) & scores["scale_b"].eq(0)]
    cache = ZooCache(ctx.cache_dir)
    specs = sweep_models(rows, cache)
    table = comparisons(rows, specs)
    if table.empty or not table["comparison"].eq("vs_origin").any():
        return AnalysisResult(pd.DataFrame(), "no warm-started model is compared with its origin (are the "
                                              "warm starts a compare.groups axis?)")
    evaluations = statistics(table)
    figures = [_plot_distances(evaluations, ctx)]
    points = trajectories(specs, cache, ctx)
    if len(points) >= 5:
        evaluations = pd.concat([evaluations, nearest_base_is_origin(points)], ignore_index=True)
        figures.append(_plot_map(points, specs, ctx))
    evaluations = evaluations[["arch", "warm_start", "measure", "layer", "statistic", "value", "n"]]
    evaluations.to_csv(ctx.table_path("solutions"), index=False)
    missing = int((~points.drop_duplicates("model")["recorded"]).sum()) if len(points) else 0
    return AnalysisResult(evaluations, _summary(evaluations, missing), figures)


def _summary(evaluations: pd.DataFrame, missing: int) -> str:
    ev = evaluations
    parts = []
    dis = ev[ev["measure"].eq("disagreement") & ev["statistic"].isin(["mean_vs_origin", "mean_seed_pairs"])]
    for arch, g in dis.groupby("arch"):
        seeds = g.loc[g["statistic"].eq("mean_seed_pairs"), "value"].mean()
        each = ", ".join(f"{r.warm_start}: {r.value:.3f}" for r in g[g["statistic"].eq("mean_vs_origin")].itertuples())
        parts.append(f"{arch}: disagreement with the origin {each} (between seeds {seeds:.3f})")
    near = ev[ev["statistic"].eq("map_nearest_base_is_origin")]
    if not near.empty:
        parts.append("nearest seed model in function space is the origin: "
                     + ", ".join(f"{r.arch} {r.warm_start} {r.value:.0%}" for r in near.itertuples()))
    if missing:
        parts.append(f"{missing} models have no recorded checkpoints (trained before they were recorded)")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def _plot_distances(evaluations: pd.DataFrame, ctx: AnalysisContext):
    drift = evaluations[evaluations["statistic"].eq("drift_in_seed_units")]
    archs = sorted(drift["arch"].unique())
    labels = sorted(drift["warm_start"].unique(), key=_label_order)
    rows = max(len(drift[drift["arch"].eq(a)][["measure", "layer"]].drop_duplicates()) for a in archs)
    fig, axes = plt.subplots(1, len(archs), figsize=(7 * len(archs), 0.32 * rows + 2.5), squeeze=False)
    markers = "ovs^D<>p*h"
    for ax, arch in zip(axes[0], archs):
        part = drift[drift["arch"].eq(arch)]
        cells = part[["measure", "layer"]].drop_duplicates().sort_values(["layer", "measure"])
        index = pd.MultiIndex.from_frame(cells)
        for i, label in enumerate(labels):
            values = part[part["warm_start"].eq(label)].set_index(["measure", "layer"])["value"].reindex(index)
            ax.scatter(values.to_numpy(dtype=float), np.arange(len(cells)), marker=markers[i % len(markers)],
                       label=label, s=28, color=f"C{i}")
        ax.axvline(1.0, color="grey", ls=":", lw=1)
        ax.text(1.05, 1.0, "another seed", color="grey", fontsize=8, va="bottom", transform=ax.get_xaxis_transform())
        ax.set_yticks(np.arange(len(cells)), [f"{m} ({l})" for m, l in cells.itertuples(index=False)], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("symlog", linthresh=1e-2)
        ax.set_xlim(left=0)
        ax.set_xlabel("distance to the origin model, in units of a seed pair")
        ax.set_title(f"{arch}: where did the perturbed / retrained model land?")
        ax.legend(fontsize=7, loc="lower right")
    return plotting.save(fig, ctx, "solutions", dpi=110)


def _label_order(label: str) -> tuple:
    """"none" first, then by scale, the perturbed copy (0 epochs) before its retrained model."""
    if label == NONE:
        return (0.0, 0, "")
    fields = dict(part.split("=") for part in label.split(", "))
    return (float(fields["scale"]), int(fields["epochs"]), label)


def _plot_map(points: pd.DataFrame, specs: dict[str, ModelSpec], ctx: AnalysisContext):
    archs = sorted(points["arch"].unique())
    jumps: dict[str, list[tuple[int, int]]] = {}
    fig, axes = plt.subplots(2 * len(archs), 2, figsize=(12, 10.5 * len(archs)), squeeze=False)
    labels = sorted(points["warm_start"].unique(), key=_label_order)
    markers = dict(zip(labels, "ov^sD<>p*h"))
    for i, arch in enumerate(archs):
        part = points[points["arch"].eq(arch)].reset_index(drop=True)
        coords = embed(np.stack(part["vector"].to_list()))
        first = part[part["epoch"].eq(part.groupby("model")["epoch"].transform("min"))]
        last = {m: i for i, m in zip(part.index[part["final"]], part.loc[part["final"], "model"])}
        origins = {key: Variant(spec.origin).key for key, spec in specs.items() if spec.origin is not None}
        jumps[arch] = [(i, last[origins[m]]) for i, m in zip(first.index, first["model"])
                       if m in origins and origins[m] in last]
        for row, (method, xy) in enumerate(zip(("t-SNE", "MDS"), coords)):
            for col, colour_by in enumerate(("seed", "epoch")):
                ax = axes[2 * i + row][col]
                for _, traj in part.groupby("model"):
                    idx = traj.sort_values("epoch").index
                    ax.plot(xy[idx, 0], xy[idx, 1], color="0.8", lw=0.6, zorder=1)
                for start, origin in jumps.get(arch, []):  # the perturbation: origin's end -> warm start
                    ax.plot(xy[[origin, start], 0], xy[[origin, start], 1], color="0.6", lw=0.6, ls="--", zorder=1)
                for label in labels:
                    sel = part.index[part["warm_start"].eq(label)]
                    if colour_by == "seed":
                        colours = [f"C{s % 10}" for s in part.loc[sel, "seed"]]
                        art = ax.scatter(xy[sel, 0], xy[sel, 1], c=colours, marker=markers[label], s=18, zorder=2,
                                         label=label, edgecolors="none")
                    else:
                        art = ax.scatter(xy[sel, 0], xy[sel, 1], c=part.loc[sel, "epoch"], cmap="viridis",
                                         vmin=0, vmax=part["epoch"].max(), marker=markers[label], s=18, zorder=2,
                                         label=label, edgecolors="none")
                if colour_by == "epoch":
                    fig.colorbar(art, ax=ax, label="epoch of the model's own training run")
                ax.set_title(f"{arch}: {method} of probe predictions, colour = {colour_by}")
                ax.set_xticks([])
                ax.set_yticks([])
                legend = ax.legend(fontsize=7, title="warm start (marker)", title_fontsize=7)
                for handle in legend.legend_handles:
                    handle.set_color("0.3")
    fig.suptitle("Map of models and checkpoints (Erhan et al. 2010): each point is a model at one epoch, its "
                 "probe-set class probabilities concatenated;\nlines join checkpoints of one model, dashed lines a "
                 "converged model to its perturbed copy", fontsize=9)
    return plotting.save(fig, ctx, "model_map", dpi=100, rect=(0, 0, 1, 0.99))
