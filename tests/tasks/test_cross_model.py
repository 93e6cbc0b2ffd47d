"""Cross-model comparison: layer x layer matrices and the model-level aggregate rules (hand-computed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks import stats
from tasks.cross_model import cross_model, layer_matrices
from tests.tasks.test_benchmark_tests import context, score_row

M = np.array([[0.9, 0.2, 0.1],
              [0.3, 0.8, 0.4]])  # 2 layers of A (relu1, relu2) x 3 layers of B (relu1..relu3)


def test_aggregate_rules_by_hand():
    assert stats.model_aggregate(M, "mean") == pytest.approx(M.mean())
    assert stats.model_aggregate(M, "max") == pytest.approx((0.9 + 0.8) / 2)
    # depths of A: 0, 1; of B: 0, 0.5, 1 -> A's layer 0 matches B's 0, layer 1 matches B's 2
    assert stats.model_aggregate(M, "matched_depth") == pytest.approx((0.9 + 0.4) / 2)
    # a distance: the best match is the smallest value
    assert stats.model_aggregate(M, "max", higher_is_more_similar=False) == pytest.approx((0.1 + 0.3) / 2)
    with pytest.raises(ValueError, match="unknown rule"):
        stats.model_aggregate(M, "median")


def test_cross_model_on_two_architectures(tmp_path):
    rows = []
    for i in range(2):
        for j in range(3):
            rows.append(score_row("cka_linear", "A", "B", M[i, j], pair_type="group", layer_a=f"relu{i + 1}",
                                  layer_b=f"relu{j + 1}", arch_b="cnn", d_a=64, d_b=[8, 16, 32][j], seed_a=0, seed_b=0))
    rows.append(score_row("cka_linear", "A", "B", 0.5, pair_type="group", layer_a="output", layer_b="output",
                          arch_b="cnn", d_a=-1, d_b=-1))  # outputs are not a layer of the matrix
    evaluations = cross_model(context(tmp_path, rows)).evaluations
    table = pd.read_csv(tmp_path / "tables" / "cross_model.csv").set_index("rule")
    assert table.loc["max", "value"] == pytest.approx(0.85)
    assert table.loc["matched_depth", "value"] == pytest.approx(0.65)
    assert table.loc["mean", "value"] == pytest.approx(M.mean())
    assert set(table["config_a"]) == {"mlp 2L d=64"} and set(table["config_b"]) == {"cnn 3L d=8"}
    assert set(evaluations["statistic"]) == {"aggregate_max", "aggregate_matched_depth", "aggregate_mean"}
    assert (tmp_path / "figures" / "cross_model.png").exists()


def test_layer_matrices_are_each_pairs_pivot_table():
    """One groupby for all pairs gives what a pivot_table per (model A, model B, measure) gives: means over
    duplicate cells, layers whose cells are all NaN left out, pairs with a missing cell or one layer dropped."""
    rng = np.random.default_rng(0)
    rows = []
    for measure in ("cka_linear", "rsa"):
        for b, n_b in (("B", 3), ("C", 2), ("D", 1)):
            for i in range(2):
                for j in range(n_b):
                    if (b, i, j) == ("C", 1, 1) and measure == "rsa":
                        continue  # a missing cell: the pair has no full matrix
                    for _ in range(2 if (i, j) == (0, 1) else 1):  # a duplicated cell: its mean
                        rows.append(score_row(measure, "A", b, rng.random(), pair_type="group",
                                              layer_a=f"relu{i + 1}", layer_b=f"relu{j + 1}", arch_b="cnn",
                                              d_a=64, d_b=8, seed_a=0, seed_b=0))
    rows.append(score_row("cka_linear", "A", "B", np.nan, pair_type="group", layer_a="relu3", layer_b="relu1",
                          arch_b="cnn", d_a=64, d_b=8, seed_a=0, seed_b=0))  # a layer with NaN only
    scores = pd.DataFrame(rows)
    got = layer_matrices(scores)
    usable = scores[scores["layer_index_a"].ge(0) & scores["layer_index_b"].ge(0)]
    expected = {}
    for key, g in usable.groupby(["model_a", "model_b", "measure"]):
        m = g.pivot_table(index="layer_index_a", columns="layer_index_b", values="value", aggfunc="mean")
        if m.shape[0] > 1 and m.shape[1] > 1 and m.notna().all().all():
            expected[key] = m
    assert list(got) == list(expected) == [("A", "B", "cka_linear"), ("A", "B", "rsa"), ("A", "C", "cka_linear")]
    for key, m in expected.items():
        pd.testing.assert_frame_equal(got[key], m, check_exact=True)
