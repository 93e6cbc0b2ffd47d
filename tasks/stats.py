"""Statistics of the benchmark's tests: pure functions (no I/O, no plotting, no global RNG).

Every quality statistic an analysis task reports is computed here, so that the rules which decide a
ranking (orientation, NaN handling, ties, p-value conventions, aggregation) live in one module.
Section numbers refer to ``docs/protocols.md``.

Conventions used throughout:

* **Orientation.** Functions that take measure values accept ``higher_is_more_similar`` (the
  measure's ``kind`` in the registry: similarity -> True, distance -> False). Scores are turned into
  similarity-oriented scores by negating distances (:func:`orient`): exact in floating point, so
  order and ties are kept. Only the AUPRC uses ReSi's own map ``(max - d)/max`` (:func:`resi_flip`),
  for fidelity with the published numbers; it gives the same order.
* **NaN** means "the measure failed on this pair" (§1.3). NaN values are dropped before every
  statistic and the number of values actually used is returned, so that callers can report it; a
  statistic left without values is NaN (for group separation, one empty group makes the experiment
  NaN, as in ReSi).
* **Matrices.** Pairwise inputs are square matrices over models (or layers): ``M[a, b]`` is the
  measure between a (source) and b (target); the diagonal is ignored. When the matrix is symmetric
  each unordered pair is used once, otherwise every ordered pair is used (so an asymmetric measure is
  seen in both directions). A symmetric measure stored only once per pair (the other triangle NaN)
  therefore gives the same result either way.
* **Randomness.** Every random procedure takes a keyword ``seed``: an int or a
  ``numpy.random.Generator``. There is no default, so every number is reproducible.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import rankdata, trim_mean

Seed = int | np.random.Generator
CorrelationMethod = Literal["spearman", "pearson", "kendall"]
Alternative = Literal["two-sided", "greater", "less"]

#: ReSi replaces a maximum distance of 0 by this value in the AUPRC flip (max - d)/max.
RESI_ZERO_MAX = 5e-5
#: scipy.stats.permutation_test treats null values within this relative distance of the observed
#: statistic as equal to it (rounding must not decide a p-value); we use the same tolerance.
_PERMUTATION_RTOL = 100 * np.finfo(float).eps
#: symmetric-matrix detection: a symmetric measure computed in both orders may differ in the last bits
_SYMMETRY_RTOL, _SYMMETRY_ATOL = 1e-9, 1e-12


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


def _rng(seed: Seed) -> np.random.Generator:
    if seed is None:
        raise TypeError("an explicit seed (int or numpy Generator) is required for reproducibility")
    return np.random.default_rng(seed)


def _square(matrix: ArrayLike, name: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {m.shape}")
    return m


def _is_symmetric(m: np.ndarray) -> bool:
    return bool(np.allclose(m, m.T, rtol=_SYMMETRY_RTOL, atol=_SYMMETRY_ATOL, equal_nan=True))


def _pair_indices(n: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pairs used: a < b when symmetric, else every a != b."""
    if symmetric:
        return np.triu_indices(n, k=1)
    return np.nonzero(~np.eye(n, dtype=bool))


def _drop_nan(values: ArrayLike) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[~np.isnan(v)]


def _nanmean(values: ArrayLike) -> float:
    """Mean of the non-NaN values; NaN (without numpy's warning) when there is none."""
    v = _drop_nan(values)
    return float(v.mean()) if v.size else float("nan")


