"""CCA family: canonical correlation analysis and its variants (mean rho, R², SVCCA, PWCCA).

Every measure here starts from the canonical correlations ρ_1 ≥ … ≥ ρ_m of the column-centred
representations: the singular values of Q_Xᵀ Q_Y, where Q_X, Q_Y are orthonormal bases of col(X̃) and
col(Ỹ) taken from thin SVDs (no iterative solver, no covariance inversion). Numerically null directions
(constant, duplicate or collinear columns) are dropped with a relative tolerance instead of being
regularised with ε·I, so m = min(rank X̃, rank Ỹ) counts only real directions.

Degeneracy (Kornblith et al. ICML 2019, Theorem 1): with centring, rank X̃ = N − 1 forces every
canonical correlation to 1, whatever Y is. Every measure of the family therefore raises
``UndefinedMeasureError("<name>: D >= N-1: CCA degenerate ...")`` when a (kept) rank reaches N − 1;
SVCCA, which first keeps the leading principal directions, is the reduced variant for wide layers.
Below that threshold CCA is still biased upward when rank X̃ + rank Ỹ approaches N (at least
rank X̃ + rank Ỹ − (N − 1) correlations are forced to 1); that bias is documented, not corrected.

The helpers without a leading underscore (``centred``, ``principal_directions``, ...) are shared with
``measures.alignment``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import scipy.linalg
import torch

from measures._kernels import col_norms, mm, on_numpy
from measures._memo import digest
from measures._registry import UndefinedMeasureError, register

_ALL_INVARIANCES = ("permutation", "orthogonal", "isotropic_scaling", "translation", "invertible_linear")
_SVD_COST = "O(N·D² + D³): thin SVD of each centred input and one SVD of the r_X × r_Y cross product"


def _peak(t: torch.Tensor) -> float:
    """max |t| (numpy on the CPU, without an |t| temporary)."""
    if on_numpy(t) and t.numel():
        a = t.numpy()
        return float(max(a.max(), -a.min()))
    return float(t.abs().max())


def power_of_two_scale(*tensors: torch.Tensor) -> float:
    """A power of two close to the largest absolute entry (1 for all-zero input).

    Dividing by it is exact in binary floating point, so it changes no digit of any scale-invariant
    measure, yet it keeps squares and Frobenius norms clear of overflow (1e200) and underflow (1e-200).
    """
    peak = max(_peak(t) for t in tensors)
    if peak == 0.0:
        return 1.0
    return 2.0 ** torch.frexp(torch.tensor(peak, dtype=torch.float64)).exponent.item()


def rank_tolerance(x: torch.Tensor) -> float:
    """Relative tolerance below which a singular value counts as numerically zero (LAPACK's rule)."""
    return max(x.shape) * torch.finfo(x.dtype).eps


def centred(x: torch.Tensor) -> torch.Tensor:
    """Column-centred copy of ``x`` (rescaled by a power of two) with constant columns set exactly to 0.

    Centring a constant column leaves only round-off of the size eps·|value|, which would otherwise
    enter the rank as a spurious random direction; such columns are zeroed with a tolerance relative
    to the column's own magnitude.
    """
    scale = power_of_two_scale(x)
    if on_numpy(x) and 1e-100 < scale < 1e100:
        # Inside this range the mean and the squared column norms neither overflow nor underflow, and
        # dividing by a power of two commutes exactly with the centring: one N x D copy instead of two.
        a = x.numpy()
        ac = a - a.mean(axis=0)
        constant = np.einsum("ij,ij->j", ac, ac) <= rank_tolerance(x) ** 2 * np.einsum("ij,ij->j", a, a)
        if constant.any():
            ac[:, constant] = 0.0
        ac *= 1.0 / scale
        return torch.from_numpy(ac)
    x = x / scale
    if on_numpy(x):
        a = x.numpy()
        ac = a - a.mean(axis=0)
        constant = np.linalg.norm(ac, axis=0) <= rank_tolerance(x) * np.linalg.norm(a, axis=0)
        if constant.any():
            ac[:, constant] = 0.0
        return torch.from_numpy(ac)
    xc = x - x.mean(dim=0, keepdim=True)
    constant = col_norms(xc) <= rank_tolerance(x) * col_norms(x)
    return xc.masked_fill(constant, 0.0)


#: Recent thin SVDs by content: a sweep calls a dozen CCA-, alignment- and RSM-family measures on the
#: same layer, and the SVD dominates their cost at large D. Keyed by a hash of the bytes, so a hit is
#: exactly the same input; CPU tensors only (hashing a GPU tensor would need a copy to the host).
_SVD_CACHE: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
_SVD_CACHE_SIZE = 8


def thin_svd(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``torch.linalg.svd(x, full_matrices=False)``, memoised by content for CPU tensors."""
    if x.device.type != "cpu":
        return torch.linalg.svd(x, full_matrices=False)
    key = digest(x)
    if key in _SVD_CACHE:
        _SVD_CACHE.move_to_end(key)
        return _SVD_CACHE[key]
    result = torch.linalg.svd(x, full_matrices=False)
    _SVD_CACHE[key] = result
    if len(_SVD_CACHE) > _SVD_CACHE_SIZE:
        _SVD_CACHE.popitem(last=False)
    return result


def principal_directions(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal basis U_r (N x r) of col(x) and the r singular values, numerically null directions dropped.

    A singular value counts as null when s_i <= s_1 · max(N, D) · eps (the numerical-rank rule of
    LAPACK and ``numpy.linalg.matrix_rank``). Returns an N x 0 basis for an all-zero ``x``.
    """
    u, s, _ = thin_svd(x)
    if s.numel() == 0 or s[0] == 0:
        return u[:, :0], s[:0]
    rank = int((s > s[0] * rank_tolerance(x)).sum())
    return u[:, :rank], s[:rank]


#: Largest condition number (LAPACK's ``pocon`` 1-norm estimate) of a covariance factored by
#: :func:`well_conditioned_cholesky`. Forming X̃ᵀX̃ squares X̃'s condition number; below this bound the
#: round-off of anything computed through the factor stays near eps·κ ≈ 2e-12 relative.
MAX_COVARIANCE_CONDITION = 1e4


def well_conditioned_cholesky(a: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of the symmetric D x D matrix ``a``, or None when it is singular, not
    positive definite or worse conditioned than ``MAX_COVARIANCE_CONDITION`` (callers then take an
    SVD route, which keeps the rank rule exact for rank-deficient or ill-conditioned inputs)."""
    try:
        low = scipy.linalg.cholesky(a, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    rcond, info = scipy.linalg.lapack.dpocon(low, np.abs(a).sum(axis=0).max(), uplo="L")
    if info != 0 or not rcond * MAX_COVARIANCE_CONDITION >= 1.0:
        return None
    return low


def check_not_degenerate(name: str, ranks: tuple[int, int], n: int, what: str = "rank") -> None:
    """Raise the family's degeneracy error when a (kept) rank reaches N - 1."""
    if max(ranks) >= n - 1:
        fewer = ("keep fewer directions (a lower tau, or truncation='fixed_k' with a smaller k)" if name == "svcca"
                 else "use fewer dimensions (e.g. svcca, which keeps the leading principal directions)")
        raise UndefinedMeasureError(
            f"{name}: D >= N-1: CCA degenerate ({what} {ranks[0]} and {ranks[1]} of the centred inputs with "
            f"N = {n} rows; a rank of N-1 forces every canonical correlation to 1); {fewer} or more rows"
        )


def check_choice(name: str, param: str, value: object, choices: tuple[str, ...]) -> None:
    """ValueError naming the measure when a string parameter is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"measure {name!r}: {param} must be one of {choices}, got {value!r}")


def _bases(name: str, X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centred inputs and orthonormal bases of their column spaces; raises on constant inputs."""
    xc, yc = centred(X), centred(Y)
    ux, _ = principal_directions(xc)
    uy, _ = principal_directions(yc)
    for i, u in enumerate((ux, uy), start=1):
        if u.shape[1] == 0:
            raise UndefinedMeasureError(
                f"{name}: input {i} is constant (no variance after centring); canonical correlations are undefined"
            )
    return xc, yc, ux, uy


def _canonical_correlations(name: str, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    _, _, ux, uy = _bases(name, X, Y)
    check_not_degenerate(name, (ux.shape[1], uy.shape[1]), X.shape[0])
    # Cosines of principal angles; round-off can push the top one a hair above 1.
    return torch.linalg.svdvals(mm(ux.T, uy)).clamp(0.0, 1.0)


@register(
    "cca_mean_rho",
    family="cca",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=_ALL_INVARIANCES,
    min_rows=3,
    reference="Hotelling 1936; Raghu, Gilmer, Yosinski, Sohl-Dickstein. SVCCA. NeurIPS 2017 (mean ρ); "
    "Kornblith et al. ICML 2019 (degeneracy)",
    cost=_SVD_COST,
)
def cca_mean_rho(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean canonical correlation of the column-centred representations.

    Formula: ρ̄ = (1/m) Σ_i ρ_i, where ρ_i are the singular values of Q_Xᵀ Q_Y (Q_X, Q_Y orthonormal
    bases of col(X̃), col(Ỹ)) and m = min(rank X̃, rank Ỹ). Range [0, 1]; higher is more similar;
    symmetric. Invariant to invertible linear maps (hence orthogonal maps, isotropic scaling,
    permutations) and translations on either side.

    Conventions: the plain mean over all m correlations. Google's ``cca_core.get_cca_similarity``
    reports a mean over the leading correlations that reach 98% of Σρ (a different number); netrep's
    ``LinearMetric(alpha=0)`` reports arccos(ρ̄) (see ``shape_metric`` with alpha=0). Numerically null
    directions are dropped rather than regularised with ε·I (Google) or jittered (platonic-rep).
    Raises ``UndefinedMeasureError`` for a constant input and when rank X̃ or rank Ỹ reaches N − 1
    ("D >= N-1: CCA degenerate"), where every ρ_i is forced to 1.
    """
    return _canonical_correlations("cca_mean_rho", X, Y).mean()


@register(
    "cca_r2",
    family="cca",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=_ALL_INVARIANCES,
    min_rows=3,
    reference="Yanai 1974 (generalised coefficient of determination); Kornblith et al. ICML 2019 (R²_CCA)",
    cost=_SVD_COST,
)
def cca_r2(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean squared canonical correlation (Yanai's GCD, R²_CCA) of the column-centred representations.

    Formula: R²_CCA = (1/m) Σ_i ρ_i² = ‖Q_Yᵀ Q_X‖_F² / m with m = min(rank X̃, rank Ỹ). Range [0, 1];
    higher is more similar; symmetric. Invariant to invertible linear maps and translations on either
    side. For equal ranks it equals linear CKA of (Q_X, Q_Y).

    Conventions: inputs are centred. The Google Colab (``representation_similarity/Demo.ipynb``)
    ``cca()`` computes the same quantity by QR without centring, which is neither translation invariant
    nor equal to this value on uncentred data. Raises ``UndefinedMeasureError`` for a constant input
    and when a rank reaches N − 1 ("D >= N-1: CCA degenerate").
    """
    return _canonical_correlations("cca_r2", X, Y).square().mean()


def _kept_directions(s: torch.Tensor, truncation: str, tau: float, k: int) -> int:
    """How many leading principal directions SVCCA keeps for singular values ``s`` (descending)."""
    if truncation == "fixed_k":
        return min(k, s.numel())
    # Variance is the *squared* singular value (anatome thresholds |s|, a different k); dividing by the
    # last cumulative sum makes the full set reach exactly 1, so tau = 1 keeps every direction.
    cumulative = torch.cumsum(s.square(), dim=0)
    fraction = cumulative / cumulative[-1]
    threshold = torch.tensor([tau], dtype=fraction.dtype, device=fraction.device)
    return int(torch.searchsorted(fraction, threshold, side="left").item()) + 1


@register(
    "svcca",
    family="cca",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=("permutation", "orthogonal", "isotropic_scaling", "translation"),
    min_rows=3,
    reference="Raghu, Gilmer, Yosinski, Sohl-Dickstein. SVCCA: Singular Vector Canonical Correlation Analysis "
    "for Deep Learning Dynamics and Interpretability. NeurIPS 2017",
    cost="O(N·D² + D³): thin SVD of each centred input and one SVD of the k_X × k_Y cross product",
)
def svcca(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    tau: float = 0.99,
    truncation: str = "variance",
    k: int = 10,
    summary: str = "mean_rho",
) -> torch.Tensor:
    """Singular vector CCA: CCA between the leading principal components of each representation.

    Formula: centre; thin SVD X̃ = U S Vᵀ; keep X' = U_k S_k, where with ``truncation="variance"``
    k_X is the smallest k with Σ_{j≤k} s_j² ≥ tau · Σ_j s_j² (variance = *squared* singular values),
    and with ``truncation="fixed_k"`` k_X = min(k, rank X̃); same for Y. SVCCA is the ``summary`` of
    the canonical correlations of (X', Y'): their mean (``"mean_rho"``, default) or mean square
    (``"r2"``). Range [0, 1]; higher is more similar; symmetric.

    Invariances: orthogonal maps, isotropic scaling, permutations and translations on either side;
    *not* invertible linear maps (the PCA step depends on the metric).

    Defaults: tau = 0.99 (Kornblith et al. 2019), ``k`` is used only with ``truncation="fixed_k"``.
    Where others differ: ReSi's ``top_k_pca_comps`` compares the cumulative *fraction* of variance with
    tau times the *absolute* total variance, so whenever the total variance exceeds ≈1.01 it keeps
    k = 1 (SVCCA collapses to |corr| of the first principal components); anatome thresholds Σ|s_j|
    instead of Σ s_j²; platonic-rep keeps 10 directions of a randomised ``svd_lowrank`` with jitter
    (non-deterministic). Raises ``UndefinedMeasureError`` for a constant input and when k_X or k_Y
    reaches N − 1 ("D >= N-1: CCA degenerate").
    """
    check_choice("svcca", "truncation", truncation, ("variance", "fixed_k"))
    check_choice("svcca", "summary", summary, ("mean_rho", "r2"))
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"measure 'svcca': tau must lie in (0, 1], got {tau!r}")
    if int(k) != k or k < 1:
        raise ValueError(f"measure 'svcca': k must be a positive integer, got {k!r}")
    xc, yc = centred(X), centred(Y)
    kept = []
    for i, c in enumerate((xc, yc), start=1):
        u, s = principal_directions(c)
        if s.numel() == 0:
            raise UndefinedMeasureError(f"svcca: input {i} is constant (no variance after centring)")
        # The scores U_k S_k span the same space as U_k, which is already an orthonormal basis.
        kept.append(u[:, : _kept_directions(s, truncation, tau, int(k))])
    ux, uy = kept
    check_not_degenerate("svcca", (ux.shape[1], uy.shape[1]), X.shape[0], what="kept principal directions")
    rho = torch.linalg.svdvals(mm(ux.T, uy)).clamp(0.0, 1.0)
    return rho.mean() if summary == "mean_rho" else rho.square().mean()


@register(
    "pwcca",
    family="cca",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=False,
    invariances=("permutation", "isotropic_scaling", "translation"),
    min_rows=3,
    reference="Morcos, Raghu, Bengio. Insights on representational similarity in neural networks with "
    "canonical correlation. NeurIPS 2018",
    cost=_SVD_COST + ", plus one N x m by N x D product for the weights",
)
def pwcca(X: torch.Tensor, Y: torch.Tensor, *, side: str = "x") -> torch.Tensor:
    """Projection-weighted CCA: canonical correlations weighted by how much of one side's neurons they carry.

    Formula: with the SVD Q_Xᵀ Q_Y = A diag(ρ) Bᵀ, the canonical variates of the weighted side are
    h_i = Q_X a_i (unit N-vectors; Q_Y b_i for ``side="y"``), i = 1..m. Weights
    α̃_i = Σ_j |⟨h_i, x̃_j⟩| over the centred neurons (columns) x̃_j of that side, α = α̃ / Σ α̃, and
    PWCCA = Σ_i α_i ρ_i. Morcos et al. report the distance 1 − PWCCA. Range [0, 1]; higher is more
    similar; **asymmetric** (the weights come from one side).

    Invariances: permutations, isotropic scaling and translations on either side; not orthogonal maps
    (the weights sum over neuron-aligned columns) and not invertible linear maps. Maps applied to the
    *other* side leave the value unchanged as long as they are invertible linear.

    ``side``: ``"x"`` (default) weights by the first input's neurons, ``"y"`` by the second's,
    ``"smaller"`` by the input with fewer columns (the first on ties), which is what Google's
    ``pwcca.py`` picks automatically. Where others differ: Google's ``pwcca.py`` (vendored by ReSi and
    similarity-repository) uses acts1 in the branch meant for acts2 and fails for unequal neuron
    counts; anatome re-orthonormalises the coefficient matrix instead of the variates; sim_metric skips
    the QR. Raises ``UndefinedMeasureError`` for a constant input and when a rank reaches N − 1
    ("D >= N-1: CCA degenerate").
    """
    check_choice("pwcca", "side", side, ("x", "y", "smaller"))
    xc, yc, ux, uy = _bases("pwcca", X, Y)
    check_not_degenerate("pwcca", (ux.shape[1], uy.shape[1]), X.shape[0])
    a, rho, bh = torch.linalg.svd(mm(ux.T, uy), full_matrices=False)
    rho = rho.clamp(0.0, 1.0)
    if side == "smaller":
        side = "x" if X.shape[1] <= Y.shape[1] else "y"
    variates, neurons = (mm(ux, a), xc) if side == "x" else (mm(uy, bh.T), yc)
    weights = mm(variates.T, neurons).abs().sum(dim=1)
    return (weights * rho).sum() / weights.sum()
