"""Alignment family: measures that optimally align one representation to the other (Procrustes, matching, regression).

Unequal widths are handled as if the narrower input were zero-padded to the wider one: the Procrustes
measures work with the rectangular D1 x D2 cross-product directly (nuclear norms and optimal residuals
are unchanged by zero columns), and the matching measures match min(D1, D2) pairs and charge the
unmatched columns in full. When an input has more columns than rows (D > N), orthogonally invariant
measures first replace it by its N x N row-space coordinates (same Gram matrix XXᵀ, so the same value)
to keep the cost at O(N·D·min(N, D) + min(N, D)³).

The Procrustes variants share one quantity, the nuclear-norm alignment ν = ‖X̂ᵀŶ‖_* of the centred,
unit-Frobenius inputs: Euclidean √(2 − 2ν) (Ding et al. 2021, ReSi OrthProc), squared 2 − 2ν
(sim_metric), angular arccos ν (netrep, ReSi AngShape), 1 − ν (anatome); ``scipy.spatial.procrustes``
reports the disparity 1 − ν².
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
from scipy.optimize import linear_sum_assignment

from measures._kernels import centred_cross, centred_moments, col_norms, mm, on_numpy
from measures._registry import UndefinedMeasureError, register
from measures._validation import center_columns
from measures.cca import (
    check_choice,
    check_not_degenerate,
    centred,
    power_of_two_scale,
    principal_directions,
    rank_tolerance,
    well_conditioned_cholesky,
)

_WILLIAMS_2021 = (
    "Williams, Kunz, Kornblith, Linderman. Generalized Shape Metrics on Neural Representations. NeurIPS 2021"
)
_DING_2021 = "Ding, Denain, Steinhardt. Grounding Representation Similarity with Statistical Testing. NeurIPS 2021"
_LI_2016 = "Li, Yosinski, Clune, Lipson, Hopcroft. Convergent Learning: Do different neural networks learn the same representations? ICLR 2016"
_PROCRUSTES_COST = "O(N·D1·D2 + min(N, D)³): one cross product and one SVD"


def _row_space_coordinates(x: torch.Tensor) -> torch.Tensor:
    """An N x min(N, D) matrix with the same Gram matrix xxᵀ as ``x``.

    With the thin QR xᵀ = QR, x = RᵀQᵀ and Qᵀ has orthonormal rows, so Rᵀ equals x up to an orthogonal
    map (after zero-padding): every orthogonally invariant quantity is unchanged.
    """
    if x.shape[1] <= x.shape[0]:
        return x
    return torch.linalg.qr(x.T).R.T


def _pad_to_common_width(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(x.shape[1], y.shape[1])
    return (
        torch.nn.functional.pad(x, (0, width - x.shape[1])),
        torch.nn.functional.pad(y, (0, width - y.shape[1])),
    )


def _nuclear_norm_by_gram(cross: np.ndarray) -> tuple[float, float] | None:
    """‖cross‖_* as Σ √λ_i of its smaller Gram matrix, with a bound on its round-off; None if it has none.

    Why not the SVD: eigvalsh of the D x D Gram (plus one D x D x D product) costs well under half of
    the singular values' bidiagonalisation (2000x256: 0.5 + 2.1 ms vs 4.8 ms for ``svdvals``; 5000x512:
    3.7 + 10.6 ms vs 34 ms). Its price is accuracy for small singular values: each λ_i carries an
    absolute error of about p·eps·λ_max (backward-stable eigensolver, Weyl's bound; forming the Gram adds
    the same order), so σ_i = √λ_i is off by about p·eps·λ_max / σ_i. The returned bound is
    Σ_i D·eps·λ_max / σ_i (p = D, generous for both steps); a non-positive λ_i has no such bound and
    gives None (the caller then takes the singular values). float64 only.
    """
    if cross.dtype != np.float64 or not cross.size:
        return None
    gram = cross.T @ cross if cross.shape[1] <= cross.shape[0] else cross @ cross.T
    eigenvalues = scipy.linalg.eigvalsh(gram, check_finite=False)
    largest = eigenvalues[-1]
    # A subnormal or zero λ_max (or any λ_i <= 0) carries no usable relative accuracy.
    if not eigenvalues[0] > 0.0 or not largest > 1e-250:
        return None
    singular = np.sqrt(eigenvalues)
    return float(singular.sum()), float(gram.shape[0] * np.finfo(np.float64).eps * largest * (1.0 / singular).sum())


def _squared_residual_from_cross(cross: torch.Tensor, total: float) -> float | None:
    """‖x‖² + ‖y‖² − 2‖xᵀy‖_* (``total`` = ‖x‖² + ‖y‖², ``cross`` = xᵀy), or None where it loses digits.

    First through the Gram's eigenvalues (``_nuclear_norm_by_gram``), accepted when twice its error
    bound is at most 1e-11 of the result (the relative error of d² then stays below 1e-11 whatever
    the cancellation); otherwise from the singular values, accepted when the result keeps at least
    1e-3 of ``total`` (absolute error ≈ eps·D·total, so relative error of d below 1e-11). None: the
    pair is too close for either, the caller forms the residual at the optimal rotation.
    """
    if on_numpy(cross):
        by_gram = _nuclear_norm_by_gram(cross.numpy())
        if by_gram is not None:
            nu, error = by_gram
            squared = total - 2.0 * nu
            if squared > 0.0 and 2.0 * error <= 1e-11 * squared:
                return squared
    squared = total - 2.0 * float(torch.linalg.svdvals(cross).sum())
    return squared if squared >= 1e-3 * total else None


def _orthogonal_residual(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """min over orthogonal Q of ‖xQ − y‖_F (narrower side zero-padded).

    Computed as √(‖x‖² + ‖y‖² − 2‖xᵀy‖_*) where that keeps its digits (``_squared_residual_from_cross``),
    and otherwise (x ≈ y, where the formula loses every digit to cancellation) as the norm of the residual
    at the optimal Q = UVᵀ (SVD xᵀy = USVᵀ). Any SVD (also of a rank-deficient xᵀy) gives a maximiser of
    tr(Qᵀxᵀy), so the value is well defined.
    """
    x, y = _row_space_coordinates(x), _row_space_coordinates(y)
    squared = _squared_residual_from_cross(mm(x.T, y), _squared_norm(x) + _squared_norm(y))
    if squared is not None:
        return torch.tensor(math.sqrt(squared), dtype=x.dtype, device=x.device)
    x, y = _pad_to_common_width(x, y)
    u, _, vh = torch.linalg.svd(mm(x.T, y))
    return torch.linalg.matrix_norm(mm(x, mm(u, vh)) - y)


def _centred_residual_numpy(X: torch.Tensor, Y: torch.Tensor, unit: bool) -> torch.Tensor | None:
    """The Procrustes residual of the centred inputs (scaled to unit norm if ``unit``) without N x D copies.

    CPU float64 inputs with N ≥ max(D1, D2) only. x̃ᵀỹ and ‖x̃‖², ‖ỹ‖² come from the raw inputs by
    rank-one corrections (``centred_moments``, ``centred_cross``); unit norm divides the D1 x D2 product
    by ‖x̃‖‖ỹ‖ instead of scaling two N x D inputs. None where the caller's general route must run
    (means large against the spread, non-zero constant columns, extreme magnitudes, a zero input, a
    pair too close for the formula).
    """
    if not (on_numpy(X, Y) and X.dtype == torch.float64 and X.shape[0] >= max(X.shape[1], Y.shape[1])):
        return None
    moments_x, moments_y = centred_moments(X), centred_moments(Y)
    if moments_x is None or moments_y is None:
        return None
    sx, sy = float(moments_x[1].sum()), float(moments_y[1].sum())
    if sx == 0.0 or sy == 0.0:
        return None
    cross = centred_cross(X, Y, moments_x[0], moments_y[0])
    if unit:
        cross /= math.sqrt(sx) * math.sqrt(sy)
    squared = _squared_residual_from_cross(torch.from_numpy(cross), 2.0 if unit else sx + sy)
    return None if squared is None else torch.tensor(math.sqrt(squared), dtype=torch.float64)


def _raw_residual_numpy(X: torch.Tensor, Y: torch.Tensor, unit: bool) -> torch.Tensor | None:
    """The Procrustes residual of the raw (uncentred) inputs, scaled to unit norm if ``unit``, without
    N x D copies: one pass each for ‖X‖², ‖Y‖² and one cross product (unit norm divides the D1 x D2
    product, not the inputs). CPU float64 inputs with N ≥ max(D1, D2); None where the general route must
    run (squared norms outside (2·numel·1e-200, 0.25e200), i.e. a zero input or extreme magnitudes that
    the power-of-two rescaling handles, or a pair too close for the formula).
    """
    if not (on_numpy(X, Y) and X.dtype == torch.float64 and X.shape[0] >= max(X.shape[1], Y.shape[1])):
        return None
    sx, sy = _squared_norm(X), _squared_norm(Y)
    if not all(2.0 * t.numel() * 1e-200 < v < 0.25e200 for t, v in ((X, sx), (Y, sy))):
        return None
    cross = X.numpy().T @ Y.numpy()
    if unit:
        cross /= math.sqrt(sx) * math.sqrt(sy)
    squared = _squared_residual_from_cross(torch.from_numpy(cross), 2.0 if unit else sx + sy)
    return None if squared is None else torch.tensor(math.sqrt(squared), dtype=torch.float64)


def _unit(name: str, x: torch.Tensor, which: int, center: bool) -> torch.Tensor:
    """Centred (optionally) and scaled to unit Frobenius norm; a constant input has no shape to compare."""
    x = centred(x) if center else x / power_of_two_scale(x)
    norm = torch.linalg.matrix_norm(x)
    if norm == 0:
        what = "constant (zero variance after centring)" if center else "all zeros"
        raise UndefinedMeasureError(f"{name}: input {which} is {what}; it cannot be scaled to unit norm")
    return x / norm


def _angle_from_chord(d: torch.Tensor) -> torch.Tensor:
    """arccos ν from the chord d = √(2 − 2ν) between unit-norm points: θ = 2 arcsin(d/2).

    Same number as arccos ν, but well conditioned near θ = 0, where arccos(1 − δ) ≈ √(2δ) turns
    round-off δ into an error of √δ (3e-4 in float32).
    """
    return 2.0 * torch.arcsin((d / 2.0).clamp(max=1.0))


def _procrustes(name: str, X: torch.Tensor, Y: torch.Tensor, center: bool, normalize: bool, form: str) -> torch.Tensor:
    check_choice(name, "form", form, ("euclidean", "squared", "angular", "one_minus_nu"))
    unit = normalize or form in ("angular", "one_minus_nu")
    d = _centred_residual_numpy(X, Y, unit) if center else _raw_residual_numpy(X, Y, unit)
    if d is None and unit:
        # The angular and 1 − ν forms depend on ν alone, which does not depend on the inputs' scale.
        d = _orthogonal_residual(_unit(name, X, 1, center), _unit(name, Y, 2, center))
    elif d is None:
        x, y = (center_columns(X), center_columns(Y)) if center else (X, Y)
        # The distance is 1-homogeneous in the pair: one exact power-of-two rescaling avoids overflow.
        scale = power_of_two_scale(x, y)
        d = _orthogonal_residual(x / scale, y / scale) * scale
    if form == "euclidean":
        return d
    if form == "squared":
        return d.square()
    return _angle_from_chord(d) if form == "angular" else d.square() / 2.0


@register(
    "procrustes_orthogonal",
    family="alignment",
    kind="distance",
    range=(0.0, math.sqrt(2.0)),
    symmetric=True,
    metric=True,
    invariances=("permutation", "orthogonal", "isotropic_scaling", "translation"),
    reference=_DING_2021 + "; Schönemann 1966 (orthogonal Procrustes)",
    cost=_PROCRUSTES_COST,
)
def procrustes_orthogonal(
    X: torch.Tensor, Y: torch.Tensor, *, center: bool = True, normalize: bool = True, form: str = "euclidean"
) -> torch.Tensor:
    """Orthogonal Procrustes distance between the centred, unit-Frobenius representations.

    Formula: d = min_{Q orthogonal} ‖X̂Q − Ŷ‖_F = √(2 − 2ν) with X̂ = X̃/‖X̃‖_F, Ŷ likewise and
    ν = ‖X̂ᵀŶ‖_* (nuclear norm); the narrower input is zero-padded. Range [0, √2]; 0 means identical
    up to rotation, translation and scale; symmetric; a metric (on the equivalence classes).
    Invariances (defaults): orthogonal maps, permutations, isotropic scaling, translations; not
    invertible linear maps.

    Parameters: ``center`` (translation invariance), ``normalize`` (scale invariance; without it this
    is √(‖X̃‖² + ‖Ỹ‖² − 2‖X̃ᵀỸ‖_*), see ``procrustes_size_shape``), ``form``: ``"euclidean"``
    √(2 − 2ν) (default; Ding et al. 2021, ReSi OrthProc), ``"squared"`` 2 − 2ν (sim_metric),
    ``"angular"`` arccos ν ∈ [0, π/2] (netrep, ReSi AngShape; same as ``procrustes_angular``),
    ``"one_minus_nu"`` 1 − ν (anatome). The last two depend on ν only and ignore ``normalize``.
    ``scipy.spatial.procrustes`` reports yet another form, the disparity 1 − ν². Only the default form
    is declared a metric (2 − 2ν and 1 − ν violate the triangle inequality).
    Every form is computed from the residual d at the optimal rotation (angular = 2 arcsin(d/2),
    1 − ν = d²/2), not from ν, so that d(X, X) is 0 to round-off rather than √(round-off); the same
    numbers, without the cancellation (and no negative squared distance to clamp). Raises
    ``UndefinedMeasureError`` for a constant input when normalising.
    """
    return _procrustes("procrustes_orthogonal", X, Y, center, normalize, form)


@register(
    "procrustes_angular",
    family="alignment",
    kind="distance",
    range=(0.0, math.pi / 2),
    symmetric=True,
    metric=True,
    invariances=("permutation", "orthogonal", "isotropic_scaling", "translation"),
    reference=_WILLIAMS_2021,
    cost=_PROCRUSTES_COST,
)
def procrustes_angular(X: torch.Tensor, Y: torch.Tensor, *, center: bool = True) -> torch.Tensor:
    """Angular Procrustes distance (Riemannian shape distance) between the centred representations.

    Formula: θ = arccos ν, ν = ‖X̂ᵀŶ‖_* with X̂ = X̃/‖X̃‖_F, Ŷ = Ỹ/‖Ỹ‖_F (narrower side zero-padded).
    Range [0, π/2]; 0 means identical up to rotation, translation and scale; symmetric; a metric.
    Invariances: orthogonal maps, permutations, isotropic scaling, translations; not invertible linear
    maps. Equals ``shape_metric`` with alpha = 1, netrep's ``LinearMetric(alpha=1)`` and ReSi's
    AngShape (``orthogonal_angular_shape_metric_centered``). Raises ``UndefinedMeasureError`` for a
    constant input.

    ``center=False`` compares the raw inputs scaled to unit Frobenius norm, X̂ = X/‖X‖_F (ReSi's
    ``orthogonal_angular_shape_metric``, the non-centred variant): still a metric with the same range,
    but no longer translation invariant; an all-zero input raises ``UndefinedMeasureError``.
    """
    return _procrustes("procrustes_angular", X, Y, center, True, "angular")


@register(
    "procrustes_size_shape",
    family="alignment",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    metric=True,
    invariances=("permutation", "orthogonal", "translation"),
    reference="Dryden & Mardia. Statistical Shape Analysis (size-and-shape distance); Klabunde et al. survey "
    "(ReSi ProcDist)",
    cost=_PROCRUSTES_COST,
)
def procrustes_size_shape(X: torch.Tensor, Y: torch.Tensor, *, form: str = "euclidean") -> torch.Tensor:
    """Size-and-shape Procrustes distance: orthogonal Procrustes on centred but unscaled representations.

    Formula: d = min_{Q orthogonal} ‖X̃Q − Ỹ‖_F = √(‖X̃‖_F² + ‖Ỹ‖_F² − 2‖X̃ᵀỸ‖_*) (narrower side
    zero-padded); ``form="squared"`` returns d². Range [0, ∞); 0 means identical up to rotation and
    translation; symmetric; a metric (Euclidean form). Invariances: orthogonal maps, permutations,
    translations; **not** isotropic scaling (the size is part of the comparison) and not invertible
    linear maps. Matches ReSi's ProcDist. A constant input is valid (its centred form is 0).
    """
    check_choice("procrustes_size_shape", "form", form, ("euclidean", "squared"))
    return _procrustes("procrustes_size_shape", X, Y, True, False, form)


@register(
    "shape_metric",
    family="alignment",
    kind="distance",
    range=(0.0, math.pi / 2),
    symmetric=True,
    metric=True,
    invariances=("permutation", "orthogonal", "isotropic_scaling", "translation"),
    reference=_WILLIAMS_2021,
    cost="O(N·D² + D³): thin SVD of each centred input and one SVD of the cross product",
)
def shape_metric(X: torch.Tensor, Y: torch.Tensor, *, alpha: float = 0.5) -> torch.Tensor:
    """Generalised (partially whitened) angular shape metric of Williams et al. (2021).

    Formula: with the thin SVD X̃ = U S Vᵀ (numerically null directions dropped, rank r) and the
    singular values normalised so that their squares average 1 (ŝ = s·√(r/Σs²)), the partially
    whitened representation is φ_α(X) = U diag(α ŝ + (1 − α)) Vᵀ, i.e. X̃ V diag(α + (1 − α) ŝ⁻¹) Vᵀ
    up to the scalar normalisation. The distance is
    θ_α = arccos(‖φ_α(X)ᵀφ_α(Y)‖_* / (‖φ_α(X)‖_F ‖φ_α(Y)‖_F)) (narrower side zero-padded), evaluated
    as 2 arcsin(c/2) from the Procrustes chord c between the unit-norm φ's (well conditioned near 0).
    Range [0, π/2]; 0 means identical up to the alignment class; symmetric; a metric for every alpha.

    ``alpha`` ∈ [0, 1] (default 0.5): alpha = 1 is angular Procrustes (``procrustes_angular``);
    alpha = 0 whitens fully and gives arccos(Σρ_i / √(rank X̃ · rank Ỹ)), i.e. arccos of the mean
    canonical correlation for equal ranks (``cca_mean_rho``), and is invariant to invertible linear
    maps. Invariances for 0 < alpha ≤ 1 (declared for the default): orthogonal maps, permutations,
    isotropic scaling, translations; not invertible linear maps.

    Where others differ: netrep's ``LinearMetric(alpha, score_method="angular")`` (git-only) whitens
    with the raw eigenvalues λ of X̃ᵀX̃ (clipped at 1e-7), so for 0 < alpha < 1 its value depends on
    the data's scale and on N; normalising the spectrum first makes the metric scale invariant, as the
    survey's table states, and leaves alpha ∈ {0, 1} identical to netrep. Raises
    ``UndefinedMeasureError`` for a constant input, and at alpha = 0 when a rank reaches N − 1
    ("D >= N-1: CCA degenerate", every canonical correlation is then 1).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"measure 'shape_metric': alpha must lie in [0, 1], got {alpha!r}")
    whitened = []
    for i, Z in enumerate((X, Y), start=1):
        u, s = principal_directions(_row_space_coordinates(centred(Z)))
        if s.numel() == 0:
            raise UndefinedMeasureError(f"shape_metric: input {i} is constant (zero variance after centring)")
        s_hat = s * torch.sqrt(s.numel() / s.square().sum())
        # U diag(·) has the same Gram matrix as φ_α(X) (the right factor Vᵀ is orthonormal), so every
        # orthogonally invariant quantity, the Procrustes chord included, is the same.
        whitened.append(u * (alpha * s_hat + (1.0 - alpha)))
    bx, by = whitened
    if alpha == 0:
        check_not_degenerate("shape_metric", (bx.shape[1], by.shape[1]), X.shape[0])
    chord = _orthogonal_residual(bx / torch.linalg.matrix_norm(bx), by / torch.linalg.matrix_norm(by))
    return _angle_from_chord(chord)


