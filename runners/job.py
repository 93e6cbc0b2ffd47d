"""One sweep job: one cell of the grid (arch x data x training x intervention x seed x perturbation).

The job compares the cell's model with its partners (its own unperturbed model when the cell is
perturbed; the same configuration trained from each lower seed when it is not), on every layer and
with every selected measure, and writes one result shard atomically. Rows already in the shard are
never recomputed, so re-running a finished job is free and adding a measure computes only its rows.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import platform
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
from filelock import FileLock
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

import measures
from measures import _memo
from runners.config import selected_measures, validate_config
from tasks.storage import atomic_write, content_key, read_parquet, write_json, write_parquet
from tasks.zoo.architectures import representation_layers
from tasks.zoo.cache import ModelSpec, Variant, ZooCache, layer_names, semantic_data
from tasks.zoo.training import TrainingDivergedError
from tasks.zoo.datasets import domain_of

log = logging.getLogger(__name__)

# tqdm's default write lock holds a multiprocessing semaphore, made by the first bar of a process. In a pool
# worker that semaphore outlives the worker (``runners.sweep.stop_pool`` kills the idle workers), so Python's
# resource tracker warned "2 leaked semaphore objects" at the end of every sweep. The bars of a job never
# share their lock with another process: a thread lock does.
tqdm.set_lock(threading.RLock())

INTERVENTION_AXES = ("label_randomization", "shortcut", "input_noise")
LIBRARIES = ("torch", "numpy", "scipy", "scikit-learn", "pandas", "hydra-core", "simbench")


@dataclass(frozen=True)
class Pair:
    """Two model variants to compare. ``pair_type``: ``perturbation`` (a model and its noisy copy),
    ``seed`` (same config, different seeds), ``group`` (different intervention levels), ``layers``
    (a model with itself, across its layers); ``seed_group`` rows (group-wise measures over seeds
    0..s, see :func:`seed_group`) name the group's first and last model."""

    pair_type: str
    a: Variant
    b: Variant


@dataclass
class JobResult:
    job_key: str
    computed: int
    cached: int
    errors: int
    trained: int
    extracted: int
    seconds: float


#: ``model_spec``'s default level: the cell's own (a group level itself may be None, e.g. warm_start: null)
_OWN_LEVEL = object()


