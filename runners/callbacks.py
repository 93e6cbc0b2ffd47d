"""Hydra callbacks: validate every job before a sweep starts; collect and analyze when it ends.

Jobs write their own result shards, so nothing is lost if the submitting process dies; the end-of-sweep
callback is a convenience that builds the tables and figures (``python -m runners.collect`` and
``python -m runners.analyze`` do the same by hand).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runners.config import ConfigError, validate_config
from runners.job import results_root

log = logging.getLogger(__name__)


def sweep_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job the basic sweeper will launch (config params, then the CLI)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    loader = GlobalHydra.instance().config_loader()
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(params + list(config.hydra.overrides.task))
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


class CollectAndAnalyze(Callback):
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.start = time.perf_counter()
        jobs = sweep_overrides(config)
        limit = int(config.limits.max_jobs)
        if len(jobs) > limit:
            raise ConfigError(f"limits.max_jobs: the sweep would launch {len(jobs)} jobs, more than the limit {limit}; "
                              "narrow the grid or raise limits.max_jobs")
        loader = GlobalHydra.instance().config_loader()
        for overrides in jobs:
            job_cfg = loader.load_sweep_config(master_config=config, sweep_overrides=list(overrides))
            try:
                validate_config(job_cfg)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (job overrides: {' '.join(overrides)})") from None
        log.info("validated %d job configs; launching", len(jobs))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from runners.analyze import analyze
        from runners.collect import collect

        sweep_dir = results_root(config) / config.name
        scores = collect(sweep_dir)
        analyze(sweep_dir, scores=scores)
        log.info("sweep %r finished in %.1fs; results in %s", config.name, time.perf_counter() - self.start, sweep_dir)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.on_multirun_end(config)