def _scale_if_extreme(*tensors: torch.Tensor) -> float:
    """1, or a power of two near the largest magnitude when it lies outside [1e-100, 1e100].

    Inside that range no square or sum of squares of an input overflows or loses its leading digits to
    underflow, so the inputs are used as they are (no N x D copies); outside, dividing by the power of
    two is exact and keeps them finite.
    """
    scale = power_of_two_scale(*tensors)
    return 1.0 if 1e-100 < scale < 1e100 else scale


def _squared_norm(t: torch.Tensor) -> float:
    """‖t‖_F² (numpy on the CPU: no squared N x D temporary)."""
    if on_numpy(t):
        a = t.numpy()
        return float(np.einsum("ij,ij->", a, a))
    return float(t.square().sum())


def _scale_from_squares(X: torch.Tensor, Y: torch.Tensor) -> tuple[float, float | None]:
    """(``_scale_if_extreme(X, Y)``, ‖X‖² + ‖Y‖² when that scale is 1, else None).

    The squared norms are needed anyway; each within (2·numel·1e-200, 0.25·1e200) proves
    √2·1e-100 < max|x| < 0.5·1e100, so the power of two above the peak lies in (1e-100, 1e100) and the
    scale is 1 without the max/min passes; otherwise the exact rule decides.
    """
    squares = (_squared_norm(X), _squared_norm(Y))
    if all(2.0 * t.numel() * 1e-200 < v < 0.25e200 for t, v in zip((X, Y), squares)):
        return 1.0, squares[0] + squares[1]
    return _scale_if_extreme(X, Y), None


