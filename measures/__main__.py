"""Command line: ``python -m measures list [--json]`` and ``python -m measures info NAME``."""

from __future__ import annotations

import argparse
import json
import sys

import measures


def _fmt_range(r: tuple[float, float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in r) + "]"


def _list(as_json: bool) -> None:
    infos = [measures.info(n) for n in measures.names()]
    if as_json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    header = ("name", "family", "kind", "range", "sym", "metric", "invariances", "inputs", "version")
    rows = [
        (
            i.name,
            i.family,
            i.kind,
            _fmt_range(i.range),
            "yes" if i.symmetric else "no",
            "yes" if i.metric else "no",
            ",".join(sorted(i.invariances)) or "-",
            i.inputs,
            i.version,
        )
        for i in infos
    ]
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    print(f"\n{len(rows)} measures")


def _card(name: str) -> None:
    i = measures.info(name)
    print(f"{i.name}  ({i.family}, {i.kind}, version {i.version})")
    print("=" * len(i.name))
    print(i.doc or "(no documentation)")
    print()
    print(f"range:        {_fmt_range(i.range)}  ({'higher' if i.higher_is_more_similar else 'lower'} = more similar)")
    print(f"symmetric:    {i.symmetric}    metric: {i.metric}")
    print(f"invariances:  {', '.join(sorted(i.invariances)) or 'none declared'}")
    print(f"inputs:       {i.inputs}  (at least {i.min_rows} rows){'  + labels' if i.requires_labels else ''}")
    print(f"parameters:   {', '.join(f'{k}={v!r}' for k, v in i.params.items()) or 'none'}")
    print(f"stochastic:   {i.stochastic}")
    print(f"cost:         {i.cost or 'not stated'}")
    print(f"reference:    {i.reference}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m measures", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="print the catalogue")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_info = sub.add_parser("info", help="print one measure's card")
    p_info.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            _list(args.json)
        else:
            _card(args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
