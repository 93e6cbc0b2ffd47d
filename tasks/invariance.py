"""Invariance: apply known transforms to real representations and see which measures move.

Takes the representations of two models of the zoo (two seeds of the first architecture, or a model
and its perturbed copy), applies to the second one an orthogonal rotation, an isotropic scaling, a
neuron permutation, a translation, an invertible linear map and an anisotropic (diagonal) scaling, and
reports for every representational measure the relative change |m(X, T(Y)) − m(X, Y)| / |m(X, Y)|.
A row contradicts the metadata when a declared invariance moves the value (> 1e-6 relative), or an
undeclared one leaves it unchanged (possible for special data, so it is flagged, not failed).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import ortho_group  # noqa: E402

import measures  # noqa: E402
from tasks.base import AnalysisContext, AnalysisResult, analysis, representational_measures, standard_rows  # noqa: E402
from tasks.robustness import last_hidden_layer  # noqa: E402

#: transform name -> the invariance class that covers it
TRANSFORMS = {
    "orthogonal": "orthogonal",
    "isotropic_scaling": "isotropic_scaling",
    "permutation": "permutation",
    "translation": "translation",
    "invertible_linear": "invertible_linear",
    "anisotropic_scaling": "invertible_linear",
}
MAX_ROWS = 300  # probe rows used (seeded subsample): keeps the O(N²) measures quick
TOLERANCE = 1e-6


def apply(transform: str, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = y.shape[1]
    if transform == "orthogonal":
        return y @ ortho_group.rvs(d, random_state=rng)
    if transform == "isotropic_scaling":
        return 2.5 * y
    if transform == "permutation":
        return y[:, rng.permutation(d)]
    if transform == "translation":
        return y + 3.0 * y.std() * rng.standard_normal(d)
    if transform == "invertible_linear":
        return y @ (ortho_group.rvs(d, random_state=rng) @ np.diag(np.geomspace(0.3, 3.0, d)) @ ortho_group.rvs(d, random_state=rng))
    if transform == "anisotropic_scaling":
        return y * np.geomspace(0.3, 3.0, d)
    raise ValueError(f"unknown transform {transform!r}; valid: {sorted(TRANSFORMS)}")


def _source_pairs(scores: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """(arch, model_a, model_b, layer) per architecture: the lowest seed pair, else the mildest perturbation."""
    out = []
    ok = standard_rows(scores)
    # only rows of representational measures name layers with representations (not "output", "weights")
    ok = ok[ok["status"].eq("ok") & ok["measure"].isin(measures.names(inputs="representations"))]
    for arch, g in ok.groupby("arch_a"):
        seeds = g[g["pair_type"].eq("seed")].sort_values(["seed_a", "seed_b"])
        pert = g[g["pair_type"].eq("perturbation")].sort_values(["scale_b", "seed_a"])
        src = seeds if not seeds.empty else pert
        if src.empty:
            continue
        first = src.iloc[0]
        # the layers of this very pair: one architecture name can cover several depths (sweep=cross_model)
        own = src[src["model_a"].eq(first["model_a"]) & src["model_b"].eq(first["model_b"])]
        layer = last_hidden_layer(sorted(own["layer_a"].unique()))
        out.append((arch, first["model_a"], first["model_b"], layer))
    return out


@analysis("invariance", reads_previous=False)
def invariance(ctx: AnalysisContext) -> AnalysisResult:
    sources = _source_pairs(ctx.scores)
    chosen = representational_measures(ctx.scores)
    if not sources or not chosen:
        return AnalysisResult(pd.DataFrame(), "no representational measures or model pairs in this sweep")
    params = ctx.measure_params(chosen)
    rows = []
    for arch, key_a, key_b, layer in sources:
        rng = np.random.default_rng(0)
        x = ctx.representations(key_a)[f"rep/{layer}"].astype(np.float64)
        y = ctx.representations(key_b)[f"rep/{layer}"].astype(np.float64)
        keep = np.sort(rng.choice(x.shape[0], size=min(MAX_ROWS, x.shape[0]), replace=False))
        x, y = x[keep], y[keep]
        moved = {t: apply(t, y, np.random.default_rng(i))
                 for i, t in enumerate(TRANSFORMS)}
        for name in chosen:
            info = measures.info(name)
            try:
                base = measures.compute(name, x, y, **params[name])
            except ValueError as exc:
                rows.append({"arch": arch, "layer": layer, "measure": name, "transform": "none",
                             "statistic": "relative_change", "value": np.nan, "declared": False,
                             "contradicts": False, "note": str(exc)})
                continue
            for transform, y_t in moved.items():
                declared = TRANSFORMS[transform] in info.invariances
                try:
                    value = measures.compute(name, x, y_t, **params[name])
                    change = abs(value - base) / max(abs(base), 1e-12)
                    note = ""
                except ValueError as exc:
                    change, note = np.nan, str(exc)
                contradicts = bool(np.isfinite(change) and (change > TOLERANCE) == declared)
                rows.append({"arch": arch, "layer": layer, "measure": name, "transform": transform,
                             "statistic": "relative_change", "value": change, "declared": declared,
                             "contradicts": contradicts, "note": note})
    evaluations = pd.DataFrame(rows)
    evaluations.to_csv(ctx.table_path("invariance"), index=False)
    figure = _plot(evaluations, ctx)
    bad = evaluations[evaluations["contradicts"] & evaluations["declared"]]
    flagged = evaluations[evaluations["contradicts"] & ~evaluations["declared"]]
    summary = (f"{evaluations['measure'].nunique()} measures x {len(TRANSFORMS)} transforms: "
               f"{len(bad)} declared invariances violated"
               + (f" ({', '.join(sorted(set(bad['measure'] + ':' + bad['transform'])))})" if len(bad) else "")
               + f", {len(flagged)} undeclared transforms left the value unchanged")
    return AnalysisResult(evaluations, summary, [figure])


def _plot(evaluations: pd.DataFrame, ctx: AnalysisContext):
    data = evaluations[evaluations["transform"].ne("none")]
    archs = sorted(data["arch"].unique())
    n_measures = data["measure"].nunique()
    fig, axes = plt.subplots(1, len(archs), figsize=(5 * len(archs), 0.22 * n_measures + 2), squeeze=False,
                             layout="constrained")
    for ax, arch in zip(axes[0], archs):
        part = data[data["arch"].eq(arch)]
        grid = part.pivot_table(index="measure", columns="transform", values="value", aggfunc="first")
        grid = grid[[t for t in TRANSFORMS if t in grid.columns]]
        shown = np.log10(grid.to_numpy(dtype=float).clip(1e-16, None))
        im = ax.imshow(shown, aspect="auto", cmap="viridis", vmin=-16, vmax=1)
        ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=7)
        flags = part.set_index(["measure", "transform"])
        for i, m in enumerate(grid.index):
            for j, t in enumerate(grid.columns):
                if (m, t) in flags.index and bool(flags.loc[(m, t), "declared"]):
                    ax.text(j, i, "x" if bool(flags.loc[(m, t), "contradicts"]) else "·", ha="center",
                            va="center", color="red" if bool(flags.loc[(m, t), "contradicts"]) else "white")
        ax.set_title(f"{arch}: log10 relative change (·: declared invariant)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.6)
    path = ctx.figure_path("invariance")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
