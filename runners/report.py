"""One self-contained static HTML page per sweep: ``results/<sweep>/report.html``.

The page shows the ranks with their bootstrap intervals, every table under ``tables/`` and every figure
under ``figures/`` (embedded as ``data:`` URIs, so the file can be mailed or archived alone), the card of
every measure in the scores (from :func:`measures.info`) and the provenance of the run (commits, library
versions, hosts, times, the Hydra configs of the runs). It is generic: an analysis that writes a new
table or figure appears without changes here. ``runners.analyze`` writes it after the analyses; run it
alone with ``python -m runners.report --sweep NAME``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import json
import platform
import subprocess
from pathlib import Path

import pandas as pd

import measures
from tasks.storage import read_parquet

#: rows of a table shown in the page; longer tables are cut there (the CSV beside it has them all)
MAX_ROWS = 500
#: Hydra ``multirun.yaml`` files shown, newest first (a composite sweep writes one per part and run)
MAX_CONFIGS = 12

CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #aaa; margin-top: 2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eee; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
.ci { color: #a00; }
.scroll { max-height: 480px; overflow: auto; display: inline-block; max-width: 100%; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-family: monospace; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 0.8em; }
.card { border: 1px solid #ccc; border-radius: 4px; padding: 0.5em 0.8em; font-size: 13px; }
.card h3 { margin: 0.2em 0; font-family: monospace; }
.card dt { font-weight: bold; float: left; clear: left; width: 7em; } .card dd { margin-left: 7.5em; }
pre { background: #f6f6f6; padding: 0.5em; overflow: auto; font-size: 12px; }
"""


def write_report(sweep_dir: Path, scores: pd.DataFrame | None = None) -> Path:
    """Write ``sweep_dir/report.html`` from the sweep's tables, figures and scores; return its path."""
    sweep_dir = Path(sweep_dir)
    if scores is None:
        scores = read_parquet(sweep_dir / "scores.parquet")
        if scores is None:
            raise FileNotFoundError(f"no scores.parquet under {sweep_dir}; run the sweep (or `python -m runners.collect`) first")
    tables = sorted((sweep_dir / "tables").glob("*.csv"))
    figures = sorted((sweep_dir / "figures").glob("*.png"))
    sections = [
        ("ranks", "Ranks", _ranks_section(sweep_dir, figures)),
        ("tables", "Tables", "".join(_table_section(path) for path in tables) or "<p>No tables.</p>"),
        ("figures", "Figures", "".join(_figure(path) for path in figures) or "<p>No figures.</p>"),
        ("measures", "Measures", _cards(scores)),
        ("provenance", "Provenance", _provenance(sweep_dir, scores)),
    ]
    models = len(set(scores["model_a"]) | set(scores["model_b"])) if len(scores) else 0
    page = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>simbench report: {html.escape(sweep_dir.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>simbench report: sweep <code>{html.escape(sweep_dir.name)}</code></h1>",
        f"<p>{len(scores)} score rows, {scores['measure'].nunique() if len(scores) else 0} measures, {models} models; "
        f"{len(tables)} tables, {len(figures)} figures. Generated {_now()} from <code>{html.escape(str(sweep_dir))}</code>.</p>",
        "<nav>" + "".join(f'<a href="#{key}">{title}</a>' for key, title, _ in sections) + "</nav>",
        *(f'<section id="{key}"><h2>{title}</h2>{body}</section>' for key, title, body in sections),
        "</body></html>",
    ]
    out = sweep_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text("\n".join(page), encoding="utf-8")
    tmp.replace(out)
    return out


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _html_table(frame: pd.DataFrame, table_id: str) -> str:
    shown = frame.head(MAX_ROWS)
    body = shown.to_html(index=False, table_id=table_id, na_rep="--", border=0, escape=True,
                         float_format=lambda v: f"{v:.4g}")
    note = (f"<p>First {MAX_ROWS} of {len(frame)} rows; the CSV has them all.</p>" if len(frame) > MAX_ROWS else "")
    return f'<div class="scroll">{body}</div>{note}'


def _ranks_section(sweep_dir: Path, figures: list[Path]) -> str:
    path = sweep_dir / "tables" / "ranks.csv"
    if not path.exists():
        return "<p>No ranks for this sweep (the ranks analysis needs the benchmark tests' results).</p>"
    ranks = pd.read_csv(path)
    parts = ["<p>ReSi's rule: per (test, architecture) cell, rank 1 = best, ties share the best rank; "
             "<code>rank_score</code> = mean over tests of the median rank over architectures. "
             '<span class="ci">rank_score_ci_low / _high</span>: 95% percentile bootstrap interval '
             "(tests resampled, then each drawn test's architectures).</p>"]
    differences = sweep_dir / "tables" / "rank_differences.csv"
    if differences.exists():
        d = pd.read_csv(differences)
        parts.append(f"<p>{int(d['significant'].sum())} of {len(d)} pairwise rank-score differences are significant "
                     "(paired bootstrap, Benjamini-Hochberg over all pairs, FDR 5%; table "
                     "<code>rank_differences</code> below).</p>")
    parts.append(_html_table(ranks, "ranks-table"))
    parts += [_figure(p) for p in figures if p.stem == "ranks"]
    return "".join(parts)


def _table_section(path: Path) -> str:
    frame = pd.read_csv(path)
    return (f'<details id="table-{html.escape(path.stem)}"{" open" if len(frame) <= 60 else ""}>'
            f"<summary><code>tables/{html.escape(path.name)}</code> ({len(frame)} rows, {frame.shape[1]} columns)"
            f"</summary>{_html_table(frame, 'tbl-' + path.stem)}</details>")


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.stem)
    return (f'<figure id="figure-{name}"><img alt="{name}" data-name="{name}" src="data:image/png;base64,{data}">'
            f"<figcaption>figures/{html.escape(path.name)}</figcaption></figure>")


