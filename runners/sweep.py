"""Main entry point: ``python -m runners.sweep [overrides]`` runs the configured sweep.

With no arguments it runs the default benchmark (``conf/sweep/default.yaml``). Every job is one call
of :func:`runners.job.run_job`; after the sweep, results are collected and analysed
(``runners/callbacks.py``).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from runners.job import run_job


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_job(cfg)


if __name__ == "__main__":
    main()
