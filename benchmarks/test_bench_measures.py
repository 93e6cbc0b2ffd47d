"""pytest-benchmark suite for every array measure (not part of the default test run).

    uv run pytest benchmarks/test_bench_measures.py --benchmark-only            # times each measure
    uv run pytest benchmarks/test_bench_measures.py --benchmark-disable         # runs each once (smoke)

The size is (N, D) = (1000, 128); ``benchmarks/bench_measures.py`` prints the larger table in
BENCHMARKS.md.
"""

from __future__ import annotations

import numpy as np
import pytest

import measures
from measures import _memo
from benchmarks.bench_measures import inputs_for

ARRAY_MEASURES = [n for n in measures.names() if measures.info(n).inputs != "models"]


@pytest.mark.parametrize("name", ARRAY_MEASURES)
def test_measure_speed(benchmark, name):
    args, kwargs = inputs_for(name, 1000, 128, "cpu", np.random.default_rng(0))
    benchmark.group = measures.info(name).family
    try:
        # cold calls: the per-input memo is cleared before each round
        benchmark.pedantic(measures.compute, args=(name, *args), kwargs=kwargs, setup=_memo.clear, rounds=3)
    except measures.UndefinedMeasureError:
        pytest.skip(f"{name} is undefined at this size (documented behaviour)")
