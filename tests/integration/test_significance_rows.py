"""Per-score significance in the sweep: the recorded p-value and CI equal a brute-force loop on the cached arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

import measures
from tasks.storage import read_arrays
from tasks.base import AnalysisContext
from tasks.significance import significance
from tests.integration.conftest import run_sweep

OVERRIDES = ("seed=range(0,2)", "perturbation.scale=0", "hydra/launcher=basic", "significance.n_permutations=20",
             "significance.n_resamples=15", "significance.measures=[cka_linear]")


def test_sweep_records_permutation_p_values_and_bootstrap_cis(tmp_path):
    run_sweep(tmp_path, *OVERRIDES)
    table = pd.read_parquet(tmp_path / "smoke" / "scores.parquet")
    with_null = table[table["p_value"].notna()]
    assert set(with_null["measure"]) == {"cka_linear"}  # disagreement is not in significance.measures
    assert table.loc[table["measure"].eq("disagreement"), "p_value"].isna().all()
    for row in with_null.itertuples():
        x = read_arrays(tmp_path / "cache" / "representations" / f"{row.model_a}.npz")[f"rep/{row.layer_a}"]
        y = read_arrays(tmp_path / "cache" / "representations" / f"{row.model_b}.npz")[f"rep/{row.layer_b}"]
        rng = np.random.default_rng(0)
        null = np.array([measures.compute("cka_linear", x, y[rng.permutation(len(y))]) for _ in range(20)])
        assert row.p_value == (1 + np.sum(null >= row.value - 1e-12)) / 21
        assert row.null_q95 == np.quantile(null, 0.95) or abs(row.null_q95 - np.quantile(null, 0.95)) < 1e-12
        ci = scipy.stats.bootstrap((np.arange(len(x)),), lambda i: measures.compute("cka_linear", x[i], y[i]),
                                   paired=True, vectorized=False, n_resamples=15, method="percentile",
                                   rng=np.random.default_rng(0))
        assert abs(row.ci_low - ci.confidence_interval.low) < 1e-12
        assert abs(row.ci_high - ci.confidence_interval.high) < 1e-12
    for sub in ("tables", "figures"):
        (tmp_path / "smoke" / sub).mkdir(exist_ok=True)
    result = significance(AnalysisContext(tmp_path / "smoke", table, tmp_path / "cache"))
    share = result.evaluations[result.evaluations["statistic"].eq("share_significant")]
    assert len(share) and share["value"].between(0, 1).all()

    # switching significance off reuses the rows computed without it (different keys): nothing is lost
    plain = run_sweep(tmp_path, "seed=range(0,2)", "perturbation.scale=0", "hydra/launcher=basic")
    again = pd.read_parquet(tmp_path / "smoke" / "scores.parquet")
    assert again["p_value"].isna().all() and again["row_key"].is_unique