def _matched_squared_distance(x: torch.Tensor, y: torch.Tensor, rows: np.ndarray, cols: np.ndarray,
                              cross: np.ndarray, total: float | None = None) -> float:
    """Σ over matched columns ‖x_r − y_c‖² plus the squared norms of the unmatched columns of both sides.

    This is ‖x‖² + ‖y‖² − 2 Σ (xᵀy)_rc from the cross product already at hand; that difference cancels
    when the sides nearly coincide (absolute round-off ≈ eps·(‖x‖² + ‖y‖²)), so it is used only when it
    keeps ≥ 1e-3 of ‖x‖² + ‖y‖² (relative error < 1e-12); otherwise the matched columns are subtracted.
    """
    if total is None:
        total = _squared_norm(x) + _squared_norm(y)
    squared = total - 2.0 * float(cross[rows, cols].sum())
    if squared >= 1e-3 * total:
        return squared
    rows_t, cols_t = torch.as_tensor(rows, device=x.device), torch.as_tensor(cols, device=x.device)
    matched = (x[:, rows_t] - y[:, cols_t]).square().sum()
    unmatched_x = torch.ones(x.shape[1], dtype=torch.bool, device=x.device).index_fill(0, rows_t, False)
    unmatched_y = torch.ones(y.shape[1], dtype=torch.bool, device=x.device).index_fill(0, cols_t, False)
    return float(matched + x[:, unmatched_x].square().sum() + y[:, unmatched_y].square().sum())


