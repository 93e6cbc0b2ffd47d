"""Sample-size analysis: biased vs debiased CKA of independent inputs (numpy closed forms), the N rule."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import measures
from tasks import sample_size as ss
from tasks.base import representational_measures
from tests.tasks.test_benchmark_tests import context


def numpy_cka(x: np.ndarray, y: np.ndarray, debiased: bool) -> float:
    """Kornblith et al.'s Gram route: HSIC of centred Grams (biased), or of U-centred Grams (debiased)."""
    n = len(x)
    k, l = x @ x.T, y @ y.T

    def centre(g):
        if not debiased:
            h = np.eye(n) - 1.0 / n
            return h @ g @ h
        g = g.copy()
        np.fill_diagonal(g, 0)
        r = g.sum(1)
        u = g - r[:, None] / (n - 2) - r[None, :] / (n - 2) + r.sum() / ((n - 1) * (n - 2))
        np.fill_diagonal(u, 0)
        return u

    kc, lc = centre(k), centre(l)
    return float((kc * lc).sum() / np.sqrt((kc * kc).sum() * (lc * lc).sum()))


def test_cka_bias_table_matches_numpy_on_the_same_draws():
    table = ss.cka_bias_table(n_grid=(8, 40), d_grid=(3, 20), repeats=2, seed=5)
    rng = np.random.default_rng(5)
    for d in (3, 20):
        for n in (8, 40):
            draws = [ss.independent_inputs(n, d, rng) for _ in range(2)]
            row = table[table["n"].eq(n) & table["d"].eq(d)].iloc[0]
            assert row["cka_linear"] == pytest.approx(np.mean([numpy_cka(x, y, False) for x, y in draws]), abs=1e-10)
            assert row["cka_linear_debiased"] == pytest.approx(np.mean([numpy_cka(x, y, True) for x, y in draws]), abs=1e-10)
    # biased CKA of independent inputs is large when D >~ N; the debiased one is centred near 0
    assert table.loc[table["n"].eq(8) & table["d"].eq(20), "cka_linear"].iloc[0] > 0.5


def test_first_n_below_is_the_n_from_which_on_the_curve_stays_below():
    table = pd.DataFrame({"n": [1, 2, 4, 8] * 3, "d": [1] * 4 + [2] * 4 + [3] * 4,
                          "v": [0.5, 0.05, 0.2, 0.01, 0.05, 0.04, 0.03, 0.02, 0.5, 0.4, 0.3, 0.2]})
    got = ss.first_n_below(table, "v", 0.1)
    assert got[1] == 8 and got[2] == 1 and np.isnan(got[3])


def test_sample_size_analysis_on_a_small_grid(tmp_path, monkeypatch):
    monkeypatch.setattr(ss, "N_GRID", (20,))
    monkeypatch.setattr(ss, "D_GRID", (4,))
    monkeypatch.setattr(ss, "CKA_N", (16, 64, 256))
    monkeypatch.setattr(ss, "CKA_D", (8,))
    rows = [{"pair_type": "perturbation", "status": "ok"} | _blank() | {"measure": m}
            for m in ("cka_linear", "rsa", "disagreement")]
    result = ss.sample_size(context(tmp_path, rows))
    table = pd.read_csv(tmp_path / "tables" / "sample_size.csv")
    assert set(table["measure"]) == {"cka_linear", "rsa"}  # the sweep's representational measures only
    x, y = ss.independent_inputs(20, 4, np.random.default_rng(ss.SEED))
    got = table.set_index("measure")["value"]
    assert got["cka_linear"] == pytest.approx(numpy_cka(x, y, False), abs=1e-10)
    below = result.evaluations[result.evaluations["statistic"].str.startswith("first_n_below")]
    bias = pd.read_csv(tmp_path / "tables" / "cka_bias.csv")
    assert below["value"].iloc[0] == ss.first_n_below(bias, "cka_linear", 0.1)[8]
    assert (tmp_path / "figures" / "sample_size.png").exists() and (tmp_path / "figures" / "cka_bias.png").exists()
    # two measures: their two panels and the legend's panel in one row (not a 7-column row, mostly empty)
    height, width = plt.imread(tmp_path / "figures" / "sample_size.png").shape[:2]
    assert 2.2 < width / height < 4.5, (width, height)


def _blank() -> dict:
    return {"arch_a": "mlp", "arch_b": "mlp", "model_a": "a", "model_b": "b", "layer_a": "relu1", "layer_b": "relu1",
            "layer_index_a": 0, "layer_index_b": 0, "measure": "cka_linear", "value": 1.0, "scale_a": 0.0,
            "scale_b": 0.1, "label_randomization_a": 0.0, "label_randomization_b": 0.0, "shortcut_a": np.nan,
            "shortcut_b": np.nan, "input_noise_a": 0.0, "input_noise_b": 0.0, "seed_a": 0, "seed_b": 0}


def test_a_sweep_without_representational_measures(tmp_path, monkeypatch):
    """Only output measures: no sample-size rows and no sample-size figure, the CKA bias table still made."""
    monkeypatch.setattr(ss, "N_GRID", (20,))
    monkeypatch.setattr(ss, "D_GRID", (4,))
    monkeypatch.setattr(ss, "CKA_N", (16, 64))
    monkeypatch.setattr(ss, "CKA_D", (8,))
    result = ss.sample_size(context(tmp_path, [{"pair_type": "perturbation", "status": "ok"} | _blank()
                                               | {"measure": "disagreement"}]))
    assert pd.read_csv(tmp_path / "tables" / "sample_size.csv").empty
    assert not (tmp_path / "figures" / "sample_size.png").exists() and (tmp_path / "figures" / "cka_bias.png").exists()
    assert "0 measures" in result.summary
    assert set(result.evaluations["statistic"]) == {"first_n_below_0.1"}


def test_representational_measures_follow_the_scores_in_registry_order():
    scores = pd.DataFrame({"measure": ["rsa", "disagreement", "cka_linear", "rsa"]})
    assert representational_measures(scores) == ["cka_linear", "rsa"]
    assert representational_measures(pd.DataFrame()) == []
    everything = pd.DataFrame({"measure": measures.names()})
    assert representational_measures(everything) == measures.names(inputs="representations")
