"""Functional measures on model outputs (predictions and class probabilities on the same inputs).

Three input kinds (validated by the registry before a measure runs):

* ``"outputs"``: two N x C score matrices (logits or probabilities); only the predicted class
  ŷ_i = argmax_c O_ic is used, ties going to the first maximal class (torch/numpy ``argmax``).
  −Inf marks a masked class and is accepted below a finite row maximum; NaN, +Inf and rows of −Inf
  raise (:func:`_predicted_classes` checks while it takes the argmax).
* ``"probabilities"``: two N x C matrices whose rows lie on the probability simplex. The validator
  accepts round-off of up to ``PROBABILITY_ATOL`` (float32 softmax outputs); :func:`_on_simplex`
  clips such tiny negatives to zero and renormalises each row before a measure uses it, so logarithms
  and powers are always taken of valid distributions.
* ``"outputs_group"``: one list of M >= 2 N x C probability matrices (one per model); group-wise
  measures use the M predicted classes of each input.

Measures that need labels take them as ``labels=`` (one class index in [0, C) per row). Invariances
of representations (rotations, scalings, ...) do not apply to outputs, whose columns carry class
semantics, so no measure here declares any.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch

from measures._registry import UndefinedMeasureError, register

REFERENCE_SURVEY = "Klabunde, Schumacher, Strohmaier, Lemmerich. Similarity of Neural Network Models (survey), §5"
GROUND_METRICS = ("zero_one", "ordinal")


def _on_simplex(P: torch.Tensor) -> torch.Tensor:
    """Rows projected back onto the simplex: round-off negatives clipped to 0, rows renormalised."""
    P = P.clamp_min(0.0)
    return P / P.sum(dim=1, keepdim=True)


def _check_labels(name: str, labels: torch.Tensor, n_classes: int, device: torch.device) -> torch.Tensor:
    """Labels on the outputs' device; a label outside [0, C) is a caller error, not a wrong prediction."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"measure {name!r}: labels must be class indices in [0, {n_classes}), "
            f"got values in [{int(labels.min())}, {int(labels.max())}]"
        )
    return labels.to(device)


