"""Main entry point: ``python -m runners.sweep [overrides]`` runs the configured sweep.

With no arguments it runs the default benchmark (``conf/sweep/default.yaml``). Before anything runs,
every job's config is composed and validated (a bad value fails the whole sweep at once, naming the key
and the valid choices). Every job is one call of :func:`runners.job.run_job`, which writes its own result
shard. When the jobs have returned, the shards are collected into ``scores.parquet`` and analysed.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import gc
import hashlib
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import hydra
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from measures._suggest import suggest
from runners.config import ConfigError

# runners.job (torch, the zoo, the measures) is imported where a job runs or a plan is validated, so a
# mistyped override is refused in well under a second of CPU.

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
#: set in the environment of the part sweeps of a composite sweep: the parent collects and analyses
NO_POST = "SIMBENCH_PART_OF_COMPOSITE"
#: set by the sweep command for its jobs: each finished job leaves a file here (the overall progress line)
PROGRESS_DIR = "SIMBENCH_PROGRESS_DIR"
log = logging.getLogger("runners.sweep")


# an absolute path: Hydra resolves a relative one against the module's package when the module is not
# __main__ (the `simbench` console script), where ../conf is not a package
@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from runners.job import run_job

    on_closed_output(stop=False)  # in a pool worker; where the sweep's own process runs jobs, it stops
    run_job(cfg)
    if os.environ.get(PROGRESS_DIR):
        tempfile.mkstemp(dir=os.environ[PROGRESS_DIR], suffix=".done")


@dataclass
class Plan:
    sweep_dir: Path
    n_jobs: int
    parts: list[str]  # a composite sweep (``parts: [...]`` in its config) runs these sweeps in turn
    launcher: list[str] = dataclasses.field(default_factory=list)  # the sweep's ``default_launcher`` overrides
    part_args: list[str] = dataclasses.field(default_factory=list)  # overrides every part is run with
    job_keys: set[str] = dataclasses.field(default_factory=set)  # every job's key: the shards collect reads
    #: jobs to launch: those not finished by an earlier run (see runners.job.is_finished); per part of a composite
    pending: int = 0
    part_pending: list[int] = dataclasses.field(default_factory=list)
    part_jobs: list[int] = dataclasses.field(default_factory=list)
    #: every job's config, for an analysis that needs a finished job's representations (runners.job.materialise)
    cells: list[DictConfig] = dataclasses.field(default_factory=list)
    #: per cell: its part's name and whether it is pending (not finished by an earlier run)
    cell_part: list[str] = dataclasses.field(default_factory=list)
    cell_pending: list[bool] = dataclasses.field(default_factory=list)
    #: a composite on the joblib launcher: its jobs run in one pool of this many processes (see run_cells)
    pool_size: int = 0
    launcher_cfg: DictConfig | None = None  # a plain sweep's hydra.launcher node (its parts' launcher)


def launcher_overrides(master: DictConfig, overrides: list[str]) -> list[str]:
    """The sweep config's ``default_launcher`` (e.g. joblib, one job per core), unless the command line
    chooses a launcher itself (``hydra/launcher=basic`` runs jobs one at a time, ``=slurm`` submits them)."""
    if any(o.lstrip("+~").startswith("hydra/launcher=") for o in overrides):
        return []
    return [str(o) for o in master.get("default_launcher") or []]


def part_overrides(overrides: list[str]) -> list[str]:
    """The overrides each part of a composite sweep runs with: the composite's (its launcher included)
    minus the composite's own keys (a part must not be a composite again)."""
    composite_keys = ("sweep=", "parts=", "default_launcher=")
    return [o for o in overrides if not o.lstrip("+~").startswith(composite_keys)]


