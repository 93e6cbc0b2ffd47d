"""ZooCache keeps datasets made from their config alone (and their shortcut-marked versions) for the whole
process, so a worker's jobs do not generate them again; data read from files is kept per ZooCache only.
The kept data must equal what loading and preparing it afresh gives."""

from __future__ import annotations

import numpy as np

from tasks.zoo import cache as zoo_cache
from tasks.zoo import datasets
from tasks.zoo.cache import ModelSpec, ZooCache
from tasks.zoo.training import prepare_data

DATA = {"name": "dyck", "n_samples": 200, "max_len": 12, "n_classes": 3, "p_continue": 0.6, "p_open": 0.35,
        "probe_fraction": 0.2, "split_seed": 0, "generator_seed": 0}
ARCH = {"name": "transformer", "dim": 8, "depth": 1, "heads": 2, "mlp_dim": 8}


def spec(shortcut: float | None, seed: int = 0) -> ModelSpec:
    return ModelSpec(ARCH, DATA, {}, {"label_randomization": 0.0, "shortcut": shortcut, "input_noise": 0.0}, seed)


def same_data(a: datasets.Dataset, b: datasets.Dataset) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("x_train", "y_train", "x_probe", "y_probe")) \
        and (a.name, a.n_classes, a.domain) == (b.name, b.n_classes, b.domain)


def test_generated_data_is_made_once_per_process_and_equals_a_fresh_load(tmp_path, monkeypatch):
    zoo_cache._datasets.clear()
    loads = []
    load = datasets.load
    monkeypatch.setattr(datasets, "load", lambda *a, **k: loads.append(a) or load(*a, **k))
    first = ZooCache(tmp_path / "a").data_for(spec(None))
    second = ZooCache(tmp_path / "b").data_for(spec(None))  # another job's cache, same process
    assert first is second and len(loads) == 1
    assert same_data(first, load("dyck", **{k: v for k, v in DATA.items() if k != "name"}))


def test_shortcut_versions_are_kept_per_rate_and_seed_and_equal_fresh_markers(tmp_path):
    zoo_cache._datasets.clear()
    fresh = datasets.load("dyck", **{k: v for k, v in DATA.items() if k != "name"})
    for rate, seed in ((0.75, 0), (0.75, 1), (1.0, 0), (0.0, 0)):
        kept = ZooCache(tmp_path).data_for(spec(rate, seed))
        assert kept is ZooCache(tmp_path).data_for(spec(rate, seed))
        assert same_data(kept, prepare_data(fresh, spec(rate, seed).intervention, seed))
    assert not np.array_equal(ZooCache(tmp_path).data_for(spec(0.75, 0)).x_train,
                              ZooCache(tmp_path).data_for(spec(0.75, 1)).x_train)


def test_kept_datasets_are_bounded(tmp_path):
    zoo_cache._datasets.clear()
    for seed in range(zoo_cache.KEPT_DATASETS + 5):
        ZooCache(tmp_path).data_for(spec(0.5, seed))
    assert len(zoo_cache._datasets) == zoo_cache.KEPT_DATASETS


def test_file_backed_data_is_kept_per_zoo_cache_only(tmp_path, monkeypatch):
    """A config with a location key (``root``) names files that may change between jobs: each ZooCache
    reads them again."""
    zoo_cache._datasets.clear()
    loads = []
    monkeypatch.setattr(zoo_cache, "_load", lambda cfg: loads.append(cfg) or datasets.load("digits"))
    cfg = {"name": "digits", "root": str(tmp_path)}
    one = ZooCache(tmp_path)
    assert one.dataset(cfg) is one.dataset(cfg) and len(loads) == 1
    assert ZooCache(tmp_path).dataset(cfg) is not one.dataset(cfg) and len(loads) == 2
    assert not zoo_cache._datasets
