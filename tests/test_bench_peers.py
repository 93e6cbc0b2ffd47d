"""The cache flush of ``benchmarks/bench_peers.py``: its size follows the machine's last-level cache."""

from __future__ import annotations

from benchmarks.bench_peers import eviction_mb, last_level_cache_mb


def _cache_dir(tmp_path, sizes: dict[str, str]):
    for index, size in sizes.items():
        (tmp_path / index).mkdir()
        (tmp_path / index / "size").write_text(size + "\n")
    return str(tmp_path)


def test_last_level_cache_is_the_largest_cache_in_sysfs(tmp_path):
    # the layout of /sys/devices/system/cpu/cpu0/cache on the Intel VM of BENCHMARKS.md
    root = _cache_dir(tmp_path, {"index0": "48K", "index1": "32K", "index2": "2048K", "index3": "307200K"})
    assert last_level_cache_mb(root) == 300
    empty = tmp_path / "empty"
    empty.mkdir()
    assert last_level_cache_mb(str(empty)) is None  # no sysfs cache entries (not Linux, or hidden)


def test_sizes_round_up_and_other_units(tmp_path):
    assert last_level_cache_mb(_cache_dir(tmp_path, {"index0": "1536K", "index3": "1M"})) == 2  # 1.5 MiB -> 2


def test_eviction_size(monkeypatch):
    import benchmarks.bench_peers as bench

    assert eviction_mb(0) == 0 and eviction_mb(128) == 128  # an explicit size wins, 0 switches the flush off
    monkeypatch.setattr(bench, "last_level_cache_mb", lambda: 300)
    assert bench.eviction_mb(None) == 600
    monkeypatch.setattr(bench, "last_level_cache_mb", lambda: 32)
    assert bench.eviction_mb(None) == 64
    monkeypatch.setattr(bench, "last_level_cache_mb", lambda: None)
    assert bench.eviction_mb(None) == 64
