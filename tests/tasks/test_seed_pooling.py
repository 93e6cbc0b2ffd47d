"""Analyses defined on pairs of independent seeds use only those pairs (the pooling bug of issue 11).

A ``sweep=solutions``-like table holds, for one architecture: 5 seeds trained from scratch, their 5
warm-started copies (seed pairs among themselves, group pairs with the originals) and 5 seeds of another
width (a ``compare.groups`` axis over ``arch.width``: seed pairs within the width, group pairs across).
Before the fix ``output_correlation`` and ``seed_variability`` pooled all of them as ordinary seeds of
"mlp"; each configuration must give exactly its own C(5, 2) = 10 seed pairs, and the statistics must
equal scipy/numpy on those 10 pairs alone.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from tasks.base import seed_pairs
from tasks.benchmark_tests import output_correlation
from tasks.seed_variability import seed_variability
from tests.tasks.test_benchmark_tests import context, score_row

WARM = json.dumps({"epochs": 30, "scale": 0.1, "seed": 0}, sort_keys=True)
ACC = {**{f"m{i}": 0.8 + 0.03 * i for i in range(5)}, **{f"w{i}": 0.7 + 0.05 * i for i in range(5)},
       **{f"u{i}": 0.6 + 0.07 * i for i in range(5)}}


def solutions_like_table():
    rng = np.random.default_rng(4)
    rows, truth = [], {}

    def add(a, b, pair_type, **columns):
        cka, jsd = rng.uniform(0.3, 0.9), rng.uniform(0.0, 0.3)
        extra = {"accuracy_a": ACC[a], "accuracy_b": ACC[b], "seed_a": int(a[1]), "seed_b": int(b[1]), **columns}
        rows.append(score_row("cka_linear", a, b, cka, pair_type=pair_type, **extra))
        rows.append(score_row("jsd", a, b, jsd, pair_type=pair_type, layer_a="output", **extra))
        truth[(a, b)] = (cka, jsd)

    for prefix in ("m", "u"):  # two widths, each trained from scratch
        for i, j in itertools.combinations(range(5), 2):
            add(f"{prefix}{i}", f"{prefix}{j}", "seed", warm_start_a=None, warm_start_b=None)
    for i, j in itertools.combinations(range(5), 2):  # warm-started copies: seed pairs at their level
        add(f"w{i}", f"w{j}", "seed", warm_start_a=WARM, warm_start_b=WARM)
    for i, j in itertools.product(range(5), range(5)):  # group pairs across levels and widths
        add(f"m{i}", f"w{j}", "group", warm_start_a=None, warm_start_b=WARM)
        add(f"m{i}", f"u{j}", "group", warm_start_a=None, warm_start_b=None)
    return rows, truth


def test_seed_pairs_are_the_independent_seeds_of_each_configuration():
    rows, _ = solutions_like_table()
    pairs = seed_pairs(pd.DataFrame(rows))
    pairs = pairs[pairs["measure"].eq("cka_linear")]
    by_config = {c: set(zip(g["model_a"], g["model_b"])) for c, g in pairs.groupby("configuration")}
    assert sorted(by_config) == ["mlp#1", "mlp#2"]
    assert sorted(len(v) for v in by_config.values()) == [10, 10]
    assert {frozenset(m[0] for pair in v for m in pair) for v in by_config.values()} == {frozenset("m"), frozenset("u")}


def test_output_correlation_uses_only_the_seed_pairs_of_one_configuration(tmp_path):
    rows, truth = solutions_like_table()
    evaluations = output_correlation(context(tmp_path, rows)).evaluations
    got = evaluations[evaluations["statistic"].eq("spearman_jsd")]
    assert sorted(got["n_pairs"]) == [10, 10]  # was one pooled cell over the warm starts and widths
    for prefix in ("m", "u"):
        pairs = [(f"{prefix}{i}", f"{prefix}{j}") for i, j in itertools.combinations(range(5), 2)]
        expected = spearmanr([-truth[p][0] for p in pairs], [truth[p][1] for p in pairs]).statistic
        assert np.isclose(got["value"], expected, atol=1e-12).sum() == 1


def test_seed_variability_uses_only_the_seed_pairs_of_one_configuration(tmp_path):
    rows, truth = solutions_like_table()
    evaluations = seed_variability(context(tmp_path, rows)).evaluations
    means = evaluations[evaluations["statistic"].eq("seed_mean") & evaluations["measure"].eq("cka_linear")]
    assert sorted(means["n_pairs"]) == [10, 10]
    for prefix in ("m", "u"):
        pairs = [(f"{prefix}{i}", f"{prefix}{j}") for i, j in itertools.combinations(range(5), 2)]
        assert np.isclose(means["value"], np.mean([truth[p][0] for p in pairs]), atol=1e-12).sum() == 1