def model_spec(cfg: DictConfig, seed: int | None = None, level: Any = _OWN_LEVEL) -> ModelSpec:
    """The model spec of the job's cell, or of the same cell with another seed or group level."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    if level is not _OWN_LEVEL:
        node, key = _axis(plain, cfg.compare.groups.axis)
        # a level may be a mapping (e.g. train.warm_start levels); the spec holds plain containers
        node[key] = OmegaConf.to_container(level) if isinstance(level, DictConfig) else level
    return ModelSpec(
        arch=plain["arch"],
        data=plain["data"],
        train=plain["train"],
        intervention=plain["intervention"],
        seed=int(cfg.seed if seed is None else seed),
    )


def _axis(plain: dict, dotted: str) -> tuple[dict, str]:
    *parents, key = dotted.split(".")
    node = plain
    for p in parents:
        node = node[p]
    return node, key


def job_pairs(cfg: DictConfig) -> list[Pair]:
    """The pairs whose second model is this job's cell (so every unordered pair is computed once).

    * scale > 0: the cell's model against its unperturbed self;
    * scale = 0, no groups: against the same config trained from every lower seed;
    * scale = 0, ``compare.groups`` set: against every (level, seed) of the group grid that comes before
      this cell (earlier level, any of ``n_seeds`` seeds; or same level, lower seed);
    * ``compare.within_model``: also the model against itself across every ordered pair of layers;
    * ``compare.self_pairs`` (scale 0): also the model against itself, layer by layer: m(A, A), the
      reference that drift is measured from (not every measure gives its range's end on identical
      inputs, e.g. correlation matching gives dead units correlation 0).
    """
    spec = model_spec(cfg)
    base = Variant(spec)
    scale = float(cfg.perturbation.scale)
    if scale > 0:
        return [Pair("perturbation", base, Variant(spec, scale, int(cfg.perturbation.seed)))]
    pairs = []
    groups = cfg.compare.groups
    if groups is not None and groups.axis:
        levels = list(groups.levels)
        here = levels.index(OmegaConf.select(cfg, groups.axis))
        for i, level in enumerate(levels[: here + 1]):
            seeds = range(int(cfg.seed)) if i == here else range(int(groups.n_seeds))
            pairs += [Pair("seed" if i == here else "group", Variant(model_spec(cfg, s, level)), base) for s in seeds]
    elif cfg.compare.seed_pairs == "lower":
        pairs += [Pair("seed", Variant(model_spec(cfg, s)), base) for s in range(int(cfg.seed))]
    if cfg.compare.within_model:
        pairs.append(Pair("layers", base, base))
    if cfg.compare.get("self_pairs"):
        pairs.append(Pair("self", base, base))
    return pairs


def seed_group(cfg: DictConfig) -> list[Variant]:
    """The models of the cell's configuration trained from seeds 0..seed (this cell last), for the
    group-wise measures; empty for a perturbed cell, a first seed, or a sweep without seed pairs.

    The job of seed s computes the group of the first s + 1 seeds, so ``seed=range(K)`` yields the groups
    of N = 2..K seeds (what "stop searching?" reads). In a ``compare.groups`` sweep the group is the cell's
    own level. Its rows are keyed by the ordered model keys, like pair rows by their two keys.
    """
    if float(cfg.perturbation.scale) > 0 or int(cfg.seed) < 1:
        return []
    groups = cfg.compare.groups
    if not (groups is not None and groups.axis) and cfg.compare.seed_pairs != "lower":
        return []
    return [Variant(model_spec(cfg, s)) for s in range(int(cfg.seed) + 1)]


def results_root(cfg: DictConfig) -> Path:
    """``cfg.results_dir`` as an absolute path (relative to the launch directory, also on SLURM nodes)."""
    return Path(to_absolute_path(str(cfg.results_dir)))


def shard_path(cfg: DictConfig, job_key: str) -> Path:
    return results_root(cfg) / cfg.name / "shards" / f"{job_key}.parquet"


def job_key(cfg: DictConfig) -> str:
    """Identity of the job: the semantic config of its cell (not measures, paths, launcher, threads)."""
    from runners import byo

    if byo.enabled(cfg):  # the user's own models: keyed by their files' content
        return byo.job_key(cfg)
    plain = OmegaConf.to_container(cfg, resolve=True)
    semantic = {k: plain[k] for k in ("arch", "data", "train", "intervention", "perturbation", "seed", "compare")}
    # the model spec's form of the training config: warm_start normalised, and left out when null (the
    # default), so job keys from before the option existed stay valid
    semantic["train"] = model_spec(cfg).as_dict()["train"]
    semantic["data"] = semantic_data(semantic["data"])
    return content_key(semantic)


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA when available; the device never enters a result key."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        # Jobs run with torch.use_deterministic_algorithms(True), under which every cuBLAS call raises
        # unless cuBLAS gets a fixed workspace. The variable is read when the first cuBLAS handle is
        # made, so setting it here (before the job touches CUDA) suffices; a value set by the user or
        # by the slurm_gpu launcher's setup lines is kept.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return device


def run_job(cfg: DictConfig) -> JobResult:
    """Run one job to completion (idempotent).

    The expensive one-sided work of the topology measures is shared through ``cache/memo/`` next to
    the model cache (measures._memo.one_sided_shared): the other workers of a pool, and later runs,
    read it instead of computing it again."""
    with _memo.shared_dir(results_root(cfg) / "cache" / "memo", atomic_write):
        return _run_job(cfg)


def _run_job(cfg: DictConfig) -> JobResult:
    from runners import byo

    if byo.enabled(cfg):  # the user's own models instead of a zoo cell
        return byo.run_job(cfg)
    start = time.perf_counter()
    validate_config(cfg)
    # Measures run on one torch thread whatever runtime.num_threads says: parallel reductions sum in an
    # order that depends on the thread count (up to ~1e-7 relative in riemannian_distance), and thread
    # counts never enter a key, so values must not depend on them. Training and extraction use
    # runtime.num_threads (trained weights were bit-identical at 1 and 2 threads, tests/integration).
    torch.set_num_threads(1)
    threads = int(cfg.runtime.num_threads)
    torch.use_deterministic_algorithms(True)
    key = job_key(cfg)
    path = shard_path(cfg, key)
    chosen = selected_measures(cfg)
    specs = measure_specs(cfg, chosen)
    cell = " ".join(f"{k}={v}" for k, v in (("arch", cfg.arch.name), ("seed", cfg.seed),
                                            *cfg.intervention.items(), ("scale", cfg.perturbation.scale))
                    if k in ("arch", "seed", "scale") or v not in (0, 0.0, None))
    request = request_key(cfg, key, specs)
    if chosen and manifest_holds(cfg, key, request):
        log.info("%s: finished earlier (its shard and cell files are unchanged since): nothing to do", cell)
        return JobResult(key, 0, 0, 0, 0, 0, time.perf_counter() - start)
    old = read_parquet(path)
    if old is None and path.exists():
        log.warning("repairing damaged shard %s (unreadable or failed its checksums): its rows are recomputed", path)
    # Finished rows are not recomputed; a row whose measure raised (status "error": a crash, out of
    # memory) is not finished work and is retried by the next run. "undefined" rows are final answers.
    done = set(old.loc[old["status"].ne("error"), "row_key"]) if old is not None else set()
    cache = ZooCache(results_root(cfg) / "cache", device=resolve_device(cfg.runtime.device))
    # Every row's key is known before anything is loaded (the architecture alone names the layers).
    planned = [(pair, _comparisons(pair, specs, cfg, cache)) for pair in job_pairs(cfg)]
    group = seed_group(cfg)
    group_tasks = _group_comparisons(group, specs)
    expected = {t["row_key"] for _, tasks in planned for t in tasks} | {t["row_key"] for t in group_tasks}
    rows_done = bool(expected) and expected <= done

    # A job with rows to compute (or with none at all: it only trains its model) materialises its own cell
    # (train + extract, cached) first, so parallel jobs share the training. A job whose rows are all in its
    # shard only checks the cell files that exist (a damaged one is repaired) and creates none: a finished
    # sweep is recognised as finished without its model cache.
    # A model whose training diverged is recorded as such by the cache; every comparison with it becomes
    # an "undefined" row with the reason (a final answer: reruns neither retrain nor retry it).
    own = Variant(model_spec(cfg), float(cfg.perturbation.scale), int(cfg.perturbation.seed))
    try:
        with torch_threads(threads):
            cache.verify_model(own.model)
            if not rows_done or representation_path(cache, own).exists():
                cache.representations(own)
        diverged = ""
    except TrainingDivergedError as exc:
        diverged = str(exc)
        log.warning("%s: %s", cell, exc)
    sweep = cfg.name  # every row carries it: read from the config once (an omegaconf read costs ~30 us)
    new_rows: list[dict[str, Any]] = []
    for pair, tasks in planned:
        todo = [t for t in tasks if t["row_key"] not in done]
        if not todo:
            continue
        try:
            with torch_threads(threads):
                arrays_a, arrays_b = cache.representations(pair.a), cache.representations(pair.b)
        except TrainingDivergedError as exc:
            new_rows += [_row(task, _directed(pair, task), sweep, key, cache.device, status="undefined", error=str(exc))
                         for task in todo]
            continue
        # every row of the pair carries both models' probe accuracies: computed once per pair, not per row
        accuracies = (_probe_accuracy(arrays_a), _probe_accuracy(arrays_b))
        # no per-job bars under the sweep command, which shows one progress line for all jobs
        quiet = len(todo) < 20 or bool(os.environ.get("SIMBENCH_PROGRESS_DIR"))
        models: dict[tuple[str, int], torch.nn.Module] = {}  # the pair's models (see _pair_model)
        for task in tqdm(todo, desc=f"{pair.pair_type} pair", leave=False, disable=quiet, mininterval=1.0):
            new_rows.append(_compute_row(task, pair, arrays_a, arrays_b, accuracies, cache, sweep, key,
                                         models=models))

    todo = [t for t in group_tasks if t["row_key"] not in done]
    if todo:
        pair = Pair("seed_group", group[0], group[-1])
        try:
            with torch_threads(threads):
                group_arrays = [cache.representations(v) for v in group]
        except TrainingDivergedError as exc:
            new_rows += [_row(t, pair, sweep, key, cache.device, status="undefined", error=str(exc), n_models=len(group))
                         for t in todo]
        else:
            accuracies = (_probe_accuracy(group_arrays[0]), _probe_accuracy(group_arrays[-1]))
            new_rows += [_compute_row(t, pair, group_arrays[0], group_arrays[-1], accuracies, cache, sweep, key,
                                      group_arrays)
                         for t in todo]

    n_expected = len(expected)
    # A job that measures nothing (a train-and-extract stage) leaves its shard as it is.
    if chosen and (new_rows or _stale_flags_outdated(old, expected)):
        _update_shard(path, new_rows, expected)
    if chosen and expected <= done | {r["row_key"] for r in new_rows if r["status"] != "error"}:
        write_manifest(cfg, key, request, [model_path(cache, own.model), representation_path(cache, own)])
    errors = sum(r["status"] == "error" for r in new_rows)
    result = JobResult(key, len(new_rows), n_expected - len(new_rows), errors, cache.trained, cache.extracted,
                       time.perf_counter() - start)
    if new_rows:
        log.info("%s: computed %d rows (%d cached, %d errors; trained %d models, extracted %d) in %.1fs",
                 cell, result.computed, result.cached, errors, result.trained, result.extracted, result.seconds)
    elif not planned and diverged:
        log.info("%s: no partner to compare with, and the model diverged", cell)
    elif not planned:
        log.info("%s: model ready; no partner to compare with (seed 0 at scale 0 is the first of its group)", cell)
    else:
        log.info("%s: nothing to compute, all %d rows already in %s", cell, n_expected, path.name)
    return result


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _stale_flags_outdated(table: pd.DataFrame | None, expected: set[str]) -> bool:
    """Whether the shard's ``stale`` column differs from what the job's current config implies (stale =
    not asked for any more: a measure since removed or excluded, changed parameters, an older version)."""
    if table is None:
        return False
    stale = ~table["row_key"].isin(expected)
    current = table["stale"].fillna(False).astype(bool) if "stale" in table else pd.Series(False, index=table.index)
    return not current.equals(stale)


def _update_shard(path: Path, new_rows: list[dict[str, Any]], expected: set[str]) -> None:
    """Add ``new_rows`` to the shard and flag its stale rows, under a lock on the shard.

    Stale rows stay in the shard (switching back to a measure set reuses them) but ``collect`` leaves
    them out of the tables. The shard is re-read under the lock, so two runs of the same job at once
    (a relaunched sweep, another measure selection) merge their rows instead of overwriting them; the
    write itself is atomic, so a killed job leaves the old shard or the new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        current = read_parquet(path)
        tables = [t for t in (current, pd.DataFrame(new_rows) if new_rows else None) if t is not None]
        table = pd.concat(tables, ignore_index=True).drop_duplicates("row_key", keep="last").reset_index(drop=True)
        table["stale"] = ~table["row_key"].isin(expected)
        write_parquet(table, path)


