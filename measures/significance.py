"""Does a score mean anything? A permutation null and a bootstrap confidence interval for one pair.

Two functions on top of :func:`measures.compute`, for every pairwise measure (representations, outputs,
probabilities, per-layer pre-activations):

* :func:`permutation_test` — the null distribution of the score when the rows of ``Y`` are shuffled
  (the pairing of instances is destroyed, each side's geometry is kept), with a one-sided p-value in the
  measure's direction and the null's quantiles.
* :func:`bootstrap_ci` — a confidence interval of the score over probe inputs: rows of ``X`` and ``Y``
  resampled jointly with replacement (percentile or basic interval).

Random streams (documented so that a brute-force loop reproduces them exactly):
``rng = numpy.random.default_rng(seed)``; permutation ``i`` is ``rng.permutation(N)`` drawn in order;
the bootstrap draws every resample at once, ``rng.integers(0, N, (n_resamples, N))`` — the draw of
``scipy.stats.bootstrap(..., paired=True, rng=numpy.random.default_rng(seed))``, so both give the same
resamples and, with ``method="percentile"``, the same interval.

Efficiency: the permutation null reuses one-sided work. ``X`` never changes, so every measure's
per-input preparation of ``X`` (RDMs, neighbour lists, spectra; see ``measures._memo``) is computed once.
For the kernel measures whose value is a normalised Frobenius product of two centred N x N matrices
(``cka_linear``, ``cka_linear_debiased``, ``cka_rbf``, ``distance_correlation``) both matrices are
prepared once and the permutation is applied to the prepared matrix of ``Y`` (B -> PBPᵀ, O(N²) per
permutation instead of O(N²·D) or O(N·D²)); centring commutes with a simultaneous row/column
permutation and the bandwidth of ``cka_rbf`` is a median over all pairs, which a permutation keeps.
The test suite checks these paths against a brute-force loop of :func:`measures.compute`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from measures._registry import MeasureInfo, compute, info

#: Quantiles of the permutation null reported in :attr:`PermutationResult.null_quantiles`.
NULL_QUANTILES = (0.05, 0.5, 0.95)
#: Input kinds whose two inputs are row-paired arrays or per-layer lists of them (what can be permuted).
_PAIRED_KINDS = ("representations", "outputs", "probabilities", "preactivations")


@dataclass(frozen=True)
class PermutationResult:
    """Result of :func:`permutation_test`.

    ``p_value`` = (1 + #{null values as or more similar than ``value``}) / (1 + n_permutations): "more
    similar" is ``null >= value`` for a similarity and ``null <= value`` for a distance
    (``higher_is_more_similar``), with scipy.stats.permutation_test's tie tolerance (100 eps relative).
    """

    name: str
    value: float
    p_value: float
    null: np.ndarray = field(repr=False)
    null_quantiles: dict[float, float]
    n_permutations: int
    higher_is_more_similar: bool

    @property
    def direction(self) -> str:
        """``"greater"`` (a similarity: large values are extreme) or ``"less"`` (a distance)."""
        return "greater" if self.higher_is_more_similar else "less"


@dataclass(frozen=True)
class BootstrapResult:
    """Result of :func:`bootstrap_ci`: the score, its interval and the bootstrap distribution."""

    name: str
    value: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    method: str
    distribution: np.ndarray = field(repr=False)


def _paired_info(name: str, what: str) -> MeasureInfo:
    meta = info(name)
    if meta.inputs not in _PAIRED_KINDS:
        raise ValueError(
            f"measure {name!r}: {what} needs two row-paired inputs, but its inputs are {meta.inputs!r} "
            f"(supported: {', '.join(_PAIRED_KINDS)})"
        )
    return meta


def _as_rows(meta: MeasureInfo, z: Any) -> np.ndarray | list[np.ndarray]:
    """An input as float64 numpy (a list of them for per-layer pre-activations), so rows can be indexed."""

    def one(a: Any) -> np.ndarray:
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        return np.asarray(a, dtype=np.float64)

    if meta.inputs == "preactivations":
        return [one(a) for a in z]
    return one(z)


def _take(z: np.ndarray | list[np.ndarray], rows: np.ndarray) -> np.ndarray | list[np.ndarray]:
    return [a[rows] for a in z] if isinstance(z, list) else z[rows]


def _n_rows(z: np.ndarray | list[np.ndarray]) -> int:
    return z[0].shape[0] if isinstance(z, list) else z.shape[0]


def _check_count(name: str, what: str, n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"measure {name!r}: {what} must be a positive integer, got {n!r}")


# --- prepared-matrix fast paths --------------------------------------------------------------------


def _centre(m: np.ndarray, unbiased: bool) -> np.ndarray:
    """Double-centred HMH, or the U-centred matrix of Székely & Rizzo (2014) with a zero diagonal."""
    n = m.shape[0]
    if not unbiased:
        r = m.mean(axis=1)
        return m - r[:, None] - r[None, :] + r.mean()
    m = m.copy()
    np.fill_diagonal(m, 0.0)
    r = m.sum(axis=1)
    u = m - r[:, None] / (n - 2) - r[None, :] / (n - 2) + r.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(u, 0.0)
    return u


def _squared_distances(z: np.ndarray) -> np.ndarray:
    z = z - z.mean(axis=0)
    sq = (z * z).sum(axis=1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    np.fill_diagonal(d, 0.0)
    return d


def _linear_gram(z: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    z = z - z.mean(axis=0)
    return z @ z.T


def _rbf_kernel(z: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    d = _squared_distances(z)
    over = params.get("median_over", "full_matrix")
    median = np.median(d if over == "full_matrix" else d[np.triu_indices_from(d, 1)])
    return np.exp(-d / (2.0 * params.get("fraction", 0.4) ** 2 * median))


def _distances(z: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    return np.sqrt(_squared_distances(z))


#: name -> (matrix of one input, U-centred?, map of the normalised product r = <A,B>/(|A||B|) to the score)
_MATRIX_PATHS: dict[str, Callable[[Mapping[str, Any]], tuple[Callable, bool, Callable]]] = {
    "cka_linear": lambda p: (_linear_gram, False, lambda r: np.clip(r, 0.0, 1.0)),
    "cka_linear_debiased": lambda p: (_linear_gram, True, lambda r: np.clip(r, -1.0, 1.0)),
    "cka_rbf": lambda p: (_rbf_kernel, False, lambda r: np.clip(r, 0.0, 1.0)),
    "distance_correlation": lambda p: (
        (_distances, True, lambda r: np.clip(r, -1.0, 1.0))
        if p.get("estimator", "biased") == "unbiased"
        else (_distances, False, lambda r: np.sqrt(np.clip(r, 0.0, 1.0)))
    ),
}


def _matrix_null(
    name: str, x: np.ndarray, y: np.ndarray, perms: list[np.ndarray], params: Mapping[str, Any], progress: bool
) -> np.ndarray:
    matrix, unbiased, finish = _MATRIX_PATHS[name](params)
    a = _centre(matrix(x, params), unbiased)
    b = _centre(matrix(y, params), unbiased)
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return np.array(
        [finish((a * b[np.ix_(p, p)]).sum() / norm) for p in tqdm(perms, desc=f"{name} null", disable=not progress)]
    )


# --- public API ------------------------------------------------------------------------------------


def permutation_test(
    name: str,
    X: Any,
    Y: Any,
    *,
    n_permutations: int = 1000,
    seed: int = 0,
    measure_params: Mapping[str, Any] | None = None,
    progress: bool = False,
    **params: Any,
) -> PermutationResult:
    """Permutation null of measure ``name`` on the pair (X, Y): the rows of ``Y`` shuffled.

    ``value = compute(name, X, Y, **params)``; ``null[i] = compute(name, X, Y[perm_i], **params)`` with
    ``perm_i`` the i-th ``numpy.random.default_rng(seed).permutation(N)``; the p-value is one-sided in the
    measure's direction (see :class:`PermutationResult`). ``measure_params`` passes parameters whose name
    clashes with this function's (a stochastic measure's own ``seed``). Labels, where a measure needs
    them, stay with the rows of ``X``. A measure that is undefined on the pair raises
    ``UndefinedMeasureError`` with its reason; group-wise and model-based measures raise ``ValueError``.
    """
    meta = _paired_info(name, "a permutation test")
    _check_count(name, "n_permutations", n_permutations)
    params = {**params, **(measure_params or {})}
    value = compute(name, X, Y, **params)  # validates the inputs; raises UndefinedMeasureError with the reason
    x, y = _as_rows(meta, X), _as_rows(meta, Y)
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(_n_rows(y)) for _ in range(n_permutations)]
    if name in _MATRIX_PATHS:
        null = _matrix_null(name, x, y, perms, params, progress)
    else:
        # X is the same array in every call, so its one-sided preparation comes from the memo.
        null = np.array(
            [compute(name, x, _take(y, p), **params) for p in tqdm(perms, desc=f"{name} null", disable=not progress)]
        )
    tolerance = 100 * np.finfo(np.float64).eps * abs(value)
    if meta.higher_is_more_similar:
        extreme = int(np.count_nonzero(null >= value - tolerance))
    else:
        extreme = int(np.count_nonzero(null <= value + tolerance))
    return PermutationResult(
        name=name,
        value=value,
        p_value=(1 + extreme) / (1 + n_permutations),
        null=null,
        null_quantiles={q: float(np.quantile(null, q)) for q in NULL_QUANTILES},
        n_permutations=n_permutations,
        higher_is_more_similar=meta.higher_is_more_similar,
    )


def bootstrap_ci(
    name: str,
    X: Any,
    Y: Any,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
    measure_params: Mapping[str, Any] | None = None,
    progress: bool = False,
    **params: Any,
) -> BootstrapResult:
    """Bootstrap confidence interval of measure ``name`` over probe inputs (rows resampled jointly).

    Resample b takes rows ``idx[b]`` of both inputs (and of ``labels``) with
    ``idx = numpy.random.default_rng(seed).integers(0, N, (n_resamples, N))``. ``method="percentile"``:
    [q_{α/2}, q_{1−α/2}] of the bootstrap distribution (linear interpolation, α = 1 − confidence), the
    interval of ``scipy.stats.bootstrap(..., paired=True, method="percentile")`` with the same ``rng``;
    ``method="basic"``: [2v − q_{1−α/2}, 2v − q_{α/2}]. Duplicated rows are ordinary inputs for every
    measure; a resample on which the measure is undefined raises ``UndefinedMeasureError`` naming it.
    """
    meta = _paired_info(name, "a bootstrap")
    _check_count(name, "n_resamples", n_resamples)
    if method not in ("percentile", "basic"):
        raise ValueError(f"measure {name!r}: bootstrap method must be 'percentile' or 'basic', got {method!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"measure {name!r}: confidence must lie in (0, 1), got {confidence!r}")
    params = {**params, **(measure_params or {})}
    value = compute(name, X, Y, **params)
    x, y = _as_rows(meta, X), _as_rows(meta, Y)
    n = _n_rows(x)
    labels = params.pop("labels", None)
    labels = None if labels is None else np.asarray(labels)
    idx = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    distribution = np.empty(n_resamples)
    for b, rows in enumerate(tqdm(idx, desc=f"{name} bootstrap", disable=not progress)):
        extra = {} if labels is None else {"labels": labels[rows]}
        try:
            distribution[b] = compute(name, _take(x, rows), _take(y, rows), **params, **extra)
        except ValueError as exc:
            raise type(exc)(f"{exc} (bootstrap resample {b} of seed {seed})") from exc
    alpha = (1.0 - confidence) / 2.0
    q_low, q_high = np.quantile(distribution, [alpha, 1.0 - alpha])
    low, high = (q_low, q_high) if method == "percentile" else (2 * value - q_high, 2 * value - q_low)
    return BootstrapResult(
        name=name,
        value=value,
        low=float(low),
        high=float(high),
        confidence=confidence,
        n_resamples=n_resamples,
        method=method,
        distribution=distribution,
    )
