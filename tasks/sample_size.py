"""How do scores depend on the number of inputs N and the dimension D? (Klabunde et al.'s Figure 5)

Every representational measure of the sweep (those its scores hold, each with its own defaults) is
computed on

* **independent inputs**: two independent standard Gaussian N x D matrices (nothing shared: the value
  a measure gives to unrelated representations), for N in ``N_GRID`` and D in ``D_GRID``;
* **a real pair and its shuffled baseline**: the final hidden layers of the first seed pair of the first
  architecture in the sweep (alphabetically), on N probe inputs drawn without replacement (same rows for both models),
  and the same with the rows of the second model shuffled (the pairing destroyed, each geometry kept).

Where the real pair and its shuffled baseline give the same value, the score at that N says nothing
about the pair. Biased vs debiased CKA: linear CKA of independent Gaussian inputs for N up to 4096 and
D in ``CKA_D`` (mean of ``CKA_REPEATS`` draws), and the smallest N at which biased CKA falls below 0.1
(debiased CKA is centred on 0 at every N).

Outputs: ``tables/sample_size.csv`` (measure, family, source, n, d, value, status),
``tables/cka_bias.csv``, ``figures/sample_size.png`` (small multiples, grouped by family) and
``figures/cka_bias.png``. The topology family runs up to N = 128 only (``MAX_N``: seconds per call at
N = 512). Cost: 53 s CPU on the default benchmark (measured on a loaded 2-core machine; ``cpu_s`` in the
table gives each call's share); ``N_GRID`` and ``MAX_N`` are the knobs.
"""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import measures  # noqa: E402
from tasks import plotting  # noqa: E402
from tasks.base import AnalysisContext, AnalysisResult, analysis, representational_measures, seed_pairs  # noqa: E402
from tasks.robustness import last_hidden_layer  # noqa: E402

N_GRID = (32, 128, 512)
D_GRID = (8, 64)
CKA_N = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
CKA_D = (16, 64, 256)
CKA_REPEATS = 5
CKA_THRESHOLD = 0.1
SEED = 0
#: families computed only up to this N (the topology measures cost seconds per call at N = 512)
MAX_N = {"topology": 128}