@dataclass(frozen=True)
class MeasureSpec:
    """A selected measure as the job's rows use it: its metadata, parameters and significance settings
    (read from the config once per job, not once per row)."""

    name: str
    info: measures.MeasureInfo
    params: dict[str, Any]
    significance: dict[str, Any] | None


#: measure specs by the config nodes they are read from: a sweep plans hundreds of jobs with one measure set
_SPECS: dict[str, list[MeasureSpec]] = {}


def measure_specs(cfg: DictConfig, chosen: list[str]) -> list[MeasureSpec]:
    key = json.dumps([chosen, OmegaConf.to_container(cfg.measures.params, resolve=True),
                      OmegaConf.to_container(cfg.significance, resolve=True) if cfg.get("significance") else None],
                     sort_keys=True, default=str)
    if key not in _SPECS:
        info_of = measures.info  # one lookup: the package resolves its attributes lazily, on every access
        out = []
        for name in chosen:
            info = info_of(name)
            params = {**info.params, **dict(cfg.measures.params.get(name, {}))}
            out.append(MeasureSpec(name, info, params, _significance_settings(cfg, info)))
        _SPECS[key] = out
    return _SPECS[key]


def _comparisons(pair: Pair, specs: list[MeasureSpec], cfg: DictConfig, cache: ZooCache) -> list[dict[str, Any]]:
    """Every (layer pair, measure) the pair needs, with its row key (computed without loading data)."""
    # the two models may differ in architecture, width or depth (a compare.groups axis over arch): each
    # side has its own layers; for two models of one architecture both lists are the same
    layers, layers_b = _layers(cache, pair.a), _layers(cache, pair.b)
    keys = {False: (pair.a.key, pair.b.key), True: (pair.b.key, pair.a.key)}  # Variant.key hashes: once per pair
    compare_layers = cfg.compare.layers
    out = []
    for spec in specs:
        name, info, params, significance = spec.name, spec.info, spec.params, spec.significance
        if info.inputs == "representations":
            if pair.pair_type == "layers":
                lps = [(la, lb) for la in layers for lb in layers if la != lb]
            elif compare_layers == "same" or (pair.pair_type == "self" and compare_layers == "all"):
                lps = [(layer, layer) for layer in layers if layer in layers_b]
            elif compare_layers == "last":  # the final hidden layer only (ReSi's tests 1-5)
                lps = [(layers[-2] if len(layers) > 1 else layers[0], layers_b[-2] if len(layers_b) > 1 else layers_b[0])]
            else:
                lps = [(la, lb) for la in layers for lb in layers_b]
        elif pair.pair_type == "layers":
            continue  # outputs and whole networks are identical within one model
        elif info.inputs in ("outputs", "probabilities"):
            lps = [("output", "output")]
        elif info.inputs == "preactivations":
            lps = [("network", "network")]
        elif info.inputs == "models":
            lps = [("weights", "weights")]
        else:  # group-wise measures compare sets of models: one row per seed group (_group_comparisons)
            continue
        # Asymmetric measures are computed in both directions (B vs A as well), except within one
        # model, where every ordered layer pair is already there.
        directions = (False, True) if not info.symmetric and pair.pair_type not in ("layers", "self") else (False,)
        for la, lb in lps:
            for swap in directions:
                first, second = keys[swap]
                l1, l2 = (lb, la) if swap else (la, lb)
                identity = [first, second, l1, l2, name, params, info.version]
                if significance:  # only when on, so rows computed without it keep their keys
                    identity.append(significance)
                row_key = content_key(identity)
                out.append({"row_key": row_key, "measure": name, "layer_a": l1, "layer_b": l2, "params": params,
                            "significance": significance,
                            "swap": swap, "layer_index_a": _index(layers_b if swap else layers, l1),
                            "layer_index_b": _index(layers if swap else layers_b, l2)})
    return out


