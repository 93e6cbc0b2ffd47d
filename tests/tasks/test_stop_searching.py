"""Stop searching: solution classes (networkx components), saturation, Good–Turing rule, the analysis."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from tasks import stats
from tasks.stop_searching import CALIBRATION_SCALE, stop_searching
from tests.tasks.test_benchmark_tests import context, score_row


def components(d: np.ndarray, tau: float) -> list[set[int]]:
    g = nx.Graph()
    g.add_nodes_from(range(len(d)))
    g.add_edges_from((i, j) for i, j in itertools.combinations(range(len(d)), 2) if d[i, j] <= tau)
    return [set(c) for c in nx.connected_components(g)]


@pytest.mark.parametrize("seed", range(5))
def test_solution_classes_are_the_components_of_the_threshold_graph(seed):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, size=(9, 2))
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    tau = 0.25
    labels = stats.solution_classes(d, tau)
    got = {frozenset(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    assert got == {frozenset(c) for c in components(d, tau)}
    assert labels[0] == 0 and list(dict.fromkeys(labels)) == sorted(set(labels))  # labelled in order of appearance
    curve = stats.saturation_curve(d, tau)
    assert list(curve) == [len(components(d[:n, :n], tau)) for n in range(1, 10)]


def test_probability_new_class_is_the_singleton_share():
    assert stats.probability_new_class([0, 1, 2, 3]) == 1.0
    assert stats.probability_new_class([0, 0, 0]) == 0.0
    assert stats.probability_new_class([0, 0, 1, 2, 2, 3]) == pytest.approx(2 / 6)


def test_nan_distance_does_not_join():
    d = np.array([[0, np.nan, 0.1], [np.nan, 0, 0.9], [0.1, 0.9, 0]])
    assert list(stats.solution_classes(d, 0.2)) == [0, 1, 0]


def test_stop_searching_on_two_solution_basins(tmp_path):
    """Seeds 0, 2, 4 land in one basin and 1, 3, 5 in another (disagreement 0.001 within, 0.2 across);
    weight noise at the calibration scale gives disagreements up to 0.003, so τ = 0.003 and the classes are
    the basins: the curve is 1, 2, 2, 2, 2, 2; the Good–Turing chance of a new class is 1, 1, 1/3, 0, ...,
    so the rule (N >= 3, chance <= 0.1) stops at N = 4. Group rows are passed through per N."""
    basin = [0, 1, 0, 1, 0, 1]
    rows = []
    for i, j in itertools.combinations(range(6), 2):
        rows.append(score_row("disagreement", f"m{i}", f"m{j}", 0.001 if basin[i] == basin[j] else 0.2,
                              layer_a="output", seed_a=i, seed_b=j))
    for i, v in enumerate([0.001, 0.003, 0.002]):
        rows.append(score_row("disagreement", f"m{i}", f"m{i}~", v, pair_type="perturbation", layer_a="output",
                              seed_a=i, seed_b=i, scale_b=CALIBRATION_SCALE))
    rows.append(score_row("disagreement", "m0", "m0~", 0.5, pair_type="perturbation", layer_a="output",
                          seed_a=0, seed_b=0, scale_b=0.3))  # other scales do not calibrate
    for n in range(2, 7):
        rows.append(score_row("fleiss_kappa", "m0", f"m{n - 1}", 1.0 / n, pair_type="seed_group", layer_a="output",
                              n_models=n, seed_a=0, seed_b=n - 1))
    evaluations = stop_searching(context(tmp_path, rows)).evaluations
    get = evaluations.set_index(["statistic", "n_models"])["value"]
    assert get[("class_threshold", 6)] == 0.003
    assert [get[("solution_classes", n)] for n in range(2, 7)] == [2, 2, 2, 2, 2]
    assert [get[("p_new_class", n)] for n in range(2, 7)] == pytest.approx([1, 1 / 3, 0, 0, 0])
    assert get[("stop_at_n", 6)] == 4
    kappa = evaluations[evaluations["measure"].eq("fleiss_kappa")].set_index("n_models")["value"]
    assert dict(kappa) == {n: 1.0 / n for n in range(2, 7)}
    assert (tmp_path / "figures" / "stop_searching.png").exists()
    assert pd.read_csv(tmp_path / "tables" / "stop_searching.csv").shape[0] == len(evaluations)
