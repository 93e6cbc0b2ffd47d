"""The benchmark tests (ReSi 1-6, layer identification, PC deletion, ranks) on tiny synthetic sweeps.

Every expected value comes from outside the code under test: a closed form, an answer that is right by
construction of the synthetic score table, or a second code path (scipy, scikit-learn, numpy). The
tables carry the columns of a collected ``scores.parquet`` that the analyses read, with real measure
names, because the analyses look up each measure's direction and symmetry in the registry.
"""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import measures
from tasks.storage import write_arrays
from tasks.base import AnalysisContext
from tasks.benchmark_tests import (
    delete_components,
    deletion_series,
    group_separation,
    layer_identification,
    layer_monotonicity,
    output_correlation,
    pc_deletion,
    probe_accuracy,
    ranks,
)

# --------------------------------------------------------------------------------------------------
# Building synthetic score tables
# --------------------------------------------------------------------------------------------------


def layer_index(layer: str) -> int:
    """The collected tables' layer index: relu<k> is the (k-1)-th hidden layer, outputs are -1."""
    digits = re.sub(r"\D", "", layer)
    return int(digits) - 1 if digits else -1


def score_row(measure: str, model_a: str, model_b: str, value: float, *, pair_type: str = "seed",
              layer_a: str = "relu2", layer_b: str | None = None, arch: str = "mlp", **columns) -> dict:
    """One row of a scores table between two standard models (every intervention at its default:
    no label randomisation, no shortcut marker (NaN), no input noise, no weight noise); ``columns``
    override any column, e.g. ``label_randomization_a=0.5`` or ``scale_b=0.1``."""
    layer_b = layer_a if layer_b is None else layer_b
    row = {
        "pair_type": pair_type, "status": "ok", "arch_a": arch, "arch_b": arch,
        "model_a": model_a, "model_b": model_b, "seed_a": 0, "seed_b": 1,
        "layer_a": layer_a, "layer_b": layer_b,
        "layer_index_a": layer_index(layer_a), "layer_index_b": layer_index(layer_b),
        "measure": measure, "value": float(value), "params": "{}",
        "higher_is_more_similar": measures.info(measure).higher_is_more_similar,
        "scale_a": 0.0, "scale_b": 0.0,
        "label_randomization_a": 0.0, "label_randomization_b": 0.0,
        "shortcut_a": np.nan, "shortcut_b": np.nan,
        "input_noise_a": 0.0, "input_noise_b": 0.0,
        "accuracy_a": 0.9, "accuracy_b": 0.9,
    }
    row.update(columns)
    return row


