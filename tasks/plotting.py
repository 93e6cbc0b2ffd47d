"""Figure helpers shared by the analyses: measures are many (up to 59), so per-measure curves are drawn
as heatmaps (one row per measure, grouped and labelled by family) rather than as dozens of lines in
repeating colours; every figure uses constrained layout so labels, legends and colour bars are not
clipped."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

import measures  # noqa: E402

if TYPE_CHECKING:
    from tasks.base import AnalysisContext


def family(measure: str) -> str:
    """The measure's family ("other" for a name the registry does not know, e.g. a removed measure)."""
    return measures.info(measure).family if measure in measures.names() else "other"


def by_family(names: list[str]) -> list[str]:
    """Measure names ordered by family (registry order of families), then by name."""
    order = {f: i for i, f in enumerate(measures.FAMILIES)}
    return sorted(names, key=lambda m: (order.get(family(m), len(order)), m))


def figure(n_cols: int, n_rows_of_measures: int, width_per_col: float = 5.5, extra_height: float = 1.6,
           **kwargs) -> tuple[plt.Figure, np.ndarray]:
    """A figure with ``n_cols`` heatmap panels side by side, tall enough for one readable row per measure."""
    return plt.subplots(1, n_cols, figsize=(width_per_col * n_cols, 0.2 * n_rows_of_measures + extra_height),
                        squeeze=False, layout="constrained", **kwargs)


def measure_heatmap(ax: Axes, table: pd.DataFrame, *, cmap: str = "viridis", norm: Normalize | None = None,
                    xlabel: str = "", xticklabels: list[str] | None = None, show_families: bool = True) -> plt.cm.ScalarMappable:
    """Draw ``table`` (index: measures, columns: the x axis) as a heatmap, rows grouped by family with a
    separating line and the family's name on the right. Returns the image for a colour bar."""
    colours = plt.get_cmap(cmap).with_extremes(bad="lightgrey")  # NaN: no value
    if table.empty:  # e.g. no finite value at all: say so instead of drawing an empty grid
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return plt.cm.ScalarMappable(norm=norm, cmap=colours)
    table = table.loc[by_family(list(table.index))]
    values = table.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=colours, norm=norm, interpolation="nearest")
    ax.set_yticks(range(len(table)), table.index, fontsize=7)
    labels = xticklabels if xticklabels is not None else [f"{c:g}" if isinstance(c, float) else str(c) for c in table.columns]
    ax.set_xticks(range(table.shape[1]), labels, fontsize=7, rotation=45 if len(labels) > 6 else 0,
                  ha="right" if len(labels) > 6 else "center")
    ax.set_xlabel(xlabel)
    if show_families:
        families = [family(m) for m in table.index]
        edges = [i for i in range(1, len(families)) if families[i] != families[i - 1]]
        for edge in edges:
            ax.axhline(edge - 0.5, color="white", lw=1.5)
        starts = [0, *edges]
        ends = [*edges, len(families)]
        right = ax.secondary_yaxis("right")
        right.set_yticks([(s + e - 1) / 2 for s, e in zip(starts, ends)], [families[s] for s in starts], fontsize=7)
        right.tick_params(length=0)
    return image


def save(fig: plt.Figure, ctx: AnalysisContext, name: str, *, dpi: int = 120,
         rect: tuple[float, float, float, float] | None = None, tight: bool = True) -> Path:
    """Write ``figures/<name>.png`` of the sweep and close the figure; return the path.

    A figure without a layout engine is laid out with ``tight_layout`` (``rect`` keeps room for a suptitle or a
    figure legend; ``tight=False`` for axes placed by hand); ``bbox_inches="tight"`` then fits the saved image
    to whatever sticks out (a colour bar's label, a legend outside the axes), so nothing is clipped."""
    if tight and fig.get_layout_engine() is None:
        fig.tight_layout(rect=rect) if rect is not None else fig.tight_layout()
    path = ctx.figure_path(name)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path