def _group_comparisons(group: list[Variant], specs: list[MeasureSpec]) -> list[dict[str, Any]]:
    """Every group-wise measure's row for the seed group (see :func:`seed_group`), with its row key."""
    out = []
    group_keys = [v.key for v in group]
    for spec in specs:
        if spec.info.inputs != "outputs_group" or len(group) < 2:
            continue
        row_key = content_key([group_keys, "output", spec.name, spec.params, spec.info.version])
        out.append({"row_key": row_key, "measure": spec.name, "layer_a": "output", "layer_b": "output",
                    "params": spec.params, "swap": False, "layer_index_a": -1, "layer_index_b": -1})
    return out


# -- finished jobs: a manifest next to the shard ------------------------------------------------------------
#
# A job that ends with every row it was asked for in its shard (none of them an error) writes
# ``shards/<job key>.done.json`` after the shard: the job's request (its key, the selected measures with
# their versions, parameters and significance settings, and the version of the code that names the rows),
# the sha256 of the shard as written, and the size and mtime of its cell's model and representation files.
# The sweep command launches no job whose manifest still holds (same request, shard bytes unchanged, cell
# files unchanged or gone), so a rerun of a finished sweep reads one small file and hashes one shard per
# job instead of starting it. A killed job (no manifest yet), a damaged or partial shard (its hash differs),
# a damaged model or representation file (rewritten: its mtime differs), another measure selection or
# parameter (another request) each make the job run again, and the job itself decides row by row what to
# recompute, as without the manifest.

