"""Damaged files are never read as data: every reader returns None (the caller recomputes) for a
truncated file, random bytes, an empty file, or a flipped byte; concurrent writers never expose a
partial file. Fast, in-process tests of tasks/storage.py and the model cache's checkpoint loader."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.storage import read_arrays, read_parquet, write_arrays, write_parquet
from tasks.zoo.cache import _load_state, state_digest

SEED = 1234


def _table(rng: np.random.Generator, n: int = 200) -> pd.DataFrame:
    return pd.DataFrame({
        "row_key": [f"{i:016x}" for i in rng.integers(0, 2**62, n)],
        "measure": rng.choice(["cka_linear", "disagreement", "rsa"], n),
        "value": rng.standard_normal(n),
        "status": ["ok"] * n,
        "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
    })


def _arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"rep/fc1": rng.standard_normal((64, 16)).astype(np.float32), "labels": rng.integers(0, 4, 64)}


def _checkpoint(path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(SEED)
    state = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).state_dict()
    torch.save({"state_dict": state, "sha256": state_digest(state)}, path)
    return state


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _readers(tmp_path: Path):
    """(name, path of an intact file, reader, check that a read value equals the original)."""
    rng = np.random.default_rng(SEED)
    table, arrays = _table(rng), _arrays(rng)
    write_parquet(table, tmp_path / "shard.parquet")
    write_arrays(arrays, tmp_path / "reps.npz")
    state = _checkpoint(tmp_path / "model.pt")
    return [
        ("parquet", tmp_path / "shard.parquet", read_parquet, lambda got: got.equals(table)),
        ("npz", tmp_path / "reps.npz", read_arrays,
         lambda got: got.keys() == arrays.keys() and all(np.array_equal(got[k], arrays[k]) for k in arrays)),
        ("checkpoint", tmp_path / "model.pt", _load_state, lambda got: _same_state(got, state)),
    ]


def test_intact_files_round_trip(tmp_path):
    for name, path, read, same in _readers(tmp_path):
        assert same(read(path)), name


def test_missing_files_read_as_none(tmp_path):
    assert read_parquet(tmp_path / "no.parquet") is None
    assert read_arrays(tmp_path / "no.npz") is None
    assert _load_state(tmp_path / "no.pt") is None


def test_truncated_files_are_never_data(tmp_path):
    """Every cut of the file (a writer killed without the atomic rename, a full disk) reads as None."""
    for name, path, read, _ in _readers(tmp_path):
        raw = path.read_bytes()
        damaged = tmp_path / f"cut{path.suffix}"
        for length in sorted(set(range(0, len(raw), max(1, len(raw) // 97))) | {len(raw) - 1}):
            damaged.write_bytes(raw[:length])
            assert read(damaged) is None, f"{name} truncated to {length} of {len(raw)} bytes was read as data"


def test_random_bytes_and_empty_files_are_never_data(tmp_path):
    rng = np.random.default_rng(SEED)
    for name, path, read, _ in _readers(tmp_path):
        size = path.stat().st_size
        for content in (b"", rng.bytes(size), rng.bytes(17)):
            path.write_bytes(content)
            assert read(path) is None, f"{name}: {len(content)} random bytes read as data"


@pytest.mark.parametrize("kind", ["parquet", "npz", "checkpoint"])
def test_flipped_bytes_are_detected_or_harmless(tmp_path, kind):
    """Bit rot: a flipped byte either makes the reader return None or leaves the data unchanged.

    Parquet pages carry CRCs and the column names are cross-checked between the file's three copies of
    them (tasks.storage); .npz members carry zip CRCs, checked for every member before loading; model
    checkpoints carry a sha256 of their tensors (torch.load does not check its zip CRCs).
    """
    name, path, read, same = next(r for r in _readers(tmp_path) if r[0] == kind)
    raw = path.read_bytes()
    rng = np.random.default_rng(SEED)
    damaged = tmp_path / f"flip{path.suffix}"
    positions = rng.choice(len(raw), size=min(400, len(raw)), replace=False)
    for pos in positions:
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        damaged.write_bytes(bytes(flipped))
        got = read(damaged)
        assert got is None or same(got), f"{name}: byte {pos} flipped was read as different data"


WRITER = """
import sys
from pathlib import Path
import numpy as np, pandas as pd
from tasks.storage import write_parquet
path, seed, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
for _ in range(n):
    size = int(rng.integers(50, 3000))
    write_parquet(pd.DataFrame({"row_key": [f"{i:016x}" for i in rng.integers(0, 2**62, size)],
                                "value": rng.standard_normal(size), "writer": seed}), path)
"""


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    """Two processes rewrite the same shard over and over while this one reads it: every read sees a
    whole table from one writer (write to a temporary file, then atomic rename), never a torn file."""
    path = tmp_path / "shard.parquet"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(seed), "80"]) for seed in (1, 2)]
    reads = 0
    try:
        while any(w.poll() is None for w in writers):
            table = read_parquet(path)
            if table is None:
                assert not path.exists(), "an existing shard could not be read"
                time.sleep(0.01)
                continue
            reads += 1
            assert table["writer"].nunique() == 1 and table["row_key"].str.len().eq(16).all()
    finally:
        for w in writers:
            w.wait(timeout=120)
    assert [w.returncode for w in writers] == [0, 0]
    assert reads > 0
    assert os.listdir(tmp_path) == ["shard.parquet"], "writers left temporary files behind"
