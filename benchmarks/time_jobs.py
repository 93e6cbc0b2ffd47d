"""CPU time of one sweep part's jobs from an empty cache, run one after the other in this process.

Usage::

    uv run python -m benchmarks.time_jobs OUT sweep=resi_shortcut arch=cnn
    uv run python -m benchmarks.time_jobs --keep-cache OUT sweep=resi_shortcut arch=cnn

Empties ``OUT`` (with ``--keep-cache`` only its shards: the jobs then compute every row again on the models
and representations an earlier run left in ``OUT``'s cache, i.e. the rows' own cost without training), plans
the sweep (the overrides as on the sweep command line) with ``results_dir=OUT``, then runs every planned job
with ``runners.job.run_job`` in this process (no pool: one core, no scheduling noise) and prints the jobs' CPU
time (``time.process_time``). Run it from two checkouts in turn to compare versions, and compare their shards
and model files row by row (BENCHMARKS.md, "From an empty cache, sixth round (train)").
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    keep_cache = argv[0] == "--keep-cache"
    if keep_cache:
        argv = argv[1:]
    out, overrides = argv[0], argv[1:]
    logging.disable(logging.INFO)
    from runners.job import run_job
    from runners.sweep import plan

    if keep_cache:
        for shards in Path(out).glob("*/shards"):
            shutil.rmtree(shards)
    else:
        shutil.rmtree(out, ignore_errors=True)
    planned = plan([*overrides, f"results_dir={out}", "hydra/launcher=basic"])
    start = time.process_time()
    for cfg in planned.cells:
        run_job(cfg)
    print(f"{' '.join(overrides)}: {len(planned.cells)} jobs, {time.process_time() - start:.2f} s of CPU", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