#: the modules whose code decides a job's models, layers and their keys (read whole)
_ROW_MODULES = ("tasks/zoo/cache.py", "tasks/zoo/architectures.py")


@lru_cache(maxsize=1)
def _row_code_version() -> str:
    """Content key of the code that decides which rows a job has and how they are keyed: the functions of
    this module that plan the rows (an edit elsewhere in it, e.g. how a row is computed, keeps every
    manifest valid) and the zoo's model and layer code."""
    root = Path(__file__).resolve().parent.parent
    functions = (job_key, model_spec, _axis, job_pairs, seed_group, measure_specs, _comparisons, _group_comparisons,
                 _significance_settings, _layers, _index, request_key)
    return content_key([[inspect.getsource(f) for f in functions],
                        [hashlib.sha256((root / f).read_bytes()).hexdigest() for f in _ROW_MODULES]])


def request_key(cfg: DictConfig, key: str, specs: list[MeasureSpec]) -> str:
    """Identity of what the job is asked for: its cell and everything that decides its set of rows."""
    return content_key([key, _row_code_version(), OmegaConf.to_container(cfg.compare, resolve=True),
                        [[s.name, s.info.version, s.info.inputs, s.info.symmetric, s.params, s.significance]
                         for s in specs]])


def manifest_path(cfg: DictConfig, key: str) -> Path:
    return shard_path(cfg, key).with_name(f"{key}.done.json")


def model_path(cache: ZooCache, spec: ModelSpec) -> Path:
    return cache.model_path(spec)


def representation_path(cache: ZooCache, variant: Variant) -> Path:
    return cache.root / "representations" / f"{variant.key}.npz"


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def write_manifest(cfg: DictConfig, key: str, request: str, cell_files: list[Path]) -> None:
    """Record that the job is finished (see the comment above): written after its shard, atomically."""
    root = results_root(cfg)
    files = {str(p.relative_to(root)): _stat(p) for p in cell_files}
    write_json({"request": request, "shard": _digest(shard_path(cfg, key)), "files": files},
               manifest_path(cfg, key))


