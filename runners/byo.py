"""The bring-your-own job: the user's feature files or checkpoints (``byo.*``) compared like zoo models.

``python -m runners.sweep sweep=byo byo.features='[a.npz,b.npz,c.npz]'`` (or a directory) runs one job: it
loads every source (:mod:`tasks.zoo.byo`, which refuses bad files naming the file and the problem), puts
their arrays into the representation cache under content keys (so the analyses that re-read
representations find them), and compares every pair of models as a seed pair (every layer pair, every
applicable measure) and every model with itself across its layers; the sweep then collects and runs every
analysis, and the ones that need what user models do not have (weight noise, intervention groups) say
they are not applicable. Measures that need what a source lacks are left out and logged: functional
measures without ``outputs``, label-based ones without ``labels``, the activation-region score without
ReLU pre-activations, weight-space and other model measures without two checkpoints of one architecture.
"""

from __future__ import annotations

import json
import logging
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

import measures
from runners.config import selected_measures
from tasks.storage import content_key, read_arrays, read_parquet, write_arrays
from tasks.zoo.byo import Source, file_key, load_sources

log = logging.getLogger(__name__)

BYO_VERSION = "1"


def enabled(cfg: DictConfig) -> bool:
    """Whether the config names user models (``byo.features`` or ``byo.checkpoints``)."""
    byo = cfg.get("byo")
    return byo is not None and bool(byo.get("features") or byo.get("checkpoints"))


def _settings(cfg: DictConfig) -> dict[str, Any]:
    byo = OmegaConf.to_container(cfg.byo, resolve=True)
    return {"features": byo.get("features") or [], "checkpoints": byo.get("checkpoints") or [],
            "arch": byo.get("arch"), "probe": byo.get("probe"), "layers": byo.get("layers")}


def sources(cfg: DictConfig) -> list[Source]:
    return load_sources(**_settings(cfg))


def variant_key(source: Source, cfg: DictConfig) -> str:
    """The cache key of a source's arrays: its file's content, the probe's content, the layers and arch."""
    s = _settings(cfg)
    probe = file_key(Path(s["probe"])) if source.model is not None else None
    return content_key({"byo": source.key, "probe": probe, "layers": s["layers"], "arch": s["arch"],
                        "byo_version": BYO_VERSION})


def job_key(cfg: DictConfig) -> str:
    """The job's identity: the content of every user file (in order) and the comparison settings. The
    files are loaded and checked first, so the sweep refuses a bad file before anything runs."""
    sources(cfg)
    s = _settings(cfg)
    files = [str(p) for p in s["features"]] + [str(p) for p in s["checkpoints"]]
    contents = [file_key(p) if Path(p).is_file() else str(p) for p in files]
    probe = file_key(Path(s["probe"])) if s["probe"] and Path(s["probe"]).is_file() else None
    return content_key({"byo": contents, "probe": probe, "layers": s["layers"], "arch": s["arch"],
                        "compare": OmegaConf.to_container(cfg.compare, resolve=True), "byo_version": BYO_VERSION})


def applicable(name: str, a: Source, b: Source) -> str | None:
    """Why measure ``name`` cannot compare sources ``a`` and ``b`` (None: it can)."""
    info = measures.info(name)
    if info.inputs == "outputs_group":
        return "group-wise (compares sets of models; the analyses call it)"
    if info.inputs in ("outputs", "probabilities") and "logits" not in a.arrays:
        return "needs outputs (add an 'outputs' array to the feature files)"
    if info.requires_labels and "labels" not in a.arrays:
        return "needs labels (add a 'labels' array / a probe set with y)"
    if info.inputs == "preactivations" and not (any(k.startswith("pre/") for k in a.arrays)
                                                 and any(k.startswith("pre/") for k in b.arrays)):
        return "needs ReLU pre-activations (checkpoints of ReLU networks only)"
    if info.inputs == "models":
        if a.model is None or b.model is None:
            return "needs the models (checkpoints, not feature files)"
        if a.arch != b.arch or [p.shape for p in a.model.parameters()] != [p.shape for p in b.model.parameters()]:
            return "needs two models of the same architecture"
    return None