def _value(name: str, x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    try:
        return measures.compute(name, x, y), "ok"
    except measures.UndefinedMeasureError as exc:
        return float("nan"), f"undefined: {exc}"


def independent_inputs(n: int, d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two independent standard Gaussian N x D matrices."""
    return rng.standard_normal((n, d)), rng.standard_normal((n, d))


def cka_bias_table(n_grid=CKA_N, d_grid=CKA_D, repeats: int = CKA_REPEATS, seed: int = SEED) -> pd.DataFrame:
    """Mean biased and debiased linear CKA of independent Gaussian inputs per (N, D)."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in d_grid:
        for n in n_grid:
            draws = [independent_inputs(n, d, rng) for _ in range(repeats)]
            rows.append({"n": n, "d": d,
                         "cka_linear": np.mean([measures.compute("cka_linear", x, y) for x, y in draws]),
                         "cka_linear_debiased": np.mean([measures.compute("cka_linear_debiased", x, y) for x, y in draws])})
    return pd.DataFrame(rows)


def first_n_below(table: pd.DataFrame, column: str, threshold: float) -> dict[int, float]:
    """Per D, the smallest N of the grid from which on ``column`` stays below ``threshold`` (NaN: never)."""
    out = {}
    for d, g in table.groupby("d"):
        g = g.sort_values("n")
        above = np.flatnonzero(g[column].to_numpy() >= threshold)
        if len(above) == 0:
            out[d] = float(g["n"].iloc[0])
        elif above[-1] + 1 < len(g):
            out[d] = float(g["n"].iloc[above[-1] + 1])
        else:
            out[d] = float("nan")
    return out


def _real_pairs(ctx: AnalysisContext) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per architecture, the final hidden layer of its first seed pair (from the representation cache)."""
    seeds = seed_pairs(ctx.scores)
    seeds = seeds[seeds["layer_index_a"].ge(0) & seeds["layer_a"].eq(seeds["layer_b"])]
    out = {}
    for arch, g in seeds.groupby("arch_a"):
        layer = last_hidden_layer(sorted(g["layer_a"].unique()))
        first = g[g["layer_a"].eq(layer)].sort_values(["seed_a", "seed_b"]).iloc[0]
        try:
            out[arch] = (ctx.representations(first["model_a"])[f"rep/{layer}"],
                         ctx.representations(first["model_b"])[f"rep/{layer}"])
        except FileNotFoundError:
            continue
    return out


@analysis("sample_size", reads_previous=False)
def sample_size(ctx: AnalysisContext) -> AnalysisResult:
    names = representational_measures(ctx.scores)
    rng = np.random.default_rng(SEED)
    inputs = []  # (source, n, d, x, y)
    for d in D_GRID:
        for n in N_GRID:
            inputs.append(("independent", n, d, *independent_inputs(n, d, rng)))
    real = _real_pairs(ctx)
    for arch, (x, y) in [(a, real[a]) for a in sorted(real)[:1]]:  # the first architecture: keeps the cost small
        for n in [m for m in N_GRID if m <= len(x)]:
            rows = rng.choice(len(x), size=n, replace=False)
            shuffled = rng.permutation(rows)
            inputs.append((f"{arch} seed pair", n, x.shape[1], x[rows], y[rows]))
            inputs.append((f"{arch} shuffled", n, x.shape[1], x[rows], y[shuffled]))
    records = []
    for source, n, d, x, y in tqdm(inputs, desc="sample size", leave=False):
        for name in names:
            if n > MAX_N.get(measures.info(name).family, n):
                continue
            start = time.process_time()
            value, status = _value(name, x, y)
            records.append({"measure": name, "family": measures.info(name).family, "source": source, "n": n, "d": d,
                            "value": value, "status": status, "cpu_s": time.process_time() - start})
    table = pd.DataFrame(records, columns=["measure", "family", "source", "n", "d", "value", "status", "cpu_s"])
    table.to_csv(ctx.table_path("sample_size"), index=False)
    bias = cka_bias_table(CKA_N, CKA_D, CKA_REPEATS, SEED)  # linear CKA's bias, whatever the sweep measured
    below = first_n_below(bias, "cka_linear", CKA_THRESHOLD)
    bias.to_csv(ctx.table_path("cka_bias"), index=False)
    figures = [_plot(table, ctx)] if names else []
    figures.append(_plot_bias(bias, below, ctx))
    evaluations = pd.concat([
        # cpu_s stays in the table only: evaluations are results and must not depend on the machine or its load
        table.drop(columns=["family", "cpu_s"]).assign(statistic=lambda t: "value_" + t["source"].str.replace(" ", "_")),
        pd.DataFrame([{"measure": "cka_linear", "statistic": f"first_n_below_{CKA_THRESHOLD:g}", "d": d, "value": v}
                      for d, v in below.items()]),
    ], ignore_index=True)
    summary = ("biased CKA of independent inputs falls below 0.1 from N = "
               + ", ".join(f"{v:.0f} (D = {d})" for d, v in below.items())
               + f"; {table['measure'].nunique()} measures x {len(inputs)} inputs")
    return AnalysisResult(evaluations, summary, figures)


def _plot(table: pd.DataFrame, ctx: AnalysisContext):
    order = table[["family", "measure"]].drop_duplicates().sort_values(["family", "measure"])
    # up to 7 panels a row; a small sweep's row is as wide as its panels plus the legend's spare panel
    n_cols = min(7, len(order) + 1)
    n_rows = int(np.ceil(len(order) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.1 * n_rows), squeeze=False)
    families = list(dict.fromkeys(order["family"]))
    colour = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    archs = sorted({s.split(" ")[0] for s in table["source"] if s != "independent"})
    styles = {}
    for i, arch in enumerate(archs):
        styles[f"{arch} seed pair"] = dict(color="black", ls="-" if i == 0 else "-.", marker="o", ms=2)
        styles[f"{arch} shuffled"] = dict(color="grey", ls="-" if i == 0 else "-.", marker="x", ms=3)
    for ax, (_, m) in zip(axes.flat, order.iterrows()):
        part = table[table["measure"].eq(m["measure"])]
        for d, ls in zip(D_GRID, (":", "--")):
            g = part[part["source"].eq("independent") & part["d"].eq(d)].sort_values("n")
            ax.plot(g["n"], g["value"], ls=ls, color=colour[m["family"]], label=f"independent, D = {d}")
        for source, style in styles.items():
            g = part[part["source"].eq(source)].sort_values("n")
            ax.plot(g["n"], g["value"], label=source, **style)
        ax.set_xscale("log")
        ax.set_xticks(N_GRID, [str(n) for n in N_GRID])
        ax.minorticks_off()
        ax.set_title(f"{m['measure']} ({m['family']})", fontsize=7, color=colour[m["family"]])
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(order):]:
        ax.axis("off")
    # one legend, drawn in dim grey for the independent inputs (their colour in a panel is its family's)
    handles = [Line2D([], [], ls=ls, color="dimgrey", label=f"independent, D = {d} (family colour)")
               for d, ls in zip(D_GRID, (":", "--"))]
    handles += [Line2D([], [], label=source, **style) for source, style in styles.items()]
    spare = list(axes.flat)[len(order):]
    if spare:
        spare[0].legend(handles=handles, loc="center left", fontsize=8)
    else:
        fig.legend(handles=handles, loc="lower right", fontsize=8, ncol=2)
    fig.supxlabel("number of inputs N (log)", fontsize=9)
    fig.suptitle("Score vs N: independent Gaussian inputs (coloured), a real seed pair (black) and its shuffled "
                 "baseline (grey)", fontsize=10)
    return plotting.save(fig, ctx, "sample_size", dpi=110, rect=(0, 0.02, 1, 0.97))


def _plot_bias(bias: pd.DataFrame, below: dict[int, float], ctx: AnalysisContext):
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (d, g) in enumerate(bias.groupby("d")):
        c = plt.get_cmap("viridis")(i / max(1, bias["d"].nunique() - 1))
        ax.plot(g["n"], g["cka_linear"], marker="o", color=c, label=f"biased, D = {d} (< {CKA_THRESHOLD:g} from N = {below[d]:.0f})")
        ax.plot(g["n"], g["cka_linear_debiased"], marker="x", ls="--", color=c, label=f"debiased, D = {d}")
    ax.axhline(CKA_THRESHOLD, color="red", lw=0.8, ls=":", label=f"{CKA_THRESHOLD:g}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of inputs N")
    ax.set_ylabel(f"linear CKA of independent inputs (mean of {CKA_REPEATS})")
    ax.legend(fontsize=7)
    return plotting.save(fig, ctx, "cka_bias", dpi=120)