@register(
    "procrustes_permutation",
    family="alignment",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    metric=True,
    invariances=("permutation",),
    reference="Klabunde et al. survey (permutation Procrustes; ReSi PermProc); Kuhn 1955 (Hungarian algorithm)",
    cost="O(N·D1·D2 + D³): one cross product and a linear sum assignment",
)
def procrustes_permutation(X: torch.Tensor, Y: torch.Tensor, *, form: str = "euclidean") -> torch.Tensor:
    """Permutation Procrustes distance: the Frobenius distance after the best matching of neurons.

    Formula: d = min_P ‖XP − Y‖_F over permutation matrices P (narrower side zero-padded, so the
    unmatched columns count with their full norm). P comes from ``scipy.optimize.linear_sum_assignment``
    on XᵀY with ``maximize=True`` (d² = ‖X‖² + ‖Y‖² − 2 max_P tr(PᵀXᵀY)); that formula gives the value
    when d² keeps ≥ 1e-3 of ‖X‖² + ‖Y‖², else the matched column differences are summed directly (no
    cancellation for near-identical inputs, d(X, X) = 0 exactly). Range [0, ∞); 0 means
    identical up to a neuron permutation; symmetric; a metric. Invariant to permutations only: no
    centring and no scaling (ReSi's convention), so not to translation, scaling or rotation.

    ``form="angular"``: the permutation angular shape metric θ = arccos(max_P ⟨X̂P, Ŷ⟩_F) of the inputs
    scaled to unit Frobenius norm, X̂ = X/‖X‖_F, Ŷ = Y/‖Y‖_F (not centred; ReSi's
    ``permutation_angular_shape_metric``). The matching is the same (scaling does not change it), and
    θ = 2 arcsin(d̂/2) from the chord d̂ = min_P ‖X̂P − Ŷ‖_F, well conditioned near 0. Range [0, π] (the
    best matched inner product can be negative, e.g. Y = −X); a metric (the angle between points on
    the unit sphere, minimised over a group of isometries); invariant to permutations and isotropic
    scaling; an all-zero input raises ``UndefinedMeasureError``.
    """
    check_choice("procrustes_permutation", "form", form, ("euclidean", "angular"))
    scale, total = _scale_from_squares(X, Y)
    x, y = (X / scale, Y / scale) if scale != 1.0 else (X, Y)
    cross = mm(x.T, y).cpu().numpy()
    rows, cols = linear_sum_assignment(cross, maximize=True)
    if form == "euclidean":
        return math.sqrt(_matched_squared_distance(x, y, rows, cols, cross, total)) * scale
    # Unit norms: X̂ᵀŶ = XᵀY / (‖X‖‖Y‖); the squared chord 2 − 2⟨X̂P, Ŷ⟩ comes from the same routine.
    sx, sy = _squared_norm(x), _squared_norm(y)
    for which, value in ((1, sx), (2, sy)):
        if value == 0.0:
            raise UndefinedMeasureError(f"procrustes_permutation: input {which} is all zeros; it has no direction")
    nx, ny = math.sqrt(sx), math.sqrt(sy)
    squared = 2.0 - 2.0 * float(cross[rows, cols].sum()) / (nx * ny)
    if not squared >= 2e-3:  # near-identical pair: the unit-norm columns' differences (no cancellation)
        squared = _matched_squared_distance(x / nx, y / ny, rows, cols, cross / (nx * ny), 2.0)
    return 2.0 * math.asin(min(math.sqrt(max(squared, 0.0)) / 2.0, 1.0))


