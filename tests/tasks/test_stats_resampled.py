"""The statistics vectorised over bootstrap resamples against a loop over the resamples (bit for bit).

The second code path is a plain loop written here: each resample's sub-matrix is cut with ``np.ix_`` and
handed to the one-resample statistic (``stats.group_separation``, ``stats.correlation_statistic``), whose
own tests compare it with scikit-learn and scipy. The benchmark's tables must not move by one bit when
the analyses take the vectorised path, so equality is exact, not approximate.
"""

from __future__ import annotations

import numpy as np
import pytest

from tasks import stats


def _matrix(rng: np.random.Generator, n: int, *, symmetric: bool, nan_share: float, ties: bool,
            distance: bool) -> np.ndarray:
    m = rng.random((n, n)) if distance else rng.standard_normal((n, n))
    if ties:  # few distinct values: many tied scores
        m = np.round(m * 3) / 3
    if symmetric:
        m = np.triu(m, 1) + np.triu(m, 1).T
    m[rng.random((n, n)) < nan_share] = np.nan
    if symmetric:
        m = np.where(np.isnan(m) | np.isnan(m.T), np.nan, m)
    np.fill_diagonal(m, np.nan)
    return m


CASES = [dict(symmetric=s, nan_share=p, ties=t, distance=d)
         for s in (True, False) for p in (0.0, 0.1) for t in (False, True) for d in (False, True)]


def _draws(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    return rng.integers(0, n, size=(n_boot, n))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("n_groups", [2, 3, 8])
def test_group_separation_auprc_resampled_equals_the_loop(case, n_groups):
    rng = np.random.default_rng(n_groups * 100 + len(str(case)))
    n = max(12, 5 * n_groups)
    sim = _matrix(rng, n, **case)
    levels = [0.0, 0.5, 0.75, 1.0, 2.0, 3.0, 4.0, 5.0][:n_groups]
    groups = np.array([levels[i % n_groups] for i in range(n)])
    idx = _draws(rng, n, 60)
    idx = idx[[len(set(groups[row])) >= 2 for row in idx]]
    higher = not case["distance"]
    fast = stats.group_separation_auprc_resampled(sim, list(groups), idx, higher_is_more_similar=higher)
    loop = np.array([stats.group_separation(sim[np.ix_(row, row)], list(groups[row]),
                                            higher_is_more_similar=higher).auprc for row in idx])
    np.testing.assert_array_equal(fast, loop)
    assert np.isfinite(loop).any()


def test_group_separation_auprc_resampled_infinite_values_and_one_group():
    rng = np.random.default_rng(3)
    sim = _matrix(rng, 10, symmetric=True, nan_share=0.0, ties=False, distance=False)
    sim[0, 1] = sim[1, 0] = np.inf
    sim[2, 3] = sim[3, 2] = -np.inf
    groups = [0, 1] * 5
    idx = _draws(rng, 10, 40)
    idx = idx[[len({groups[i] for i in row}) >= 2 for row in idx]]
    fast = stats.group_separation_auprc_resampled(sim, groups, idx)
    loop = [stats.group_separation(sim[np.ix_(r, r)], [groups[i] for i in r]).auprc for r in idx]
    np.testing.assert_array_equal(fast, loop)
    with pytest.raises(ValueError, match="at least two groups"):
        stats.group_separation_auprc_resampled(sim, groups, np.zeros((1, 10), dtype=int))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
def test_correlation_statistic_resampled_equals_the_loop(case, method):
    rng = np.random.default_rng(len(str(case)) + len(method))
    n = 9
    rep = _matrix(rng, n, **case)
    fun = _matrix(rng, n, symmetric=True, nan_share=case["nan_share"], ties=case["ties"], distance=True)
    idx = _draws(rng, n, 60)
    fast = stats.correlation_statistic_resampled(rep, fun, idx, method)
    loop = np.array([stats.correlation_statistic(rep[np.ix_(r, r)], fun[np.ix_(r, r)], method) for r in idx])
    np.testing.assert_array_equal(fast, loop)
    assert np.isfinite(loop).any()


def test_bootstrap_indices_and_interval_are_bootstrap_cis():
    units = np.arange(11)
    drawn = []

    def record(sample: np.ndarray) -> float:
        drawn.append(sample.copy())
        return float(np.sin(sample).sum())

    ci = stats.bootstrap_ci(units, record, n_boot=57, seed=4)
    idx = stats.bootstrap_indices(11, 57, seed=4)
    np.testing.assert_array_equal(idx, np.stack(drawn[1:]))  # drawn[0]: the estimate on all units
    values = np.sin(idx).sum(axis=1)
    values[3] = np.nan  # a failed replicate is ignored, as in bootstrap_ci
    ci = stats.bootstrap_ci(units, lambda s: np.nan if np.array_equal(s, idx[3]) else float(np.sin(s).sum()),
                            n_boot=57, seed=4)
    assert stats.percentile_interval(values) == (ci.low, ci.high)
