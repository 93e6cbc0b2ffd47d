"""Collect a sweep's result shards into ``results/<sweep>/scores.parquet`` (idempotent).

Usage: ``python -m runners.collect [--sweep benchmark] [--results results]``.
Rows are deduplicated by their row key (a finished value beats an error or undefined row, then the
newest wins), so collecting twice, or after a resumed sweep, gives the same table. Rows a job flagged
stale (its latest run no longer asks for them: a measure removed or excluded, changed parameters, an
older measure version) are left out; they stay in the shard, so switching back reuses them.

The sweep command collects only the shards of the jobs it planned (``jobs``), so a narrower rerun of a
sweep gives the table of that grid; ``python -m runners.collect`` collects every shard in the folder.
The sweep command skips the collection when ``scores.parquet`` was collected from the very same shard
bytes by the same code (:func:`collect_current`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from measures._suggest import suggest
from tasks import storage
from tasks.storage import content_key, read_parquet, write_json, write_parquet

log = logging.getLogger(__name__)

SORT_COLUMNS = ["pair_type", "arch_a", "label_randomization_a", "label_randomization_b", "seed_a", "seed_b", "scale_b", "layer_a", "layer_b", "measure"]


def collect(sweep_dir: Path, jobs: Iterable[str] | None = None) -> pd.DataFrame:
    """Collect the shards of ``jobs`` (job keys; None: every shard) into ``scores.parquet``."""
    shard_dir = Path(sweep_dir) / "shards"
    shards = sorted(shard_dir.glob("*.parquet"))
    if jobs is not None:
        jobs = set(jobs)
        others = [p for p in shards if p.stem not in jobs]
        shards = [p for p in shards if p.stem in jobs]
        if others:
            log.info("%d shard(s) of jobs outside this sweep's grid left out (python -m runners.collect "
                     "collects every shard)", len(others))
    tables = []
    for path in shards:
        table = read_parquet(path)
        if table is None:
            log.warning("unreadable shard %s skipped (its job will recompute it on the next run)", path.name)
            continue
        tables.append(table)
    if not tables:
        raise FileNotFoundError(f"no result shards under {shard_dir}; run the sweep first")
    scores = pd.concat(tables, ignore_index=True)
    if "stale" in scores:
        stale = scores.pop("stale").fillna(False).astype(bool)
        if stale.any():
            log.info("%d stale row(s) left out (measures or parameters the latest runs no longer ask for)",
                     int(stale.sum()))
        scores = scores.loc[~stale].copy()
    scores["_ok"] = scores["status"].eq("ok")
    scores = (
        scores.sort_values(["_ok", "timestamp"])
        .drop_duplicates("row_key", keep="last")
        .drop(columns="_ok")
        .sort_values(SORT_COLUMNS, kind="stable")
        .reset_index(drop=True)
    )
    write_parquet(scores, Path(sweep_dir) / "scores.parquet")
    counts = scores["status"].value_counts().to_dict()
    log.info("collected %d rows from %d shards into %s (%s)", len(scores), len(tables),
             Path(sweep_dir) / "scores.parquet", ", ".join(f"{k}: {v}" for k, v in counts.items()))
    return scores


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def collect_current(sweep_dir: Path, jobs: Iterable[str]) -> tuple[pd.DataFrame | None, int, str]:
    """:func:`collect` the shards of ``jobs`` unless ``scores.parquet`` is current: collected from shards
    with exactly the bytes they have now, by this version of the code (recorded in
    ``results/<sweep>/cache/collect.json``). Returns the new table (None when current), its row count and
    the sha256 of ``scores.parquet``."""
    sweep_dir = Path(sweep_dir)
    jobs = set(jobs)
    shards = sorted(p for p in (sweep_dir / "shards").glob("*.parquet") if p.stem in jobs)
    code = [_sha256(Path(module.__file__)) for module in (sys.modules[__name__], storage)]
    key = content_key([code, [(p.name, _sha256(p)) for p in shards]])
    record = sweep_dir / "cache" / "collect.json"
    try:
        stored = json.loads(record.read_text())
        if stored["key"] == key and stored["sha256"] == _sha256(sweep_dir / "scores.parquet"):
            log.info("scores.parquet is current (its %d shards are unchanged): not collected again", len(shards))
            return None, int(stored["rows"]), stored["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    scores = collect(sweep_dir, jobs)
    digest = _sha256(sweep_dir / "scores.parquet")
    write_json({"key": key, "sha256": digest, "rows": len(scores)}, record)
    return scores, len(scores), digest


def check_sweep_dir(results: Path, sweep: str) -> Path:
    """``results/sweep``, or FileNotFoundError naming the sweeps that exist (with a did-you-mean)."""
    sweep_dir = Path(results) / sweep
    if not sweep_dir.is_dir():
        found = sorted(p.name for p in Path(results).glob("*") if (p / "shards").is_dir())
        hint = suggest(sweep, found, "sweeps") if found else f"; no sweep has written results under {results} yet"
        raise FileNotFoundError(f"no sweep folder {sweep_dir}{hint} (--sweep is the sweep's name=)")
    return sweep_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.collect", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="benchmark",
                        help="sweep name: the folder under --results, i.e. the sweep's name= (default: benchmark, "
                             "what `python -m runners.sweep` writes; sweep=smoke writes smoke, ...)")
    parser.add_argument("--results", default="results", help="results directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        collect(check_sweep_dir(Path(args.results), args.sweep))
    except (FileNotFoundError, ValueError) as exc:  # a missing folder or table: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
