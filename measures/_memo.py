"""Per-input memo for the one-sided work of pair measures (distance matrices, neighbour lists, spectra).

A sweep compares each representation with many partners (every other seed, group level and layer), and
several measures need the same one-sided preparation of an input. Work that depends on one input only
is therefore done once per input: :func:`one_sided` keys it by the input's content (a 128-bit
xxHash of its bytes, with dtype and shape; :func:`digest`) plus a tag and the parameters, and keeps the results in a small in-process
LRU bounded by entry count and bytes. The value returned for a hit is the very object computed on the
first call, so callers must treat it as read-only (no in-place updates).

Why our own rather than ``functools.lru_cache``: tensors hash by identity, not content, and a job
builds fresh tensors for every call; an identity key would never hit (and could alias freed memory).
Only CPU tensors are memoised (hashing a GPU tensor would copy it to the host); others are computed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
import xxhash

T = TypeVar("T")

MAX_ENTRIES = 512
MAX_BYTES = 512 * 2**20

_store: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
_bytes = 0
stats = {"hits": 0, "misses": 0}


_generation = 0


def digest(x: torch.Tensor) -> tuple:
    """Content key of a CPU tensor: dtype, shape and a 128-bit xxHash (XXH3) of its bytes.

    XXH3 over a zero-copy view runs at ~60 GB/s here: 0.07 ms for a 2000 x 256 float64 input, against
    2.1 ms for SHA-1 (which made the key 5-10 % of a cheap measure). It is not a cryptographic hash; the
    inputs are not adversarial, and 128 bits make an accidental collision negligible (~2^-64 for 2^32
    keys). The key is also kept on the tensor object with its version counter
    (torch bumps ``_version`` on every in-place change), so hashing the same unchanged tensor again is
    free; :func:`clear` invalidates those too.
    """
    cached = getattr(x, "_simbench_digest", None)
    if cached is not None and cached[0] == (_generation, x._version):
        return cached[1]
    data = np.ascontiguousarray(x.detach().numpy())
    key = (str(x.dtype), tuple(x.shape), xxhash.xxh3_128_digest(data))
    try:
        x._simbench_digest = ((_generation, x._version), key)
    except (AttributeError, RuntimeError):  # some tensor subclasses refuse new attributes
        pass
    return key


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 64


def one_sided(tag: str, x: torch.Tensor, compute: Callable[[], T], **params: Any) -> T:
    """``compute()``, memoised by (tag, content of ``x``, params). ``compute`` must depend on nothing else.

    Exceptions are not memoised (the next call recomputes and raises again with its own message).
    """
    global _bytes
    if x.device.type != "cpu" or x.requires_grad or MAX_ENTRIES == 0:
        return compute()
    key = (tag, digest(x), tuple(sorted((k, repr(v)) for k, v in params.items())))
    hit = _store.get(key)
    if hit is not None:
        _store.move_to_end(key)
        stats["hits"] += 1
        return hit[0]
    stats["misses"] += 1
    value = compute()
    size = _nbytes(value)
    if size <= MAX_BYTES // 4:
        _store[key] = (value, size)
        _bytes += size
        while len(_store) > MAX_ENTRIES or _bytes > MAX_BYTES:
            _, (_, old) = _store.popitem(last=False)
            _bytes -= old
    return value


def clear() -> None:
    """Drop every memoised result (tests use it to compare memoised and fresh values)."""
    global _bytes, _generation
    _store.clear()
    _bytes = 0
    _generation += 1
    stats.update(hits=0, misses=0)