def _error_rates(
    name: str, O_a: torch.Tensor, O_b: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predictions of both models and their error rates on ``labels``."""
    labels = _check_labels(name, labels, O_a.shape[1], O_a.device)
    pred_a, pred_b = _predicted_classes(name, O_a, O_b)
    err_a = (pred_a != labels).double().mean()
    err_b = (pred_b != labels).double().mean()
    return pred_a, pred_b, err_a, err_b


def _predicted_classes(name: str, O_a: torch.Tensor, O_b: torch.Tensor, *, as_numpy: bool = False) -> tuple:
    """The predicted classes ŷ_i = argmax_c O_ic of both score matrices (first maximum on ties), with the
    finiteness check of the inputs fused into the argmax (these measures register ``checks_finite``).

    The check reads only each row's maximum, gathered at the argmax: numpy's and torch's argmax return the
    first NaN of a row that holds one, so NaN and +Inf anywhere show up there, and so does a row whose
    entries are all −Inf. What passes unread is −Inf below a finite maximum: a masked class (probability
    0 after a softmax), under which every prediction is well defined. Why not the full check: it is a
    second pass over both inputs, as long as the argmax itself (the measure's whole cost; it made
    ``disagreement`` twice as slow as ReSi's two argmaxes). ``as_numpy``: numpy arrays for CPU inputs
    without autograd (torch tensors on the inputs' device otherwise).
    """
    try:
        arrays = (O_a.numpy(), O_b.numpy())  # exactly the CPU tensors without autograd
    except (RuntimeError, TypeError):
        arrays = None
    if arrays is not None:
        n, c = arrays[0].shape
        row_starts = np.arange(0, n * c, c)
        preds = []
        with np.errstate(over="ignore", invalid="ignore"):  # the exact test settles a non-finite sum
            for i, a in enumerate(arrays):
                p = a.argmax(axis=1)
                # The row maxima, gathered right after this input's argmax while its rows are still in the
                # CPU caches, by flat index (``take``: ~10 µs less than ``a[rows, p]`` at 2000 x 256); a
                # finite sum proves them all finite, a non-finite one (or an overflow of finite maxima) is
                # tested exactly.
                top = a.take(p + row_starts) if a.flags.c_contiguous else a[np.arange(n), p]
                if not math.isfinite(np.add.reduce(top)) and not np.isfinite(top).all():
                    _raise_non_finite_scores(name, torch.from_numpy(a), f"input {i + 1}")
                preds.append(p)
        return tuple(preds) if as_numpy else tuple(torch.from_numpy(p) for p in preds)
    preds = []
    for i, O in enumerate((O_a, O_b)):
        p = O.argmax(dim=1)
        if not bool(torch.isfinite(O.gather(1, p[:, None])).all()):
            _raise_non_finite_scores(name, O, f"input {i + 1}")
        preds.append(p)
    return tuple(preds)


def _raise_non_finite_scores(name: str, O: torch.Tensor, what: str) -> None:
    bad = int((torch.isnan(O) | (O == math.inf)).sum())
    dead = int((O == -math.inf).all(dim=1).sum())
    raise ValueError(
        f"measure {name!r}: {what} contains {bad} NaN or Inf value(s) (NaN or +Inf) and {dead} row(s) whose "
        "entries are all −Inf; −Inf is accepted only as a masked class below a finite row maximum"
    )


def _positive_number(name: str, what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise ValueError(f"measure {name!r}: {what} must be a positive number, got {value!r}")
    return float(value)


def _group_predictions(group: list[torch.Tensor]) -> torch.Tensor:
    """The M x N matrix of predicted classes of a group of output matrices."""
    return torch.stack([O.argmax(dim=1) for O in group])


def _class_counts(predictions: torch.Tensor, n_classes: int) -> torch.Tensor:
    """N x C counts n_ic: how many of the M models predict class c on input i."""
    m, n = predictions.shape
    counts = torch.zeros(n, n_classes, dtype=torch.long, device=predictions.device)
    counts.scatter_add_(1, predictions.T, torch.ones(n, m, dtype=torch.long, device=predictions.device))
    return counts


# --------------------------------------------------------------------------------------------------
# Performance-based and hard-prediction measures (pairwise)
# --------------------------------------------------------------------------------------------------


@register(
    "disagreement",
    family="functional_outputs",
    kind="distance",
    range=(0.0, 1.0),
    symmetric=True,
    metric=True,
    inputs="outputs",
    checks_finite=True,
    min_rows=1,
    reference="Madani et al. 2004; Fort, Hu, Lakshminarayanan 2019 (churn); Klabunde et al. survey §5.2",
    cost="O(N·C)",
)
def disagreement(O_a: torch.Tensor, O_b: torch.Tensor) -> float:
    """Prediction disagreement (churn): the fraction of inputs whose predicted classes differ.

    Formula: Dis = (1/N) Σ_i 1[argmax_c O_ic ≠ argmax_c O'_ic]; ties in a row go to the first maximal
    class (torch/numpy argmax). Range [0, 1]; 0 means identical predictions; symmetric; a metric
    (normalised Hamming distance of the prediction vectors). Works on logits or probabilities.
    """
    # numpy's argmax on CPU inputs: ~7x torch's (2000 x 256: 0.16 against 1.1 ms)
    pred_a, pred_b = _predicted_classes("disagreement", O_a, O_b, as_numpy=True)
    if isinstance(pred_a, np.ndarray):
        return float(np.count_nonzero(pred_a != pred_b)) / pred_a.shape[0]
    return (pred_a != pred_b).double().mean()


@register(
    "accuracy_difference",
    family="functional_outputs",
    kind="distance",
    range=(0.0, 1.0),
    symmetric=True,
    metric=True,
    inputs="outputs",
    checks_finite=True,
    min_rows=1,
    requires_labels=True,
    reference="Klabunde et al. survey §5.1 (performance-based measures); ReSi AbsoluteAccDiff",
    cost="O(N·C)",
)
def accuracy_difference(O_a: torch.Tensor, O_b: torch.Tensor, *, labels: torch.Tensor) -> float:
    """Absolute difference of the two models' accuracies on the given inputs and labels.

    Formula: |acc(O) − acc(O')| with acc(O) = (1/N) Σ_i 1[ŷ_i = y_i], ŷ_i = argmax_c O_ic (first
    maximum on ties). Range [0, 1]; 0 means equal accuracy (not equal predictions); symmetric; a
    pseudometric (the triangle inequality holds, but models with equal accuracy are at distance 0).
    ``labels``: one class index in [0, C) per row. ReSi reads stored test accuracies for vision and
    language models; here the accuracy is always recomputed on the inputs given, so record which split
    they come from.
    """
    _, _, err_a, err_b = _error_rates("accuracy_difference", O_a, O_b, labels)
    return (err_a - err_b).abs()


@register(
    "disagreement_error_corrected",
    family="functional_outputs",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=False,
    inputs="outputs",
    checks_finite=True,
    min_rows=1,
    requires_labels=True,
    reference="Fort, Hu, Lakshminarayanan. Deep Ensembles: A Loss Landscape Perspective. 2019 (arXiv 1912.02757)",
    cost="O(N·C)",
)
def disagreement_error_corrected(O_a: torch.Tensor, O_b: torch.Tensor, *, labels: torch.Tensor) -> float:
    """Disagreement divided by the error rate of the first (reference) model.

    Formula: Dis(O, O') / q_Err(O), with Dis the fraction of inputs whose predicted classes differ and
    q_Err(O) the reference model's error rate on ``labels``. Range [0, ∞): since
    Dis ≤ min(q_Err(O) + q_Err(O'), 1) the value is at most min(1 + q_Err(O')/q_Err(O), 1/q_Err(O)),
    which grows without bound as the reference becomes perfect. Lower is more similar; 0 means
    identical predictions. Asymmetric: the first argument is the reference (swapping the arguments
    divides by the other model's error). A reference without errors has no error to correct by:
    ``UndefinedMeasureError``. The normalisation by the reference's error follows Fort et al.'s
    diversity plots; the survey marks the exact form as unverified.
    """
    pred_a, pred_b, err_a, _ = _error_rates("disagreement_error_corrected", O_a, O_b, labels)
    if err_a == 0:
        raise UndefinedMeasureError(
            "disagreement_error_corrected: the reference model (first input) makes no error, "
            "so the error-normalised disagreement is x/0"
        )
    return (pred_a != pred_b).double().mean() / err_a


@register(
    "disagreement_minmax",
    family="functional_outputs",
    kind="distance",
    range=(0.0, 1.0),
    symmetric=True,
    inputs="outputs",
    checks_finite=True,
    min_rows=1,
    requires_labels=True,
    reference="Klabunde & Lemmerich. On the Prediction Instability of Graph Neural Networks. ECML-PKDD 2022",
    cost="O(N·C)",
)
def disagreement_minmax(O_a: torch.Tensor, O_b: torch.Tensor, *, labels: torch.Tensor) -> float:
    """Disagreement rescaled between its smallest and largest value possible at the two accuracies.

    Formula: (Dis − Dis_min) / (Dis_max − Dis_min) with Dis_min = |acc − acc'| and
    Dis_max = min(1, 2 − acc − acc') (= min(1, q_Err + q_Err')); these are the bounds any two models
    with these accuracies must respect. Range [0, 1]; 0 = as little disagreement as the accuracies
    allow; symmetric. Dis_max = Dis_min exactly when one model is perfect (then Dis is forced to equal
    the other's error); the reference implementation returns NaN there, this one raises
    ``UndefinedMeasureError``.
    """
    pred_a, pred_b, err_a, err_b = _error_rates("disagreement_minmax", O_a, O_b, labels)
    dis_min = (err_a - err_b).abs()
    dis_max = torch.clamp(err_a + err_b, max=1.0)
    if dis_max == dis_min:
        raise UndefinedMeasureError(
            "disagreement_minmax: one model is perfect, so the disagreement is fixed by the accuracies "
            "(Dis_max = Dis_min) and the rescaling is 0/0"
        )
    dis = (pred_a != pred_b).double().mean()
    return ((dis - dis_min) / (dis_max - dis_min)).clamp(0.0, 1.0)


@register(
    "cohens_kappa",
    family="functional_outputs",
    kind="similarity",
    range=(-1.0, 1.0),
    symmetric=True,
    inputs="outputs",
    checks_finite=True,
    min_rows=1,
    reference="Cohen. A Coefficient of Agreement for Nominal Scales. 1960; Klabunde et al. survey §5.2",
    cost="O(N·C)",
)
def cohens_kappa(O_a: torch.Tensor, O_b: torch.Tensor) -> float:
    """Cohen's kappa of the two models' predicted classes: agreement corrected for chance.

    Formula: κ = (p_o − p_e) / (1 − p_e), p_o = 1 − Dis (observed agreement),
    p_e = Σ_c π_c π'_c with π_c, π'_c the fractions of inputs each model assigns to class c.
    Range [−1, 1]; 1 = identical predictions, 0 = chance-level agreement; symmetric. 1 − κ = Dis/(1 − p_e)
    is the chance-corrected disagreement. When both models predict one and the same class on every
    input, p_e = 1 and κ is 0/0: ``UndefinedMeasureError`` (scikit-learn's ``cohen_kappa_score``
    returns NaN with a warning). Classes are the C output columns.
    """
    n_classes = O_a.shape[1]
    pred_a, pred_b = _predicted_classes("cohens_kappa", O_a, O_b)
    count_a = torch.bincount(pred_a, minlength=n_classes)
    count_b = torch.bincount(pred_b, minlength=n_classes)
    n = pred_a.shape[0]
    # p_e = 1 exactly when one class holds every prediction of both models; test on the integer counts.
    if bool(((count_a == n) & (count_b == n)).any()):
        raise UndefinedMeasureError(
            "cohens_kappa: both models predict the same single class on every input, so chance agreement "
            "is 1 and kappa is 0/0"
        )
    p_o = (pred_a == pred_b).double().mean()
    p_e = (count_a.double() * count_b.double()).sum() / (n * n)
    return ((p_o - p_e) / (1.0 - p_e)).clamp(-1.0, 1.0)


# --------------------------------------------------------------------------------------------------
# Soft-prediction measures (pairwise, probabilities)
# --------------------------------------------------------------------------------------------------


@register(
    "surrogate_churn",
    family="functional_outputs",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    metric=True,
    inputs="probabilities",
    min_rows=1,
    reference="Bhojanapalli et al. On the Reproducibility and Stability of Deep Learning. ICCV 2021",
    cost="O(N·C)",
)
def surrogate_churn(P: torch.Tensor, Q: torch.Tensor, *, alpha: float = 1.0) -> float:
    """Surrogate churn: a smooth version of disagreement on max-normalised class probabilities.

    Formula: SChurn_α = (1/(2N)) Σ_i ‖(P_i / max_c P_ic)^α − (Q_i / max_c Q_ic)^α‖₁ (powers
    elementwise), α > 0 (default 1). As α → ∞ each normalised row tends to the indicator of its argmax
    (without ties) and SChurn_α → Dis. Range [0, C/2] for C classes (each normalised row lies in
    [0, 1]^C; the bound is reached by a one-hot row against a row uniform on the other classes), so the
    declared range is [0, ∞); values above 1 occur only for small α and many classes. Lower is more
    similar; symmetric; a metric on probability matrices (an ℓ1 distance after the map p ↦ (p/max p)^α,
    which is injective on the simplex).
    """
    alpha = _positive_number("surrogate_churn", "alpha", alpha)
    P, Q = _on_simplex(P), _on_simplex(Q)
    u = (P / P.amax(dim=1, keepdim=True)).pow(alpha)
    v = (Q / Q.amax(dim=1, keepdim=True)).pow(alpha)
    return 0.5 * (u - v).abs().sum(dim=1).mean()


def _kl_rows(P: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Per-row KL(P_i ‖ Q_i) in nats, with 0·log 0 = 0; +inf where Q_i has a zero under P_i's mass."""
    return (torch.xlogy(P, P) - torch.xlogy(P, Q)).sum(dim=1)


@register(
    "jsd",
    family="functional_outputs",
    kind="distance",
    range=(0.0, 1.0),
    symmetric=True,
    inputs="probabilities",
    min_rows=1,
    reference="Lin. Divergence Measures Based on the Shannon Entropy. 1991; Klabunde et al. survey §5.3; ReSi JSD",
    cost="O(N·C)",
)
def jsd(P: torch.Tensor, Q: torch.Tensor) -> float:
    """Mean Jensen-Shannon divergence (log base 2) between the two models' class distributions.

    Formula: (1/N) Σ_i JSD(P_i ‖ Q_i), JSD(p ‖ q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q)/2, with
    logarithms in base 2 and 0·log 0 = 0 (finite for every pair: m > 0 wherever p or q is).
    Range [0, 1] (1 for disjoint supports); per-instance values are clipped into [0, 1] against
    round-off before the mean. Lower is more similar; symmetric. Not a metric: its square root is
    (Endres & Schindelin 2003). SciPy's ``scipy.spatial.distance.jensenshannon`` returns that square
    root, in nats unless ``base=2``; this measure equals ``jensenshannon(P, Q, base=2, axis=1)**2``
    averaged over rows. ReSi averages with ``nanmean``; here invalid rows cannot occur (inputs are
    validated).
    """
    P, Q = _on_simplex(P), _on_simplex(Q)
    M = 0.5 * (P + Q)
    per_instance = 0.5 * (_kl_rows(P, M) + _kl_rows(Q, M)) / math.log(2.0)
    return per_instance.clamp(0.0, 1.0).mean()


@register(
    "kl_divergence",
    family="functional_outputs",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=False,
    inputs="probabilities",
    min_rows=1,
    reference="Kullback & Leibler. On Information and Sufficiency. 1951; Klabunde et al. survey §5.3",
    cost="O(N·C)",
)
def kl_divergence(P: torch.Tensor, Q: torch.Tensor, *, epsilon: float = 1e-10, base: float = 2.0) -> float:
    """Mean Kullback-Leibler divergence KL(P_i ‖ Q_i) of the second model's from the first's outputs.

    Formula: (1/N) Σ_i Σ_c p̃_ic log_b(p̃_ic / q̃_ic), where p̃, q̃ are the rows after an epsilon floor:
    every entry is raised to at least ``epsilon`` and the row is renormalised (p̃ = max(p, ε)/Σ max(p, ε)).
    The floor is applied to both sides, so both stay distributions, KL stays ≥ 0, identical inputs
    give exactly 0, and a zero in Q under mass of P costs at most about log_b(1/ε) instead of ∞;
    it moves other values by O(C·ε). ``epsilon=0`` gives the plain KL, which raises
    ``UndefinedMeasureError`` when it is infinite. ``epsilon`` must lie in [0, 1/C).
    ``base``: logarithm base (default 2, bits, as ``jsd``; ``math.e`` for nats). Range [0, ∞); lower
    is more similar; asymmetric (the first argument is the reference distribution P); not a metric.
    Other implementations differ in the floor (adding ε without renormalising, flooring Q only) and
    in the base (nats are common); both are recorded as parameters.
    """
    n_classes = P.shape[1]
    if isinstance(epsilon, bool) or not isinstance(epsilon, Real) or not 0 <= epsilon < 1 / n_classes:
        raise ValueError(
            f"measure 'kl_divergence': epsilon must lie in [0, 1/C) = [0, {1 / n_classes:.3g}), got {epsilon!r}"
        )
    base = _positive_number("kl_divergence", "base", base)
    if base == 1:
        raise ValueError("measure 'kl_divergence': base must not be 1")
    P, Q = _on_simplex(P), _on_simplex(Q)
    if epsilon > 0:
        P, Q = _on_simplex(P.clamp_min(epsilon)), _on_simplex(Q.clamp_min(epsilon))
    per_instance = _kl_rows(P, Q)
    if not bool(torch.isfinite(per_instance).all()):
        raise UndefinedMeasureError(
            "kl_divergence: the second input gives probability 0 to a class the first gives mass to, "
            "so KL is infinite (use epsilon > 0)"
        )
    return per_instance.clamp_min(0.0).mean() / math.log(base)


@register(
    "total_variation",
    family="functional_outputs",
    kind="distance",
    range=(0.0, 1.0),
    symmetric=True,
    metric=True,
    inputs="probabilities",
    min_rows=1,
    reference="Klabunde et al. survey §5.3 (project addition); total variation distance of distributions",
    cost="O(N·C)",
)
def total_variation(P: torch.Tensor, Q: torch.Tensor) -> float:
    """Mean total variation distance between the two models' class distributions.

    Formula: (1/N) Σ_i ½ ‖P_i − Q_i‖₁ = (1/N) Σ_i max_A |P_i(A) − Q_i(A)|. Range [0, 1] (1 for disjoint
    supports); lower is more similar; symmetric; a metric (a mean of metrics). Equals ``earth_movers``
    with the 0/1 ground metric.
    """
    P, Q = _on_simplex(P), _on_simplex(Q)
    return (0.5 * (P - Q).abs().sum(dim=1)).mean().clamp(0.0, 1.0)


@register(
    "earth_movers",
    family="functional_outputs",
    kind="distance",
    range=(0.0, 1.0),
    symmetric=True,
    metric=True,
    inputs="probabilities",
    min_rows=1,
    reference="Rubner, Tomasi, Guibas. The Earth Mover's Distance as a Metric for Image Retrieval. IJCV 2000",
    cost="O(N·C)",
)
def earth_movers(P: torch.Tensor, Q: torch.Tensor, *, ground_metric: str = "zero_one") -> float:
    """Mean per-instance earth mover's (1-Wasserstein) distance between the class distributions.

    Formula: (1/N) Σ_i W₁(P_i, Q_i) with W₁(p, q) = min over couplings π of Σ_{c,c'} π_cc' d(c, c').
    ``ground_metric``: ``"zero_one"`` (default) d(c, c') = 1[c ≠ c'], for which W₁ = ½‖p − q‖₁ (the
    total variation); ``"ordinal"`` for ordered classes, d(c, c') = |c − c'| / (C − 1), for which
    W₁ = (1/(C − 1)) Σ_{c<C−1} |F_p(c) − F_q(c)| with F the cumulative distributions. The ordinal
    metric is divided by C − 1 so that both ground metrics have diameter 1 and the measure lies in
    [0, 1] for either; ``scipy.stats.wasserstein_distance`` on class indices gives (C − 1) times the
    ordinal value. Lower is more similar; symmetric; a metric (W₁ under a metric ground cost).
    """
    if ground_metric not in GROUND_METRICS:
        raise ValueError(
            f"measure 'earth_movers': ground_metric must be one of {GROUND_METRICS}, got {ground_metric!r}"
        )
    P, Q = _on_simplex(P), _on_simplex(Q)
    if ground_metric == "zero_one":
        per_instance = 0.5 * (P - Q).abs().sum(dim=1)
    else:
        cdf_gap = (P.cumsum(dim=1) - Q.cumsum(dim=1))[:, :-1]
        per_instance = cdf_gap.abs().sum(dim=1) / (P.shape[1] - 1)
    return per_instance.mean().clamp(0.0, 1.0)


@register(
    "prediction_difference",
    family="functional_outputs",
    kind="distance",
    range=(0.0, 2.0),
    symmetric=True,
    metric=True,
    inputs="probabilities",
    min_rows=1,
    reference="Shamir, Lin, Coviello. Smooth Activations and Reproducibility in Deep Networks. 2020",
    cost="O(N·C)",
)
def prediction_difference(P: torch.Tensor, Q: torch.Tensor, *, p: float = 1.0) -> float:
    """Mean p-norm distance between the two models' class-probability vectors.

    Formula: PD_p = (1/N) Σ_i ‖P_i − Q_i‖_p, p ≥ 1 (default 1; ``math.inf`` allowed). Range [0, 2]:
    between two distributions ‖·‖_p ≤ 2^{1/p} (reached by disjoint point masses), so p = 1 gives
    [0, 2] and PD₁ = 2 × ``total_variation``. Lower is more similar; symmetric; a metric for p ≥ 1
    (a mean of norm distances). Shamir et al. also define a multi-model version relative to the mean
    prediction and a relative (normalised) version; this is the pairwise absolute one.
    """
    if isinstance(p, bool) or not isinstance(p, Real) or not p >= 1:
        raise ValueError(f"measure 'prediction_difference': p must be >= 1 (a norm), got {p!r}")
    P, Q = _on_simplex(P), _on_simplex(Q)
    return torch.linalg.vector_norm(P - Q, ord=float(p), dim=1).mean()


# --------------------------------------------------------------------------------------------------
# Group-wise measures (M >= 2 models)
# --------------------------------------------------------------------------------------------------


@register(
    "fleiss_kappa",
    family="functional_outputs",
    kind="similarity",
    range=(-1.0, 1.0),
    symmetric=True,
    inputs="outputs_group",
    min_rows=1,
    reference="Fleiss. Measuring Nominal Scale Agreement Among Many Raters. Psychological Bulletin 1971",
    cost="O(M·N·C)",
)
def fleiss_kappa(group: list[torch.Tensor]) -> float:
    """Fleiss' kappa of the predicted classes of M models: chance-corrected agreement of a group.

    Formula: with n_ic the number of models predicting class c on input i,
    P_i = Σ_c n_ic(n_ic − 1) / (M(M − 1)), P̄ = (1/N) Σ_i P_i, p_c = Σ_i n_ic / (N·M),
    P̄_e = Σ_c p_c², κ = (P̄ − P̄_e) / (1 − P̄_e). Range [−1, 1] (the attainable minimum is above −1 for
    M > 2); 1 = all models predict identically; higher is more similar; invariant to the order of the
    models. When every model predicts one and the same class everywhere, P̄_e = 1 and κ is 0/0:
    ``UndefinedMeasureError`` (statsmodels returns NaN). For M = 2 this is Scott's pi, not Cohen's
    kappa (chance agreement from pooled, not per-model, class frequencies).
    """
    predictions = _group_predictions(group)
    m, n = predictions.shape
    counts = _class_counts(predictions, group[0].shape[1])
    totals = counts.sum(dim=0)
    if bool((totals == n * m).any()):
        raise UndefinedMeasureError(
            "fleiss_kappa: every model predicts the same single class on every input, so chance agreement "
            "is 1 and kappa is 0/0"
        )
    counts = counts.double()
    p_bar = ((counts * (counts - 1)).sum(dim=1) / (m * (m - 1))).mean()
    p_e = (totals.double() / (n * m)).square().sum()
    return ((p_bar - p_e) / (1.0 - p_e)).clamp(-1.0, 1.0)


@register(
    "ambiguity",
    family="functional_outputs",
    kind="distance",
    range=(0.0, 1.0),
    symmetric=True,
    inputs="outputs_group",
    min_rows=1,
    reference="Marx, Calmon, Ustun. Predictive Multiplicity in Classification. ICML 2020",
    cost="O(M·N·C)",
)
def ambiguity(group: list[torch.Tensor]) -> float:
    """Ambiguity: the fraction of inputs on which some model's prediction differs from the reference's.

    Formula: (1/N) Σ_i 1[∃ m: ŷ_i^(m) ≠ ŷ_i^(1)], the reference model being the first in the list
    (Marx et al.'s baseline model h₀; the other models play the competing set). Range [0, 1]; 0 = every
    model agrees with the reference everywhere; lower is more similar. Since "some model differs from
    the reference" is the same event as "the predictions are not unanimous", the value does not depend
    on which model is the reference, nor on the order of the list. Marx et al. restrict the competing
    models to an ε-Rashomon set (near-optimal loss); here the caller chooses the group.
    """
    predictions = _group_predictions(group)
    return (predictions != predictions[0]).any(dim=0).double().mean()


@register(
    "discrepancy",
    family="functional_outputs",
    kind="distance",
    range=(0.0, 1.0),
    symmetric=False,
    inputs="outputs_group",
    min_rows=1,
    reference="Marx, Calmon, Ustun. Predictive Multiplicity in Classification. ICML 2020",
    cost="O(M·N·C)",
)
def discrepancy(group: list[torch.Tensor]) -> float:
    """Discrepancy: the largest disagreement between the reference model and any other model.

    Formula: max_{m ≥ 2} (1/N) Σ_i 1[ŷ_i^(m) ≠ ŷ_i^(1)], the reference model being the first in the
    list (Marx et al.'s baseline h₀). Range [0, 1]; 0 = every model predicts as the reference; lower is
    more similar. Depends on which model is the reference (not symmetric in the order of the list);
    at most ``ambiguity`` of the same list.
    """
    predictions = _group_predictions(group)
    return (predictions[1:] != predictions[0]).double().mean(dim=1).amax()


@register(
    "label_entropy",
    family="functional_outputs",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    inputs="outputs_group",
    min_rows=1,
    reference="Klabunde et al. survey §5.2 (group-wise hard-prediction measures)",
    cost="O(M·N·C)",
)
def label_entropy(group: list[torch.Tensor], *, base: float = 2.0) -> float:
    """Mean entropy of the distribution of predicted labels across the M models, per input.

    Formula: (1/N) Σ_i H(n_i / M), H(q) = −Σ_c q_c log_b q_c, n_ic = number of models predicting c on
    input i. ``base``: logarithm base (default 2, bits; ``math.e`` for nats). Range [0, log_b min(M, C)]
    (declared [0, ∞) since the bound depends on M and C); 0 = unanimous predictions on every input;
    lower is more similar; invariant to the order of the models.
    """
    base = _positive_number("label_entropy", "base", base)
    if base == 1:
        raise ValueError("measure 'label_entropy': base must not be 1")
    predictions = _group_predictions(group)
    q = _class_counts(predictions, group[0].shape[1]).double() / predictions.shape[0]
    return (-torch.xlogy(q, q).sum(dim=1)).mean().clamp_min(0.0) / math.log(base)