def plan(overrides: list[str], warm: Callable[[int], None] | None = None) -> Plan:
    """Compose and validate the config of every job the sweep will launch; raise on the first bad one.

    ``warm``: for a composite sweep on a pool (see :func:`run_cells`), called once with the pool's size
    when the sweep is sure to launch jobs: at once when its folder holds no result shard yet (a first
    run), otherwise when a planned part has a pending job. The pool's workers then start and import the
    job code while the remaining parts are planned (see :func:`_start_pool`)."""
    from runners.config import validate_config

    plain = [o for o in overrides if not _is_sweep(o)]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        master = _compose(plain)
        launcher = launcher_overrides(master, overrides)
        if launcher:
            master = _compose([*launcher, *plain])
    _check_launcher(master)
    overrides = [*launcher, *overrides]
    parts = list(master.get("parts") or [])
    if parts:
        others = part_overrides(overrides)
        size = _pool_size(master.hydra.launcher)
        if warm is not None and size and not _has_shards(Path(to_absolute_path(str(master.results_dir))) / master.name):
            warm(size)
            warm = None
        plans = []
        for part in parts:
            plans.append(plan([f"sweep={part}", f"name={master.name}", *others]))
            if warm is not None and size and plans[-1].pending:
                warm(size)
                warm = None
        from runners.job import results_root

        return Plan(sweep_dir=results_root(master) / master.name, n_jobs=sum(p.n_jobs for p in plans), parts=parts,
                    launcher=launcher, part_args=others, job_keys=set().union(*(p.job_keys for p in plans)),
                    pending=sum(p.pending for p in plans), part_pending=[p.pending for p in plans],
                    part_jobs=[p.n_jobs for p in plans],
                    cells=[c for p in plans for c in p.cells],
                    cell_part=[part for part, p in zip(parts, plans) for _ in p.cells],
                    cell_pending=[f for p in plans for f in p.cell_pending],
                    pool_size=_pool_size(plans[0].launcher_cfg) if plans else 0)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        params = [f"{k}={v}" for k, v in (master.hydra.sweeper.get("params") or {}).items()]
        multirun = master.hydra.mode is not None and master.hydra.mode.name == "MULTIRUN"
        parsed = OverridesParser.create().parse_overrides(params + overrides if multirun else overrides)
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        limit = int(master.limits.max_jobs)
        if len(jobs) > limit:
            raise ConfigError(f"limits.max_jobs: the sweep would launch {len(jobs)} jobs, more than the limit "
                              f"{limit}; narrow the grid or raise limits.max_jobs")
        _check_array_size(master, len(jobs))
        keys, cells, flags = set(), [], []
        composer = Composer()
        for job in jobs:
            cfg = composer(list(job))
            try:
                validate_config(cfg)
            except ConfigError as exc:
                raise ConfigError(f"{exc}\n  (in the job with overrides: {' '.join(job)})") from None
            # after the first validation: a bad value is refused before torch loads
            from runners.job import is_finished, job_key

            key = job_key(cfg)
            keys.add(key)
            cells.append(cfg)
            flags.append(not is_finished(cfg, key))
    from runners.job import results_root

    return Plan(sweep_dir=results_root(master) / master.name, n_jobs=len(jobs), parts=[], launcher=launcher,
                job_keys=keys, pending=sum(flags), cells=cells, cell_pending=flags,
                launcher_cfg=master.hydra.launcher)


def _has_shards(sweep_dir: Path) -> bool:
    """Whether the sweep folder holds a result shard (a finished or begun job)."""
    try:
        with os.scandir(sweep_dir / "shards") as entries:
            return any(entry.name.endswith(".parquet") for entry in entries)
    except OSError:  # no folder yet
        return False


class Composer:
    """Compose the configs of a sweep's jobs (without the hydra node), each distinct set of config-group
    choices once.

    Hydra's ``compose`` takes ~0.2-0.5 s of CPU per call, and a sweep has up to thousands of jobs that
    differ mostly in plain values (seed, scale, ...). A job's group choices (``arch=cnn``, launcher,
    ``+``/``~`` edits, ``hydra.*``) are composed once per distinct set; its plain value overrides are then
    set on a copy. A value Hydra would refuse (a key that does not exist) falls back to composing that
    job in full, which raises Hydra's error. ``tests/runners/test_plan.py`` checks that this gives every
    job the same config as composing it alone.

    Each distinct override text is parsed once (Hydra's ANTLR parser: ~0.3 ms per override, and the default
    benchmark's 284 jobs hold 1,931 overrides, 46 distinct texts), and each job's copy of its base config
    is unpickled from the base's pickle: a fresh, independent config like ``copy.deepcopy`` gives, ~7x
    faster (0.5 against 3.4 ms per job for ``sweep=noise``; pickle is also how the compose cache stores
    configs).
    """

    def __init__(self) -> None:
        self._base: dict[tuple[str, ...], bytes] = {}
        self._parser = OverridesParser.create()
        #: override text -> (parsed override, whether it is a plain value change)
        self._parsed: dict[str, tuple[Override, bool]] = {}

    def _parse(self, text: str) -> tuple[Override, bool]:
        """The parsed override ``text`` and whether it is a plain value change (each text parsed once)."""
        hit = self._parsed.get(text)
        if hit is None:
            override = self._parser.parse_overrides([text])[0]
            hit = self._parsed[text] = (override, _plain_value(override))
        return hit

    def __call__(self, job: list[str]) -> DictConfig:
        parsed = [self._parse(text) for text in job]
        groups = tuple(text for text, (_, plain) in zip(job, parsed) if not plain)
        values = [o for o, plain in parsed if plain]
        if groups not in self._base:
            self._base[groups] = pickle.dumps(_without_hydra(_compose(list(groups))), protocol=pickle.HIGHEST_PROTOCOL)
        cfg = pickle.loads(self._base[groups])
        try:
            for o in values:
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=False)
        except Exception:
            return _without_hydra(_compose(job))
        return cfg


