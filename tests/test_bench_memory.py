"""``benchmarks/bench_memory.py``: its kernels compute what their names say, and its table has a row each."""

from __future__ import annotations

import numpy as np

from benchmarks.bench_memory import kernels, main, table


def test_kernels_agree_with_numpy_references():
    a = np.random.default_rng(1).standard_normal((300, 40))
    k = kernels(a)
    assert np.isclose(k["sum"](), float(np.sum(a.astype(np.longdouble))), rtol=0, atol=1e-11)
    np.testing.assert_array_equal(k["argmax(axis=1)"](), [int(np.flatnonzero(r == r.max())[0]) for r in a])
    exact = a.astype(np.longdouble).sum(axis=0).astype(np.float64)
    for name in ("column_sums", "sum(axis=0)", "GEMV 1ᵀX"):
        np.testing.assert_allclose(k[name](), exact, rtol=0, atol=1e-12, err_msg=name)


def test_table_has_a_row_per_size_and_kernel(capsys):
    rows = table([(50, 8), (20, 4)], repeats=2, evict_mb=1)
    assert rows[0].startswith("| input | kernel |") and len(rows) == 2 + 2 * 5
    assert all(r.count("|") == 5 for r in rows)
    main(["--sizes", "16x4", "--repeats", "1", "--evict-cache-mb", "1"])
    out = capsys.readouterr().out
    assert "1 MiB written" in out and "| 16x4 (0 MiB) | GEMV 1ᵀX |" in out