def _cards(scores: pd.DataFrame) -> str:
    registered = set(measures.names())
    names = sorted(set(scores["measure"]) & registered) if len(scores) else []
    used = (scores.drop_duplicates("measure").set_index("measure")["params"]
            if len(scores) and "params" in scores.columns else pd.Series(dtype=object))
    cards = []
    for name in names:
        info = measures.info(name)
        fields = {
            "summary": info.summary, "family": info.family, "kind": info.kind, "range": str(info.range),
            "symmetric": str(info.symmetric), "metric": str(info.metric),
            "invariances": ", ".join(sorted(info.invariances)) or "none", "inputs": info.inputs,
            "defaults": json.dumps(info.params, default=str), "run with": str(used.get(name, "")),
            "cost": info.cost, "version": info.version, "reference": info.reference,
        }
        rows = "".join(f"<dt>{k}</dt><dd>{html.escape(str(v))}</dd>" for k, v in fields.items())
        cards.append(f'<div class="card" id="measure-{name}"><h3>{name}</h3><dl>{rows}</dl></div>')
    return f'<div class="cards">{"".join(cards)}</div>' if cards else "<p>No registered measure in the scores.</p>"


def _counts(scores: pd.DataFrame, column: str) -> str:
    if column not in scores.columns or not len(scores):
        return "--"
    counts = scores[column].astype(str).value_counts()
    return "; ".join(f"{html.escape(value)} ({n} rows)" for value, n in counts.items())


def _provenance(sweep_dir: Path, scores: pd.DataFrame) -> str:
    rows = {
        "git commit of the rows": _counts(scores, "git_commit"),
        "uncommitted changes": _counts(scores, "git_dirty"),
        "hosts": _counts(scores, "hostname"),
    }
    if "timestamp" in scores.columns and len(scores):
        rows["computed"] = f"{html.escape(str(scores['timestamp'].min()))} to {html.escape(str(scores['timestamp'].max()))}"
    rows["report written by"] = html.escape(f"commit {_git_head()}, Python {platform.python_version()}, {platform.node()}")
    parts = ["<table><tbody>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows.items())
             + "</tbody></table>"]
    if "versions" in scores.columns and len(scores):
        for versions, n in scores["versions"].value_counts().items():
            try:
                table = pd.Series(json.loads(versions), name="version").rename_axis("library").reset_index()
            except (TypeError, ValueError):
                table = pd.DataFrame({"versions": [versions]})
            parts.append(f"<h3>Library versions ({n} rows)</h3>{_html_table(table, 'versions')}")
    configs = sorted((sweep_dir.parent / "logs" / sweep_dir.name).glob("*/*/multirun.yaml"),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    if configs:
        parts.append(f"<h3>Hydra configs ({min(len(configs), MAX_CONFIGS)} newest of {len(configs)} runs)</h3>")
        parts += [f"<details><summary><code>{html.escape(str(p.relative_to(sweep_dir.parent)))}</code></summary>"
                  f"<pre>{html.escape(p.read_text())}</pre></details>" for p in configs[:MAX_CONFIGS]]
    return "".join(parts)


def _git_head() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runners.report", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="default", help="sweep name (folder under --results)")
    parser.add_argument("--results", default="results", help="results directory")
    args = parser.parse_args(argv)
    print(write_report(Path(args.results) / args.sweep))


if __name__ == "__main__":
    main()