@register(
    "soft_matching",
    family="alignment",
    kind="distance",
    range=(0.0, math.inf),
    symmetric=True,
    metric=True,
    invariances=("permutation",),
    reference="Khosla & Williams. Soft Matching Distance: A metric on neural representations that captures "
    "single-neuron tuning. arXiv 2311.09466 (2023)",
    cost="O(N·D1·D2) cross-product GEMM plus a linear sum assignment (D1 = D2) or an exact network-simplex "
    "transport (POT ot.emd), ≈O(D³) in practice",
)
def soft_matching(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Soft matching distance: the 2-Wasserstein distance between the two sets of neuron tuning vectors.

    Formula: with neurons x_i, y_j ∈ R^N (columns), d² = min_{P ∈ Π} Σ_ij P_ij ‖x_i − y_j‖², Π the
    transport plans with row sums 1/D1 and column sums 1/D2; d = √d². For D1 = D2 the optimum is a
    permutation, so d² = (permutation Procrustes distance)² / D. Range [0, ∞); 0 means identical up to
    a neuron permutation; symmetric; a metric (Wasserstein). Invariant to permutations only: the raw
    activations are compared, so not to translation or scaling (centre/normalise beforehand to get
    those) and not to rotations.

    Conventions: uniform marginals 1/D1, 1/D2 (the normalisation is [unverified] against the paper);
    for D1 = D2 the optimal plan is a permutation found by ``scipy.optimize.linear_sum_assignment``,
    otherwise the exact transport is solved by POT's ``ot.emd`` on the CPU; the squared distances summed
    over the plan come from ‖x‖² + ‖y‖² − 2xᵀy only where that does not cancel (≥ 1e-3 of the norms),
    else from the differences, so that d(X, X) is exactly 0.
    """
    scale = _scale_if_extreme(X, Y)
    xt, yt = (X / scale, Y / scale) if scale != 1.0 else (X, Y)
    d1, d2 = X.shape[1], Y.shape[1]
    cross = mm(xt.T, yt).cpu().numpy()
    if d1 == d2:
        # Uniform marginals of equal size: the transport polytope is the Birkhoff polytope over D, whose
        # optimal vertices are permutations (Birkhoff-von Neumann), so the exact optimum is a linear sum
        # assignment (maximising Σ xᵢᵀy_σ(i), since the norms are fixed): d² = min_σ Σ‖xᵢ − y_σ(i)‖² / D.
        rows, cols = linear_sum_assignment(cross, maximize=True)
        return math.sqrt(max(_matched_squared_distance(xt, yt, rows, cols, cross), 0.0) / d1) * scale
    x, y = xt.cpu().numpy(), yt.cpu().numpy()
    # The plan is solved on the GEMM form ‖x‖² + ‖y‖² − 2xᵀy of the cost (one BLAS call instead of
    # N·D1·D2 differences); its round-off (≈eps·‖x‖²) can only pick a plan whose cost is within that
    # of the optimum. The value is then summed over the plan's support (≤ D1 + D2 − 1 entries): from the
    # same GEMM form when it keeps ≥ 1e-3 of the plan's Σ(‖x_i‖² + ‖y_j‖²), else from the differences, so
    # that d(X, X) is exactly 0 and no digit is lost to cancellation.
    sq_x, sq_y = np.einsum("ij,ij->j", x, x), np.einsum("ij,ij->j", y, y)
    cost = np.maximum(sq_x[:, None] + sq_y[None, :] - 2.0 * cross, 0.0)
    # POT is imported here, not with this module: its import pulls in scikit-learn (~1.3 s of CPU), which
    # every process that loads the measures (the sweep's plan, each pool worker, the CLI) would pay.
    import ot

    plan, log = ot.emd(np.full(d1, 1.0 / d1), np.full(d2, 1.0 / d2), cost, numItermax=10_000_000, log=True)
    if log["result_code"] != 1:
        raise RuntimeError(f"soft_matching: optimal transport did not converge ({log['warning']})")
    i, j = np.nonzero(plan)
    weights = plan[i, j]
    total = float(weights @ (sq_x[i] + sq_y[j]))
    squared = total - 2.0 * float(weights @ cross[i, j])
    if not squared >= 1e-3 * total:
        squared = float(weights @ np.square(x[:, i] - y[:, j]).sum(axis=0))
    return math.sqrt(max(squared, 0.0)) * scale


@register(
    "linear_regression",
    family="alignment",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=False,
    invariances=("permutation", "orthogonal", "isotropic_scaling", "translation"),
    min_rows=3,
    reference=_LI_2016 + "; Kornblith, Norouzi, Lee, Hinton. ICML 2019 (linear regression R²)",
    cost="O(N·D² + D³): Cholesky factor of the predictor's covariance when well conditioned, else its thin SVD; "
    "one product with the target",
)
def linear_regression(X: torch.Tensor, Y: torch.Tensor, *, predictor: str = "x") -> torch.Tensor:
    """Linear predictivity R²: the share of the target's variance explained by least squares on the predictor.

    Formula (``predictor="x"``): R²(X→Y) = 1 − min_B ‖Ỹ − X̃B‖_F² / ‖Ỹ‖_F² = ‖Q_Xᵀ Ỹ‖_F² / ‖Ỹ‖_F², with
    Q_X an orthonormal basis of col(X̃) (thin SVD; numerically null directions dropped, so rank
    deficiency is harmless). ``predictor="y"`` swaps the roles (ReSi's ``LinearRegression(R, R')``
    predicts its first argument from the second). Range [0, 1]; higher is more similar; **asymmetric**.
    Equals ``sklearn.metrics.r2_score(Y, LinearRegression().fit(X, Y).predict(X),
    multioutput="variance_weighted")`` (not the default ``uniform_average``, nor ``.score``).

    Invariances: permutations, orthogonal maps, isotropic scaling and translations on both sides;
    invertible linear maps on the predictor side only (so not declared). No ridge penalty and no
    cross-validation (both change the number; they would be separate parameters).
    A constant predictor explains nothing (R² = 0). Raises ``UndefinedMeasureError`` for a constant
    target (0/0) and when the predictor's centred rank reaches N − 1 ("D >= N-1": the regression then
    interpolates any target, R² = 1).
    """
    check_choice("linear_regression", "predictor", predictor, ("x", "y"))
    source, target = (X, Y) if predictor == "x" else (Y, X)
    if source.shape[1] < source.shape[0] - 1:
        # The normal equations below from rank-one-corrected products (no centred N x D copies); the
        # magnitude limit keeps the Cholesky factor, the solve and its squares clear of over/underflow.
        moments_s, moments_t = centred_moments(source, limit=1e50), centred_moments(target, limit=1e50)
        if moments_s is not None and moments_t is not None and moments_t[1].any():
            low = well_conditioned_cholesky(centred_cross(source, source, moments_s[0], moments_s[0]))
            if low is not None:
                half = scipy.linalg.solve_triangular(low, centred_cross(source, target, moments_s[0], moments_t[0]),
                                                     lower=True, check_finite=False)
                explained = float(np.square(half).sum()) / float(moments_t[1].sum())
                return torch.tensor(min(max(explained, 0.0), 1.0), dtype=X.dtype)
    sc, tc = centred(source), centred(target)
    total = _squared_norm(tc)
    if total == 0:
        raise UndefinedMeasureError("linear_regression: the target is constant (zero variance), R² is 0/0")
    if on_numpy(sc, tc) and sc.shape[1] < sc.shape[0] - 1:
        # Normal equations: ‖Q_XᵀỸ‖² = ‖L⁻¹X̃ᵀỸ‖² with X̃ᵀX̃ = LLᵀ, O(N·D² + D³) without the thin SVD,
        # when X̃ᵀX̃ is well conditioned (then X̃ has full column rank, the SVD route's rank rule keeps
        # every direction, and the round-off is ≈ eps·κ ≤ 2e-12 of R²'s scale).
        a, b = sc.numpy(), tc.numpy()
        low = well_conditioned_cholesky(a.T @ a)
        if low is not None:
            explained = np.square(scipy.linalg.solve_triangular(low, a.T @ b, lower=True, check_finite=False)).sum()
            return torch.tensor(min(max(float(explained) / total, 0.0), 1.0), dtype=X.dtype)
    basis, _ = principal_directions(sc)
    if basis.shape[1] >= source.shape[0] - 1:
        raise UndefinedMeasureError(
            f"linear_regression: D >= N-1: the centred predictor has rank {basis.shape[1]} = N-1, "
            "so least squares interpolates any target (R² = 1)"
        )
    return (mm(basis.T, tc).square().sum() / total).clamp(0.0, 1.0)


@register(
    "aligned_cosine",
    family="alignment",
    kind="similarity",
    range=(-1.0, 1.0),
    symmetric=True,
    invariances=("permutation", "orthogonal", "isotropic_scaling"),
    reference="Hamilton, Leskovec, Jurafsky. Diachronic Word Embeddings Reveal Statistical Laws of Semantic "
    "Change. ACL 2016",
    cost=_PROCRUSTES_COST,
)
def aligned_cosine(X: torch.Tensor, Y: torch.Tensor, *, alignment: str = "orthogonal") -> torch.Tensor:
    """Aligned cosine similarity: mean row-wise cosine after orthogonal Procrustes alignment.

    Formula: with Q* = argmin_{Q orthogonal} ‖XQ − Y‖_F (SVD XᵀY = USVᵀ, Q* = UVᵀ, narrower side
    zero-padded), score = (1/N') Σ_i cos((XQ*)_i, Y_i) over the N' rows where neither X_i nor Y_i is
    all-zero. Range [−1, 1]; higher is more similar; symmetric (the optimal map from Y to X is Q*ᵀ).
    Invariances: orthogonal maps, permutations, isotropic scaling; not translations (no centring,
    following Hamilton et al. and ReSi) and not invertible linear maps.

    Conventions: directions with a zero singular value of XᵀY are ambiguous in Q* (they can map to
    either sign); they are dropped (Q* restricted to the numerically non-null singular pairs), which is
    the average over those choices and changes nothing when XᵀY has full rank. Zero rows are skipped
    (ReSi warns); ``UndefinedMeasureError`` if every row is skipped.

    ``alignment="permutation"``: the columns are matched by a permutation instead (the P maximising
    tr(PᵀXᵀY), ``scipy.optimize.linear_sum_assignment``; unequal widths: min(D1, D2) matched pairs,
    the unmatched columns add 0 to each row's inner product but count in its norm), then the same mean
    row-wise cosine: ReSi's ``permutation_aligned_cossim``. Same range and zero-row rule; invariant to
    permutations and isotropic scaling only (not orthogonal maps). Ties in the matching (equal sums,
    measure zero for continuous data) may change the cosines; the first optimum found is used.
    """
    check_choice("aligned_cosine", "alignment", alignment, ("orthogonal", "permutation"))
    if alignment == "permutation":
        return _permutation_aligned_cosine(X, Y)
    fast = _aligned_cosine_numpy(X, Y)
    if fast is not None:
        return fast
    x = _row_space_coordinates(X / power_of_two_scale(X))
    y = _row_space_coordinates(Y / power_of_two_scale(Y))
    cross = mm(x.T, y)
    u, s, vh = torch.linalg.svd(cross, full_matrices=False)
    rank = int((s > s[0] * rank_tolerance(cross)).sum()) if s[0] > 0 else 0
    if on_numpy(x, y):
        # x_iᵀ(U_r V_rᵀ)y_i with the D x D rotation formed first: one N x D x D GEMM instead of two.
        a, b = x.numpy(), y.numpy()
        rotated = a @ mm(u[:, :rank], vh[:rank]).numpy()
        inner = torch.from_numpy(np.einsum("ij,ij->i", rotated, b))
        norms = torch.from_numpy(np.sqrt(np.einsum("ij,ij->i", a, a)) * np.sqrt(np.einsum("ij,ij->i", b, b)))
    else:
        inner = (mm(x, u[:, :rank]) * mm(y, vh[:rank].T)).sum(dim=1)
        norms = torch.linalg.vector_norm(x, dim=1) * torch.linalg.vector_norm(y, dim=1)
    valid = norms > 0
    if not valid.any():
        raise UndefinedMeasureError("aligned_cosine: every row pair has an all-zero row; no cosine is defined")
    return (inner[valid] / norms[valid]).clamp(-1.0, 1.0).mean()


def _permutation_aligned_cosine(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``aligned_cosine`` with the columns matched by a permutation: one cross product, a linear sum
    assignment, and one pass over each input for the matched inner products (plus one for the row norms).

    CPU float64 inputs whose row squares neither overflow nor underflow (``_aligned_cosine_numpy``'s
    test) are used as they are; otherwise both are divided by a power of two first (cosines and the
    matching ignore it).
    """
    if on_numpy(X, Y) and X.dtype == torch.float64:
        a, b = X.numpy(), Y.numpy()
        squares_a, squares_b = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
        if all(sq.max() <= 1e300 and ((sq >= 1e-280) | (sq == 0.0)).all() for sq in (squares_a, squares_b)):
            rows, cols = linear_sum_assignment(a.T @ b, maximize=True)
            # LSA returns the rows sorted: with D1 ≤ D2 they are every column of X, which needs no copy.
            # np.take gathers columns ~4x faster than fancy indexing b[:, cols] (0.46 against 2.0 ms at
            # 2000x256 after a cache flush).
            matched_a = a if rows.size == a.shape[1] else np.take(a, rows, axis=1)
            inner = torch.from_numpy(np.einsum("ij,ij->i", matched_a, np.take(b, cols, axis=1)))
            norms = torch.from_numpy(np.sqrt(squares_a) * np.sqrt(squares_b))
            return _mean_valid_cosine(inner, norms)
    scale = power_of_two_scale(X, Y)
    x, y = X / scale, Y / scale
    rows, cols = linear_sum_assignment(mm(x.T, y).cpu().numpy(), maximize=True)
    rows_t, cols_t = torch.as_tensor(rows, device=x.device), torch.as_tensor(cols, device=x.device)
    inner = (x[:, rows_t] * y[:, cols_t]).sum(dim=1)
    return _mean_valid_cosine(inner, torch.linalg.vector_norm(x, dim=1) * torch.linalg.vector_norm(y, dim=1))


def _mean_valid_cosine(inner: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Mean of inner / norms over the rows with non-zero norms (no row pair with an all-zero row)."""
    valid = norms > 0
    if not valid.any():
        raise UndefinedMeasureError("aligned_cosine: every row pair has an all-zero row; no cosine is defined")
    return (inner[valid] / norms[valid]).clamp(-1.0, 1.0).mean()


def _aligned_cosine_numpy(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor | None:
    """``aligned_cosine`` on CPU float64 inputs with N ≥ max(D1, D2) without rescaled N x D copies.

    The general route divides each input by a power of two first (two fresh N x D arrays, ~5 ms of the
    ~29 at 2000x256 here); the cosines do not depend on it, and it matters only where squares overflow
    or underflow. So the inputs are used as they are when every row's squared norm is either 0 or
    within [1e-280, 1e300] (no overflow, and no non-zero row whose squares underflowed; otherwise None
    and the general route runs). The SVD of XᵀY is LAPACK's gesdd through scipy (10.8 ms at 256 x 256,
    torch's 12.5 ms; 73 vs 83 ms at 512).
    """
    if not (on_numpy(X, Y) and X.dtype == torch.float64 and X.shape[0] >= max(X.shape[1], Y.shape[1])):
        return None
    a, b = X.numpy(), Y.numpy()
    squares_a, squares_b = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    for squares in (squares_a, squares_b):
        if not (squares.max() <= 1e300 and ((squares >= 1e-280) | (squares == 0.0)).all()):
            return None
    norms = np.sqrt(squares_a) * np.sqrt(squares_b)
    valid = norms > 0
    if not valid.any():
        return None  # the general route raises with the reason
    cross = a.T @ b
    u, s, vh = scipy.linalg.svd(cross, full_matrices=False, check_finite=False)
    rank = int((s > s[0] * max(cross.shape) * np.finfo(np.float64).eps).sum()) if s[0] > 0 else 0  # rank_tolerance
    # x_iᵀ(U_r V_rᵀ)y_i with the D x D rotation formed first: one N x D x D GEMM.
    inner = np.einsum("ij,ij->i", a @ (u[:, :rank] @ vh[:rank]), b)
    cosines = np.clip(inner[valid] / norms[valid], -1.0, 1.0)
    return torch.tensor(float(cosines.mean()), dtype=torch.float64)


def _correlation_matrix_uncentred(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor | None:
    """The correlations without centred copies of the inputs, or None where that would lose digits.

    C = (XᵀY − N x̄ȳᵀ) / √(v_x v_yᵀ) with v = ‖x‖² − N x̄² per column: one GEMM on the raw inputs plus
    rank-one and diagonal corrections. Both differences cancel when a neuron's mean dominates its spread,
    so this is used only when every column has ‖x‖² ≤ 16·v (|mean| ≤ ~4 standard deviations: round-off
    ≤ ~16 eps relative to the correlations' scale; constant neurons never qualify) and the magnitudes
    pass ``centred_moments``' test (no overflow or underflow of the squares); CPU float64 inputs only.
    """
    moments = [centred_moments(X), centred_moments(Y)]
    if any(m is None or not (m[1] > 0.0).all() for m in moments):  # constant (also all-zero) neurons excluded
        return None
    a, b = X.numpy(), Y.numpy()
    n = a.shape[0]
    (mx, vx), (my, vy) = moments
    cross = a.T @ b
    cross -= n * np.outer(mx, my)
    cross /= np.sqrt(vx)[:, None]
    cross /= np.sqrt(vy)[None, :]
    return torch.from_numpy(np.clip(cross, -1.0, 1.0, out=cross))


def _correlation_matrix(name: str, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """D1 x D2 Pearson correlations between the neurons of X and Y; constant neurons correlate 0."""
    fast = _correlation_matrix_uncentred(X, Y)
    if fast is not None:
        return fast
    centred_inputs, inverse_norms = [], []
    for i, Z in enumerate((X, Y), start=1):
        zc = centred(Z)
        norms = col_norms(zc)
        if not (norms > 0).any():
            raise UndefinedMeasureError(f"{name}: every neuron of input {i} is constant; no correlation is defined")
        # Constant (e.g. dead ReLU) neurons have an undefined correlation; they get 0 instead of NaN.
        centred_inputs.append(zc)
        inverse_norms.append(torch.where(norms > 0, 1.0 / norms, torch.zeros_like(norms)))
    # The normalisation is applied to the D1 x D2 product rather than to the two N x D inputs.
    cross = mm(centred_inputs[0].T, centred_inputs[1])
    return (cross * inverse_norms[0][:, None] * inverse_norms[1][None, :]).clamp(-1.0, 1.0)


@register(
    "correlation_match_hard",
    family="alignment",
    kind="similarity",
    range=(-1.0, 1.0),
    symmetric=True,
    invariances=("permutation", "isotropic_scaling", "translation"),
    reference=_LI_2016,
    cost="O(N·D1·D2 + D³): one correlation GEMM and a linear sum assignment",
)
def correlation_match_hard(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Hard correlation matching: mean Pearson correlation of the best one-to-one pairing of neurons.

    Formula: C_ij = Pearson correlation over the N inputs between neuron i of X and neuron j of Y;
    a one-to-one matching of min(D1, D2) pairs maximising Σ C_ij (``linear_sum_assignment``,
    ``maximize=True``); score = mean of C over the matched pairs. Range [−1, 1]; higher is more similar;
    symmetric. Invariances: permutations, isotropic scaling, translations (and any positive per-neuron
    scaling); not orthogonal maps.

    Conventions: signed correlation (Li et al. 2016, ReSi), not |C|. Constant neurons have C = 0 (they
    still take part in the matching); ``UndefinedMeasureError`` if every neuron of a side is constant.
    Ties in C give the same optimal sum, so the value does not depend on the tie-breaking.
    """
    c = _correlation_matrix("correlation_match_hard", X, Y)
    rows, cols = linear_sum_assignment(c.cpu().numpy(), maximize=True)
    return float(c.cpu().numpy()[rows, cols].mean())


@register(
    "correlation_match_soft",
    family="alignment",
    kind="similarity",
    range=(-1.0, 1.0),
    symmetric=True,
    invariances=("permutation", "isotropic_scaling", "translation"),
    reference=_LI_2016,
    cost="O(N·D1·D2): one correlation GEMM",
)
def correlation_match_soft(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Soft correlation matching: each neuron's best Pearson correlation on the other side, averaged both ways.

    Formula: score = ½ (mean_i max_j C_ij + mean_j max_i C_ij), C the D1 x D2 Pearson correlations
    between neurons (many-to-one matches allowed). Range [−1, 1]; higher is more similar; symmetric
    (ReSi's symmetrised form; the one-way mean_i max_j C_ij of Li et al. is asymmetric). Invariances:
    permutations, isotropic scaling, translations (and positive per-neuron scaling); not orthogonal
    maps. Signed correlations; constant neurons have C = 0; ``UndefinedMeasureError`` if every neuron
    of a side is constant.
    """
    c = _correlation_matrix("correlation_match_soft", X, Y)
    return 0.5 * (c.max(dim=1).values.mean() + c.max(dim=0).values.mean())


def _relative_distances_to_span(vectors: torch.Tensor, spanning: torch.Tensor) -> torch.Tensor:
    """‖v − P v‖ / ‖v‖ for each column v of ``vectors``, P the orthogonal projector onto span(spanning)."""
    basis, _ = principal_directions(spanning)
    residual = vectors - mm(basis, mm(basis.T, vectors))
    return col_norms(residual) / col_norms(vectors)


@register(
    "max_match",
    family="alignment",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=("permutation", "isotropic_scaling"),
    reference="Wang, Hu, Gu, Wu, Hu, He, Hopcroft. Towards Understanding Learning Representations: To What "
    "Extent Do Different Neural Networks Learn the Same Representation. NeurIPS 2018",
    cost="O(I·N·D²), I ≤ D1 + D2 shrinking rounds (a handful in practice), each one thin SVD per side",
)
def max_match(X: torch.Tensor, Y: torch.Tensor, *, epsilon: float = 0.25, center: bool = False) -> torch.Tensor:
    """Maximum matching similarity: the share of neurons in the largest ε-approximate subspace match.

    Definition (Wang et al. 2018): neurons are the columns z_v ∈ R^N. A pair of neuron subsets
    (X', Y') is an ε-approximate match if every z_v, v ∈ X', lies within relative distance ε of
    span{z_u : u ∈ Y'} (‖z_v − P_{Y'} z_v‖ ≤ ε‖z_v‖) and vice versa. The union of two matches is a
    match, so there is a unique maximum match (X*, Y*); score = (|X*| + |Y*|) / (D1 + D2).
    Range [0, 1]; higher is more similar; symmetric.

    Algorithm (exact, deterministic): start from all non-zero neurons and repeatedly delete every neuron
    farther than ε from the span of the other side's remaining neurons until nothing changes. Deleting
    never removes a neuron of any match contained in the current sets (a span only shrinks to another
    span containing that match's span), so by induction the fixed point contains every match, and it
    is itself a match: it is the maximum match. At most D1 + D2 rounds, each a rank-revealing thin SVD
    per side (numerically null directions dropped, so near-duplicate neurons add no spurious span).

    Parameters: ``epsilon`` (default 0.25, similarity-repository's setting; Wang et al. sweep it),
    ``center`` (default False: raw activation vectors, as in Wang et al.'s code; True compares centred
    tuning vectors and makes the score translation invariant).
    Invariances: permutations and isotropic scaling (indeed any non-zero per-neuron scaling); not
    orthogonal maps (subsets are neuron-aligned), not invertible linear maps, not translations
    (default). All-zero (dead) neurons never match but count in D1 + D2. The score is a step
    function of the data and of ε. Limits: when a side's neuron vectors span all of R^N (rank N, or
    N − 1 centred), every neuron of the other side matches trivially; ``UndefinedMeasureError``
    ("D >= N ...") is raised then, and scores are inflated when D approaches N.
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"measure 'max_match': epsilon must lie in [0, 1), got {epsilon!r}")
    n = X.shape[0]
    full_span = n - 1 if center else n
    vectors, alive = [], []
    for Z in (X, Y):
        z = centred(Z) if center else Z / power_of_two_scale(Z)
        norms = col_norms(z)
        # Dead neurons (all zero, or round-off after centring) have no direction and can never match.
        nonzero = norms > rank_tolerance(z) * norms.max()
        if nonzero.any() and principal_directions(z[:, nonzero])[0].shape[1] >= full_span:
            raise UndefinedMeasureError(
                f"max_match: D >= N: the neuron vectors of one input span all of R^{n}"
                f"{' after centring' if center else ''}, so every neuron of the other input matches trivially"
            )
        vectors.append(z)
        alive.append(nonzero)
    (x, y), (keep_x, keep_y) = vectors, alive
    while keep_x.any() and keep_y.any():
        new_x = keep_x.clone()
        new_x[keep_x] = _relative_distances_to_span(x[:, keep_x], y[:, keep_y]) <= epsilon
        if not new_x.any():
            keep_x = new_x
            break
        new_y = keep_y.clone()
        new_y[keep_y] = _relative_distances_to_span(y[:, keep_y], x[:, new_x]) <= epsilon
        if torch.equal(new_x, keep_x) and torch.equal(new_y, keep_y):
            break
        keep_x, keep_y = new_x, new_y
    if not (keep_x.any() and keep_y.any()):
        # A match needs both sides: a lone neuron cannot be close to the span of nothing (unless zero).
        return torch.zeros((), dtype=x.dtype, device=x.device)
    return (keep_x.sum() + keep_y.sum()).to(x.dtype) / (x.shape[1] + y.shape[1])
