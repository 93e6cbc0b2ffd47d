"""Write a sweep's layer-identification summary (accuracy and bootstrap CI per measure) to a tracked CSV.

    uv run python -m runners.layer_id_summary                      # sweep vision_deep -> paper/data/...
    uv run python -m runners.layer_id_summary --sweep layer_id --out my.csv

Reads ``<results>/<sweep>/tables/layer_identification.csv`` (written by ``runners.analyze``, which the sweep
runs at its end) and writes :func:`tasks.benchmark_tests.layer_identification_summary` of it. The README's
layer-identification paragraph (*Three domains*) quotes ``paper/data/vision_deep_layer_identification.csv``,
and ``tests/test_readme_vision_deep.py`` checks that it does so correctly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from tasks.benchmark_tests import layer_identification_summary

ROOT = Path(__file__).resolve().parents[1]
TRACKED = ROOT / "paper" / "data" / "vision_deep_layer_identification.csv"


def write(sweep_dir: Path, out: Path) -> pd.DataFrame:
    """Summarise ``sweep_dir``'s layer-identification table into ``out``; raises naming a missing table."""
    table = sweep_dir / "tables" / "layer_identification.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{table}: no layer-identification table; run the sweep (it analyses at its end) "
                                f"or `runners.analyze --sweep {sweep_dir.name}` first")
    summary = layer_identification_summary(pd.read_csv(table))
    out.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out, index=False)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="vision_deep")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=TRACKED)
    args = parser.parse_args(argv)
    try:
        summary = write(args.results / args.sweep, args.out)
    except FileNotFoundError as exc:
        print(f"layer_id_summary: {exc}", file=sys.stderr)
        return 2
    print(summary.to_string(index=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
