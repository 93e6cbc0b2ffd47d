"""``benchmarks/bench_backends.py``: both backends of every operation compute what its name says, the value
check catches a wrong result, and the table has a row per size and operation."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_backends import _agree, _arrays, main, operations, run, table
from benchmarks.bench_peers import inputs


@pytest.fixture(scope="module")
def ops():
    return {op.name: op for op in operations(60, 8, seed=3)}


def test_every_operation_matches_its_definition(ops):
    x, y = inputs(60, 8, 3)
    n, d = x.shape
    m, g = x.T @ y / n, x.T @ x / n + np.eye(d)
    rdm = np.array([[np.linalg.norm(x[i] - x[j]) for j in range(n)] for i in range(n)])
    entries = np.array([rdm[i, j] for i in range(n) for j in range(i + 1, n)])
    singular = np.sqrt(np.sort(np.linalg.eigvalsh(m.T @ m))[::-1])
    expected = {
        "XᵀY (GEMM)": np.einsum("ki,kj->ij", x, y),
        "XᵀX (SYRK)": np.einsum("ki,kj->ij", x, x),
        "XXᵀ": np.einsum("ik,jk->ij", x, x),
        "eigvalsh, D x D": np.sort(np.linalg.eigvals(g).real),
        "singular values, D x D": singular,
        "sort, N(N−1)/2 entries": sorted(entries),
        "argsort, N(N−1)/2 entries": sorted(range(len(entries)), key=lambda i: (entries[i], i)),
        "k-th smallest, N(N−1)/2 entries": sorted(entries)[len(entries) // 2],
        "argmax of each row": [max(range(d), key=lambda j: (r[j], -j)) for r in x],
        "column norms": [np.sqrt(sum(v * v for v in col)) for col in x.T],
        "all finite": True,
        "10 smallest of each row, block x N": np.sort(rdm, axis=1)[:, :10],
    }
    for name, want in expected.items():
        for side in ("numpy", "torch"):
            got = _arrays(getattr(ops[name], side)())
            np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float), rtol=1e-10,
                                       atol=1e-12, err_msg=f"{name} ({side})")


def test_factorisations_reconstruct_their_input(ops):
    x, y = inputs(60, 8, 3)
    n, d = x.shape
    m, g = x.T @ y / n, x.T @ x / n + np.eye(d)
    for side in ("numpy", "torch"):
        w, v = _arrays(getattr(ops["eigh, D x D"], side)())
        np.testing.assert_allclose(v @ np.diag(w) @ v.T, g, atol=1e-12)
        u, s, vh = _arrays(getattr(ops["svd with vectors, D x D"], side)())
        np.testing.assert_allclose(u @ np.diag(s) @ vh, m, atol=1e-12)
        u, s, vh = _arrays(getattr(ops["thin SVD, N x D"], side)())
        np.testing.assert_allclose(u @ np.diag(s) @ vh, x, atol=1e-12)
        q, r = _arrays(getattr(ops["thin QR, N x D"], side)())
        np.testing.assert_allclose(q @ r, x, atol=1e-12)
        np.testing.assert_allclose(q.T @ q, np.eye(d), atol=1e-12)
        lower = _arrays(getattr(ops["cholesky, D x D"], side)())
        np.testing.assert_allclose(lower @ lower.T, g, atol=1e-12)
        assert np.allclose(lower, np.tril(lower))


def test_the_value_check_catches_a_wrong_result(ops):
    op = ops["svd with vectors, D x D"]
    a, b = op.canonical(_arrays(op.numpy())), op.canonical(_arrays(op.torch()))
    assert _agree(a, b)  # the same factors up to the sign of each singular pair
    assert not _agree(a, (a[0], a[1] * (1 + 1e-6), a[2]))
    assert not _agree(np.zeros(3), np.zeros(4))


def test_table_has_a_row_per_size_and_operation(capsys):
    rows = run([(40, 6), (30, 4)], repeats=2, only={"XᵀY (GEMM)", "thin QR, N x D"})
    assert [(r["size"], r["operation"]) for r in rows] == [
        ("40x6", "XᵀY (GEMM)"), ("40x6", "thin QR, N x D"), ("30x4", "XᵀY (GEMM)"), ("30x4", "thin QR, N x D")]
    assert all(r["agree"] and r["numpy_s"] >= 0 and r["torch_s"] >= 0 for r in rows)
    lines = table(rows + [{**rows[0], "agree": False}]).splitlines()
    assert len(lines) == 2 + 5 and all(line.count("|") == 6 for line in lines)
    assert lines[-1].endswith("| differs |")
    main(["--sizes", "20x3", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "minimum of 1 rounds" in out and out.count("| 20x3 |") == len(operations(20, 3))