def _association(rows: np.ndarray, fixed: np.ndarray, method: CorrelationMethod) -> np.ndarray:
    """Correlation of every row of ``rows`` (B x m) with ``fixed`` (m,); NaN where a side is constant.

    Spearman is Pearson on average ranks (identical to ``scipy.stats.spearmanr``); Kendall is
    tau-b (identical to ``scipy.stats.kendalltau``'s default). Vectorised over rows because the
    permutation tests evaluate thousands of shuffled copies.
    """
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    fixed = np.asarray(fixed, dtype=float)
    if method == "kendall":
        return _kendall_tau_b(rows, fixed)
    if method == "spearman":
        rows, fixed = rankdata(rows, axis=1), rankdata(fixed)
    elif method != "pearson":
        raise ValueError(f"unknown correlation method {method!r}; valid: spearman, pearson, kendall")
    rows_c = rows - rows.mean(axis=1, keepdims=True)
    fixed_c = fixed - fixed.mean()
    denominator = np.sqrt((rows_c**2).sum(axis=1) * (fixed_c**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (rows_c @ fixed_c) / denominator
    return np.where(denominator > 0, np.clip(r, -1.0, 1.0), np.nan)


def _kendall_tau_b(rows: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """tau_b = sum_ij sgn(x_i - x_j) sgn(y_i - y_j) / sqrt(#pairs untied in x * #pairs untied in y)."""
    fixed_signs = np.sign(fixed[:, None] - fixed[None, :])
    fixed_untied = np.abs(fixed_signs).sum()
    m = rows.shape[1]
    out = np.empty(rows.shape[0])
    chunk = max(1, 2_000_000 // max(m * m, 1))  # keeps the B x m x m sign tensor to ~16 MB
    for start in range(0, rows.shape[0], chunk):
        block = rows[start : start + chunk]
        signs = np.sign(block[:, :, None] - block[:, None, :])
        concordance = np.einsum("bij,ij->b", signs, fixed_signs)
        denominator = np.sqrt(np.abs(signs).sum(axis=(1, 2)) * fixed_untied)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + chunk] = np.where(denominator > 0, concordance / denominator, np.nan)
    return out


def _spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rho over the pairs where both values are present; NaN for < 2 pairs or a constant side."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    if keep.sum() < 2:
        return float("nan")
    return float(_association(x[keep][None, :], y[keep], "spearman")[0])


def _permutations(m: int, n_resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """All m! permutations when there are at most n_resamples of them (exact test), else random ones.

    Same switch as scipy.stats.permutation_test: exhaustive when ``n_resamples >= m!``.
    """
    if math.factorial(m) <= n_resamples:
        return np.array(list(itertools.permutations(range(m))), dtype=np.intp).reshape(-1, m), True
    return rng.permuted(np.tile(np.arange(m), (n_resamples, 1)), axis=1), False


def _permutation_pvalue(observed: float, null: np.ndarray, alternative: Alternative, exact: bool) -> float:
    """p-value with scipy.stats.permutation_test's conventions.

    p_greater = (#{null >= obs - gamma} + a) / (B + a), p_less likewise with <=, where
    gamma = 100 eps |obs| absorbs rounding and a = 1 for a Monte Carlo null (the observed arrangement
    counts as one draw; Phipson & Smyth 2010), a = 0 for an exhaustive one. Two-sided:
    min(1, 2 min(p_less, p_greater)). NaN null values (constant permutations) count in neither tail.
    """
    if np.isnan(observed):
        return float("nan")
    gamma = abs(observed) * _PERMUTATION_RTOL
    adjustment = 0 if exact else 1
    p_less = (np.count_nonzero(null <= observed + gamma) + adjustment) / (null.size + adjustment)
    p_greater = (np.count_nonzero(null >= observed - gamma) + adjustment) / (null.size + adjustment)
    if alternative == "greater":
        p = p_greater
    elif alternative == "less":
        p = p_less
    elif alternative == "two-sided":
        p = 2 * min(p_less, p_greater)
    else:
        raise ValueError(f"unknown alternative {alternative!r}; valid: two-sided, greater, less")
    return float(min(p, 1.0))


# --------------------------------------------------------------------------------------------------
# Orientation
# --------------------------------------------------------------------------------------------------


def orient(values: ArrayLike, higher_is_more_similar: bool) -> np.ndarray:
    """Similarity-oriented scores: s = v for a similarity, s = -v for a distance.

    Negation is exact in floating point, so order and ties are preserved exactly; every statistic in
    this module that only uses order (ranks, conformity, monotonicity, argmax) is therefore the same
    whichever flip is used. Returns a new float array.
    """
    v = np.array(values, dtype=float)
    return v if higher_is_more_similar else -v


def resi_flip(distances: ArrayLike) -> np.ndarray:
    """ReSi's distance -> similarity map for the AUPRC (§3): s = (max - d) / max.

    ``max`` is the largest non-NaN distance among all values passed (ReSi: over the within and cross
    lists together); a maximum of 0 is replaced by 5e-5 (``RESI_ZERO_MAX``) to avoid 0/0, which maps
    every distance 0 to similarity 1. The map is decreasing in d only when max > 0, so a negative
    maximum (not a distance) raises instead of silently inverting the order. NaNs stay NaN.
    """
    d = np.asarray(distances, dtype=float)
    present = d[~np.isnan(d)]
    if present.size == 0:
        return d.copy()
    top = float(present.max())
    if not np.isfinite(top) or top < 0:
        raise ValueError(f"resi_flip needs finite non-negative distances; the maximum is {top}")
    if top == 0:
        top = RESI_ZERO_MAX
    return (top - d) / top


# --------------------------------------------------------------------------------------------------
# Group separation (ReSi Tests 3-5, §3)
# --------------------------------------------------------------------------------------------------


def auprc(within: ArrayLike, cross: ArrayLike, higher_is_more_similar: bool = True) -> float:
    """Area under the precision-recall curve with the within-group pairs as positives (§3).

    AP = sum_t (R_t - R_{t-1}) P_t over the distinct score thresholds t, best first
    (the definition of ``sklearn.metrics.average_precision_score``, positives labelled 1; tied scores
    form one step; the tests check it against sklearn). Distances are flipped with :func:`resi_flip`
    over both lists together. NaNs are dropped; NaN if either side is then empty. Random ordering gives
    about :func:`prevalence` (see :func:`auprc_null`), not 0.5.

    Written out rather than calling sklearn: the bootstraps evaluate it ~10⁵ times per benchmark, and
    sklearn's input validation costs about 1 ms per call, 50x the arithmetic.
    """
    w, c = _drop_nan(within), _drop_nan(cross)
    if w.size == 0 or c.size == 0:
        return float("nan")
    scores = np.concatenate([w, c])
    if not higher_is_more_similar:
        scores = resi_flip(scores)
    labels = np.concatenate([np.ones(w.size), np.zeros(c.size)])
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], labels[order]
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]  # one threshold per distinct score
    true_pos = np.cumsum(hits)[last_of_tie]
    predicted = (np.flatnonzero(last_of_tie) + 1).astype(float)
    recall = true_pos / w.size
    return float(np.sum(np.diff(recall, prepend=0.0) * (true_pos / predicted)))


def prevalence(n_within: int, n_cross: int) -> float:
    """Share of positives P = n_within / (n_within + n_cross): the AUPRC of a constant score.

    ReSi designs (§3): 3 groups of 5 -> 10 / (10 + 50) = 1/6; 2 groups of 5 -> 10 / (10 + 25) = 2/7.
    """
    if n_within < 0 or n_cross < 0:
        raise ValueError(f"counts must be non-negative, got {n_within}, {n_cross}")
    total = n_within + n_cross
    return n_within / total if total else float("nan")


def auprc_null(n_within: int, n_cross: int, n_draws: int = 10_000, *, seed: Seed) -> float:
    """Expected AP of a uniformly random ranking, estimated from ``n_draws`` label permutations (§3).

    For a ranking without ties with k positives among n at ranks r_1 < ... < r_k,
    AP = (1/k) sum_i i / r_i. Each draw shuffles the k ones and n - k zeros, so the estimate is the
    mean of that AP over draws; it lies slightly above the prevalence k/n at ReSi's sizes (the exact
    value is (1/n) sum_{j=1..n} (1/j) [1 + (j - 1)(k - 1)/(n - 1)]). NaN if either count is 0.
    """
    k, n = n_within, n_within + n_cross
    if k <= 0 or n_cross <= 0:
        return float("nan")
    rng = _rng(seed)
    rank = np.arange(1, n + 1)
    total = 0.0
    chunk = max(1, 2_000_000 // n)  # bounds memory for large designs
    for start in range(0, n_draws, chunk):
        size = min(chunk, n_draws - start)
        labels = np.zeros((size, n), dtype=bool)
        labels[:, :k] = True
        labels = rng.permuted(labels, axis=1)  # row = labels of a random ranking, best first
        precision_at = np.cumsum(labels, axis=1) / rank
        total += float((precision_at * labels).sum() / k)
    return total / n_draws


def prevalence_normalised(ap: ArrayLike, p: ArrayLike) -> float | np.ndarray:
    """(AP - P) / (1 - P): 0 at the prevalence baseline, 1 for perfect separation (§3).

    Makes AUPRCs comparable between designs with 2 and 3 groups. Works elementwise on arrays.
    """
    ap, p = np.asarray(ap, dtype=float), np.asarray(p, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(p < 1, (ap - p) / (1 - p), np.nan)
    return float(out) if out.ndim == 0 else out


def conformity_rate(within: ArrayLike, cross: ArrayLike, higher_is_more_similar: bool = True) -> float:
    """1 - violation rate over all (within pair, cross pair) combinations (§3, ReSi appendix).

    violation(w, c) = [s_w <= s_c]: **ties count as violations** (ReSi), unlike layer monotonicity.
    Computed by sorting: #violations = sum_w #{c : s_c >= s_w}. NaNs dropped; NaN if a side is empty.
    """
    w = orient(_drop_nan(within), higher_is_more_similar)
    c = orient(_drop_nan(cross), higher_is_more_similar)
    if w.size == 0 or c.size == 0:
        return float("nan")
    n_not_below = c.size - np.searchsorted(np.sort(c), w, side="left")
    return float(1.0 - n_not_below.sum() / (w.size * c.size))


@dataclass(frozen=True)
class GroupSeparation:
    """Result of :func:`group_separation`; per-group dicts are keyed by the group label."""

    groups: tuple[Hashable, ...]
    auprc_by_group: dict[Hashable, float]
    conformity_by_group: dict[Hashable, float]
    n_within: dict[Hashable, int]  # non-NaN positive pairs used
    n_cross: dict[Hashable, int]  # non-NaN negative pairs used
    auprc: float  # experiment score: mean over groups (NaN if any group is NaN)
    auprc_normalised: float  # mean over groups of (AUPRC_g - P_g) / (1 - P_g)
    prevalence: float  # mean over groups of P_g
    conformity_rate: float  # mean over groups (NaN if any group is NaN)


def _group_codes(groups: Sequence[Hashable], n: int) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and distinct labels of ``groups``, one per row of an ``n`` x ``n`` matrix (else ValueError)."""
    codes, labels = pd.factorize(pd.Series(list(groups), dtype=object))
    if codes.size != n:
        raise ValueError(f"{codes.size} group labels for a {n} x {n} matrix")
    if (codes < 0).any():
        raise ValueError("group labels must not be missing")
    return codes, labels


def group_separation(
    similarity: ArrayLike,
    groups: Sequence[Hashable],
    *,
    higher_is_more_similar: bool = True,
    symmetric: bool | None = None,
) -> GroupSeparation:
    """ReSi Tests 3-5 (§3): do models of the same intervention level look more alike?

    ``similarity[a, b]`` is the measure between models a and b (NaN allowed, diagonal ignored);
    ``groups[a]`` is model a's group (the intervention level; groups are reported in order of first
    appearance). For each group g:

    * positives: pairs with both models in g (C(n_g, 2) unordered pairs);
    * negatives: pairs with exactly one model in g (n_g * n_other); pairs among other groups are unused;
    * AUPRC_g = :func:`auprc` and conformity_g = :func:`conformity_rate` on those two lists.

    Experiment score = mean over groups. As in ReSi, a group without usable pairs makes the whole
    score NaN (dropping it would change the difficulty of the test). Pairs: unordered when the matrix
    is symmetric (``symmetric=None`` detects it), otherwise every ordered pair, i.e. an asymmetric
    measure is seen in both directions (ReSi uses one arbitrary direction); this doubles both counts
    and leaves the prevalence unchanged. The permutation null of the AUPRC is
    ``auprc_null(n_within[g], n_cross[g], seed=...)`` per group.
    """
    s = _square(similarity, "similarity")
    codes, labels = _group_codes(groups, s.shape[0])
    if labels.size < 2:
        raise ValueError("group separation needs at least two groups")
    if symmetric is None:
        symmetric = _is_symmetric(s)
    a, b = _pair_indices(s.shape[0], symmetric)
    values = s[a, b]

    ap, conformity, n_within, n_cross, normalised, prevalences = {}, {}, {}, {}, [], []
    for code, label in enumerate(labels.tolist()):
        in_a, in_b = codes[a] == code, codes[b] == code
        within, cross = values[in_a & in_b], values[in_a ^ in_b]
        ap[label] = auprc(within, cross, higher_is_more_similar)
        conformity[label] = conformity_rate(within, cross, higher_is_more_similar)
        n_within[label] = int(np.count_nonzero(~np.isnan(within)))
        n_cross[label] = int(np.count_nonzero(~np.isnan(cross)))
        prevalences.append(prevalence(n_within[label], n_cross[label]))
        normalised.append(prevalence_normalised(ap[label], prevalences[-1]))

    # np.mean, not nanmean: one unusable group makes the experiment NaN (ReSi's rule)
    return GroupSeparation(
        groups=tuple(labels.tolist()),
        auprc_by_group=ap,
        conformity_by_group=conformity,
        n_within=n_within,
        n_cross=n_cross,
        auprc=float(np.mean(list(ap.values()))),
        auprc_normalised=float(np.mean(normalised)),
        prevalence=float(np.mean(prevalences)),
        conformity_rate=float(np.mean(list(conformity.values()))),
    )


def group_separation_auprc_resampled(
    similarity: ArrayLike,
    groups: Sequence[Hashable],
    indices: ArrayLike,
    *,
    higher_is_more_similar: bool = True,
) -> np.ndarray:
    """``group_separation(similarity[ix, ix], groups[ix]).auprc`` for every row ``ix`` of ``indices``
    (B x n model indices, e.g. bootstrap resamples), bit for bit, in one vectorised pass.

    Written out because a bootstrap evaluates hundreds of resamples per (measure, architecture, axis)
    and the per-resample Python overhead was most of the benchmark's analysis time. Every floating-point
    operation of :func:`auprc` is kept: the flip, the precisions and recalls element by element, and the
    final sum row by row with numpy's own reduction (rows of one length reduced along the last axis sum
    exactly as one 1-D array does); only the order of tied scores inside a tie differs, which the AP does
    not see (it reads the cumulative counts at the last element of each tie). Resamples with non-finite
    values take :func:`group_separation` itself.
    """
    s = _square(similarity, "similarity")
    codes, _ = _group_codes(groups, s.shape[0])
    idx = np.asarray(indices, dtype=np.intp)
    if idx.ndim != 2:
        raise ValueError(f"indices must be a (resamples, models) matrix, got shape {idx.shape}")
    n_boot, n = idx.shape
    out = np.full(n_boot, np.nan)
    if n_boot == 0:
        return out
    sub = s[idx[:, :, None], idx[:, None, :]]
    code = codes[idx]
    n_codes = int(codes.max()) + 1
    present = np.zeros((n_boot, n_codes), dtype=bool)
    np.put_along_axis(present, code, True, axis=1)
    if (present.sum(axis=1) < 2).any():
        raise ValueError("group separation needs at least two groups")
    symmetric = np.isclose(sub, sub.transpose(0, 2, 1), rtol=_SYMMETRY_RTOL, atol=_SYMMETRY_ATOL,
                           equal_nan=True).all(axis=(1, 2))
    per_group = np.full((n_boot, n_codes), np.nan)
    for sym in (True, False):
        rows = np.flatnonzero(symmetric == sym)
        if rows.size == 0:
            continue
        a, b = _pair_indices(n, sym)
        values = sub[rows][:, a, b]
        if np.isinf(values).any():  # an infinite value could tie with _auprc_rows' padding: the plain path
            for r in rows:
                result = group_separation(sub[r], code[r], higher_is_more_similar=higher_is_more_similar,
                                          symmetric=bool(sym))
                per_group[r, [c for c in range(n_codes) if present[r, c]]] = [
                    result.auprc_by_group[c] for c in range(n_codes) if present[r, c]]
            continue
        for c in range(n_codes):
            in_a, in_b = code[rows][:, a] == c, code[rows][:, b] == c
            usable = ~np.isnan(values)
            within, used = in_a & in_b & usable, (in_a | in_b) & usable
            per_group[rows, c] = _auprc_rows(values, within, used, higher_is_more_similar)
    # experiment score: the mean over the groups present, in order of first appearance (as group_separation)
    first = np.empty((n_boot, n_codes), dtype=np.intp)
    for c in range(n_codes):
        first[:, c] = np.where(present[:, c], np.argmax(code == c, axis=1), n)
    order = np.argsort(first, axis=1, kind="stable")
    ordered = np.take_along_axis(per_group, order, axis=1)
    count = present.sum(axis=1)
    for k in np.unique(count):
        rows = np.flatnonzero(count == k)
        out[rows] = np.mean(np.ascontiguousarray(ordered[rows, :k]), axis=1)
    return out


def _auprc_rows(values: np.ndarray, within: np.ndarray, used: np.ndarray, higher: bool) -> np.ndarray:
    """:func:`auprc` of every row: positives ``values[within]``, negatives ``values[used & ~within]``."""
    n_within = within.sum(axis=1)
    n_used = used.sum(axis=1)
    out = np.full(values.shape[0], np.nan)
    ok = (n_within > 0) & (n_used > n_within)
    if not ok.any():
        return out
    scores, within, n_within, n_used = values[ok], within[ok], n_within[ok], n_used[ok]
    used = used[ok]
    if not higher:
        top = np.max(np.where(used, scores, -np.inf), axis=1)
        if (top < 0).any():
            raise ValueError(f"resi_flip needs finite non-negative distances; the maximum is {top[top < 0][0]}")
        top = np.where(top == 0, RESI_ZERO_MAX, top)
        scores = (top[:, None] - scores) / top[:, None]
    padded = np.where(used, scores, -np.inf)  # unused pairs sort last
    order = np.argsort(-padded, axis=1, kind="stable")
    ranked = np.take_along_axis(padded, order, axis=1)
    hits = np.take_along_axis(within, order, axis=1).astype(float)
    position = np.arange(ranked.shape[1])
    last = np.zeros(ranked.shape, dtype=bool)
    last[:, :-1] = ranked[:, 1:] != ranked[:, :-1]
    last &= position < n_used[:, None]
    last[np.arange(len(ranked)), n_used - 1] = True
    true_pos = np.cumsum(hits, axis=1)
    recall = true_pos / n_within[:, None]
    # the recall at the previous tie's end (0 before the first): np.diff(recall, prepend=0.0) of auprc
    previous = np.maximum.accumulate(np.where(last, position, -1), axis=1)
    previous = np.concatenate([np.full((len(ranked), 1), -1), previous[:, :-1]], axis=1)
    before = np.where(previous >= 0, np.take_along_axis(recall, np.maximum(previous, 0), axis=1), 0.0)
    terms = (recall - before) * (true_pos / (position + 1).astype(float))
    n_terms = last.sum(axis=1)
    sums = np.empty(len(ranked))
    for k in np.unique(n_terms):
        rows = np.flatnonzero(n_terms == k)
        sums[rows] = np.sum(terms[rows][last[rows]].reshape(len(rows), k), axis=1)
    out[ok] = sums
    return out


# --------------------------------------------------------------------------------------------------
# Correlation with functional differences (ReSi Tests 1-2, §2)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorrelationTest:
    """Result of :func:`correlation_test`."""

    statistic: float
    pvalue_pairings: float  # ReSi-compatible: shuffles the pairing of the pair values
    pvalue_mantel: float  # shuffles model labels of the functional matrix (keeps shared-model dependence)
    n_pairs: int
    n_models: int
    method: str
    alternative: str
    exact_pairings: bool  # True when all permutations were enumerated
    exact_mantel: bool


def _usable_pairs(rep_distances: ArrayLike, functional_distances: ArrayLike, symmetric: bool | None):
    """Both matrices, the pair indices (a, b) used and the mask of pairs with no NaN on either side."""
    rep = _square(rep_distances, "rep_distances")
    fun = _square(functional_distances, "functional_distances")
    if rep.shape != fun.shape:
        raise ValueError(f"matrices differ in shape: {rep.shape} vs {fun.shape}")
    if symmetric is None:
        symmetric = _is_symmetric(rep) and _is_symmetric(fun)
    a, b = _pair_indices(rep.shape[0], symmetric)
    keep = ~(np.isnan(rep[a, b]) | np.isnan(fun[a, b]))
    return rep, fun, a, b, keep


def correlation_statistic(
    rep_distances: ArrayLike,
    functional_distances: ArrayLike,
    method: CorrelationMethod = "spearman",
    *,
    symmetric: bool | None = None,
) -> float:
    """The statistic of :func:`correlation_test` without its null distributions (for bootstraps)."""
    rep, fun, a, b, keep = _usable_pairs(rep_distances, functional_distances, symmetric)
    if keep.sum() < 3:
        return float("nan")
    return float(_association(rep[a, b][keep][None, :], fun[a, b][keep], method)[0])


def correlation_statistic_resampled(
    rep_distances: ArrayLike,
    functional_distances: ArrayLike,
    indices: ArrayLike,
    method: CorrelationMethod = "spearman",
) -> np.ndarray:
    """``correlation_statistic(rep[ix, ix], fun[ix, ix], method)`` for every row ``ix`` of ``indices``
    (B x n model indices, e.g. bootstrap resamples), bit for bit.

    Vectorised over the resamples that use the same number of pairs (symmetry detected per resample, as
    :func:`correlation_statistic` does): ranks, means and sums of squares are row-wise reductions, which
    numpy computes exactly as for one row; the final dot product stays one call per resample, as in
    :func:`_association`, so that the BLAS kernel (and its summation order) is the same. Kendall's tau
    takes :func:`correlation_statistic` itself.
    """
    rep = _square(rep_distances, "rep_distances")
    fun = _square(functional_distances, "functional_distances")
    if rep.shape != fun.shape:
        raise ValueError(f"matrices differ in shape: {rep.shape} vs {fun.shape}")
    idx = np.asarray(indices, dtype=np.intp)
    if idx.ndim != 2:
        raise ValueError(f"indices must be a (resamples, models) matrix, got shape {idx.shape}")
    n_boot, n = idx.shape
    out = np.full(n_boot, np.nan)
    if method == "kendall":
        for r, ix in enumerate(idx):
            out[r] = correlation_statistic(rep[np.ix_(ix, ix)], fun[np.ix_(ix, ix)], method)
        return out
    if method not in ("spearman", "pearson"):
        raise ValueError(f"unknown correlation method {method!r}; valid: spearman, pearson, kendall")
    grid = (idx[:, :, None], idx[:, None, :])
    r_sub, f_sub = rep[grid], fun[grid]

    def symmetric(m: np.ndarray) -> np.ndarray:
        return np.isclose(m, m.transpose(0, 2, 1), rtol=_SYMMETRY_RTOL, atol=_SYMMETRY_ATOL,
                          equal_nan=True).all(axis=(1, 2))

    is_symmetric = symmetric(r_sub) & symmetric(f_sub)
    for sym in (True, False):
        rows = np.flatnonzero(is_symmetric == sym)
        if rows.size == 0:
            continue
        a, b = _pair_indices(n, sym)
        x_all, y_all = r_sub[rows][:, a, b], f_sub[rows][:, a, b]
        keep = ~(np.isnan(x_all) | np.isnan(y_all))
        count = keep.sum(axis=1)
        for m in np.unique(count):
            if m < 3:
                continue
            chosen = np.flatnonzero(count == m)
            x = x_all[chosen][keep[chosen]].reshape(len(chosen), m)
            y = y_all[chosen][keep[chosen]].reshape(len(chosen), m)
            if method == "spearman":
                x, y = rankdata(x, axis=1), rankdata(y, axis=1)
            x_c = x - x.mean(axis=1, keepdims=True)
            y_c = y - y.mean(axis=1, keepdims=True)
            denominator = np.sqrt((x_c**2).sum(axis=1) * (y_c**2).sum(axis=1))
            dot = np.array([(x_c[i : i + 1] @ y_c[i])[0] for i in range(len(chosen))])
            with np.errstate(invalid="ignore", divide="ignore"):
                r = dot / denominator
            out[rows[chosen]] = np.where(denominator > 0, np.clip(r, -1.0, 1.0), np.nan)
    return out


def correlation_test(
    rep_distances: ArrayLike,
    functional_distances: ArrayLike,
    method: CorrelationMethod = "spearman",
    n_resamples: int = 9_999,
    *,
    seed: Seed,
    alternative: Alternative = "two-sided",
    symmetric: bool | None = None,
) -> CorrelationTest:
    """Correlation between representational and functional distances over model pairs, two nulls (§2).

    Inputs are square matrices over the same models (distance-like: for a similarity pass
    ``-orient(values, True)``, as ReSi multiplies similarities by -1). Pairs: unordered when both
    matrices are symmetric (45 for 10 models), otherwise all ordered pairs (90); a pair is dropped if
    either value is NaN. The statistic is Spearman's rho (or Pearson's r, Kendall's tau-b) over pairs.

    * ``pvalue_pairings``: permute the representational pair values against the fixed functional ones,
      the null of ``scipy.stats.permutation_test((rep,), stat, permutation_type="pairings")`` that
      ReSi uses. It treats the pairs as exchangeable, which they are not (pairs share models).
    * ``pvalue_mantel``: each resample relabels the models of the functional matrix with a random
      permutation pi, F'[a, b] = F[pi(a), pi(b)], and recomputes the statistic over the same pairs
      (Mantel 1967). This keeps the dependence between pairs that share a model. A NaN in F moves
      with the labels, so a relabelling may use a different set of pairs.

    Both use scipy's p-value conventions (:func:`_permutation_pvalue`); each null is exhaustive when
    its number of permutations (n_pairs! or n_models!) is at most ``n_resamples``. The two nulls draw
    from independent child streams of ``seed``. Fewer than 3 usable pairs give NaN throughout.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    rep, fun, a, b, keep = _usable_pairs(rep_distances, functional_distances, symmetric)
    n_models = rep.shape[0]
    r, f = rep[a, b], fun[a, b]
    x, y = r[keep], f[keep]
    n_pairs = int(x.size)
    if n_pairs < 3:
        nan = float("nan")
        return CorrelationTest(nan, nan, nan, n_pairs, n_models, method, alternative, False, False)

    rng_pairings, rng_mantel = _rng(seed).spawn(2)

    # Pairing null: rows are shuffled copies of the representational values.
    observed = float(_association(x[None, :], y, method)[0])
    perms, exact_pairings = _permutations(n_pairs, n_resamples, rng_pairings)
    null = _association(x[perms], y, method)
    p_pairings = _permutation_pvalue(observed, null, alternative, exact_pairings)

    # Mantel null: relabel models of the functional matrix, read the same pairs again.
    labels, exact_mantel = _permutations(n_models, n_resamples, rng_mantel)
    relabelled = fun[labels[:, a], labels[:, b]]  # (B, all pairs); NaNs move with the labels
    usable = ~np.isnan(r)[None, :] & ~np.isnan(relabelled)
    observed_mantel = float(_association(f[None, keep], r[keep], method)[0])  # same code path as the null
    if (usable == keep).all():  # the common case: every relabelling leaves the observed pairs usable
        null_mantel = _association(relabelled[:, keep], r[keep], method)
    else:
        null_mantel = np.array(
            [
                _association(row[use][None, :], r[use], method)[0] if use.sum() >= 3 else np.nan
                for row, use in zip(relabelled, usable)
            ]
        )
    p_mantel = _permutation_pvalue(observed_mantel, null_mantel, alternative, exact_mantel)

    return CorrelationTest(
        statistic=observed,
        pvalue_pairings=p_pairings,
        pvalue_mantel=p_mantel,
        n_pairs=n_pairs,
        n_models=n_models,
        method=method,
        alternative=alternative,
        exact_pairings=exact_pairings,
        exact_mantel=exact_mantel,
    )


# --------------------------------------------------------------------------------------------------
# Layers: monotonicity (ReSi Test 6, §4) and identification (Kornblith et al. 2019, §7)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerMonotonicity:
    """Result of :func:`layer_monotonicity`; arrays are indexed by layer."""

    score: float  # nanmean of forward and backward correlations; 1 = perfectly monotone
    forward: np.ndarray  # -Spearman(s_ij, j - i) over j > i
    backward: np.ndarray  # -Spearman(s_ij, i - j) over j < i
    violation_rate: float
    n_violations: int
    n_triples: int


def layer_monotonicity(similarity: ArrayLike, higher_is_more_similar: bool = True) -> LayerMonotonicity:
    """ReSi Test 6 (§4): does similarity fall off with the distance between layers of one model?

    ``similarity[i, j]`` is the measure from layer i (source) to layer j (target) of the same model,
    layers in depth order; the diagonal is ignored. With s the similarity-oriented scores:

    * forward_i = -Spearman({s_ij}, {j - i}) over j > i, backward_i = -Spearman({s_ij}, {i - j}) over
      j < i. The minus sign makes "similarity decreases with distance" positive; for a distance this
      equals ReSi's un-negated Spearman of d. Fewer than 2 partners (the last layer forward, the
      penultimate forward) or a constant side gives NaN.
    * score = nanmean of all forward and backward values.
    * violation rate over triples (i, j, k), j and k on the same side of i, |k - i| > |j - i|: a
      violation is s_ij < s_ik, **strict** (ties are not violations, unlike the conformity rate;
      kept as in ReSi and recorded in protocols §4).

    NaN entries are dropped from the correlation and from the triples.
    """
    s = orient(_square(similarity, "similarity"), higher_is_more_similar)
    n_layers = s.shape[0]
    forward, backward = np.full(n_layers, np.nan), np.full(n_layers, np.nan)
    n_violations = n_triples = 0
    for i in range(n_layers):
        # Scores of layer i to the layers on each side, nearest first, so position + 1 = distance.
        sides = (s[i, i + 1 :], s[i, :i][::-1])
        for side, out in zip(sides, (forward, backward)):
            distance = np.arange(1, side.size + 1)
            out[i] = -_spearman(side, distance)
            present = side[~np.isnan(side)]  # keeps the near-to-far order
            nearer_less_similar = present[:, None] < present[None, :]  # [p, q]: nearer p below farther q
            n_violations += int(np.triu(nearer_less_similar, k=1).sum())
            n_triples += present.size * (present.size - 1) // 2
    return LayerMonotonicity(
        score=_nanmean(np.concatenate([forward, backward])),
        forward=forward,
        backward=backward,
        violation_rate=n_violations / n_triples if n_triples else float("nan"),
        n_violations=n_violations,
        n_triples=n_triples,
    )


@dataclass(frozen=True)
class LayerIdentification:
    """Result of :func:`layer_identification`; arrays are indexed by layer of model A."""

    accuracy: float  # mean credit, a tie that includes the right layer scores 1/#tied
    accuracy_strict: float  # a tie is wrong
    per_layer: np.ndarray  # credit per layer (NaN: the row had no value)
    best_match: np.ndarray  # most similar layer of B (lowest index among ties; -1 if none)
    n_tied: np.ndarray  # number of layers of B sharing the best score


def layer_identification(
    similarity: ArrayLike,
    symmetric_measure: bool,
    *,
    similarity_reverse: ArrayLike | None = None,
    higher_is_more_similar: bool = True,
) -> LayerIdentification:
    """Kornblith et al. 2019 sanity check (§7): is layer i of A most similar to layer i of B?

    ``similarity[i, j]`` = m(layer i of A, layer j of B) for two architecturally identical models
    (square: the same layers in the same order). Accuracy = fraction of layers i of A whose argmax
    over B's layers is i; average it over ordered model pairs and layers for the paper's number.

    Asymmetric measures (PWCCA, linear regression) are symmetrised before the argmax, following
    Kornblith et al.'s "S + S^T":

    * with ``similarity_reverse[j, i]`` = m(layer j of B, layer i of A) given, T = S + R^T, i.e.
      T[i, j] = m(A_i, B_j) + m(B_j, A_i): both directions of the same pair of layers;
    * without it, T = S + S^T, i.e. T[i, j] = m(A_i, B_j) + m(A_j, B_i). This pairs a value with the
      mirrored comparison, which has the same distribution as m(B_j, A_i) only when A and B are
      interchangeable (same architecture and recipe, different seeds) - the benchmark's setting.

    Ties (exact equality of the best score) follow the project rule (§7): a tie that includes layer i
    scores 1/#tied in ``accuracy`` and 0 in ``accuracy_strict``. NaN entries never win; a row with no
    value is excluded (NaN credit).
    """
    s = orient(_square(similarity, "similarity"), higher_is_more_similar)
    if similarity_reverse is not None:
        if symmetric_measure:
            raise ValueError("similarity_reverse only applies to asymmetric measures")
        reverse = orient(_square(similarity_reverse, "similarity_reverse"), higher_is_more_similar)
        if reverse.shape != s.shape:
            raise ValueError(f"similarity_reverse has shape {reverse.shape}, expected {s.shape}")
        s = s + reverse.T
    elif not symmetric_measure:
        s = s + s.T

    n_layers = s.shape[0]
    credit = np.full(n_layers, np.nan)
    strict = np.full(n_layers, np.nan)
    best_match = np.full(n_layers, -1)
    n_tied = np.zeros(n_layers, dtype=int)
    for i, row in enumerate(s):
        if np.isnan(row).all():
            continue
        tied = row == np.nanmax(row)  # NaN compares False, so it never wins
        n_tied[i] = int(tied.sum())
        best_match[i] = int(np.argmax(tied))
        credit[i] = tied[i] / n_tied[i]
        strict[i] = float(tied[i] and n_tied[i] == 1)
    return LayerIdentification(
        accuracy=_nanmean(credit),
        accuracy_strict=_nanmean(strict),
        per_layer=credit,
        best_match=best_match,
        n_tied=n_tied,
    )


# --------------------------------------------------------------------------------------------------
# Aggregation: bootstrap, IQM (§10), ReSi ranks (§5), dose-response
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile bootstrap interval; estimate/low/high are floats, arrays or Series like the statistic."""

    estimate: Any
    low: Any
    high: Any
    level: float
    n_boot: int
    distribution: np.ndarray  # (n_boot, ...) bootstrap replicates of the statistic


def bootstrap_ci(
    data: ArrayLike | pd.DataFrame,
    statistic: Callable[[Any], Any] = np.mean,
    *,
    n_boot: int = 10_000,
    seed: Seed,
    level: float = 0.95,
    unit_col: str | None = None,
    strata_cols: Sequence[str] | None = None,
) -> BootstrapCI:
    """Seeded percentile bootstrap over units (seeds), recomputing the statistic (§5.6, §10).

    * Array ``data``: units along axis 0 (e.g. one value per seed, or a seeds x tasks matrix whose
      rows are resampled together). Each replicate is ``statistic(data[idx])`` with idx drawn with
      replacement.
    * DataFrame ``data``: the units are the distinct values of ``unit_col`` (every row is a unit if
      None); a unit's rows are kept together. With ``strata_cols`` the units are resampled within
      each stratum (rliable's stratified bootstrap: runs within tasks), so every replicate keeps each
      cell's number of units. A unit drawn twice appears as two copies of its rows with the same
      ``unit_col`` value. ``statistic`` receives the resampled DataFrame.

    Interval: the (1 - level)/2 and (1 + level)/2 quantiles (numpy's linear rule) of the replicates,
    NaN replicates ignored. ``estimate`` is the statistic on the original data. The statistic may
    return a scalar, an array, or a pandas Series (e.g. mean rank per measure), and the interval has
    the same shape. Indices come from ``numpy.random.default_rng(seed)`` only (rliable 1.2.0 uses the
    global RNG; §10).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    rng = _rng(seed)

    if isinstance(data, pd.DataFrame):
        strata = [np.arange(len(data))]
        if strata_cols:
            strata = list(data.groupby(list(strata_cols), sort=True, dropna=False).indices.values())
        # Per stratum: its row positions grouped by unit, and each unit's start and row count.
        plans = []
        for rows in strata:
            if unit_col is None:
                codes = np.arange(rows.size)
            else:
                codes, _ = pd.factorize(data[unit_col].iloc[rows], use_na_sentinel=False)
            counts = np.bincount(codes)
            plans.append((rows[np.argsort(codes, kind="stable")], np.cumsum(counts) - counts, counts))

        def resample() -> Any:
            picked = []
            for grouped_rows, starts, counts in plans:
                units = rng.integers(0, counts.size, size=counts.size)
                lengths = counts[units]
                # rows of the drawn units back to back: position t of unit u maps to starts[u] + t
                offsets = np.repeat(starts[units] - (np.cumsum(lengths) - lengths), lengths)
                picked.append(grouped_rows[offsets + np.arange(lengths.sum())])
            return data.iloc[np.concatenate(picked)]

    else:
        if unit_col is not None or strata_cols:
            raise ValueError("unit_col and strata_cols need a DataFrame")
        array = np.asarray(data)
        if array.ndim == 0 or len(array) == 0:
            raise ValueError("bootstrap needs at least one unit")

        def resample() -> Any:
            return array[rng.integers(0, len(array), size=len(array))]

    estimate = statistic(data if isinstance(data, pd.DataFrame) else np.asarray(data))
    replicates = [statistic(resample()) for _ in range(n_boot)]
    quantiles = [(1 - level) / 2, (1 + level) / 2]
    if isinstance(estimate, pd.Series):
        table = pd.DataFrame(replicates).reindex(columns=estimate.index)
        low, high = table.quantile(quantiles[0]), table.quantile(quantiles[1])
        distribution = table.to_numpy(dtype=float)
    else:
        distribution = np.asarray(replicates, dtype=float)
        low, high = np.nanquantile(distribution, quantiles, axis=0)
        if np.ndim(estimate) == 0:
            estimate, low, high = float(estimate), float(low), float(high)
    return BootstrapCI(estimate, low, high, level, n_boot, distribution)


def bootstrap_indices(n_units: int, n_boot: int, *, seed: Seed) -> np.ndarray:
    """The units :func:`bootstrap_ci` draws for an array of ``n_units`` units with the same ``seed`` and
    ``n_boot``: row r holds replicate r's indices (one ``integers`` call per replicate, in order, so the
    draws are those of the loop; one call for all would split the generator's bits differently)."""
    if n_units < 1:
        raise ValueError("bootstrap needs at least one unit")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    rng = _rng(seed)
    return np.stack([rng.integers(0, n_units, size=n_units) for _ in range(n_boot)])


def percentile_interval(replicates: ArrayLike, level: float = 0.95) -> tuple[float, float]:
    """The interval :func:`bootstrap_ci` reports for scalar replicates: their (1 - level)/2 and
    (1 + level)/2 quantiles (numpy's linear rule), NaN replicates ignored."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    low, high = np.nanquantile(np.asarray(replicates, dtype=float), [(1 - level) / 2, (1 + level) / 2], axis=0)
    return float(low), float(high)


def iqm(x: ArrayLike) -> float:
    """Interquartile mean: the mean of the middle 50% = ``scipy.stats.trim_mean(x, 0.25)`` (§10).

    All values are pooled (runs and tasks together, as rliable does); NaNs are dropped first
    (NaN = the measure failed; count them separately). NaN for no values.
    """
    v = _drop_nan(x)
    return float(trim_mean(v, 0.25)) if v.size else float("nan")


def resi_ranks(
    df: pd.DataFrame,
    value_col: str,
    cell_cols: Sequence[str],
    *,
    measure_col: str = "measure",
    higher_is_better: bool = True,
    rank_col: str = "rank",
) -> pd.DataFrame:
    """ReSi's ranking rule (§5.2): within each cell, rank the measures by their quality value.

    Rank 1 = best (largest value when ``higher_is_better``); tied values all get the best (minimum)
    rank of their block (pandas ``method="min"``: values 0.9, 0.9, 0.5 -> ranks 1, 1, 3); a NaN
    value stays unranked (NaN rank) and does not take a rank from the others. Returns a copy of
    ``df`` with ``rank_col`` added. A cell is one experiment, e.g. (test, dataset, architecture) or,
    for Test 6, (test, dataset, architecture, model); one row per (cell, measure) is required.
    """
    cells = list(cell_cols)
    duplicated = df.duplicated(cells + [measure_col])
    if duplicated.any():
        raise ValueError(f"{int(duplicated.sum())} duplicate (cell, measure) rows; one value per cell is required")
    out = df.copy()
    values = out.groupby(cells, sort=False, dropna=False)[value_col] if cells else out[value_col]
    out[rank_col] = values.rank(method="min", ascending=not higher_is_better, na_option="keep")
    return out


def aggregate_ranks(
    ranked: pd.DataFrame,
    cell_cols: Sequence[str],
    *,
    test_col: str = "test",
    measure_col: str = "measure",
    rank_col: str = "rank",
) -> pd.DataFrame:
    """Summarise :func:`resi_ranks` output per measure (§5.3-5.4).

    1. Experiment rank: mean rank over the rows that share (test, ``cell_cols``, measure). With
       ``cell_cols`` naming the experiment without the model, this averages Test 6's per-model ranks
       (§5.3) and is a no-op for tests with one row per experiment. NaN ranks are skipped.
    2. ``rank_score`` = mean over tests of the median experiment rank within the test, so each test
       weighs equally whatever its number of experiments (the headline order).
    3. ReSi's box-plot summary over all experiments pooled: ``median_rank``, ``mean_rank``; plus
       ``n_ranked`` and ``n_unranked`` (experiments where the measure had no rank, i.e. NaN).

    Sorted by rank_score, then mean_rank (best first); one row per measure.
    """
    keys = [test_col] + [c for c in cell_cols if c not in (test_col, measure_col)] + [measure_col]
    experiment = ranked.groupby(keys, dropna=False)[rank_col].mean().reset_index()
    by_test = experiment.groupby([measure_col, test_col])[rank_col].median()
    pooled = experiment.groupby(measure_col)[rank_col]
    out = pd.DataFrame(
        {
            "rank_score": by_test.groupby(level=measure_col).mean(),
            "median_rank": pooled.median(),
            "mean_rank": pooled.mean(),
            "n_ranked": pooled.count(),
            "n_unranked": pooled.size() - pooled.count(),
        }
    )
    out.index.name = measure_col
    return out.sort_values(["rank_score", "mean_rank"], kind="stable").reset_index()


@dataclass(frozen=True)
class RankBootstrap:
    """Result of :func:`rank_score_bootstrap`."""

    scores: pd.DataFrame  # per measure: rank_score, rank_score_ci_low, rank_score_ci_high
    differences: pd.DataFrame  # per pair of measures: difference, its CI, p-value, BH-adjusted, significant
    distribution: pd.DataFrame  # (n_boot, measures): bootstrap replicates of the rank score
    level: float
    n_boot: int


def rank_score_bootstrap(
    ranked: pd.DataFrame,
    cell_cols: Sequence[str],
    *,
    n_boot: int = 10_000,
    seed: Seed,
    level: float = 0.95,
    resample_tests: bool = True,
    alpha: float = 0.05,
    test_col: str = "test",
    measure_col: str = "measure",
    rank_col: str = "rank",
) -> RankBootstrap:
    """Percentile bootstrap of :func:`aggregate_ranks`' ``rank_score`` and of every pairwise difference.

    The rank score is a mean over tests of the median over a test's cells (experiments, e.g. its
    architectures) of the measure's rank in that cell. A replicate redraws that aggregation's inputs
    the way they were sampled: the tests with replacement (``resample_tests``: which tests a benchmark
    has is itself a choice), and, for every drawn test independently, its cells with replacement
    (which architectures, datasets or seeds the zoo has). A cell's ranks of all measures stay together
    (they were ranked against each other), so every replicate scores every measure on the same draw
    and the difference of two measures' scores is a paired statistic. ``resample_tests=False`` keeps
    the tests fixed (a bootstrap stratified by test). Cells are as in :func:`aggregate_ranks`: rows
    sharing (test, ``cell_cols``, measure) are averaged first; NaN ranks are skipped in the median and
    a NaN test median in the mean, as there.

    Intervals: the (1 - level)/2 and (1 + level)/2 quantiles of the replicates (numpy's linear rule).
    A difference ``rank_score[a] - rank_score[b]`` gets the two-sided bootstrap p-value
    ``min(1, 2 min(#(d* <= 0) + 1, #(d* >= 0) + 1) / (n_boot + 1))`` (a replicate equal to 0 counts
    against significance on both sides) and is ``significant`` when its Benjamini-Hochberg adjusted
    p-value over all pairs is below ``alpha`` (``scipy.stats.false_discovery_control``). Measures with
    identical ranks in every cell therefore never differ significantly.

    Written here rather than with ``scipy.stats.bootstrap`` because scipy resamples one level only; the
    tests check both levels against scipy separately.
    """
    from scipy.stats import false_discovery_control

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    rng = _rng(seed)
    cells = [c for c in cell_cols if c not in (test_col, measure_col)]
    experiment = ranked.groupby([test_col, *cells, measure_col], dropna=False)[rank_col].mean()
    if experiment.empty:
        raise ValueError("rank_score_bootstrap needs at least one ranked row")
    matrix = experiment.unstack(measure_col)  # rows: (test, cell...), columns: measures
    names = list(matrix.columns)
    tests = matrix.index.get_level_values(0)
    blocks = [matrix[tests == t].to_numpy(dtype=float) for t in pd.unique(tests)]  # test -> cells x measures

    def test_medians(block: np.ndarray, draws: int) -> np.ndarray:
        idx = rng.integers(0, len(block), size=(draws, len(block)))
        return np.nanmedian(block[idx], axis=1)  # draws x measures

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a measure unranked in a test
        if resample_tests:
            total = np.zeros((n_boot, len(names)))
            count = np.zeros((n_boot, len(names)))
            for _ in blocks:  # one position of the resampled list of tests
                drawn = rng.integers(0, len(blocks), size=n_boot)
                for t, block in enumerate(blocks):
                    rows = np.flatnonzero(drawn == t)
                    if rows.size:
                        med = test_medians(block, rows.size)
                        total[rows] += np.nan_to_num(med)
                        count[rows] += ~np.isnan(med)
            replicates = total / np.where(count > 0, count, np.nan)
        else:
            replicates = np.nanmean(np.stack([test_medians(b, n_boot) for b in blocks]), axis=0)
        estimate = np.nanmean(np.stack([np.nanmedian(b, axis=0) for b in blocks]), axis=0)
        quantiles = [(1 - level) / 2, (1 + level) / 2]
        low, high = np.nanquantile(replicates, quantiles, axis=0)
        scores = pd.DataFrame({measure_col: names, "rank_score": estimate,
                               "rank_score_ci_low": low, "rank_score_ci_high": high})

        i, j = np.triu_indices(len(names), k=1)
        diff = replicates[:, i] - replicates[:, j]
        valid = (~np.isnan(diff)).sum(axis=0)
        below = (diff <= 0).sum(axis=0) + 1
        above = (diff >= 0).sum(axis=0) + 1
        p = np.minimum(1.0, 2 * np.minimum(below, above) / (valid + 1))
        d_low, d_high = np.nanquantile(diff, quantiles, axis=0) if i.size else (np.empty(0), np.empty(0))
    adjusted = false_discovery_control(p, method="bh") if p.size else p
    differences = pd.DataFrame({
        "measure_a": np.asarray(names, dtype=object)[i], "measure_b": np.asarray(names, dtype=object)[j],
        "difference": estimate[i] - estimate[j], "ci_low": d_low, "ci_high": d_high,
        "p_value": p, "p_adjusted": adjusted, "significant": adjusted < alpha,
    })
    return RankBootstrap(scores, differences, pd.DataFrame(replicates, columns=names), level, n_boot)


@dataclass(frozen=True)
class DoseResponse:
    """Result of :func:`dose_response`."""

    spearman: float  # rho(level, similarity); expected negative (stronger intervention, less similar)
    effect_size: float  # (mean at lowest level - mean at highest level) / pooled sd; expected positive
    n: int  # pairs used (non-NaN)


def dose_response(levels: ArrayLike, scores: ArrayLike, *, higher_is_more_similar: bool = True) -> DoseResponse:
    """How similarity responds to the strength of an intervention (§3.2 perturbation-scale sweeps, §11).

    With s the similarity-oriented scores and l the intervention levels (e.g. weight-noise scale,
    label-randomisation p):

    * spearman = Spearman's rho(l, s) (ties averaged); a measure that tracks the intervention has rho
      close to -1;
    * effect_size = (mean s at min l - mean s at max l) / s_pooled, with
      s_pooled^2 = (SS_low + SS_high) / (n_low + n_high - 2) (Cohen's d between the extreme levels);
      NaN when there are fewer than 3 values at the two levels or s_pooled = 0.

    Pairs with a NaN level or score are dropped.
    """
    lv = np.asarray(levels, dtype=float).ravel()
    sc = orient(scores, higher_is_more_similar).ravel()
    if lv.shape != sc.shape:
        raise ValueError(f"levels and scores differ in length: {lv.size} vs {sc.size}")
    keep = ~(np.isnan(lv) | np.isnan(sc))
    lv, sc = lv[keep], sc[keep]
    effect = float("nan")
    if lv.size and lv.min() < lv.max():
        low, high = sc[lv == lv.min()], sc[lv == lv.max()]
        dof = low.size + high.size - 2
        sum_squares = ((low - low.mean()) ** 2).sum() + ((high - high.mean()) ** 2).sum()
        pooled_sd = math.sqrt(sum_squares / dof) if dof > 0 else 0.0
        if pooled_sd > 0:
            effect = float((low.mean() - high.mean()) / pooled_sd)
    return DoseResponse(spearman=_spearman(lv, sc), effect_size=effect, n=int(lv.size))


# --------------------------------------------------------------------------------------------------
# Solution classes and the stopping rule ("stop searching?")
# --------------------------------------------------------------------------------------------------


def solution_classes(distances: ArrayLike, threshold: float) -> np.ndarray:
    """Classes of models by a functional distance: single linkage cut at ``threshold``.

    Two models are in one class when a chain of models joins them with every step at distance
    <= ``threshold`` (the connected components of the graph "d <= threshold";
    ``scipy.cluster.hierarchy`` single linkage, ``fcluster(criterion="distance")``). Labels are
    0, 1, ... in the order in which each class first appears, so the labels of the first N models
    are those of clustering only them when no later model bridges two of their classes. NaN distances
    count as "not joined". A single model is one class.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    d = _square(distances, "distances")
    n = d.shape[0]
    if n == 1:
        return np.zeros(1, dtype=int)
    d = np.where(np.isnan(d), np.inf, np.maximum(d, d.T))
    # linkage needs finite distances: "never joined" becomes a distance above every threshold
    finite = d[np.isfinite(d)]
    big = (max(finite.max(initial=0.0), threshold) + 1.0) * 2.0
    d = np.where(np.isfinite(d), d, big)
    np.fill_diagonal(d, 0.0)
    raw = fcluster(linkage(squareform(d, checks=False), method="single"), t=threshold, criterion="distance")
    order = {c: i for i, c in enumerate(dict.fromkeys(raw))}
    return np.array([order[c] for c in raw])


def saturation_curve(distances: ArrayLike, threshold: float) -> np.ndarray:
    """Number of solution classes among the first N models, for N = 1..K (each prefix clustered alone)."""
    d = _square(distances, "distances")
    return np.array([solution_classes(d[:n, :n], threshold).max() + 1 for n in range(1, d.shape[0] + 1)])


def probability_new_class(labels: ArrayLike) -> float:
    """Good–Turing estimate of the chance that the next model starts a new class: (#classes seen once) / N.

    Good (1953): the total probability of the unseen species is estimated by the share of the sample
    that fell in singleton species. 1 when every model so far is its own class; 0 when none is alone.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return float("nan")
    _, counts = np.unique(labels, return_counts=True)
    return float(np.sum(counts == 1) / labels.size)


# --------------------------------------------------------------------------------------------------
# Model-level aggregate of a layer x layer similarity matrix
# --------------------------------------------------------------------------------------------------

AGGREGATE_RULES = ("max", "matched_depth", "mean")


def model_aggregate(matrix: ArrayLike, rule: str, higher_is_more_similar: bool = True) -> float:
    """One number for two models from their layer x layer matrix M (rows: layers of A, columns: layers of B).

    * ``"max"``: the mean over A's layers of the best match in B (max of a similarity, min of a distance);
    * ``"matched_depth"``: the mean of M[i, j(i)] with j(i) the layer of B at the nearest relative depth
      i / (L_A − 1) ≈ j / (L_B − 1) (ties to the lower layer; a one-layer model has depth 0);
    * ``"mean"``: the mean of every entry.
    NaN entries are ignored; NaN when nothing is left.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"model_aggregate: needs a non-empty 2-D matrix, got shape {m.shape}")
    if rule == "mean":
        return _nanmean(m)
    if rule == "max":
        oriented = orient(m, higher_is_more_similar)
        best = np.array([np.nanmax(r) if np.isfinite(r).any() else np.nan for r in oriented])
        return _nanmean(orient(best, higher_is_more_similar))
    if rule == "matched_depth":
        la, lb = m.shape
        depth_a = np.arange(la) / max(la - 1, 1)
        depth_b = np.arange(lb) / max(lb - 1, 1)
        match = np.abs(depth_a[:, None] - depth_b[None, :]).argmin(axis=1)
        return _nanmean(m[np.arange(la), match])
    raise ValueError(f"model_aggregate: unknown rule {rule!r}; valid rules: {AGGREGATE_RULES}")