def manifest_holds(cfg: DictConfig, key: str, request: str) -> bool:
    """Whether the job's manifest says it is finished and nothing it recorded has changed since."""
    try:
        manifest = json.loads(manifest_path(cfg, key).read_text())
        if manifest["request"] != request or manifest["shard"] != _digest(shard_path(cfg, key)):
            return False
        root = results_root(cfg)
        # a cell file that is gone is no reason to run (rows need no model); one rewritten since is checked
        return all(stat is None or _stat(root / rel) in (None, stat) for rel, stat in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def is_finished(cfg: DictConfig, key: str | None = None) -> bool:
    """Whether the job needs no launch: every row it asks for is in its shard, checked from its manifest
    (never for the user's own models, ``byo``, nor for a train-and-extract stage without measures)."""
    from runners import byo

    if byo.enabled(cfg):
        return False
    chosen = selected_measures(cfg)
    if not chosen:
        return False
    key = key or job_key(cfg)
    return manifest_holds(cfg, key, request_key(cfg, key, measure_specs(cfg, chosen)))


def cell_variants(cfg: DictConfig) -> list[Variant]:
    """The job's own cell and every model variant it compares with (what an analysis may need extracted)."""
    pairs = job_pairs(cfg)
    return [Variant(model_spec(cfg), float(cfg.perturbation.scale), int(cfg.perturbation.seed)),
            *(v for p in pairs for v in (p.a, p.b)), *seed_group(cfg)]


def materialise(cfg: DictConfig, variant: Variant) -> None:
    """Train and extract ``variant`` into the sweep's cache, as the job of ``cfg`` would (for an analysis
    that needs representations a finished sweep's rows did not: e.g. the model cache was deleted)."""
    torch.use_deterministic_algorithms(True)
    cache = ZooCache(results_root(cfg) / "cache", device=resolve_device(cfg.runtime.device))
    with torch_threads(int(cfg.runtime.num_threads)):
        cache.representations(variant)


#: input kinds whose rows can get a permutation null and a bootstrap CI (two row-paired inputs)
_SIGNIFICANCE_INPUTS = ("representations", "outputs", "probabilities", "preactivations")
SIGNIFICANCE_COLUMNS = ("p_value", "null_q05", "null_q50", "null_q95", "n_permutations", "ci_low", "ci_high",
                        "n_resamples")


def _significance_settings(cfg: DictConfig, info: measures.MeasureInfo) -> dict[str, Any] | None:
    """The ``significance`` settings that apply to rows of ``info``'s measure, or None when off for it."""
    sig = cfg.get("significance")
    if sig is None or info.inputs not in _SIGNIFICANCE_INPUTS:
        return None
    chosen = sig.get("measures", "all")
    if chosen != "all" and info.name not in chosen:
        return None
    n_perm, n_boot = int(sig.get("n_permutations", 0)), int(sig.get("n_resamples", 0))
    if n_perm == 0 and n_boot == 0:
        return None
    return {"n_permutations": n_perm, "n_resamples": n_boot, "confidence": float(sig.get("confidence", 0.95)),
            "seed": int(sig.get("seed", 0))}


def _significance_columns(name: str, inputs: tuple, kwargs: dict, settings: dict[str, Any] | None) -> dict[str, Any]:
    """p-value and null quantiles (rows of the second input shuffled) and the bootstrap CI of one row."""
    out: dict[str, Any] = dict.fromkeys(SIGNIFICANCE_COLUMNS, float("nan"))
    if not settings:
        return out
    if settings["n_permutations"]:
        null = measures.permutation_test(name, *inputs, n_permutations=settings["n_permutations"],
                                         seed=settings["seed"], measure_params=kwargs)
        out.update(p_value=null.p_value, null_q05=null.null_quantiles[0.05], null_q50=null.null_quantiles[0.5],
                   null_q95=null.null_quantiles[0.95], n_permutations=settings["n_permutations"])
    if settings["n_resamples"]:
        ci = measures.bootstrap_ci(name, *inputs, n_resamples=settings["n_resamples"], seed=settings["seed"],
                                   confidence=settings["confidence"], measure_params=kwargs)
        out.update(ci_low=ci.low, ci_high=ci.high, n_resamples=settings["n_resamples"])
    return out


#: model key -> its compared layers (:func:`_layers`), for the models this process has planned rows of
_layer_names: dict[str, list[str]] = {}


def _layers(cache: ZooCache, variant: Variant) -> list[str]:
    # The architecture alone names the layers: no training or extraction is needed to plan the rows. The
    # model key fixes the architecture and the data (input shape, classes): built once per model.
    key = variant.model.key
    if key not in _layer_names:
        if len(_layer_names) >= 1024:
            _layer_names.clear()
        _layer_names[key] = representation_layers(cache.build(variant.model))
    return list(_layer_names[key])


def _index(layers: list[str], layer: str) -> int:
    return layers.index(layer) if layer in layers else -1


def _directed(pair: Pair, task: dict[str, Any]) -> Pair:
    """The pair in the direction of the task's row (B vs A for the swapped rows of asymmetric measures)."""
    return Pair(pair.pair_type, pair.b, pair.a) if task["swap"] else pair


def _pair_model(cache: ZooCache, variant: Variant, models: dict[tuple[str, int], torch.nn.Module],
                copy_index: int = 0) -> torch.nn.Module:
    """The model of ``variant`` for a model-based row: the pair's copy number ``copy_index`` in ``models``
    (made on first use). A pair of a model with itself gets two copies (``copy_index`` 0 and 1), as two
    different models would: a measure may rely on its two inputs being two objects (hooks registered on one
    of them)."""
    model = models.get((variant.key, copy_index))
    if model is None:
        model = models[variant.key, copy_index] = cache.variant_model(variant)
    return model


def _compute_row(task: dict[str, Any], pair: Pair, arrays_a: dict, arrays_b: dict, accuracies: tuple[float, float],
                 cache: ZooCache, sweep: str, key: str, group_arrays: list[dict] | None = None,
                 models: dict[tuple[str, int], torch.nn.Module] | None = None) -> dict[str, Any]:
    """The result row of ``task`` on the pair's loaded arrays; ``accuracies`` are the probe accuracies
    of ``arrays_a`` and ``arrays_b`` (:func:`_probe_accuracy`, computed once per pair by the caller);
    ``models``: the pair's models by variant key, shared by its model-based rows (:func:`_pair_model`; without
    it, the row gets copies of its own)."""
    name, la, lb = task["measure"], task["layer_a"], task["layer_b"]
    accuracy_a, accuracy_b = accuracies
    if task["swap"]:
        arrays_a, arrays_b = arrays_b, arrays_a
        accuracy_a, accuracy_b = accuracy_b, accuracy_a
    pair = _directed(pair, task)
    info = measures.info(name)
    kwargs = {k: v for k, v in task["params"].items() if k not in ("probe", "labels")}
    if info.inputs == "representations":
        inputs = (arrays_a[f"rep/{la}"], arrays_b[f"rep/{lb}"])
    elif info.inputs == "outputs":
        inputs = (arrays_a["logits"], arrays_b["logits"])
    elif info.inputs == "probabilities":
        inputs = (arrays_a["probabilities"], arrays_b["probabilities"])
    elif info.inputs == "preactivations":
        inputs = tuple([arr[f"pre/{n}"] for n in layer_names(arr, "pre/")] for arr in (arrays_a, arrays_b))
    elif info.inputs == "outputs_group":
        inputs = ([arr["probabilities"] for arr in group_arrays],)
    else:
        # One copy of each model for all the pair's model-based rows (``models``, kept by the caller per pair):
        # measures never change the models they are given (``tests/measures/test_functional_models.py``),
        # and a deep copy costs 0.4-2.5 ms per model and row.
        second = int(pair.b.key == pair.a.key)  # a model with itself: a second copy
        store = models if models is not None else {}
        inputs = (_pair_model(cache, pair.a, store), _pair_model(cache, pair.b, store, second))
        if "probe" in info.params:
            kwargs["probe"] = torch.from_numpy(cache.data_for(pair.a.model).x_probe).to(cache.device)
    if info.requires_labels:
        kwargs["labels"] = arrays_a["labels"]
    status, error, value, runtime = compute_status(name, inputs, kwargs)
    significance = dict.fromkeys(SIGNIFICANCE_COLUMNS, float("nan"))
    if status == "ok" and task.get("significance"):
        try:
            significance = _significance_columns(name, inputs, kwargs, task["significance"])
        except Exception as exc:  # the value stands; a failed null is reported in its row, never a crash
            status, error = "error", f"significance: {type(exc).__name__}: {exc}"
    shape_a = np.shape(inputs[0]) if isinstance(inputs[0], np.ndarray) else ()
    shape_b = np.shape(inputs[-1]) if isinstance(inputs[-1], np.ndarray) else ()
    return _row(task, pair, sweep, key, cache.device, status=status, error=error, value=value, runtime=runtime,
                n_models=len(group_arrays) if group_arrays else 2, significance=significance,
                n=int(shape_a[0]) if shape_a else int(arrays_a["labels"].shape[0]),
                d_a=int(shape_a[1]) if len(shape_a) == 2 else -1, d_b=int(shape_b[1]) if len(shape_b) == 2 else -1,
                accuracy_a=accuracy_a, accuracy_b=accuracy_b)


def _probe_accuracy(arrays: dict[str, np.ndarray]) -> float:
    """Probe-set accuracy of a variant's extracted outputs (the share of probe inputs whose largest
    logit is the label)."""
    return float((arrays["logits"].argmax(1) == arrays["labels"]).mean())


def compute_status(name: str, inputs: tuple, kwargs: dict[str, Any]) -> tuple[str, str, float, float]:
    """``measures.compute(name, *inputs, **kwargs)`` as a result row's status, message, value and runtime:
    an undefined measure is an ``undefined`` row with its reason, a failing one an ``error`` row with its
    message, never a crashed sweep."""
    status, error, value = "ok", "", float("nan")
    t0 = time.perf_counter()
    try:
        value = measures.compute(name, *inputs, **kwargs)
    except measures.UndefinedMeasureError as exc:
        status, error = "undefined", str(exc)
    except Exception as exc:
        status, error = "error", f"{type(exc).__name__}: {exc}"
    return status, error, value, time.perf_counter() - t0


def _row(task: dict[str, Any], pair: Pair, sweep: str, key: str, device: str, *, status: str, error: str,
         value: float = float("nan"), runtime: float = 0.0, n: int = -1, d_a: int = -1, d_b: int = -1,
         accuracy_a: float = float("nan"), accuracy_b: float = float("nan"), n_models: int = 2,
         significance: dict[str, float] | None = None) -> dict[str, Any]:
    """One result row of ``task`` (``pair`` in the row's direction, see :func:`_directed`). Rows of a comparison that
    never ran (a diverged model) keep the defaults: no value, no sizes, no accuracies."""
    name = task["measure"]
    info = measures.info(name)
    a, b = pair.a, pair.b
    return {
        "row_key": task["row_key"],
        "sweep": sweep,
        "job_key": key,
        "pair_type": pair.pair_type,
        "model_a": a.key,
        "model_b": b.key,
        "dataset": a.model.data["name"],
        "domain": domain_of(a.model.data["name"]),  # not in the row key: rows from before it keep their keys
        "arch_a": a.model.arch["name"],
        "arch_b": b.model.arch["name"],
        "seed_a": a.model.seed,
        "seed_b": b.model.seed,
        **{f"{axis}_{side}": _axis_value(v.model.intervention.get(axis)) for axis in INTERVENTION_AXES
           for side, v in (("a", a), ("b", b))},
        "warm_start_a": _warm_start_label(a),
        "warm_start_b": _warm_start_label(b),
        "scale_a": a.scale,
        "scale_b": b.scale,
        "perturb_seed_a": a.perturb_seed,
        "perturb_seed_b": b.perturb_seed,
        "layer_a": task["layer_a"],
        "layer_b": task["layer_b"],
        "layer_index_a": task["layer_index_a"],
        "layer_index_b": task["layer_index_b"],
        "n_models": n_models,
        "measure": name,
        "family": info.family,
        "measure_version": info.version,
        "params": json.dumps(task["params"], sort_keys=True, default=str),
        "value": value,
        **(significance or dict.fromkeys(SIGNIFICANCE_COLUMNS, float("nan"))),
        "higher_is_more_similar": info.higher_is_more_similar,
        "status": status,
        "error": error,
        "runtime_s": runtime,
        "n": n,
        "d_a": d_a,
        "d_b": d_b,
        "accuracy_a": accuracy_a,
        "accuracy_b": accuracy_b,
        **provenance(),
        "device": device,
        "timestamp": pd.Timestamp.now(tz="UTC"),
    }


def _warm_start_label(variant: Variant) -> str | None:
    """``train.warm_start`` of the variant's model as sorted JSON (None for a model trained from scratch)."""
    warm_start = variant.model.warm_start
    return None if warm_start is None else json.dumps(warm_start, sort_keys=True)


def _axis_value(value: Any) -> float:
    """Intervention levels as floats for the table; an absent intervention (null) is NaN."""
    return float("nan") if value is None else float(value)


@lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    return {
        "git_commit": git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "versions": json.dumps(versions, sort_keys=True),
        "hostname": platform.node(),
    }
