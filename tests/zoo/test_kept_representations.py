"""ZooCache.representations keeps the arrays of unchanged representation files in the process: later calls
(other jobs of the same worker included) get the arrays a fresh read gives, and a replaced or damaged file
is read (and repaired) again."""

from __future__ import annotations

import numpy as np

from tasks import storage
from tasks.zoo import cache as zoo_cache
from tasks.zoo.cache import ModelSpec, Variant, ZooCache

DATA = {"name": "synthetic", "n_samples": 300, "n_features": 8, "n_classes": 3, "probe_fraction": 0.5,
        "split_seed": 0, "generator_seed": 0}
TRAIN = {"epochs": 2, "batch_size": 64, "lr": 0.003, "weight_decay": 0.0}
SPEC = ModelSpec({"name": "mlp", "depth": 2, "width": 8}, DATA, TRAIN,
                 {"label_randomization": 0.0, "shortcut": None, "input_noise": 0.0}, 0)


def path_of(cache: ZooCache, variant: Variant):
    return cache.root / "representations" / f"{variant.key}.npz"


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def test_an_unchanged_file_is_read_once_and_gives_what_a_fresh_read_gives(tmp_path, monkeypatch):
    zoo_cache._arrays.clear()
    reads = []
    monkeypatch.setattr(zoo_cache, "read_arrays", lambda p: reads.append(p) or storage.read_arrays(p))
    variant = Variant(SPEC, 0.1, 0)
    first = ZooCache(tmp_path).representations(variant)  # trains, extracts, writes
    n = len(reads)
    second = ZooCache(tmp_path).representations(variant)  # another job of this process
    third = ZooCache(tmp_path).representations(variant)
    assert len(reads) == n
    fresh = storage.read_arrays(path_of(ZooCache(tmp_path), variant))
    assert same(first, fresh) and same(second, fresh) and same(third, fresh)
    second["extra"] = np.zeros(1)  # a caller's own dict: adding to it changes no later call's
    assert "extra" not in ZooCache(tmp_path).representations(variant)


def test_a_damaged_or_replaced_file_is_read_again(tmp_path, caplog):
    zoo_cache._arrays.clear()
    cache = ZooCache(tmp_path)
    variant = Variant(SPEC)
    good = cache.representations(variant)
    path = path_of(cache, variant)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data[:-7]))  # damaged and shorter: its signature changes
    repaired = ZooCache(tmp_path).representations(variant)
    assert "repairing damaged representation file" in caplog.text
    assert same(repaired, good) and same(storage.read_arrays(path), good)
    other = {k: v + 1 if v.dtype.kind == "f" else v for k, v in good.items()}
    storage.write_arrays(other, path)  # replaced (a new file) with other values
    assert same(ZooCache(tmp_path).representations(variant), other)


def test_kept_arrays_are_bounded_in_bytes(tmp_path, monkeypatch):
    zoo_cache._arrays.clear()
    cache = ZooCache(tmp_path)
    sizes = []
    for scale in (0.0, 0.1, 0.2, 0.3):
        sizes.append(sum(a.nbytes for a in cache.representations(Variant(SPEC, scale, 0)).values()))
    assert len(zoo_cache._arrays) == 4
    zoo_cache._arrays.clear()
    monkeypatch.setattr(zoo_cache, "KEPT_REPRESENTATION_BYTES", sizes[0] * 2 + 1)
    for scale in (0.0, 0.1, 0.2, 0.3):
        cache.representations(Variant(SPEC, scale, 0))
    assert len(zoo_cache._arrays) == 2
    assert [p.endswith(f"{Variant(SPEC, s, 0).key}.npz") for p, s in zip(zoo_cache._arrays, (0.2, 0.3))] == [True, True]