def run_job(cfg: DictConfig):
    """Compare every pair of the user's models (one shard), like :func:`runners.job.run_job` does for a cell."""
    from runners.job import (JobResult, _stale_flags_outdated, _update_shard, provenance, results_root, shard_path,
                             torch_threads)

    start = time.perf_counter()
    # Loading and running the user's models uses runtime.num_threads; the measures run on one thread, as in
    # runners.job.run_job (values must not depend on the thread count, which never enters a key).
    with torch_threads(int(cfg.runtime.num_threads)):
        models = sources(cfg)
    torch.set_num_threads(1)
    key = job_key(cfg)
    path = shard_path(cfg, key)
    old = read_parquet(path)
    done = set(old.loc[old["status"].ne("error"), "row_key"]) if old is not None else set()
    cache_dir = results_root(cfg) / "cache" / "representations"
    keys = {}
    for s in models:
        keys[s.name] = variant_key(s, cfg)
        target = cache_dir / f"{keys[s.name]}.npz"
        if read_arrays(target) is None:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_arrays(s.arrays, target)
    chosen = selected_measures(cfg)
    pairs = [("seed", a, b) for a, b in combinations(models, 2)]
    if cfg.compare.within_model:
        pairs += [("layers", s, s) for s in models]
    skipped: dict[str, str] = {}
    tasks = []
    for pair_type, a, b in pairs:
        layers = a.layers
        for name in chosen:
            reason = applicable(name, a, b)
            if reason:
                skipped[name] = reason
                continue
            info = measures.info(name)
            params = {**info.params, **dict(cfg.measures.params.get(name, {}))}
            if info.inputs == "representations":
                if pair_type == "layers":
                    lps = [(la, lb) for la in layers for lb in layers if la != lb]
                elif cfg.compare.layers == "same":
                    lps = [(la, la) for la in layers]
                elif cfg.compare.layers == "last":
                    lps = [(layers[-2], layers[-2])] if len(layers) > 1 else [(layers[0], layers[0])]
                else:
                    lps = [(la, lb) for la in layers for lb in layers]
            elif pair_type == "layers":
                continue
            else:
                tag = {"outputs": "output", "probabilities": "output", "preactivations": "network",
                       "models": "weights"}[info.inputs]
                lps = [(tag, tag)]
            directions = (False, True) if not info.symmetric and pair_type == "seed" else (False,)
            for la, lb in lps:
                for swap in directions:
                    first, second, l1, l2 = (b, a, lb, la) if swap else (a, b, la, lb)
                    row_key = content_key([keys[first.name], keys[second.name], l1, l2, name, params, info.version])
                    expected_row = {"row_key": row_key, "measure": name, "params": params, "pair_type": pair_type,
                                    "a": first, "b": second, "layer_a": l1, "layer_b": l2}
                    tasks.append(expected_row)
    for name, reason in sorted(skipped.items()):
        log.info("byo: measure %s skipped: %s", name, reason)
    todo = [t for t in tasks if t["row_key"] not in done]
    rows = [_row(t, models, keys, cfg, key, provenance()) for t in tqdm(todo, desc="byo pairs", disable=len(todo) < 20,
                                                                        mininterval=1.0)]
    expected = {t["row_key"] for t in tasks}
    if rows or _stale_flags_outdated(old, expected):
        _update_shard(path, rows, expected)
    errors = sum(r["status"] == "error" for r in rows)
    log.info("byo: %d models, computed %d rows (%d cached, %d errors) in %.1fs", len(models), len(rows),
             len(expected) - len(rows), errors, time.perf_counter() - start)
    return JobResult(key, len(rows), len(expected) - len(rows), errors, 0, 0, time.perf_counter() - start)


def _row(task: dict[str, Any], models: list[Source], keys: dict[str, str], cfg: DictConfig, job: str,
         prov: dict[str, Any]) -> dict[str, Any]:
    name, a, b, la, lb = task["measure"], task["a"], task["b"], task["layer_a"], task["layer_b"]
    info = measures.info(name)
    kwargs = {k: v for k, v in task["params"].items() if k not in ("probe", "labels")}
    if info.inputs == "representations":
        inputs = (a.arrays[f"rep/{la}"], b.arrays[f"rep/{lb}"])
    elif info.inputs == "outputs":
        inputs = (a.arrays["logits"], b.arrays["logits"])
    elif info.inputs == "probabilities":
        inputs = (a.arrays["probabilities"], b.arrays["probabilities"])
    elif info.inputs == "preactivations":
        inputs = tuple([s.arrays[k] for k in s.arrays if k.startswith("pre/")] for s in (a, b))
    else:
        inputs = (a.model, b.model)
        if "probe" in info.params:
            from tasks.zoo.byo import load_probe

            kwargs["probe"] = torch.from_numpy(load_probe(cfg.byo.probe).x)
    if info.requires_labels:
        kwargs["labels"] = a.arrays["labels"]
    from runners.job import compute_status

    status, error, value, runtime = compute_status(name, inputs, kwargs)
    index = {s.name: i for i, s in enumerate(models)}
    labels = a.arrays.get("labels")

    def accuracy(s: Source) -> float:
        return float((s.arrays["logits"].argmax(1) == labels).mean()) if labels is not None and "logits" in s.arrays else float("nan")

    shape_a = np.shape(inputs[0]) if isinstance(inputs[0], np.ndarray) else ()
    shape_b = np.shape(inputs[1]) if isinstance(inputs[1], np.ndarray) else ()
    n = next(iter(a.arrays.values())).shape[0]
    return {
        "row_key": task["row_key"], "sweep": cfg.name, "job_key": job, "pair_type": task["pair_type"],
        "model_a": keys[a.name], "model_b": keys[b.name], "dataset": "byo",
        # each user model is a "seed" of one configuration: its position in the list
        "arch_a": a.arch, "arch_b": b.arch, "seed_a": index[a.name], "seed_b": index[b.name],
        "label_randomization_a": 0.0, "label_randomization_b": 0.0, "shortcut_a": float("nan"),
        "shortcut_b": float("nan"), "input_noise_a": 0.0, "input_noise_b": 0.0,
        "warm_start_a": None, "warm_start_b": None, "scale_a": 0.0, "scale_b": 0.0,
        "perturb_seed_a": 0, "perturb_seed_b": 0, "source_a": str(a.path), "source_b": str(b.path),
        "layer_a": la, "layer_b": lb,
        "layer_index_a": a.layers.index(la) if la in a.layers else -1,
        "layer_index_b": b.layers.index(lb) if lb in b.layers else -1,
        "measure": name, "family": info.family, "measure_version": info.version,
        "params": json.dumps(task["params"], sort_keys=True, default=str), "value": value,
        "higher_is_more_similar": info.higher_is_more_similar, "status": status, "error": error,
        "runtime_s": runtime, "n": n, "d_a": int(shape_a[1]) if len(shape_a) == 2 else -1,
        "d_b": int(shape_b[1]) if len(shape_b) == 2 else -1, "accuracy_a": accuracy(a), "accuracy_b": accuracy(b),
        **prov, "device": "cpu", "timestamp": pd.Timestamp.now(tz="UTC"),
    }
