"""Functional measures on outputs, checked against PyPI libraries, closed forms and hand-built outputs.

Every value asserted here comes from something other than ``measures.functional``: scipy, scikit-learn,
statsmodels or POT on the same inputs, a formula evaluated independently in the test, or a number
worked out by hand for a constructed input.
"""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, wasserstein_distance
from sklearn.metrics import accuracy_score, cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

import measures
from measures import UndefinedMeasureError
from tests.measures.conftest import probabilities


def one_hot(classes, n_classes: int) -> np.ndarray:
    """Probability rows that put all mass on the given classes (argmax = the class)."""
    out = np.zeros((len(classes), n_classes))
    out[np.arange(len(classes)), classes] = 1.0
    return out


def soft(classes, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Random probability rows whose argmax is the given class (the class gets extra mass)."""
    p = probabilities(rng, len(classes), n_classes) + 2.0 * one_hot(classes, n_classes)
    return p / p.sum(axis=1, keepdims=True)


def random_pair(rng, n=200, c=6):
    a = probabilities(rng, n, c)
    b = 0.5 * a + 0.5 * probabilities(rng, n, c)
    return a, b


# --------------------------------------------------------------------------------------------------
# Hard-prediction measures
# --------------------------------------------------------------------------------------------------


def test_disagreement_bounds_by_error_rates(rng):
    """|err_a − err_b| <= Dis <= min(err_a + err_b, 1) on random outputs (survey §5.2)."""
    for _ in range(50):
        n, c = int(rng.integers(5, 80)), int(rng.integers(2, 6))
        a, b = probabilities(rng, n, c), probabilities(rng, n, c)
        labels = rng.integers(0, c, size=n)
        err_a = np.mean(a.argmax(1) != labels)
        err_b = np.mean(b.argmax(1) != labels)
        dis = measures.compute("disagreement", a, b)
        assert dis == pytest.approx(np.mean(a.argmax(1) != b.argmax(1)))
        assert abs(err_a - err_b) - 1e-12 <= dis <= min(err_a + err_b, 1.0) + 1e-12


SCORE_MEASURES = measures.names(inputs="outputs")


@pytest.mark.parametrize("route", ["numpy", "strided", "autograd", "float32"])
@pytest.mark.parametrize("name", SCORE_MEASURES)
def test_score_outputs_finiteness_on_every_route(name, route, rng):
    """The argmax-fused finiteness check (numpy route for CPU float64, C- or Fortran-ordered; torch route
    for autograd tensors; float32 through validation's conversion): NaN anywhere in a row (also below its maximum), +Inf, and a
    row of −Inf raise; −Inf below a finite maximum (a masked class) gives the value of a finite stand-in,
    checked against sklearn's accuracy and kappa or numpy's argmax."""
    import torch

    n, c = 60, 5
    a, b = rng.normal(size=(n, c)), rng.normal(size=(n, c))
    labels = rng.integers(0, c, size=n)
    kwargs = {"labels": labels} if measures.info(name).requires_labels else {}

    def wrap(x):
        t = torch.from_numpy(np.asfortranarray(x) if route == "strided" else x)
        if route == "autograd":
            return t.clone().requires_grad_(True)
        return t.float() if route == "float32" else t

    for row, col, bad in ((3, 0, np.nan), (3, int(b[3].argmax()), np.nan), (5, 1, np.inf), (7, None, -np.inf)):
        bb = b.copy()
        if col is None:
            bb[row, :] = bad
        else:
            bb[row, col] = bad
        with pytest.raises(ValueError, match=f"{name!r}.*NaN or Inf"):
            measures.compute(name, wrap(a), wrap(bb), **kwargs)
    masked = b.copy()
    rows = np.arange(n)
    low = np.where(masked.argmax(1) != 0, 0, 1)  # one non-maximal class per row masked
    masked[rows, low] = -np.inf
    pa, pb = a.argmax(1), masked.argmax(1)
    expected = {
        "disagreement": np.mean(pa != pb),
        "accuracy_difference": abs(accuracy_score(labels, pa) - accuracy_score(labels, pb)),
        "cohens_kappa": cohen_kappa_score(pa, pb),
    }
    value = measures.compute(name, wrap(a), wrap(masked), **kwargs)
    stand_in = masked.copy()
    stand_in[rows, low] = b.min() - 1.0
    assert value == pytest.approx(measures.compute(name, a, stand_in, **kwargs), abs=1e-12)
    if name in expected:
        assert value == pytest.approx(expected[name], abs=1e-12)


def test_accuracy_difference_matches_sklearn(rng):
    a, b = random_pair(rng)
    labels = rng.integers(0, a.shape[1], size=a.shape[0])
    expected = abs(accuracy_score(labels, a.argmax(1)) - accuracy_score(labels, b.argmax(1)))
    assert measures.compute("accuracy_difference", a, b, labels=labels) == pytest.approx(expected, abs=1e-12)


def test_accuracy_difference_works_on_logits():
    logits_a = np.array([[2.0, -1.0, 0.0], [0.0, 5.0, 1.0], [-3.0, -2.0, -1.0], [1.0, 0.0, 0.0]])
    logits_b = np.array([[0.0, 1.0, 0.0], [0.0, 5.0, 1.0], [9.0, -2.0, -1.0], [1.0, 0.0, 0.0]])
    labels = np.array([0, 1, 2, 0])  # a: 4/4 correct, b: 2/4 correct
    assert measures.compute("accuracy_difference", logits_a, logits_b, labels=labels) == pytest.approx(0.5)


def test_labels_out_of_range_rejected(rng):
    a, b = random_pair(rng, n=10, c=3)
    with pytest.raises(ValueError, match=r"'accuracy_difference'.*\[0, 3\)"):
        measures.compute("accuracy_difference", a, b, labels=np.full(10, 3))
    with pytest.raises(ValueError, match="needs labels"):
        measures.compute("disagreement_minmax", a, b)


def test_disagreement_error_corrected_closed_form(rng):
    # 10 inputs, 3 classes. Reference a errs on inputs 0, 1; b on 0, 2, 3, 4, 5 (on input 0 the same
    # wrong class as a). They disagree on inputs 1-5: Dis = 0.5, err_a = 0.2, err_b = 0.5.
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    pred_a = labels.copy()
    pred_a[[0, 1]] = [1, 2]
    pred_b = labels.copy()
    pred_b[[0, 2, 3, 4, 5]] = [1, 0, 1, 2, 0]
    a, b = soft(pred_a, 3, rng), soft(pred_b, 3, rng)
    dis = np.mean(pred_a != pred_b)
    assert dis == pytest.approx(0.5)
    assert measures.compute("disagreement_error_corrected", a, b, labels=labels) == pytest.approx(0.5 / 0.2)
    assert measures.compute("disagreement_error_corrected", b, a, labels=labels) == pytest.approx(0.5 / 0.5)


def test_disagreement_error_corrected_perfect_reference_is_undefined(rng):
    labels = rng.integers(0, 4, size=30)
    perfect = soft(labels, 4, rng)
    other = probabilities(rng, 30, 4)
    with pytest.raises(UndefinedMeasureError, match="no error"):
        measures.compute("disagreement_error_corrected", perfect, other, labels=labels)
    # With the imperfect model as the reference the value is defined: Dis / err(other) = 1.
    assert measures.compute("disagreement_error_corrected", other, perfect, labels=labels) == pytest.approx(1.0)


def test_disagreement_minmax_closed_forms(rng):
    labels = np.zeros(10, dtype=int)
    # Both wrong on 3 inputs each. Dis_min = 0, Dis_max = 0.6.
    pred_a = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    same_errors = pred_a.copy()
    disjoint_errors = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 0])
    partial = np.array([1, 0, 0, 1, 1, 0, 0, 0, 0, 0])  # Dis = 4/10 -> (0.4 - 0)/(0.6 - 0)
    a = soft(pred_a, 2, rng)
    for pred_b, expected in [(same_errors, 0.0), (disjoint_errors, 1.0), (partial, 2.0 / 3.0)]:
        value = measures.compute("disagreement_minmax", a, soft(pred_b, 2, rng), labels=labels)
        assert value == pytest.approx(expected, abs=1e-12)
    # Unequal accuracies with Dis_max capped at 1: err_a = 0.6, err_b = 0.7 -> Dis_min 0.1, Dis_max 1.
    pred_a = np.array([1] * 6 + [0] * 4)
    pred_b = np.array([0] * 3 + [1] * 7)  # differ on inputs 0-2 and 6-9: Dis = 0.7 -> (0.7 - 0.1) / 0.9
    value = measures.compute("disagreement_minmax", soft(pred_a, 2, rng), soft(pred_b, 2, rng), labels=labels)
    assert value == pytest.approx(0.6 / 0.9)


def test_disagreement_minmax_undefined_when_a_model_is_perfect(rng):
    labels = rng.integers(0, 3, size=20)
    with pytest.raises(UndefinedMeasureError, match="perfect"):
        measures.compute("disagreement_minmax", soft(labels, 3, rng), probabilities(rng, 20, 3), labels=labels)


def test_cohens_kappa_matches_sklearn(rng):
    for _ in range(10):
        a, b = random_pair(rng, n=int(rng.integers(10, 100)), c=int(rng.integers(2, 7)))
        expected = cohen_kappa_score(a.argmax(1), b.argmax(1))
        assert measures.compute("cohens_kappa", a, b) == pytest.approx(expected, abs=1e-12)


def test_cohens_kappa_degenerate_regimes(rng):
    constant_0 = soft(np.zeros(12, dtype=int), 3, rng)
    with pytest.raises(UndefinedMeasureError, match="same single class"):
        measures.compute("cohens_kappa", constant_0, soft(np.zeros(12, dtype=int), 3, rng))
    # Each model constant, but on different classes: p_o = 0, p_e = 0, kappa = 0 (as scikit-learn).
    constant_2 = soft(np.full(12, 2), 3, rng)
    assert measures.compute("cohens_kappa", constant_0, constant_2) == pytest.approx(0.0)
    assert cohen_kappa_score(np.zeros(12), np.full(12, 2)) == pytest.approx(0.0)
    # Perfect inverse agreement on two balanced classes: kappa = -1.
    pred = np.array([0, 1] * 6)
    assert measures.compute("cohens_kappa", soft(pred, 2, rng), soft(1 - pred, 2, rng)) == pytest.approx(-1.0)


# --------------------------------------------------------------------------------------------------
# Soft-prediction measures
# --------------------------------------------------------------------------------------------------


def test_surrogate_churn_formula_and_limit(rng):
    a, b = random_pair(rng, n=100, c=5)
    for alpha in (0.5, 1.0, 3.0):
        u = (a / a.max(1, keepdims=True)) ** alpha
        v = (b / b.max(1, keepdims=True)) ** alpha
        expected = np.abs(u - v).sum(1).mean() / 2
        assert measures.compute("surrogate_churn", a, b, alpha=alpha) == pytest.approx(expected, rel=1e-12)
    # alpha -> infinity: each normalised row tends to the one-hot argmax, SChurn -> disagreement.
    sharp_a, sharp_b = probabilities(rng, 100, 5, temperature=0.2), probabilities(rng, 100, 5, temperature=0.2)
    dis = np.mean(sharp_a.argmax(1) != sharp_b.argmax(1))
    assert measures.compute("surrogate_churn", sharp_a, sharp_b, alpha=2000.0) == pytest.approx(dis, abs=1e-3)


def test_surrogate_churn_reaches_its_bound_of_c_over_2():
    c = 5
    one_hot_row = one_hot([0], c)
    uniform_on_others = np.array([[0.0] + [1.0 / (c - 1)] * (c - 1)])
    assert measures.compute("surrogate_churn", one_hot_row, uniform_on_others) == pytest.approx(c / 2)
    with pytest.raises(ValueError, match="alpha must be a positive number"):
        measures.compute("surrogate_churn", one_hot_row, uniform_on_others, alpha=0.0)


def test_jsd_matches_scipy(rng):
    a, b = random_pair(rng)
    expected = np.mean(jensenshannon(a, b, base=2, axis=1) ** 2)
    assert measures.compute("jsd", a, b) == pytest.approx(expected, rel=1e-10)


def test_jsd_closed_forms():
    # Disjoint supports: JSD = 1 bit.
    assert measures.compute("jsd", one_hot([0, 1], 2), one_hot([1, 0], 2)) == pytest.approx(1.0)
    # Point mass p = (1, 0) against q = (½, ½): m = (¾, ¼),
    # KL(p‖m) = log2(4/3), KL(q‖m) = ½ log2(2/3) + ½ log2(2).
    p, q = np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]])
    expected = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5 * math.log2(2))
    assert measures.compute("jsd", p, q) == pytest.approx(expected)
    assert expected == pytest.approx(jensenshannon(p[0], q[0], base=2) ** 2)


def test_kl_divergence_matches_scipy_entropy(rng):
    a, b = random_pair(rng)  # strictly positive rows: no floor needed
    for base in (2.0, math.e, 10.0):
        expected = entropy(a, b, base=base, axis=1).mean()
        assert measures.compute("kl_divergence", a, b, epsilon=0.0, base=base) == pytest.approx(expected, rel=1e-10)
    # The default floor (1e-10) moves strictly positive inputs by O(C·ε) at most.
    assert measures.compute("kl_divergence", a, b) == pytest.approx(entropy(a, b, base=2, axis=1).mean(), rel=1e-6)


def test_kl_divergence_epsilon_floor():
    p, q = np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])
    with pytest.raises(UndefinedMeasureError, match="infinite"):
        measures.compute("kl_divergence", p, q, epsilon=0.0)
    eps = 1e-6
    q_floored = np.array([1.0, eps]) / (1 + eps)
    expected = entropy(p[0], q_floored, base=2)  # p is unchanged by the floor
    assert measures.compute("kl_divergence", p, q, epsilon=eps) == pytest.approx(expected, rel=1e-12)
    # The other direction is finite without a floor: KL(q‖p) = log2(2) = 1 bit.
    assert measures.compute("kl_divergence", q, p, epsilon=0.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"epsilon must lie in \[0, 1/C\)"):
        measures.compute("kl_divergence", p, q, epsilon=0.5)


def test_total_variation_and_zero_one_emd_match_pot(rng):
    a, b = random_pair(rng, n=40, c=5)
    zero_one = 1.0 - np.eye(5)
    expected = np.mean([ot.emd2(a[i], b[i], zero_one) for i in range(len(a))])
    assert measures.compute("total_variation", a, b) == pytest.approx(expected, abs=1e-9)
    assert measures.compute("earth_movers", a, b) == pytest.approx(expected, abs=1e-9)
    assert measures.compute("total_variation", a, b) == pytest.approx(0.5 * np.abs(a - b).sum(1).mean(), rel=1e-12)


def test_ordinal_emd_matches_scipy_and_pot(rng):
    c = 7
    a, b = random_pair(rng, n=40, c=c)
    classes = np.arange(c)
    via_scipy = np.mean([wasserstein_distance(classes, classes, a[i], b[i]) for i in range(len(a))]) / (c - 1)
    ordinal = np.abs(classes[:, None] - classes[None, :]) / (c - 1)
    via_pot = np.mean([ot.emd2(a[i], b[i], ordinal) for i in range(len(a))])
    value = measures.compute("earth_movers", a, b, ground_metric="ordinal")
    assert value == pytest.approx(via_scipy, rel=1e-9)
    assert value == pytest.approx(via_pot, rel=1e-6)
    # Point masses at the two ends of the scale are the farthest apart: distance 1.
    assert measures.compute("earth_movers", one_hot([0], c), one_hot([c - 1], c), ground_metric="ordinal") == 1.0
    with pytest.raises(ValueError, match="ground_metric must be one of"):
        measures.compute("earth_movers", a, b, ground_metric="euclidean")


def test_prediction_difference_norms(rng):
    a, b = random_pair(rng)
    for p in (1.0, 2.0, 3.5, math.inf):
        expected = np.linalg.norm(a - b, ord=p, axis=1).mean()
        assert measures.compute("prediction_difference", a, b, p=p) == pytest.approx(expected, rel=1e-12)
    total_variation = measures.compute("total_variation", a, b)
    assert measures.compute("prediction_difference", a, b) == pytest.approx(2 * total_variation)
    assert measures.compute("prediction_difference", one_hot([0], 3), one_hot([2], 3)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="p must be >= 1"):
        measures.compute("prediction_difference", a, b, p=0.5)


def test_round_off_negatives_are_clipped(rng):
    """Rows with float32-level round-off (accepted by the validator) still give finite, correct values."""
    a, b = random_pair(rng, n=20, c=4)
    a[:, 0] = 0.0
    a /= a.sum(axis=1, keepdims=True)
    noisy = a.copy()
    noisy[:, 0] = -1e-6  # tiny negative entries, rows still sum to 1 within the tolerance
    for name in ("jsd", "kl_divergence", "surrogate_churn", "total_variation"):
        assert measures.compute(name, noisy, b) == pytest.approx(measures.compute(name, a, b), rel=1e-4)


# --------------------------------------------------------------------------------------------------
# Group-wise measures
# --------------------------------------------------------------------------------------------------


def random_group(rng, m=5, n=80, c=4):
    base = probabilities(rng, n, c)
    return [0.5 * base + 0.5 * probabilities(rng, n, c) for _ in range(m)]


def test_fleiss_kappa_matches_statsmodels(rng):
    for m in (2, 3, 6):
        group = random_group(rng, m=m)
        ratings = np.stack([g.argmax(1) for g in group], axis=1)  # N subjects x M raters
        table, _ = aggregate_raters(ratings)
        expected = fleiss_kappa(table, method="fleiss")
        assert measures.compute("fleiss_kappa", group) == pytest.approx(expected, abs=1e-12)


def test_fleiss_kappa_undefined_when_everyone_predicts_one_class(rng):
    group = [soft(np.ones(15, dtype=int), 3, rng) for _ in range(3)]
    with pytest.raises(UndefinedMeasureError, match="same single class"):
        measures.compute("fleiss_kappa", group)


def test_ambiguity_and_discrepancy_closed_forms(rng):
    reference = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    model_2 = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])  # Dis to reference 0.2
    model_3 = np.array([0, 1, 1, 1, 0, 0, 0, 0, 0, 0])  # Dis to reference 0.3
    group = [soft(p, 2, rng) for p in (reference, model_2, model_3)]
    # Non-unanimous inputs: 0, 1, 2, 3.
    assert measures.compute("ambiguity", group) == pytest.approx(0.4)
    assert measures.compute("discrepancy", group) == pytest.approx(0.3)
    # Ambiguity does not depend on the reference; discrepancy does (model 3 vs model 2: inputs 0, 2, 3).
    reordered = [group[2], group[0], group[1]]
    assert measures.compute("ambiguity", reordered) == pytest.approx(0.4)
    assert measures.compute("discrepancy", reordered) == pytest.approx(0.3)
    assert measures.compute("discrepancy", [group[1], group[0], group[2]]) == pytest.approx(0.3)
    assert measures.compute("discrepancy", [group[1], group[2]]) == pytest.approx(0.3)
    assert measures.compute("discrepancy", [group[0], group[1]]) == pytest.approx(0.2)


def test_discrepancy_at_most_ambiguity(rng):
    for _ in range(10):
        group = random_group(rng, m=int(rng.integers(2, 6)))
        assert measures.compute("discrepancy", group) <= measures.compute("ambiguity", group) + 1e-12


def test_label_entropy_matches_scipy(rng):
    group = random_group(rng, m=6, c=5)
    predictions = np.stack([g.argmax(1) for g in group], axis=1)
    counts = np.stack([np.bincount(row, minlength=5) for row in predictions])
    for base in (2.0, math.e):
        expected = entropy(counts, base=base, axis=1).mean()
        assert measures.compute("label_entropy", group, base=base) == pytest.approx(expected, rel=1e-12)
    # Four models splitting 2-2 on every input: exactly 1 bit.
    split = [soft(np.zeros(8, dtype=int), 2, rng)] * 2 + [soft(np.ones(8, dtype=int), 2, rng)] * 2
    assert measures.compute("label_entropy", split) == pytest.approx(1.0)