def context(tmp_path, rows: list[dict], previous: list[pd.DataFrame] | None = None) -> AnalysisContext:
    """An analysis context over ``rows`` whose tables, figures and cache live under ``tmp_path``."""
    for sub in ("tables", "figures", "cache/representations"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    return AnalysisContext(sweep_dir=tmp_path, scores=pd.DataFrame(rows), cache_dir=tmp_path / "cache",
                           previous=previous or [])


def one(evaluations: pd.DataFrame, **match) -> pd.Series:
    """The single evaluation row whose columns equal ``match``."""
    keep = pd.Series(True, index=evaluations.index)
    for column, value in match.items():
        keep &= evaluations[column].eq(value)
    assert keep.sum() == 1, f"{int(keep.sum())} rows match {match}"
    return evaluations[keep].iloc[0]


def oriented(measure: str, values) -> np.ndarray:
    """Similarity-oriented values: a distance is negated (the reference's own orientation)."""
    v = np.asarray(values, dtype=float)
    return v if measures.info(measure).higher_is_more_similar else -v


# --------------------------------------------------------------------------------------------------
# ReSi 1-2: output correlation
# --------------------------------------------------------------------------------------------------

#: probe accuracies of five seeds, chosen so that every pairwise |Δ accuracy| is distinct
ACCURACY = [0.80, 0.81, 0.83, 0.87, 0.95]
SEEDS = range(len(ACCURACY))
MODELS = [f"m{i}" for i in SEEDS]



def correlation_sweep() -> tuple[dict, dict, list[dict]]:
    """Five seeds of one architecture. Returns the functional distances per unordered pair (|Δ acc|,
    JSD, disagreement), the measure values at the final hidden layer (relu2) and the score rows.

    Linear CKA equals 1 − |Δ acc| (a similarity that tracks accuracy exactly); the Procrustes distance
    is random; linear regression (an asymmetric similarity) has a random value in each direction.
    The table also holds rows the test must ignore: another layer, a weight-perturbed copy, two
    label-randomised models, and an architecture with only three seeds."""
    rng = np.random.default_rng(1)
    pairs = list(itertools.combinations(SEEDS, 2))
    functional = {
        "accuracy_difference": {p: abs(ACCURACY[p[0]] - ACCURACY[p[1]]) for p in pairs},
        "jsd": {p: rng.uniform(0, 0.3) for p in pairs},
        "disagreement": {p: rng.uniform(0, 0.2) for p in pairs},
    }
    measured = {
        "cka_linear": {p: 1 - functional["accuracy_difference"][p] for p in pairs},
        "procrustes_orthogonal": {p: rng.uniform(0.1, 1.2) for p in pairs},
        "linear_regression": {p: rng.uniform(0.2, 0.9) for p in itertools.permutations(SEEDS, 2)},
    }

    def row(measure, i, j, value, **columns):
        return score_row(measure, MODELS[i], MODELS[j], value, seed_a=i, seed_b=j,
                         accuracy_a=ACCURACY[i], accuracy_b=ACCURACY[j], **columns)

    rows = [row(m, i, j, v) for m, values in measured.items() for (i, j), v in values.items()]
    rows += [row(f, i, j, functional[f][(i, j)], layer_a="output") for f in ("jsd", "disagreement") for i, j in pairs]
    rows += [row("cka_linear", i, j, rng.uniform(), layer_a="relu1") for i, j in pairs]
    rows.append(score_row("cka_linear", "m0", "m0~", 0.2, pair_type="perturbation", scale_b=0.1))
    rows.append(score_row("cka_linear", "r0", "r1", 0.1, label_randomization_a=0.5, label_randomization_b=0.5))
    rows += [score_row("cka_linear", f"c{i}", f"c{j}", 0.5, arch="cnn") for i, j in itertools.combinations(range(3), 2)]
    return functional, measured, rows


def pair_matrix(values: dict, n_models: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square matrix from a {(a, b): value} dict (mirrored when symmetric) and the pair indices a test
    uses: unordered pairs for a symmetric measure, every ordered pair otherwise."""
    matrix = np.full((n_models, n_models), np.nan)
    for (a, b), v in values.items():
        matrix[a, b] = v
        if symmetric:
            matrix[b, a] = v
    pairs = itertools.combinations(range(n_models), 2) if symmetric else itertools.permutations(range(n_models), 2)
    a, b = np.array(list(pairs)).T
    return matrix, a, b


def exact_mantel_p(rep: np.ndarray, fun: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mantel p-value by full enumeration, with scipy's Spearman: relabel the models of the
    functional matrix by every permutation; p = min(1, 2 min(P(null <= obs), P(null >= obs)))."""
    observed = spearmanr(rep[a, b], fun[a, b]).statistic
    null = np.array([spearmanr(rep[a, b], fun[np.array(p)[a], np.array(p)[b]]).statistic
                     for p in itertools.permutations(range(rep.shape[0]))])
    tol = 1e-12
    return min(1.0, 2 * min(np.mean(null <= observed + tol), np.mean(null >= observed - tol)))


def test_output_correlation_matches_scipy_spearman_and_an_exact_mantel_test(tmp_path):
    """For every representational measure and functional distance, the statistic is scipy's Spearman
    between the representational *distance* (a similarity negated) and the functional distance over
    the pairs of the 5 standard seeds (10 unordered pairs; 20 ordered ones for the asymmetric linear
    regression), and the Mantel p-value equals a full enumeration of the 5! = 120 relabellings
    (the code enumerates them too, since 120 <= 999 resamples). Ignored rows change nothing."""
    functional, measured, rows = correlation_sweep()
    evaluations = output_correlation(context(tmp_path, rows)).evaluations

    assert set(evaluations["arch"]) == {"mlp"}  # the cnn has only 3 seeds: too few
    assert set(evaluations["layer"]) == {"relu2"}
    assert len(evaluations) == len(measured) * len(functional)
    for measure, values in measured.items():
        rep, a, b = pair_matrix(values, len(MODELS), measures.info(measure).symmetric)
        rep = -oriented(measure, rep)  # distance-like, as ReSi multiplies similarities by -1
        for name, by_pair in functional.items():
            fun, _, _ = pair_matrix(by_pair, len(MODELS), True)
            got = one(evaluations, measure=measure, statistic=f"spearman_{name}")
            assert got["value"] == pytest.approx(spearmanr(rep[a, b], fun[a, b]).statistic, abs=1e-12)
            assert got["n_pairs"] == len(a)
            assert got["p_mantel"] == pytest.approx(exact_mantel_p(rep, fun, a, b), abs=1e-12)
            assert 0 < got["p_pairings"] <= 1 and got["baseline"] == 0.0
    assert one(evaluations, measure="linear_regression", statistic="spearman_jsd")["n_pairs"] == 20


def test_output_correlation_of_a_measure_that_tracks_accuracy_is_one(tmp_path):
    """Linear CKA = 1 − |Δ acc| orders the 10 pairs exactly as |Δ acc| (all distinct): Spearman 1.
    A random reordering of 10 distinct values reaches 1 with probability 1/10!, so none of the 999
    pairing permutations does, and scipy's Monte Carlo convention gives p = 2 (0 + 1) / (999 + 1)."""
    _, _, rows = correlation_sweep()
    got = one(output_correlation(context(tmp_path, rows)).evaluations,
              measure="cka_linear", statistic="spearman_accuracy_difference")
    assert got["value"] == pytest.approx(1.0, abs=1e-12)
    assert got["p_pairings"] == pytest.approx(0.002)


def test_output_correlation_respects_the_direction_of_a_distance(tmp_path):
    """The numbers 1 − |Δ acc| read as a distance (Procrustes) instead of a similarity: the distance
    then *falls* as the accuracies differ, so Spearman with |Δ acc| is −1, not +1."""
    _, measured, _ = correlation_sweep()
    rows = [score_row("procrustes_orthogonal", MODELS[i], MODELS[j], v, accuracy_a=ACCURACY[i],
                      accuracy_b=ACCURACY[j]) for (i, j), v in measured["cka_linear"].items()]
    got = one(output_correlation(context(tmp_path, rows)).evaluations,
              measure="procrustes_orthogonal", statistic="spearman_accuracy_difference")
    assert got["value"] == pytest.approx(-1.0, abs=1e-12)


def test_output_correlation_needs_four_standard_models(tmp_path):
    """Three seeds (3 pairs) are below the test's minimum of 4 models: nothing is reported."""
    rows = [score_row("cka_linear", f"m{i}", f"m{j}", 0.5) for i, j in itertools.combinations(range(3), 2)]
    assert output_correlation(context(tmp_path, rows)).evaluations.empty


# --------------------------------------------------------------------------------------------------
# ReSi 3-5: group separation
# --------------------------------------------------------------------------------------------------

LEVELS = {"label_randomization": [0.0, 0.5, 0.75], "shortcut": [0.0, 0.75, 1.0]}
PER_LEVEL = 3


def group_sweep(axis: str) -> tuple[dict[str, float], dict[str, dict], list[dict]]:
    """Three levels of an intervention axis x three seeds; every pair of the 9 models at relu2.

    Returns each model's level, the values per measure keyed by (model_a, model_b), and the rows.
    Linear CKA is random and rounded to one decimal (many ties); the Procrustes distance is random;
    the kNN Jaccard similarity separates the levels perfectly (within 0.7-0.9, across 0.1-0.3).
    Pairs within a level are seed pairs, across levels group pairs, as the sweep records them."""
    rng = np.random.default_rng(7)
    level = {f"{axis}{lv}_s{seed}": lv for lv in LEVELS[axis] for seed in range(PER_LEVEL)}
    pairs = list(itertools.combinations(level, 2))
    same = {p: level[p[0]] == level[p[1]] for p in pairs}
    values = {
        "cka_linear": {p: round(rng.uniform(0, 1), 1) for p in pairs},
        "procrustes_orthogonal": {p: rng.uniform(0.1, 1.4) for p in pairs},
        "knn_jaccard": {p: rng.uniform(0.7, 0.9) if same[p] else rng.uniform(0.1, 0.3) for p in pairs},
    }
    rows = []
    for measure, by_pair in values.items():
        for (a, b), v in by_pair.items():
            rows.append(score_row(measure, a, b, v, pair_type="seed" if same[(a, b)] else "group",
                                  **{f"{axis}_a": level[a], f"{axis}_b": level[b]}))
    rows.append(score_row("cka_linear", "x", "x~", 0.0, pair_type="perturbation", scale_b=0.1))  # ignored
    return level, values, rows


def reference_separation(level: dict, by_pair: dict, measure: str) -> tuple[float, float]:
    """Mean over levels g of sklearn's average precision (positives: pairs inside g, negatives: pairs
    with exactly one model in g) and of the conformity rate P(s_within > s_cross), by brute force."""
    aps, conformity = [], []
    for g in sorted(set(level.values())):
        inside = {p: (level[p[0]] == g) + (level[p[1]] == g) for p in by_pair}
        within = oriented(measure, [v for p, v in by_pair.items() if inside[p] == 2])
        cross = oriented(measure, [v for p, v in by_pair.items() if inside[p] == 1])
        labels = np.r_[np.ones(within.size), np.zeros(cross.size)]
        aps.append(average_precision_score(labels, np.r_[within, cross]))
        conformity.append(np.mean(within[:, None] > cross[None, :]))
    return float(np.mean(aps)), float(np.mean(conformity))


def expected_random_ap(k: int, n: int) -> float:
    """Exact expected AP of a uniformly random ranking of k positives among n items:
    (1/n) sum_j (1/j) (1 + (j − 1)(k − 1)/(n − 1))."""
    return sum((1 + (j - 1) * (k - 1) / (n - 1)) / j for j in range(1, n + 1)) / n


@pytest.mark.parametrize("axis", sorted(LEVELS))
def test_group_separation_auprc_matches_sklearn(tmp_path, axis):
    """AUPRC and conformity per measure against sklearn's average_precision_score and a brute-force
    count (ties included for CKA; the Procrustes distance negated). With 3 levels of 3 models each
    level has C(3,2) = 3 positives and 3 x 6 = 18 negatives: prevalence 3/21 = 1/7, and the permutation
    null matches the closed-form expected AP of a random ranking (Monte Carlo with 2000 draws)."""
    level, values, rows = group_sweep(axis)
    evaluations = group_separation(context(tmp_path, rows)).evaluations
    evaluations = evaluations[evaluations["axis"].eq(axis)]
    assert set(evaluations["measure"]) == set(values)
    for measure, by_pair in values.items():
        ap, conformity = reference_separation(level, by_pair, measure)
        got = one(evaluations, measure=measure, statistic=f"auprc_{axis}")
        assert got["value"] == pytest.approx(ap, abs=1e-12)
        assert got["baseline"] == pytest.approx(1 / 7)
        assert got["null_auprc"] == pytest.approx(expected_random_ap(3, 21), abs=0.01)
        assert got["n_pairs"] == 3 * 3
        assert one(evaluations, measure=measure, statistic=f"conformity_{axis}")["value"] == pytest.approx(conformity)
        assert one(evaluations, measure=measure, statistic=f"auprc_normalised_{axis}")["value"] == \
            pytest.approx((ap - 1 / 7) / (1 - 1 / 7))


def test_group_separation_of_a_perfect_measure_is_one(tmp_path):
    """kNN Jaccard puts every within-level pair above every cross-level pair: AUPRC 1, conformity 1."""
    evaluations = group_separation(context(tmp_path, group_sweep("label_randomization")[2])).evaluations
    for statistic in ("auprc", "auprc_normalised", "conformity"):
        got = one(evaluations, measure="knn_jaccard", statistic=f"{statistic}_label_randomization")
        assert got["value"] == pytest.approx(1.0)


def test_group_separation_dose_response_matches_scipy(tmp_path):
    """Dose-response: over (level-0 model i, any other model j), Spearman between j's level and the
    similarity-oriented score m(i, j) (scipy), and Cohen's d between the scores at the lowest and the
    highest level (pooled standard deviation, written out here)."""
    axis = "label_randomization"
    level, values, rows = group_sweep(axis)
    evaluations = group_separation(context(tmp_path, rows)).evaluations
    first = [m for m in level if level[m] == 0.0]
    for measure, by_pair in values.items():
        lookup = {**by_pair, **{(b, a): v for (a, b), v in by_pair.items()}}
        dose = [(level[j], lookup[(i, j)]) for j in level for i in first if i != j]
        levels = np.array([d[0] for d in dose])
        scores = oriented(measure, [d[1] for d in dose])
        got = one(evaluations, measure=measure, statistic=f"dose_spearman_{axis}")
        assert got["value"] == pytest.approx(spearmanr(levels, scores).statistic, abs=1e-12)
        low, high = scores[levels == levels.min()], scores[levels == levels.max()]
        pooled = math.sqrt((low.var() * low.size + high.var() * high.size) / (low.size + high.size - 2))
        got = one(evaluations, measure=measure, statistic=f"dose_effect_size_{axis}")
        assert got["value"] == pytest.approx((low.mean() - high.mean()) / pooled)


def test_group_separation_without_levels_is_not_applicable(tmp_path):
    """Only standard seed pairs: no axis has two levels, so nothing is reported."""
    rows = [score_row("cka_linear", f"m{i}", f"m{j}", 0.5) for i, j in itertools.combinations(range(4), 2)]
    assert group_separation(context(tmp_path, rows)).evaluations.empty


# --------------------------------------------------------------------------------------------------
# ReSi 6: layer monotonicity
# --------------------------------------------------------------------------------------------------

N_LAYERS = 5


def layer_rows(measure: str, model: str, matrix: np.ndarray, **columns) -> list[dict]:
    """Within-model rows m(layer i, layer j), i != j, of ``model`` (layers relu1..relu<n>)."""
    n = matrix.shape[0]
    return [score_row(measure, model, model, matrix[i, j], pair_type="layers", layer_a=f"relu{i + 1}",
                      layer_b=f"relu{j + 1}", **columns) for i in range(n) for j in range(n) if i != j]


def reference_monotonicity(similarity: np.ndarray) -> tuple[float, float]:
    """ReSi test 6 from its definition, with scipy: the mean over layers i of −Spearman(s_ij, |j − i|)
    on each side of i with at least 2 partners; violation rate over triples (i, j, k) on one side of i
    with |k − i| > |j − i| where the nearer layer is strictly less similar, s_ij < s_ik."""
    n = similarity.shape[0]
    correlations, violations, triples = [], 0, 0
    for i in range(n):
        for side in ([j for j in range(i + 1, n)], [j for j in range(i - 1, -1, -1)]):  # nearest first
            if len(side) >= 2:
                correlations.append(-spearmanr(similarity[i, side], np.abs(np.array(side) - i)).statistic)
            for near, far in itertools.combinations(side, 2):
                triples += 1
                violations += similarity[i, near] < similarity[i, far]
    return float(np.mean(correlations)), violations / triples


def test_layer_monotonicity_of_monotone_reversed_and_random_matrices(tmp_path):
    """A similarity that falls with layer distance (CKA) and a distance that grows with it (Procrustes)
    score 1 with no violation; a similarity that *grows* with distance (RSA) scores −1 and violates
    every triple; a random matrix (SVCCA) matches the definition computed with scipy, averaged over
    the two models. A label-randomised model with a reversed matrix is not a standard model: ignored."""
    gap = np.abs(np.subtract.outer(np.arange(N_LAYERS), np.arange(N_LAYERS))).astype(float)
    rng = np.random.default_rng(3)
    random = [rng.uniform(size=(N_LAYERS, N_LAYERS)) for _ in range(2)]
    rows = []
    for model in ("m0", "m1"):
        rows += layer_rows("cka_linear", model, 1 - 0.15 * gap)
        rows += layer_rows("procrustes_orthogonal", model, 0.2 * gap)
        rows += layer_rows("rsa", model, 0.1 * gap)
    rows += layer_rows("svcca", "m0", random[0]) + layer_rows("svcca", "m1", random[1])
    rows += layer_rows("cka_linear", "noisy", 0.1 * gap, label_randomization_a=0.5, label_randomization_b=0.5)
    evaluations = layer_monotonicity(context(tmp_path, rows)).evaluations

    expected = {"cka_linear": (1.0, 0.0), "procrustes_orthogonal": (1.0, 0.0), "rsa": (-1.0, 1.0)}
    per_model = [reference_monotonicity(m) for m in random]
    expected["svcca"] = (np.mean([p[0] for p in per_model]), np.mean([p[1] for p in per_model]))
    for measure, (score, violation_rate) in expected.items():
        got = one(evaluations, measure=measure, statistic="monotonicity")
        assert got["value"] == pytest.approx(score, abs=1e-12)
        assert got["n_models"] == 2
        got = one(evaluations, measure=measure, statistic="monotonicity_violation_rate")
        assert got["value"] == pytest.approx(violation_rate, abs=1e-12)


# --------------------------------------------------------------------------------------------------
# Kornblith et al.: layer identification
# --------------------------------------------------------------------------------------------------

ID_LAYERS = 4


def cross_layer_rows(measure: str, model_a: str, model_b: str, matrix: np.ndarray) -> list[dict]:
    """Seed-pair rows m(layer i of A, layer j of B) for every i, j."""
    n = matrix.shape[0]
    return [score_row(measure, model_a, model_b, matrix[i, j], layer_a=f"relu{i + 1}", layer_b=f"relu{j + 1}")
            for i in range(n) for j in range(n)]


def test_layer_identification_on_hand_built_matrices(tmp_path):
    """Three seeds (3 pairs), 4 layers. Expected accuracies, right by construction:

    * CKA 1 − 0.2|i − j|: the diagonal is the best match in every row, 1.0;
    * Procrustes 0.1 + 0.3|i − j|, a distance: the diagonal is the *smallest*, 1.0 (as a similarity it
      would never be chosen: 0.0);
    * RSA: pair 1 diagonal best (1), pair 2 always prefers the last layer (only row 3 right: 1/4),
      pair 3 constant (every row a 4-way tie including the right layer: credit 1/4 each, 1/4), mean 0.5;
    * linear regression (asymmetric): forward m(A_i, B_j) prefers j = i + 1 (mod 4), the reverse
      direction m(B_j, A_i) is 2 on the diagonal; their sum is right in every row, 1.0, while the
      forward direction mirrored onto itself would never pick the diagonal.

    Chance is 1/4."""
    gap = np.abs(np.subtract.outer(np.arange(ID_LAYERS), np.arange(ID_LAYERS))).astype(float)
    shifted = np.roll(np.eye(ID_LAYERS), 1, axis=1)  # shifted[i, (i + 1) % 4] = 1
    seed_pairs = [("m0", "m1"), ("m0", "m2"), ("m1", "m2")]
    rsa = {("m0", "m1"): 1 - 0.2 * gap, ("m0", "m2"): np.tile(np.arange(ID_LAYERS, dtype=float), (ID_LAYERS, 1)),
           ("m1", "m2"): np.full((ID_LAYERS, ID_LAYERS), 0.3)}
    rows = []
    for a, b in seed_pairs:
        rows += cross_layer_rows("cka_linear", a, b, 1 - 0.2 * gap)
        rows += cross_layer_rows("procrustes_orthogonal", a, b, 0.1 + 0.3 * gap)
        rows += cross_layer_rows("rsa", a, b, rsa[(a, b)])
        rows += cross_layer_rows("linear_regression", a, b, shifted)
        rows += cross_layer_rows("linear_regression", b, a, 2 * np.eye(ID_LAYERS))  # r[j, i] = m(B_j, A_i)
    evaluations = layer_identification(context(tmp_path, rows)).evaluations

    expected = {"cka_linear": 1.0, "procrustes_orthogonal": 1.0, "rsa": (1 + 0.25 + 0.25) / 3, "linear_regression": 1.0}
    for measure, accuracy in expected.items():
        got = one(evaluations, measure=measure, statistic="layer_identification")
        assert got["value"] == pytest.approx(accuracy, abs=1e-12)
        assert got["baseline"] == pytest.approx(1 / ID_LAYERS)
        assert got["n_pairs"] == 3


def test_layer_identification_of_random_scores_is_at_chance(tmp_path):
    """Independent uniform scores make every layer of B equally likely to win: the expected accuracy
    is 1/4. Over 60 seed pairs x 4 layers the mean has a standard error of sqrt(3/16 / 240) = 0.028;
    the bound is five of them."""
    rng = np.random.default_rng(11)
    rows = []
    for p in range(60):
        rows += cross_layer_rows("cka_linear", f"a{p:02d}", f"b{p:02d}", rng.uniform(size=(ID_LAYERS, ID_LAYERS)))
    got = one(layer_identification(context(tmp_path, rows)).evaluations, measure="cka_linear")
    assert got["value"] == pytest.approx(0.25, abs=5 * math.sqrt(3 / 16 / 240))


def test_layer_identification_needs_cross_layer_pairs(tmp_path):
    """Seed pairs compared only layer-to-same-layer cannot identify anything: not applicable."""
    rows = [score_row("cka_linear", "m0", "m1", 0.9, layer_a=f"relu{i}") for i in (1, 2)]
    assert layer_identification(context(tmp_path, rows)).evaluations.empty


# --------------------------------------------------------------------------------------------------
# Ding et al.: principal-component deletion
# --------------------------------------------------------------------------------------------------


def test_deleting_components_matches_a_pca_reconstruction():
    """Deleting the k lowest-variance directions keeps the rank − k leading ones: sklearn's PCA with
    rank − k components, transform then inverse_transform (which adds the mean back)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6)) + 4.0
    for k in range(1, 6):
        pca = PCA(n_components=6 - k, svd_solver="full").fit(x)
        np.testing.assert_allclose(delete_components(x, k), pca.inverse_transform(pca.transform(x)), atol=1e-9)


def test_deletion_series_matches_a_pca_reconstruction_for_every_k():
    """One call for several k (one SVD) gives, for each k, sklearn's PCA reconstruction with rank − k
    components; k = 0 is the input and k >= rank the mean."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(45, 4)) @ rng.normal(size=(4, 7)) + 3.0  # rank 4
    series = deletion_series(x, [0, 1, 2, 3, 4, 6])
    assert sorted(series) == [0, 1, 2, 3, 4, 6]
    np.testing.assert_allclose(series[0], x, atol=1e-9)
    for k in (1, 2, 3):
        pca = PCA(n_components=4 - k, svd_solver="full").fit(x)
        np.testing.assert_allclose(series[k], pca.inverse_transform(pca.transform(x)), atol=1e-9)
    for k in (4, 6):
        np.testing.assert_allclose(series[k], np.tile(x.mean(0), (45, 1)), atol=1e-9)


def test_deleting_components_of_a_rank_deficient_representation():
    """On 8 features of rank 3, the rank counts, not the width: deleting 1 keeps the 2 leading
    directions (sklearn PCA with 2 components), deleting 3 leaves only the mean."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 8)) - 2.0
    pca = PCA(n_components=2, svd_solver="full").fit(x)
    np.testing.assert_allclose(delete_components(x, 1), pca.inverse_transform(pca.transform(x)), atol=1e-9)
    np.testing.assert_allclose(delete_components(x, 3), np.tile(x.mean(0), (40, 1)), atol=1e-9)


def test_deleting_no_component_is_the_identity_and_all_leaves_the_mean():
    """k = 0 returns the representation itself; k >= rank removes every direction of variation."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 5)) * [5, 4, 3, 2, 1] + 1.5
    np.testing.assert_allclose(delete_components(x, 0), x, atol=1e-10)
    for k in (5, 9):
        np.testing.assert_allclose(delete_components(x, k), np.tile(x.mean(0), (30, 1)), atol=1e-10)


def test_deleting_components_keeps_constant_units_exactly_constant():
    """Dead ReLU units (all zeros) and other constant units come back exactly constant for every k (in
    exact arithmetic they are outside the row space of the centred input); the live units still match
    sklearn's PCA reconstruction. Round-off spread there made correlation-based measures see O(1)
    correlations of noise: correlation_match_soft of X against its reconstruction with nothing deleted
    must equal its value on (X, X), which by the measure's convention (constant units correlate 0) is
    the share of live units, each matched with itself at correlation 1."""
    rng = np.random.default_rng(5)
    x = np.maximum(rng.normal(size=(300, 12)) @ rng.normal(size=(12, 30)), 0.0)
    x[:, :6] = 0.0  # dead units
    x[:, 6:9] = 0.7  # constant units (0.7 is not a sum of powers of two: the mean rounds)
    rank = np.linalg.matrix_rank(x[:, 9:] - x[:, 9:].mean(0))  # 21: the ReLU breaks the product's rank 12
    series = deletion_series(x, [0, 2, 5])
    for k, reconstruction in series.items():
        np.testing.assert_array_equal(reconstruction[:, :9], x[:, :9])
        pca = PCA(n_components=rank - k, svd_solver="full").fit(x[:, 9:])
        np.testing.assert_allclose(reconstruction[:, 9:], pca.inverse_transform(pca.transform(x[:, 9:])), atol=1e-9)
    live = 30 - 9
    assert measures.compute("correlation_match_soft", x, series[0]) == pytest.approx(live / 30, abs=1e-12)


def test_deleting_components_keeps_the_leading_eigenvalues():
    """The covariance spectrum after deleting k components is the original's top rank − k eigenvalues
    (numpy's eigvalsh) followed by zeros."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 5)) @ rng.normal(size=(5, 5))
    before = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    after = np.sort(np.linalg.eigvalsh(np.cov(delete_components(x, 2), rowvar=False)))[::-1]
    np.testing.assert_allclose(after, np.r_[before[:3], 0, 0], atol=1e-9)


def test_probe_accuracy_separable_and_random_labels():
    """Two well-separated classes (and three) are classified perfectly by a linear probe: 1.0; labels
    drawn independently of the features leave it at chance, 1/2 (binomial s.e. 0.035 at N = 200)."""
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1], 100)
    x = rng.normal(size=(200, 4)) + 8.0 * labels[:, None]
    assert probe_accuracy(x, labels) == 1.0
    three = np.repeat([0, 1, 2], 60)
    centres = 10.0 * np.eye(3)[three]
    assert probe_accuracy(rng.normal(size=(180, 3)) + centres, three) == 1.0
    assert abs(probe_accuracy(rng.normal(size=(200, 4)), rng.permutation(labels)) - 0.5) < 0.15


SIGMA = np.array([10.0, 7.0, 5.0, 3.0, 2.0, 1.0])  # singular values; the last direction carries the labels


def pc_representation(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A representation whose principal directions and variances are known exactly: X = Q diag(σ) + c
    with Q's columns orthonormal and orthogonal to the constant vector, so XᵀX (centred) = diag(σ²).
    The lowest-variance column is ±1/√n times the label sign: the classes are separable along it alone,
    and every other column is uncorrelated with the labels."""
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], n // 2)
    basis = np.column_stack([np.ones(n), 2.0 * labels - 1, rng.normal(size=(n, SIGMA.size - 1))])
    q, _ = np.linalg.qr(basis)
    columns = np.column_stack([q[:, 2:], q[:, 1]])  # random directions first, the label direction last
    return columns * SIGMA + 3.0, labels


def test_pc_deletion_reaction_points_follow_closed_forms(tmp_path):
    """With XᵀX = diag(σ²), deleting the k smallest directions gives linear CKA(X, X_k) =
    sqrt(Σ_kept σ⁴ / Σ σ⁴) (closed form), so the fraction deleted before CKA moves by 10% of its
    largest drift is known. The label direction is the first deleted, so the probe loses its
    perfect accuracy at k = 1: the reaction baseline is 1/rank. The grid is k = round(f · rank) for
    f in 0, 1/8, ..., 1 without k = rank: 0..5 for rank 6."""
    x, labels = pc_representation()
    write_arrays({"rep/relu2": x, "labels": labels}, tmp_path / "cache" / "representations" / "m0.npz")
    rows = [score_row("cka_linear", "m0", "m1", 0.9), score_row("cka_linear", "m0", "m1", 0.8, layer_a="relu1")]
    evaluations = pc_deletion(context(tmp_path, rows)).evaluations

    ks = np.arange(6)
    power = SIGMA**4
    drift = np.array([1 - math.sqrt(power[: 6 - k].sum() / power.sum()) for k in ks])
    react = ks[np.argmax(drift >= 0.1 * drift.max())] / 6
    got = one(evaluations, measure="cka_linear", statistic="pc_fraction_at_reaction")
    assert got["layer"] == "relu2"
    assert got["value"] == pytest.approx(react)
    assert got["baseline"] == pytest.approx(1 / 6)
    sensitivity = one(evaluations, measure="cka_linear", statistic="pc_sensitivity")
    assert sensitivity["n_points"] == len(ks)
    # pc_sensitivity = Spearman(probe accuracy lost, drift), recomputed on a second path: deletions in
    # closed form (the k last columns back to their mean, 3), the probe as documented (standardised
    # features, logistic regression, 2-fold CV) from scikit-learn, the correlation from scipy.
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = np.array([cross_val_score(probe, np.where(np.arange(6) >= 6 - k, 3.0, x), labels, cv=2).mean()
                         for k in ks])
    assert accuracy[0] == 1.0 and (accuracy[1:] < 1.0).all()
    assert sensitivity["value"] == pytest.approx(spearmanr(accuracy[0] - accuracy, drift).statistic)


def test_pc_deletion_ignores_round_off_drift(tmp_path):
    """linear_regression predicting X_k from X is R² = 1 exactly at every k (X_k is a linear map of X), so
    its computed values differ only by round-off: no reaction point, no sensitivity (a constant drift of
    0 has no rank correlation), whatever the last digits were."""
    rng = np.random.default_rng(3)
    x, labels = rng.normal(size=(200, 12)) * np.geomspace(10, 0.1, 12) + 3, np.repeat([0, 1], 100)
    write_arrays({"rep/relu2": x, "labels": labels}, tmp_path / "cache" / "representations" / "m0.npz")
    rows = [score_row("linear_regression", "m0", "m1", 0.9, params=json.dumps({"predictor": "x"})),
            score_row("linear_regression", "m0", "m1", 0.8, layer_a="relu1", params=json.dumps({"predictor": "x"}))]
    evaluations = pc_deletion(context(tmp_path, rows)).evaluations
    values = [measures.compute("linear_regression", x, delete_components(x, k), predictor="x") for k in range(12)]
    assert np.allclose(values, 1.0, atol=1e-12) and len(set(values)) > 1  # 1 up to round-off, which varies
    assert math.isnan(one(evaluations, measure="linear_regression", statistic="pc_fraction_at_reaction")["value"])
    assert math.isnan(one(evaluations, measure="linear_regression", statistic="pc_sensitivity")["value"])


def test_closed_form_of_cka_under_component_deletion():
    """The closed form the previous test relies on, checked against the registered linear CKA."""
    x, _ = pc_representation()
    power = SIGMA**4
    for k in range(6):
        expected = math.sqrt(power[: 6 - k].sum() / power.sum())
        assert measures.compute("cka_linear", x, delete_components(x, k)) == pytest.approx(expected, abs=1e-10)


# --------------------------------------------------------------------------------------------------
# Ranks over all tests
# --------------------------------------------------------------------------------------------------


def quality(task: str, statistic: str, values: dict[tuple[str, str], float]) -> pd.DataFrame:
    """Evaluations of one earlier task: {(arch, measure): value}."""
    return pd.DataFrame([{"task": task, "arch": arch, "measure": measure, "statistic": statistic, "value": v}
                         for (arch, measure), v in values.items()])


def test_ranks_follow_resi_rule_on_a_hand_computed_table(tmp_path):
    """Three measures, two tests, two architectures. Per cell, rank 1 = best, ties share the best
    rank, NaN stays unranked:

    layer identification   mlp: cka .9, procrustes .9, svcca .5 -> 1, 1, 3
                           cnn: cka .2, procrustes .6, svcca NaN -> 2, 1, --
    layer monotonicity     mlp: cka 1., procrustes .5, svcca .7 -> 1, 3, 2
                           cnn: all .3                        -> 1, 1, 1

    Median over architectures, then mean over tests: cka (1.5 + 1)/2 = 1.25, procrustes (1 + 2)/2 =
    1.5, svcca (3 + 1.5)/2 = 2.25. Pooled over the four cells: medians 1, 1, 2; means 1.25, 1.5, 2;
    svcca has one unranked cell. The violation rate is not a quality statistic and must not count."""
    previous = [
        quality("layer_identification", "layer_identification", {
            ("mlp", "cka_linear"): 0.9, ("mlp", "procrustes_orthogonal"): 0.9, ("mlp", "svcca"): 0.5,
            ("cnn", "cka_linear"): 0.2, ("cnn", "procrustes_orthogonal"): 0.6, ("cnn", "svcca"): np.nan}),
        quality("layer_monotonicity", "monotonicity", {
            ("mlp", "cka_linear"): 1.0, ("mlp", "procrustes_orthogonal"): 0.5, ("mlp", "svcca"): 0.7,
            ("cnn", "cka_linear"): 0.3, ("cnn", "procrustes_orthogonal"): 0.3, ("cnn", "svcca"): 0.3}),
        quality("layer_monotonicity", "monotonicity_violation_rate", {
            ("mlp", "cka_linear"): 0.9, ("mlp", "procrustes_orthogonal"): 0.0, ("mlp", "svcca"): 0.5}),
    ]
    evaluations = ranks(context(tmp_path, [], previous)).evaluations

    expected = {"cka_linear": (1.25, 1.0, 1.25), "procrustes_orthogonal": (1.5, 1.0, 1.5), "svcca": (2.25, 2.0, 2.0)}
    for measure, (score, median, mean) in expected.items():
        assert one(evaluations, measure=measure, statistic="rank_score")["value"] == pytest.approx(score)
        assert one(evaluations, measure=measure, statistic="median_rank")["value"] == pytest.approx(median)
        assert one(evaluations, measure=measure, statistic="mean_rank")["value"] == pytest.approx(mean)
    cell = {(r.measure, r.statistic, r.arch): r.value for r in evaluations.dropna(subset=["arch"]).itertuples()}
    assert cell[("procrustes_orthogonal", "rank_layer_identification", "mlp")] == 1  # tie shares the best rank
    assert cell[("svcca", "rank_layer_identification", "mlp")] == 3
    assert np.isnan(cell[("svcca", "rank_layer_identification", "cnn")])

    table = pd.read_csv(tmp_path / "tables" / "ranks.csv")
    assert list(table["measure"]) == ["cka_linear", "procrustes_orthogonal", "svcca"]  # best first
    assert table.set_index("measure").loc["svcca", "n_unranked"] == 1
    assert table.set_index("measure").loc["svcca", "layer_identification"] == pytest.approx(3.0)  # mean of ranked

    # Rank uncertainty. Enumerate the two-level bootstrap exactly: draw 2 tests with replacement, then
    # each drawn test's 2 architectures with replacement; the interval must lie in the support and hold
    # the estimate. cka's per-test medians: identification {1, 2, 1.5}, monotonicity {1}.
    per_test = {"cka_linear": {"id": [1, 2], "mono": [1, 1]}, "svcca": {"id": [3, np.nan], "mono": [2, 1]}}
    for measure, cells in per_test.items():
        # a draw of svcca's identification cell without its ranked architecture has no median (skipped)
        medians = [[[v for v in (cells[t][i] for i in draw) if not np.isnan(v)] for t, draw in zip(ts, draws)]
                   for ts in itertools.product(cells, repeat=2)
                   for draws in itertools.product(itertools.product(range(2), repeat=2), repeat=2)]
        support = [np.mean([np.median(m) for m in replicate if m]) for replicate in medians if any(replicate)]
        row = table.set_index("measure").loc[measure]
        assert min(support) <= row["rank_score_ci_low"] <= row["rank_score"] <= row["rank_score_ci_high"] <= max(support)
    differences = pd.read_csv(tmp_path / "tables" / "rank_differences.csv")
    assert len(differences) == 3 and {"p_value", "p_adjusted", "significant"} <= set(differences.columns)
    assert table[["n_significantly_better_than", "n_significantly_worse_than"]].sum().sum() == 2 * differences[
        "significant"].sum()
    # the LaTeX table compiles: every underscore escaped
    tex = (tmp_path / "tables" / "ranks.tex").read_text()
    assert "cka\\_linear" in tex and not re.search(r"(?<!\\)_", tex)


def test_ranks_without_earlier_results_is_not_applicable(tmp_path):
    assert ranks(context(tmp_path, [])).evaluations.empty
