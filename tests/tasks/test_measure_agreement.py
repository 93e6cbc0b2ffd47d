"""Measure agreement: Spearman matrix (scipy.stats.spearmanr) and clustering on a synthetic sweep."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from tasks.measure_agreement import measure_agreement
from tests.tasks.test_benchmark_tests import context, score_row


def test_agreement_matrix_and_clusters(tmp_path):
    """Over 15 seed pairs: cka_linear = t, rsa = t³ (same order), procrustes_orthogonal = 1 − t (a distance:
    after orientation the same order again), knn_jaccard independent noise, disagreement (outputs) = −t plus
    noise. The first three agree perfectly and form one cluster; every ρ equals scipy's spearmanr of the
    oriented values; an asymmetric measure's two directions are averaged."""
    rng = np.random.default_rng(0)
    rows = []
    pairs = list(itertools.combinations(range(6), 2))
    t = rng.uniform(0.1, 0.9, len(pairs))
    noise = rng.uniform(size=len(pairs))
    dis = -t + 0.3 * rng.uniform(size=len(pairs))
    lin = rng.uniform(size=(len(pairs), 2))
    for k, (i, j) in enumerate(pairs):
        a, b = f"m{i}", f"m{j}"
        for name, v in (("cka_linear", t[k]), ("rsa", t[k] ** 3), ("procrustes_orthogonal", 1 - t[k]),
                        ("knn_jaccard", noise[k])):
            rows.append(score_row(name, a, b, v))
        rows.append(score_row("disagreement", a, b, -dis[k], layer_a="output"))
        rows.append(score_row("linear_regression", a, b, lin[k, 0]))
        rows.append(score_row("linear_regression", b, a, lin[k, 1]))
    result = measure_agreement(context(tmp_path, rows))
    ev = result.evaluations.set_index(["measure", "other_measure"])
    assert ev.loc[("cka_linear", "rsa"), "value"] == pytest.approx(1.0)
    assert ev.loc[("cka_linear", "procrustes_orthogonal"), "value"] == pytest.approx(1.0)
    assert ev.loc[("cka_linear", "knn_jaccard"), "value"] == pytest.approx(spearmanr(t, noise).statistic)
    assert ev.loc[("cka_linear", "disagreement"), "value"] == pytest.approx(spearmanr(t, dis).statistic)
    assert ev.loc[("cka_linear", "linear_regression"), "value"] == pytest.approx(spearmanr(t, lin.mean(1)).statistic)
    assert ev.loc[("cka_linear", "rsa"), "n_pairs"] == 15
    clusters = result.evaluations.groupby("measure")["cluster"].first()
    assert clusters["cka_linear"] == clusters["rsa"] == clusters["procrustes_orthogonal"] != clusters["knn_jaccard"]
    order = list(pd.read_csv(tmp_path / "tables" / "measure_agreement.csv", index_col=0).index)
    positions = sorted(order.index(m) for m in ("cka_linear", "rsa", "procrustes_orthogonal"))
    assert positions[-1] - positions[0] == 2  # the perfect-agreement cluster is contiguous in the heatmap