def _without_hydra(cfg: DictConfig) -> DictConfig:
    """The job's own config (the hydra node's sweep subdir needs the job number, known only at launch),
    in struct mode like Hydra's: setting a key that does not exist raises."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.set_struct(job, True)
    return job


def _plain_value(override: Override) -> bool:
    """A plain ``key=value`` change of an existing config value (not a group, not hydra's, no +/~)."""
    key = override.key_or_group
    return (not (override.is_add() or override.is_delete() or override.is_force_add())
            and override.package is None and not key.startswith("hydra")
            and "/" not in key and not (CONF_DIR / key).is_dir() and not override.is_sweep_override())


#: composed configs, by the content of conf/, the overrides, the working directory and Hydra's version
COMPOSE_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "simbench" / "compose"


@functools.lru_cache(maxsize=1)
def _compose_context() -> list:
    """What a composed config depends on besides its overrides: every file under conf/ (byte for byte),
    the launch directory (Hydra records it) and the versions of Hydra and its launcher plugins."""
    from importlib import metadata

    files = sorted(p for p in CONF_DIR.rglob("*") if p.is_file())
    versions = []
    for lib in ("hydra-core", "omegaconf", "hydra-joblib-launcher", "hydra-submitit-launcher"):
        try:
            versions.append(metadata.version(lib))
        except metadata.PackageNotFoundError:
            versions.append(None)
    return [str(CONF_DIR), os.getcwd(), versions,
            [(str(p.relative_to(CONF_DIR)), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]]


def _compose(overrides: list[str]) -> DictConfig:
    """Compose one job's config, or read it from the compose cache: Hydra's compose costs 0.2-0.5 s of
    CPU, and a composite sweep composes ~40 times, most of a no-op rerun's time (a config that fails to
    compose is never cached)."""
    from tasks.storage import atomic_write, content_key

    path = COMPOSE_CACHE / f"{content_key([_compose_context(), list(overrides)], length=32)}.pickle"
    try:
        return pickle.loads(path.read_bytes())
    except Exception:  # missing, or unreadable (a damaged file is composed again and rewritten)
        pass
    cfg = _compose_uncached(overrides)
    try:
        data = pickle.dumps(cfg)
        atomic_write(path, lambda fh: fh.write(data))
        _prune_compose_cache()
    except OSError:  # a read-only home: compose every time
        pass
    return cfg


#: the compose cache keeps this many entries, the most recently written (each is a few kB)
COMPOSE_CACHE_ENTRIES = 2000


def _prune_compose_cache(keep: int = COMPOSE_CACHE_ENTRIES) -> None:
    """Drop the oldest compose-cache entries beyond ``keep`` (a new entry is written only on a cache miss, so
    this runs rarely; every override list and results_dir gets its own entry, tests' temporary ones too)."""
    entries = list(COMPOSE_CACHE.glob("*.pickle"))
    if len(entries) <= keep:
        return
    for stale in sorted(entries, key=lambda p: p.stat().st_mtime)[: len(entries) - keep]:
        stale.unlink(missing_ok=True)


def _compose_uncached(overrides: list[str]) -> DictConfig:
    """Compose one job's config; an override of a key that does not exist fails naming the valid keys
    of its parent node (Hydra itself only suggests ``+key=...``, which is rarely what was meant)."""
    try:
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except ConfigCompositionException as exc:
        unknown = re.match(r"Could not override '([^']+)'", str(exc))
        if unknown is None:
            if exc.__cause__ is None:
                raise
            raise ConfigError(f"{exc}: {str(exc.__cause__).splitlines()[0]}") from None
        key = unknown.group(1)
        parent = key.rpartition(".")[0]
        try:
            cfg = compose(config_name="config", overrides=[o for o in overrides if not o.startswith(f"{key}=")],
                          return_hydra_config=True)
            node = OmegaConf.select(cfg, parent) if parent else cfg
        except Exception:
            raise exc from None
        if not isinstance(node, DictConfig):
            raise exc from None
        hint = ("; launcher keys depend on hydra/launcher, and site settings belong under cluster.* "
                "(conf/local/default.yaml)") if key.startswith("hydra.launcher.") else ""
        raise ConfigError(f"{key}: no such key; valid keys of {parent or 'the config'!r}: "
                          f"{', '.join(sorted(map(str, node.keys())))}{hint}") from None


def _check_launcher(master: DictConfig) -> None:
    """The launcher's settings, most of them interpolated from ``cluster.*``, have valid types and ranges."""
    try:
        launcher = OmegaConf.to_container(master.hydra.launcher, resolve=True)
    except Exception as exc:  # e.g. cluster.timeout_min=abc: OmegaConf names the launcher key
        raise ConfigError(f"hydra.launcher: {' '.join(str(exc).split())} (site values come from cluster.*)") from None
    for key in ("timeout_min", "array_parallelism", "mem_gb", "cpus_per_task", "gpus_per_node"):
        value = launcher.get(key)
        if value is not None and value < 1:
            source = {"cpus_per_task": "runtime.num_threads"}.get(key, f"cluster.{key}")
            raise ConfigError(f"hydra.launcher.{key} (from {source}): must be >= 1 or null, got {value!r}")


def slurm_max_array_size() -> int | None:
    """This cluster's ``MaxArraySize`` (array task ids run from 0 to MaxArraySize − 1), or None where
    ``scontrol`` cannot tell (not installed, controller down)."""
    try:
        done = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", done.stdout, re.MULTILINE)
    return int(found.group(1)) if found else None


def _check_array_size(master: DictConfig, n_jobs: int) -> None:
    """The SLURM launcher submits a sweep as one job array, and submitit does not split arrays: a sweep
    with more jobs than the cluster's MaxArraySize would be refused by sbatch after planning, so it is
    refused here, before anything runs."""
    if not str(master.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher"):
        return
    cap = slurm_max_array_size()
    if cap is not None and n_jobs > cap:
        raise ConfigError(f"hydra/launcher: the sweep would submit {n_jobs} jobs as one SLURM array, more than "
                          f"this cluster's MaxArraySize ({cap}); split the grid into several sweeps (e.g. one "
                          "per arch or seed range), each under the limit")


def _is_sweep(override: str) -> bool:
    parsed = OverridesParser.create().parse_overrides([override])[0]
    return parsed.is_sweep_override()


#: parameters of any measure may be set without Hydra's ``+`` (``measures.params.svcca.tau=0.95``)
PARAMS_KEY = "measures.params."


def normalise(argv: list[str]) -> tuple[list[str], list[str]]:
    """The command line as the sweep runs it, and a note for each change:

    - ``measures.params.<measure>.<param>=v`` becomes ``++measures.params...`` (set or add): the params
      node lists only the parameters the config changes, so a plain override of another one would fail;
    - a grid on the command line (``arch=mlp,cnn seed='range(5)'``) without ``sweep=`` runs that grid
      alone, as ``sweep=grid`` into ``results/grid``, instead of adding it to each of the five parts
      of the default benchmark (``sweep=benchmark`` says that is what you want).
    """
    out, notes = [], []
    for a in argv:
        out.append(f"++{a}" if a.startswith(PARAMS_KEY) else a)
    overrides = [a for a in out if not a.startswith("-")]
    grid = [a.partition("=")[0] for a in overrides if not a.lstrip("+~").startswith("hydra") and _is_sweep(a)]
    if grid and not any(a.lstrip("+~").startswith("sweep=") for a in overrides):
        out.append("sweep=grid")
        notes.append(f"no sweep= given and the command line sets a grid ({', '.join(grid)}): running that grid "
                     "alone (sweep=grid; results/grid unless name= says otherwise); add sweep=benchmark to "
                     "apply it to every part of the benchmark instead")
    return out, notes


def explain(exc: Exception) -> str:
    """One line (or a few) for a configuration error, with a did-you-mean for an unknown group option."""
    text = str(exc)
    missing = re.search(r"Could not find '([\w/]+)/([^'/]+)'", text)
    if missing and (CONF_DIR / missing.group(1)).is_dir():
        group, name = missing.groups()
        options = [p.stem for p in (CONF_DIR / group).glob("*.yaml")]
        return f"{group}={name}: no such option (Could not find '{group}/{name}'){suggest(name, options, 'options')}"
    return text


class Progress:
    """One progress line for the whole sweep: jobs done of the total (over every part) and an estimate
    of the time left. Finished jobs leave a file in a temporary folder (``SIMBENCH_PROGRESS_DIR``),
    which a thread of the sweep command counts; on a terminal the line is redrawn in place, in a log
    a line is written whenever a job finishes."""

    def __init__(self, total: int) -> None:
        self.total, self.part, self.done = total, "", 0
        self.folder = tempfile.mkdtemp(prefix="simbench-progress-")
        os.environ[PROGRESS_DIR] = self.folder
        self._stop = threading.Event()
        self._tic = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._report(final=True)
        for f in Path(self.folder).glob("*"):
            f.unlink()
        os.rmdir(self.folder)
        os.environ.pop(PROGRESS_DIR, None)

    def _run(self) -> None:
        while not self._stop.wait(2.0):
            self._report()

    def line(self) -> str:
        elapsed = time.perf_counter() - self._tic
        left = "" if not 0 < self.done < self.total else f", ~{_duration(elapsed / self.done * (self.total - self.done))} left"
        part = f" ({self.part})" if self.part else ""
        return f"[simbench] jobs {self.done}/{self.total} done{part}, {_duration(elapsed)} elapsed{left}"

    def _report(self, final: bool = False) -> None:
        done = len(list(Path(self.folder).glob("*.done")))
        changed, self.done = done != self.done, done
        if sys.stderr.isatty() and (changed or final):
            print("\r" + self.line().ljust(100), end="\n" if final else "", file=sys.stderr, flush=True)
        elif changed:
            print(self.line(), file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s" if minutes else f"{sec} s"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from ``ps`` (POSIX: Linux and macOS;
    no dependency needed for one table of pid/ppid pairs)."""
    try:
        table = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    children: dict[int, list[int]] = {}
    for line in table.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(fields[0]))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_descendants(rounds: int = 20) -> int:
    """SIGKILL every descendant of this process (joblib/loky workers and their resource tracker, a
    composite's part sweep and its workers); returns how many there were. SIGKILL, not SIGTERM: the
    workers hold no state worth a graceful exit (every write is atomic, and the temporary files of
    killed writers are removed by the next sweep), and loky's helpers print tracebacks when terminated.
    Repeated until none is left, since a pool may start a replacement for a worker that just died."""
    seen: set[int] = set()
    for _ in range(rounds):
        pids = [p for p in descendants(os.getpid()) if _alive(p)]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        seen.update(pids)
        time.sleep(0.1)
    return len(seen)


def _alive(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)  # our own children must be reaped, or they stay zombies
        if reaped:
            return False
    except ChildProcessError:
        pass  # not our child (a grandchild): its parent reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _end_process_tree(code: int) -> None:
    """Kill every worker of this sweep, then exit with ``code`` at once, printing nothing more.

    Silent from here on: joblib's and loky's threads react to the killed workers with tracebacks (a
    relaunched resource tracker, "worker terminated unexpectedly"), and the interpreter's final flush of a
    closed stdout would raise. Exit without unwinding. Nothing is lost: shards, models and representations
    are renamed into place whole, file locks are released by the OS, and a temporary file of an interrupted
    write is removed by the next sweep (tasks.storage.remove_stale_temporaries)."""
    silent = os.open(os.devnull, os.O_WRONLY)
    os.dup2(silent, 1)
    os.dup2(silent, 2)
    stop_descendants()
    os._exit(code)


def _install_stop_handlers(quiet: bool) -> None:
    """SIGTERM and SIGINT stop the whole process tree: the workers first, then this process, with one
    line saying that a rerun resumes (no KeyboardInterrupt traceback). Writes are atomic and finished rows
    are in their shards, so nothing is lost; a part sweep of a composite stops quietly (its parent speaks)."""

    def stop(signum: int, _frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        n = len(descendants(os.getpid()))
        if not quiet:
            print(f"[simbench] stopped by {signal.Signals(signum).name} (ending {n} worker process(es)); finished "
                  "rows are saved: rerun the same command to resume", file=sys.stderr, flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
        _end_process_tree(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def results_root_of(sweep: Plan) -> Path:
    return sweep.sweep_dir.parent


def _unwritable(root: Path) -> str:
    """Why the sweep could not write under ``root`` (read-only, no permission, full disk), or ""."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        return f"{root}: {exc.strerror or exc}"
    return ""


def cli(argv: list[str]) -> int:
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        main()  # Hydra's own flags (--help, --cfg, --info, ...): no planning or post-processing
        return 0
    _install_stop_handlers(quiet=bool(os.environ.get(NO_POST)))
    on_closed_output(stop=True)
    if os.environ.get(NO_POST):
        main()  # a part of a composite sweep: the parent has planned and validated its jobs already
        return 0
    argv, notes = normalise(argv)
    overrides = [a for a in argv if a not in ("-m", "--multirun")]
    for note in notes:
        print(f"[simbench] {note}", flush=True)
    try:
        sweep = plan(overrides, warm=_start_pool)
    except ConfigError as exc:
        print(f"Invalid configuration: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Hydra's composition errors list the available group options
        print(f"Invalid configuration: {explain(exc)}", file=sys.stderr)
        return 2
    import pandas as pd

    from tasks.storage import remove_stale_temporaries

    problem = _unwritable(results_root_of(sweep))
    if problem:
        print(f"[simbench] cannot write results: {problem}", file=sys.stderr)
        return 1
    stale = [p for folder in (sweep.sweep_dir.parent / "cache", sweep.sweep_dir) if folder.exists()
             for p in remove_stale_temporaries(folder)]
    if stale:
        print(f"[simbench] removed {len(stale)} temporary file(s) left by interrupted writes (e.g. {stale[0].name})",
              flush=True)
    start = pd.Timestamp.now(tz="UTC")
    tic = time.perf_counter()
    finished = sweep.n_jobs - sweep.pending
    print(f"[simbench] {sweep.n_jobs} job(s) validated" + (f", {finished} finished earlier (not launched)" if finished else "")
          + f"; results go to {sweep.sweep_dir}", flush=True)
    # a part with a pending job is launched whole; its finished jobs return at once (runners.job.run_job)
    launched = [(i, part) for i, (part, n) in enumerate(zip(sweep.parts, sweep.part_pending), start=1) if n]
    if sweep.parts and sweep.pool_size:
        total = sweep.pending
    elif sweep.parts:
        total = sum(sweep.part_jobs[i - 1] for i, _ in launched)
    else:
        total = sweep.n_jobs * bool(sweep.pending)
    with Progress(total) if total else contextlib.nullcontext() as progress:
        if sweep.parts and sweep.pool_size:
            code = run_cells(sweep) if sweep.pending else 0
            if code:
                return code
        elif sweep.parts:
            for i, part in launched:
                progress.part = f"part {i}/{len(sweep.parts)}: sweep={part}"
                print(f"[simbench] part {i}/{len(sweep.parts)}: sweep={part} ({time.perf_counter() - tic:.0f}s elapsed)",
                      flush=True)
                # -P: the working directory is not put on sys.path, so a user's tasks.py or measures.py there
                # cannot shadow the project's packages
                command = [sys.executable, "-P", "-m", "runners.sweep", f"sweep={part}",
                           f"name={sweep.sweep_dir.name}", *sweep.part_args]
                done = subprocess.run(command, env={**os.environ, NO_POST: "1"})
                if done.returncode != 0:
                    print(f"[simbench] part sweep={part} failed (exit {done.returncode}); rerun to resume",
                          file=sys.stderr)
                    return done.returncode
        elif sweep.pending:
            # the sweep's default launcher, before the command line's (normalised) overrides
            sys.argv[1:] = [*sweep.launcher, *argv]
            main()

    from runners.analyze import AnalysisError, analyze
    from runners.collect import collect_current

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not any((sweep.sweep_dir / "shards" / f"{key}.parquet").exists() for key in sweep.job_keys):
        # e.g. measures.include=[]: a train-and-extract stage (GPU) whose caches a later stage measures
        print(f"[simbench] done in {time.perf_counter() - tic:.1f}s: models and representations are cached; "
              "no result rows yet, so nothing to collect or analyse")
        return 0
    scores, n_rows, scores_key = collect_current(sweep.sweep_dir, jobs=sweep.job_keys)
    if not n_rows:
        print(f"[simbench] done in {time.perf_counter() - tic:.1f}s: no current result rows (no measure selected?); "
              "nothing to analyse")
        return 0
    try:
        analyze(sweep.sweep_dir, scores=scores, scores_key=scores_key, materialise=_materialiser(sweep.cells))
    except AnalysisError as exc:
        print(f"[simbench] {exc}", file=sys.stderr)
        return 1
    # unchanged shards (scores None): no row was computed in this run
    fresh = 0 if scores is None else int((scores["timestamp"] >= start).sum())
    print(f"[simbench] done in {time.perf_counter() - tic:.1f}s: {fresh} rows computed in this run, "
          f"{n_rows - fresh} reused from earlier runs" + ("" if fresh else " (nothing recomputed)"))
    return 0


def _pool_size(launcher: DictConfig | None) -> int:
    """The number of processes of a joblib launcher (``n_jobs``, negative counting back from the number of
    CPUs as in joblib), or 0 for any other launcher."""
    if launcher is None or not str(launcher.get("_target_", "")).endswith(".JoblibLauncher"):
        return 0
    n = int(launcher.get("n_jobs") or 1)
    return max(1, n if n > 0 else (os.cpu_count() or 1) + 1 + n)


def run_cells(sweep: Plan) -> int:
    """Run the pending jobs of every part of a composite sweep in one process pool (the joblib launcher's).

    Run part by part (a sweep of its own per part, as other launchers do), the pool would be started 13
    times for the default benchmark, Hydra would compose every job's config twice more (validating the
    batch, then in the worker: ~0.3 s of CPU per job, the first serially on one core) and each part would
    end with a tail where one core waits for the other's last job. Here the configs the plan composed and
    validated are handed to the workers directly, in the parts' order, so the cores stay busy from the
    first job to the last. Each job writes its log to ``logs/<name>/pool/<time>/<part>/<i>/simbench.log``
    like a Hydra job. Returns 0, or 1 when a job failed (finished jobs are kept: a rerun resumes).
    """
    from joblib import Parallel, delayed

    if _warming is not None:
        _warming.join()  # the same pool (same arguments): its workers have imported the job code meanwhile
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S") + f"-{time.time_ns() // 1000 % 1_000_000:06d}"
    log_root = sweep.sweep_dir.parent / "logs" / sweep.sweep_dir.name / "pool" / stamp
    todo, index = [], {}
    for cfg, part, pending in zip(sweep.cells, sweep.cell_part, sweep.cell_pending):
        i = index[part] = index.get(part, -1) + 1
        if pending:
            todo.append((cfg, log_root / part / str(i) / "simbench.log"))
    print(f"[simbench] {len(todo)} job(s) of {sweep.n_jobs} to run, {sweep.pool_size} at a time (one pool for "
          f"{'its one part' if len(sweep.parts) == 1 else f'all {len(sweep.parts)} parts'})", flush=True)
    # the progress folder is passed with each job: the workers may have started before it existed
    progress = os.environ.get(PROGRESS_DIR)
    # this process waits while the jobs run: it imports the analyses and reads their code meanwhile
    threading.Thread(target=_prepare_analyses, name="simbench-analyses-import", daemon=True).start()
    try:
        # batch_size=1: joblib would otherwise batch quick jobs together, and a batch at the end is a tail
        Parallel(n_jobs=sweep.pool_size, backend="loky", batch_size=1)(
            delayed(_pool_job)(cfg, log, progress) for cfg, log in todo)
    except Exception as exc:  # the job's own traceback is in its log and on stderr
        print(f"[simbench] a job failed ({type(exc).__name__}: {exc}); finished jobs are saved: rerun to resume",
              file=sys.stderr, flush=True)
        return 1
    return 0


def _prepare_analyses() -> None:
    """Import the analysis tasks (matplotlib, the task modules) and parse their modules' imports (the
    analyses' code keys, ``runners.analyze.code_version``), which the sweep needs after its last job (~1 s
    on one core there, with the other core idle); nothing is computed that depends on the results. A
    failure here is only a lost head start."""
    with contextlib.suppress(Exception):
        from runners.analyze import code_version, measures_version
        from tasks.base import load_analyses

        measures_version()
        for task in load_analyses().values():
            code_version(task.__module__)


_warming: threading.Thread | None = None


def _start_pool(n_jobs: int) -> None:
    """Start the pool of :func:`run_cells` (joblib's reusable loky executor, with the arguments
    ``run_cells`` gives it, so that it is reused) in a background thread and have each worker import the
    job code (torch, the zoo, every measure module: ~3 s of CPU each), while this process plans on one
    core; otherwise the workers do it after the plan, before the first job, with this process waiting.
    A failure here only loses the head start (``run_cells`` starts the pool itself)."""
    global _warming

    def start() -> None:
        from joblib import Parallel, delayed

        with contextlib.suppress(Exception):
            Parallel(n_jobs=n_jobs, backend="loky", batch_size=1)(delayed(_import_job_code)() for _ in range(n_jobs))

    _warming = threading.Thread(target=start, name="simbench-pool-start", daemon=True)
    _warming.start()


def _import_job_code() -> None:
    """In a pool worker: import what every job needs (the job code, every measure module, and torch's
    compiler stack, which ``torch.use_deterministic_algorithms`` and the first optimizer step import:
    ~1.4 s of CPU in each worker's first job otherwise), then wait a little so that each worker takes
    one of these calls."""
    import measures
    import runners.job  # noqa: F401

    measures.names()
    with contextlib.suppress(ImportError):
        import torch._dynamo  # noqa: F401
    time.sleep(0.3)


def _pool_job(cfg: DictConfig, log_file: Path, progress: str | None = None) -> None:
    """One job in a worker of :func:`run_cells`: its log to stdout and its own file (Hydra's format); a
    finished job leaves a file in the folder ``progress`` (the sweep's progress line counts them)."""
    from runners.job import run_job

    log_file.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()
    form = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(log_file)):
        handler.setFormatter(form)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        run_job(cfg)
    except Exception:
        log.exception("job failed: %s", log_file.parent)
        raise
    _freeze_long_lived()
    if progress:
        os.close(tempfile.mkstemp(dir=progress, suffix=".done")[0])


#: whether this process has moved its long-lived objects out of the garbage collector's sight
_frozen = False


def _freeze_long_lived() -> None:
    """After a pool worker's first job: collect, then ``gc.freeze()`` every object still alive (once).

    Why: joblib's loky worker calls ``gc.collect()`` after every task (at most once a second; without
    psutil it has no memory check to do instead), and a full collection walks every tracked object:
    ~480,000 once torch, pandas, Hydra, the zoo and the measures are imported (most of them during the
    first job), 0.2-0.4 s per job, which left each worker idle ~0.23 s between jobs on the default
    benchmark (~8 % of its time). Frozen objects are never examined or collected again; they are the
    imported modules' classes, functions and tables, which live as long as the process, plus what the
    first job left in the in-process caches, which is freed by reference counting when evicted. Objects
    created later, e.g. each job's config with its parent links, are collected as before. They are
    unfrozen at exit, so that the interpreter's shutdown frees them as it would otherwise (extension
    types, e.g. triton's through nanobind, report frozen instances as leaked)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
        atexit.register(gc.unfreeze)


def _materialiser(cells: list[DictConfig]) -> Callable[[str], None]:
    """For the analyses: extract a variant's representations by its key, from the config of a job that
    has the variant in its cell or pairs (the analyses read representations of finished jobs, which are
    not launched again when the model cache is gone)."""
    index: dict[str, tuple] = {}

    def materialise(variant_key: str) -> None:
        from runners import byo
        from runners.job import cell_variants, materialise as extract

        if not index:
            for cfg in cells:
                if not byo.enabled(cfg):
                    for variant in cell_variants(cfg):
                        index.setdefault(variant.key, (cfg, variant))
        if variant_key in index:
            print(f"[simbench] representations {variant_key} are not in the cache: extracting them for the analyses",
                  flush=True)
            extract(*index[variant_key])

    return materialise


def stop_pool() -> None:
    """End the job pool's worker processes (joblib's reusable loky executor, which the analyses reuse), if
    one was started: they are idle once the sweep has collected and analysed, and hold nothing to save
    (every file is written atomically, the in-memory caches are rebuilt by the next process). Killed, a
    worker skips the interpreter's teardown of its caches and ~480,000 frozen objects, which took ~2 s
    (both workers, after the last line) when loky's exit handler asked them to end normally."""
    from joblib.externals.loky import reusable_executor

    # loky's module-level reference to the executor it reuses (read, not created: the public
    # ``get_reusable_executor()`` would start a pool where none runs). It is private; should a joblib
    # release rename it, nothing is stopped here and the workers end at exit as they did before.
    executor = getattr(reusable_executor, "_executor", None)
    if executor is None:
        return
    if hasattr(executor, "terminate"):  # joblib's executor: also removes its temporary memmapping folders
        executor.terminate(kill_workers=True)
    else:
        executor.shutdown(wait=True, kill_workers=True)


def exit_now(code: int) -> None:
    """End this command with ``code`` once its work is done: stop the pool's workers, then exit normally.
    Only for the command-line entry point, never where :func:`cli` is called inside another program.

    Not ``os._exit``, although it saved ~1 s of the interpreter's teardown: skipping the exit handlers
    left joblib's temporary memmapping folders registered with loky's resource tracker, which warned of
    "leaked folder objects" after the last line (and removed them itself)."""
    stop_pool()
    raise SystemExit(code)


def stop_on_broken_pipe() -> None:
    """The reader of this command's output went away (``simbench sweep | head``): stop like a command
    killed by SIGPIPE, with no traceback and exit status 141. The workers are stopped as by SIGTERM;
    finished rows are in their shards, so a rerun resumes. (Python ignores SIGPIPE and raises
    ``BrokenPipeError`` from the next print instead; restoring SIGPIPE's default would also kill this
    process on a pipe to a dead pool worker, which loky handles.)"""
    _end_process_tree(128 + signal.SIGPIPE)


_closed_output_stops: bool | None = None


def on_closed_output(stop: bool) -> None:
    """What a log record does when its write finds the output pipe closed: ``stop``, stop the sweep
    (:func:`stop_on_broken_pipe`; its own process), or nothing (a pool worker: the sweep's process
    notices at its next write and stops the workers). Without it the logging module prints each such
    error as a traceback on stderr and carries on. The first call in a process decides."""
    global _closed_output_stops
    if _closed_output_stops is not None:
        return
    _closed_output_stops = stop
    report = logging.Handler.handleError

    def handle_error(handler: logging.Handler, record: logging.LogRecord) -> None:
        if not isinstance(sys.exc_info()[1], BrokenPipeError):
            report(handler, record)
        elif stop:
            stop_on_broken_pipe()

    logging.Handler.handleError = handle_error


if __name__ == "__main__":
    try:
        status = cli(sys.argv[1:])
    except BrokenPipeError:
        stop_on_broken_pipe()
    exit_now(status)
