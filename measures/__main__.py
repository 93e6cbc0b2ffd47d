"""Command line: ``python -m measures list [--json]``, ``python -m measures info NAME``,
``python -m measures docs [--output docs/measures.md]`` (the generated catalogue with every card) and
``python -m measures catalogue`` (regenerates ``measures/catalogue.json``, which ``list`` and ``info``
read so that they answer without importing torch)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import measures
from measures import _catalogue
from measures._cli import closed_output_status
from measures._suggest import unknown_measure


def _fmt_range(r: tuple[float | str, float | str]) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in r) + "]"


def _list(as_json: bool) -> None:
    infos = _catalogue.entries()
    if as_json:
        print(json.dumps([{k: v for k, v in i.items() if k not in ("doc", "param_reprs")} for i in infos], indent=2))
        return
    header = ("name", "family", "kind", "range", "sym", "metric", "invariances", "inputs", "version")
    rows = [
        (
            i["name"],
            i["family"],
            i["kind"],
            _fmt_range(i["range"]),
            "yes" if i["symmetric"] else "no",
            "yes" if i["metric"] else "no",
            ",".join(i["invariances"]) or "-",
            i["inputs"],
            i["version"],
        )
        for i in infos
    ]
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    print(f"\n{len(rows)} measures")


def _card_fields(i: dict) -> list[tuple[str, str]]:
    return [
        ("range", f"{_fmt_range(i['range'])}  ({'higher' if i['kind'] == 'similarity' else 'lower'} = more similar)"),
        ("symmetric", f"{i['symmetric']}    metric: {i['metric']}"),
        ("invariances", ", ".join(i["invariances"]) or "none declared"),
        ("inputs", f"{i['inputs']}  (at least {i['min_rows']} rows){'  + labels' if i['requires_labels'] else ''}"),
        ("parameters", ", ".join(f"{k}={v}" for k, v in i["param_reprs"].items()) or "none"),
        ("stochastic", str(i["stochastic"])),
        ("cost", i["cost"] or "not stated"),
        ("reference", i["reference"]),
    ]


def _card(name: str) -> None:
    infos = {i["name"]: i for i in _catalogue.entries()}
    if name not in infos:
        raise ValueError(unknown_measure(name, list(infos)))
    i = infos[name]
    print(f"{i['name']}  ({i['family']}, {i['kind']}, version {i['version']})")
    print("=" * len(i["name"]))
    print(i["doc"] or "(no documentation)")
    print()
    for key, value in _card_fields(i):
        print(f"{key + ':':<13} {value}")


#: Conventions that change the number and differ between public implementations (collected from those
#: implementations' code and papers); our choice is the measure's default parameter.
CONVENTIONS = [
    ("svcca", "variance kept by the SVD truncation", "τ = 0.99 of the squared singular values",
     "ReSi keeps k = 1 component when total variance > ≈1.01 (fraction vs absolute comparison); anatome thresholds |s|, not s²; platonic-rep uses a fixed 10 dims from a randomised SVD"),
    ("pwcca", "side whose neurons weight the correlations", "side='x' explicit",
     "Google pwcca.py picks the side with fewer neurons and uses acts1 in the acts2 branch; anatome re-orthonormalises the coefficients"),
    ("cca_mean_rho", "which correlations are averaged", "plain mean over all m = min(rank X, rank Y)",
     "Google cca_core reports the mean over the leading ρ reaching 98% of Σρ"),
    ("cca_r2", "centring", "columns centred",
     "the Google Colab's cca() does not centre"),
    ("rsm_norm_difference", "matrix norm", "Frobenius norm of the RSM difference",
     "ReSi passes full matrices to np.linalg.norm(ord=2), i.e. the spectral norm: norm='spectral'"),
    ("magnitude_difference", "statistic compared", "norm of the mean instance",
     "ReSi's magnitude_nrmse (per-instance NRMSE of the row norms) is form='nrmse': 1/2 × the share of rows whose "
     "norms differ; likewise concentricity_nrmse"),
    ("rsa", "inner and outer functions", "1 − Pearson RDM, Spearman comparison",
     "rsatoolbox's 'euclidean' RDM is squared Euclidean / D; its compare() defaults to cosine"),
    ("cka_rbf", "bandwidth rule", "σ = fraction × median pairwise distance (see parameters)",
     "platonic-rep uses an absolute bandwidth (not scale invariant); thingsvision ignored σ (PR #175)"),
    ("cka_linear_debiased", "negative HSIC(K, K)", "UndefinedMeasureError with the reason",
     "several libraries clamp or return NaN silently"),
    ("knn_jaccard", "kNN metric, k, self-exclusion, ties", "cosine, k = 10, self excluded by index, ties by (distance, index)",
     "ReSi drops the first of k+1 neighbours (drops a duplicate instead of self); sklearn orders ties arbitrarily"),
    ("jsd", "log base and square root", "base 2 divergence (not its square root), per instance then mean",
     "scipy's jensenshannon returns the square root and uses the natural log unless base=2"),
    ("linear_regression", "R² definition", "1 − ‖Ỹ − X̃B‖²/‖Ỹ‖² (variance-weighted)",
     "sklearn's r2_score default multioutput='uniform_average' is a different quantity"),
    ("distance_correlation", "returned quantity", "dCor (not dCor²), biased estimator by default",
     "dcor.distance_correlation_sqr returns the square"),
    ("uniformity_difference", "features and diagonal", "see parameters normalize / include_diagonal",
     "ReSi uses raw features and includes i = j; Wang & Isola normalise and use distinct pairs"),
]


def _docs() -> str:
    infos = _catalogue.generate()["measures"]
    out = [
        "# Measure catalogue",
        "",
        "Generated by `uv run python -m measures docs --output docs/measures.md` from the registry; do not edit.",
        "",
        f"{len(infos)} measures. Each row links to its card below.",
        "",
        "| measure | family | kind | range | symmetric | metric | invariances | inputs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i in infos:
        out.append(f"| [`{i['name']}`](#{i['name']}) | {i['family']} | {i['kind']} | {_fmt_range(i['range'])} | "
                   f"{'yes' if i['symmetric'] else 'no'} | {'yes' if i['metric'] else 'no'} | "
                   f"{', '.join(i['invariances']) or '—'} | {i['inputs']} |")
    out += ["", "## Conventions where implementations differ", "",
            "| measure | convention | ours (the default) | elsewhere |", "|---|---|---|---|"]
    out += [f"| `{m}` | {what} | {ours} | {other} |" for m, what, ours, other in CONVENTIONS if m in measures.names()]
    out += ["", "## Cards", ""]
    for i in infos:
        out += [f"### {i['name']}", "", f"*{i['family']}, {i['kind']}, version {i['version']}*", "",
                i["doc"] or "(no documentation)", ""]
        out += [f"- **{key}**: {value}" for key, value in _card_fields(i)]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m measures", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="print the catalogue")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_info = sub.add_parser("info", help="print one measure's card")
    p_info.add_argument("name")
    p_docs = sub.add_parser("docs", help="write the Markdown catalogue with every card")
    p_docs.add_argument("--output", default="-", help="file to write (default: standard output)")
    sub.add_parser("catalogue", help=f"regenerate {_catalogue.PATH.name} (what list and info read)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            _list(args.json)
        elif args.command == "info":
            _card(args.name)
        elif args.command == "catalogue":
            print(f"wrote {_catalogue.write()}")
        elif args.output == "-":
            print(_docs())
        else:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(_docs() + "\n")
            print(f"wrote {args.output}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        status = main()
    except BrokenPipeError:  # `python -m measures list | head`: the reader went away; no traceback
        status = closed_output_status()
    sys.exit(status)
