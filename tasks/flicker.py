"""Flicker: do scores, signatures and unit matchings stay put when the weights get tiny noise?

The seed paper (Hennadii, arXiv 2604.16426, 2026) claims that parameter-based comparisons are unstable
under small weight perturbations while the activation-region metric is robust and "mitigates the
flickering" of neurons. Its own definitions are unknown; these are the project's
(``docs/activation_region.md`` §7), computed from a sweep's perturbation pairs (a model A and its copy Ã with
relative Gaussian weight noise of scale σ) and from near-tie fixtures built here:

* **score drift**: |m(A, Ã) − m(A, A)| in units of a seed pair, per measure and scale, is the robustness
  task's table (:func:`tasks.robustness.drift_table`); this task adds σ₅₀ (σ₁₀), the scale at which a
  measure has drifted half (a tenth) as far as another seed takes it
  (:func:`tasks.seed_variability.equivalent_scale`; the
  drift counted from its value at the smallest scale, see :func:`_drift_statistics`), and the drift of
  variants the sweep's rows do not hold: MinHash activation region, and the weight
  distance after canonical scaling and after weight matching (in the layer column as
  ``network[minhash]``, ``weights[canonical]``, ``weights[weight_matching]``).
* **bit flicker** F_bit = mean over units i and probe inputs n of 1[s_i(x_n; θ) ≠ s_i(x_n; θ̃)], the
  fraction of signature bits (z > 0) that change, per hidden layer and over all units.
* **match flicker**, per matcher: *self*, the fraction of A's units not matched to their own copy in Ã;
  *cross*, the fraction of A's units whose partner in B (another seed's model) changes when A is
  replaced by Ã. Units a matcher leaves unmatched in both matchings are not counted. Matchers:
  activation region (exact Jaccard and MinHash, k = 128, + Hungarian; and exact with
  ``degenerate="exclude"``: dead and always-on units, whose signatures are all identical and
  so tie with each other, are left out of the assignment and count as unmatched, −1, before and after),
  correlation matching (Pearson on post-ReLU activations + Hungarian; Li et al. 2016), Git Re-Basin
  weight matching, and the sort-canonical order (units sorted by their bias after canonical scaling:
  the canonical form the seed question proposes and its commenter warns about). Array matchers treat
  every conv channel-position as a unit (the extraction's convention), model matchers every channel.
* **MinHash seed flicker**: the fraction of partners that change between hash seeds 0 and 1 with the
  weights fixed (estimator-induced flicker).
* **near-tie fixtures**: a trained model with a few units per hidden layer duplicated (a twin with the
  same incoming weights, both outgoing weights halved) or split (incoming weights shared in halves,
  outgoing weights copied). Both compute exactly the original function, and a unit and its twin have
  the same signature, so a matching cannot tell them apart: the partner is ambiguous and flips with
  noise. These are where flicker must appear (in a trained model only dead and always-on units, whose
  signatures are all equal, tie exactly). The twins' own flicker is reported as
  ``twin_flicker_cross``; |S(A, B) − S(Ã, B)| as ``score_change_cross``; the fixtures' largest output
  change against the original model as ``max_output_change`` (a check: it must be ~0).

Applicable to sweeps with at least two nonzero noise scales (a curve against scale).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy import sparse  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from torch import nn  # noqa: E402

import measures  # noqa: E402
from measures.activation_region import (  # noqa: E402
    canonicalize,
    hidden_layers,
    jaccard_exact,
    minhash_sketch,
    preactivations,
    signatures,
)
from measures.weights import weight_matching  # noqa: E402
from tasks import plotting  # noqa: E402
from tasks.storage import content_key  # noqa: E402
from tasks.base import AnalysisContext, AnalysisResult, analysis, standard_rows  # noqa: E402
from tasks.robustness import drift_table, last_hidden_layer  # noqa: E402
from tasks.seed_variability import equivalent_scale  # noqa: E402
from tasks.zoo.cache import ModelSpec, Variant, ZooCache  # noqa: E402
from tasks.zoo.training import perturb, perturbation_seed, seed_streams  # noqa: E402

#: matchers whose partner flicker is measured; the first four work on arrays, the last two on models
MATCHERS = ("activation_region", "activation_region_exclude", "activation_region_minhash", "correlation_matching",
            "weight_matching", "sort_canonical")
NUM_PERM = 128  # MinHash permutations (the measure's default)
TWIN_FRACTION = 8  # fixtures twin ceil(units / 8) informative units (channels) of every hidden layer
FIXTURE_SEEDS = 2  # fixtures are built from the first two seeds' models, each the other's reference B
FIXTURE_SCALES = 4  # ... at this many of the sweep's noise scales, evenly spread from the smallest to the largest
N_DRAWS = 3  # noise draws per (fixture, model, scale)
#: σ_f: the noise scale where a measure has drifted this fraction of a seed pair (σ₅₀ as in the reference;
#: σ₁₀ still resolves measures that never reach half a seed pair on a grid of small scales)
SIGMA_FRACTIONS = (0.1, 0.5)
FIXTURES = ("duplicated", "split")
ALL_UNITS = "all"  # the layer label of statistics pooled over every hidden unit


# --------------------------------------------------------------------------------------------------
# Near-tie fixtures
# --------------------------------------------------------------------------------------------------


def duplicate_units(model: nn.Sequential, layer: str, units: list[int]) -> nn.Sequential:
    """A function-identical copy of ``model`` whose hidden layer ``layer`` has extra twin units.

    For every unit u in ``units`` a new unit is appended (in that order) with u's incoming weights and
    bias; the next affine layer reads u and its twin each with half of u's outgoing weights, so
    ReLU(z)·c/2 + ReLU(z)·c/2 = ReLU(z)·c and the outputs are unchanged (up to float summation order).
    Supported: the flat ReLU ``nn.Sequential`` models of :func:`measures.activation_region.hidden_layers`
    without BatchNorm in ``layer`` (fold it first with :func:`~measures.activation_region.canonicalize`).
    """
    return _add_twins(model, layer, units, incoming=(1.0, 1.0), outgoing=(0.5, 0.5), who="duplicate_units")


def split_units(model: nn.Sequential, layer: str, units: list[int], fraction: float = 0.5) -> nn.Sequential:
    """A function-identical copy of ``model`` in which every unit u in ``units`` is split in two.

    u keeps ``fraction`` of its incoming weights and bias, a new twin unit (appended in order) gets the
    rest, and the next affine layer reads both with u's full outgoing weights: by positive homogeneity
    ReLU(f z)·c + ReLU((1 − f) z)·c = ReLU(z)·c. The twin has u's signature (sign(f z) = sign(z)).
    Same support as :func:`duplicate_units`; ``fraction`` in (0, 1).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"split_units: fraction must be in (0, 1), got {fraction}")
    return _add_twins(model, layer, units, incoming=(fraction, 1.0 - fraction), outgoing=(1.0, 1.0), who="split_units")


def _add_twins(model: nn.Sequential, layer: str, units: list[int], *, incoming: tuple[float, float],
               outgoing: tuple[float, float], who: str) -> nn.Sequential:
    groups = {g.name: g for g in hidden_layers(model, who)}
    if layer not in groups:
        raise ValueError(f"{who}: {layer!r} is not a hidden layer; hidden layers: {list(groups)}")
    g = groups[layer]
    if g.batchnorm is not None:
        raise ValueError(f"{who}: layer {layer!r} has a BatchNorm; fold it first with canonicalize(model)")
    idx = torch.as_tensor(list(units), dtype=torch.long)
    if idx.numel() == 0 or len(set(units)) != len(units) or idx.min() < 0 or idx.max() >= g.units:
        raise ValueError(f"{who}: units must be distinct indices in range({g.units}), got {list(units)}")
    out = copy.deepcopy(model)
    src, consumer = model.get_submodule(layer), model.get_submodule(g.consumer)
    with torch.no_grad():
        weight = src.weight.detach().clone()
        weight[idx] *= incoming[0]
        new_weight = torch.cat([weight, src.weight.detach()[idx] * incoming[1]])
        new_bias = None
        if src.bias is not None:
            bias = src.bias.detach().clone()
            bias[idx] *= incoming[0]
            new_bias = torch.cat([bias, src.bias.detach()[idx] * incoming[1]])
        reads = g.inputs_by_unit(consumer.weight.detach()).clone()  # out x units x positions
        twins = reads[:, idx] * outgoing[1]
        reads[:, idx] *= outgoing[0]
        reads = torch.cat([reads, twins], dim=1)
        wider = _resized(src, out_units=g.units + len(idx))
        wider.weight.copy_(new_weight)
        if new_bias is not None:
            wider.bias.copy_(new_bias)
        reader = _resized(consumer, in_units=g.units + len(idx), positions=reads.shape[2])
        reader.weight.copy_(reads.reshape(reader.weight.shape))
        if consumer.bias is not None:
            reader.bias.copy_(consumer.bias.detach())
    setattr(out, layer, wider)
    setattr(out, g.consumer, reader)
    return out


def _resized(module: nn.Module, *, out_units: int | None = None, in_units: int | None = None,
             positions: int = 1) -> nn.Module:
    """An uninitialised-weights copy of a Linear/Conv2d with more output units or more input units."""
    bias = module.bias is not None
    dtype, device = module.weight.dtype, module.weight.device
    if isinstance(module, nn.Linear):
        n_in = module.in_features if in_units is None else in_units * positions
        n_out = module.out_features if out_units is None else out_units
        return nn.Linear(n_in, n_out, bias=bias, dtype=dtype, device=device)
    return nn.Conv2d(module.in_channels if in_units is None else in_units,
                     module.out_channels if out_units is None else out_units,
                     module.kernel_size, stride=module.stride, padding=module.padding, dilation=module.dilation,
                     bias=bias, padding_mode=module.padding_mode, dtype=dtype, device=device)


@dataclass
class Fixture:
    """A fixture model and, per hidden layer, its twin units (each chosen unit and its appended twin):
    as units of the model (channels for a conv layer) and as columns of the flattened pre-activations."""

    model: nn.Sequential
    twin_units: list[np.ndarray]
    twin_columns: list[np.ndarray]


def build_fixture(model: nn.Sequential, kind: str, probe: torch.Tensor, seed: int) -> Fixture:
    """Twin ceil(units / TWIN_FRACTION) informative units of every hidden layer of ``model``.

    Units (channels) are drawn with ``seed`` among those that are active on some but not all probe
    inputs (a dead unit is tied with every other dead unit anyway). ``kind``: duplicated | split.
    """
    rng = np.random.default_rng(seed)
    chosen = {}
    for g, z in zip(hidden_layers(model, "build_fixture"), preactivations(model, probe)):
        rate = (z > 0).reshape(z.shape[0], g.units, -1).double().mean(dim=(0, 2)).numpy()
        informative = np.flatnonzero((rate > 0) & (rate < 1))
        pool = informative if len(informative) else np.arange(g.units)
        k = min(len(pool), math.ceil(g.units / TWIN_FRACTION))
        chosen[g.name] = sorted(rng.choice(pool, size=k, replace=False).tolist())
    out = model
    for name, units in chosen.items():
        out = duplicate_units(out, name, units) if kind == "duplicated" else split_units(out, name, units)
    twin_units, twin_columns = [], []
    for g, z in zip(hidden_layers(out, "build_fixture"), preactivations(out, probe[:1])):
        positions = z[0].numel() // g.units
        units = chosen[g.name]
        twin_units.append(np.concatenate([units, g.units - len(units) + np.arange(len(units))]).astype(np.int64))
        twin_columns.append((twin_units[-1][:, None] * positions + np.arange(positions)[None, :]).ravel())
    return Fixture(out, twin_units, twin_columns)


# --------------------------------------------------------------------------------------------------
# Matchers, flicker
# --------------------------------------------------------------------------------------------------


@dataclass
class Side:
    """What the matchers need of one network: flattened pre-activations per hidden layer (N x units), the
    model (None: array matchers only) and the layer names; derived arrays are computed once and cached."""

    pre: list[np.ndarray]
    model: nn.Sequential | None
    layers: list[str]
    derived: dict = field(default_factory=dict, repr=False)

    def _cached(self, key, compute):
        if key not in self.derived:
            self.derived[key] = compute()
        return self.derived[key]

    def signatures(self) -> list[torch.Tensor]:
        return self._cached("signatures", lambda: signatures(self.pre))

    def informative(self) -> list[np.ndarray]:
        """Per layer, the units active on some but not all probe inputs (not dead, not always on)."""
        return self._cached("informative", lambda: [np.flatnonzero((s.any(0) & ~s.all(0)).numpy())
                                                    for s in self.signatures()])

    def sketches(self, hash_seed: int) -> list[torch.Tensor]:
        """MinHash sketches of every unit; one call per side is comparable with any other side's with the
        same probe size and ``hash_seed`` (the permutations depend only on those)."""
        def compute():
            sigs = self.signatures()
            return minhash_sketch(torch.cat(sigs, 1), num_perm=NUM_PERM, seed=hash_seed).split([x.shape[1] for x in sigs])
        return self._cached(("sketches", hash_seed), compute)

    def unit_columns(self) -> list[np.ndarray]:
        """Post-ReLU activations centred and scaled to unit norm per unit (constant units: 0), so that
        Uₐᵀ U_b holds the Pearson correlations (the convention of correlation_match_hard)."""
        def compute():
            out = []
            for z in self.pre:
                x = np.maximum(z, 0).astype(np.float64)
                x -= x.mean(0)
                norms = np.linalg.norm(x, axis=0)
                out.append(x / np.where(norms > 0, norms, 1.0))
            return out
        return self._cached("unit_columns", compute)

    def canonical_keys(self) -> list[np.ndarray]:
        """Per hidden layer, each unit's bias after canonical scaling (its signed distance term)."""
        def compute():
            canonical = canonicalize(copy.deepcopy(self.model).double())
            keys = []
            for g in hidden_layers(canonical, "sort_canonical"):
                bias = canonical.get_submodule(g.name).bias
                keys.append(np.zeros(g.units) if bias is None else bias.detach().numpy())
            return keys
        return self._cached("canonical_keys", compute)


def side_of_model(model: nn.Sequential, probe: torch.Tensor) -> Side:
    pre = [p.flatten(1).numpy() for p in preactivations(model, probe)]
    return Side(pre, model, [g.name for g in hidden_layers(model, "flicker")])


def _assign(similarity: np.ndarray, rows: np.ndarray | None = None, cols: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """linear_sum_assignment (maximise) on similarity[rows][:, cols]: the partner of every row unit (−1:
    unmatched or left out) and the matched similarities."""
    rows = np.arange(similarity.shape[0]) if rows is None else rows
    cols = np.arange(similarity.shape[1]) if cols is None else cols
    partner = np.full(similarity.shape[0], -1, dtype=np.int64)
    r, c = linear_sum_assignment(similarity[np.ix_(rows, cols)], maximize=True)
    partner[rows[r]] = cols[c]
    return partner, similarity[rows[r], cols[c]]


def minhash_jaccard(sketch_a: torch.Tensor, sketch_b: torch.Tensor, n_samples: int) -> np.ndarray:
    """The MinHash estimate Ĵ_ij = (1/k) Σ_t 1[m_t(S_i) = m_t(T_j)], equal to
    :func:`measures.activation_region.jaccard_minhash` to the last bit, computed as one sparse product of
    one-hot codes of (t, m_t) (k nonzeros per unit), which is tens of times faster for many small layers."""
    def one_hot(sketch: torch.Tensor) -> sparse.csr_matrix:
        values = sketch.cpu().numpy()
        n, k = values.shape
        columns = (np.arange(k)[None, :] * (n_samples + 1) + values).ravel()
        return sparse.csr_matrix((np.ones(n * k, np.float32), (np.repeat(np.arange(n), k), columns)),
                                 shape=(n, k * (n_samples + 1)))

    counts = (one_hot(sketch_a) @ one_hot(sketch_b).T).toarray()  # integers <= k, exact in float32
    return counts.astype(np.float64) / sketch_a.shape[1]


def matchings(a: Side, b: Side, matchers: tuple[str, ...] = MATCHERS, hash_seed: int = 0
              ) -> dict[str, tuple[list[np.ndarray], float]]:
    """For every matcher: per hidden layer, the unit of B matched to each unit of A (−1: unmatched), and
    the matched score where the matcher has one (NaN otherwise). Model matchers are skipped when a side
    has no model.

    The activation-region matchers follow :func:`measures.activation_region.activation_region_details`
    exactly (the same Jaccard matrices and assignment, score Σ matched J / Σ max(n_a, n_b)), computed on
    signatures and sketches cached per side; ``correlation_matching`` follows ``correlation_match_hard``
    (score: the mean matched correlation over all layers' pairs). Tests check both against the measures.
    """
    out: dict[str, tuple[list[np.ndarray], float]] = {}
    n_samples = a.pre[0].shape[0]
    exact = [m for m in matchers if m in ("activation_region", "activation_region_exclude")]
    if exact or "activation_region_minhash" in matchers:
        found: dict[str, list] = {m: [[], 0.0, 0] for m in (*exact, "activation_region_minhash") if m in matchers}
        for layer, (sa, sb) in enumerate(zip(a.signatures(), b.signatures())):
            sims = {}
            if exact:
                jac = jaccard_exact(sa, sb).numpy()
                sims.update({m: jac for m in exact})
            if "activation_region_minhash" in matchers:
                sims["activation_region_minhash"] = minhash_jaccard(
                    a.sketches(hash_seed)[layer], b.sketches(hash_seed)[layer], n_samples)
            for m, sim in sims.items():
                if m == "activation_region_exclude":
                    partner, matched = _assign(sim, a.informative()[layer], b.informative()[layer])
                else:
                    partner, matched = _assign(sim)
                found[m][0].append(partner)
                found[m][1] += matched.sum()
                found[m][2] += max(sim.shape)
        out.update({m: (p, float(total / width)) for m, (p, total, width) in found.items()})
    if "correlation_matching" in matchers:
        partners, matched = [], []
        for ua, ub in zip(a.unit_columns(), b.unit_columns()):
            if not (ua.any() and ub.any()):  # every unit constant: no correlation is defined
                partners.append(np.full(ua.shape[1], -1, dtype=np.int64))
                continue
            partner, values = _assign(np.clip(ua.T @ ub, -1.0, 1.0))
            partners.append(partner)
            matched.append(values)
        out["correlation_matching"] = (partners, float(np.concatenate(matched).mean()) if matched else np.nan)
    if a.model is None or b.model is None:
        return out
    if "weight_matching" in matchers:
        found_wm = weight_matching(a.model, b.model)
        out["weight_matching"] = ([found_wm[name] for name in a.layers], np.nan)
    if "sort_canonical" in matchers:
        partners = []
        for ka, kb in zip(a.canonical_keys(), b.canonical_keys()):
            rank_a = np.empty(len(ka), dtype=np.int64)
            rank_a[np.argsort(ka, kind="stable")] = np.arange(len(ka))
            partners.append(np.argsort(kb, kind="stable")[rank_a])
        out["sort_canonical"] = (partners, np.nan)
    return out


def changed(p: list[np.ndarray], q: list[np.ndarray]) -> list[np.ndarray]:
    """Per layer and unit, 1.0 if its partner differs between two matchings, 0.0 if not, NaN if it is
    unmatched (−1) in both (a unit the matcher leaves out is not counted)."""
    out = []
    for x, y in zip(p, q):
        x, y = np.asarray(x), np.asarray(y)
        out.append(np.where((x < 0) & (y < 0), np.nan, (x != y).astype(np.float64)))
    return out


def bit_flicker(pre_a: list[np.ndarray], pre_b: list[np.ndarray]) -> list[float]:
    """Per hidden layer, the fraction of signature bits 1[z > 0] that differ (same probe inputs)."""
    return [float(np.mean((x > 0) != (y > 0))) for x, y in zip(pre_a, pre_b)]


def _per_layer(flags: list[np.ndarray], layers: list[str]) -> dict[str, float]:
    """Mean per layer and pooled over all units (NaN entries, units unmatched in both, left out)."""
    if not flags or len(flags) != len(layers):
        return {}
    out = {name: _nanmean(f) for name, f in zip(layers, flags)}
    out[ALL_UNITS] = _nanmean(np.concatenate(flags))
    return out


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else np.nan


def pair_flicker(a: Side, noisy: Side, b: Side | None, reference: dict[str, tuple[list[np.ndarray], float]] | None,
                 fixture: Fixture | None = None) -> list[dict]:
    """Every flicker statistic of one (A, Ã) pair against reference B; ``reference`` holds each matcher's
    (partners, score) for (A, B), computed once per A (:func:`matchings`); ``fixture``: A's twins."""
    records = []
    bits = bit_flicker(a.pre, noisy.pre)
    for name, value in zip(a.layers, bits):
        records.append({"measure": "signature_bits", "statistic": "bit_flicker", "layer": name, "value": value})
    widths = [p.shape[1] for p in a.pre]
    records.append({"measure": "signature_bits", "statistic": "bit_flicker", "layer": ALL_UNITS,
                    "value": float(np.dot(bits, widths) / sum(widths))})
    for matcher, (self_partner, _) in matchings(a, noisy).items():
        identity = [np.arange(len(p)) for p in self_partner]
        if matcher == "activation_region_exclude":  # A's dead and always-on units are not matched to themselves
            identity = [np.where(np.isin(i, kept), i, -1) for i, kept in zip(identity, a.informative())]
        for layer, value in _per_layer(changed(self_partner, identity), a.layers).items():
            records.append({"measure": matcher, "statistic": "match_flicker_self", "layer": layer, "value": value})
    if b is None or reference is None:
        return records
    for matcher, (new_partner, new_score) in matchings(noisy, b).items():
        ref_partner, ref_score = reference[matcher]
        flags = changed(ref_partner, new_partner)
        for layer, value in _per_layer(flags, a.layers).items():
            records.append({"measure": matcher, "statistic": "match_flicker_cross", "layer": layer, "value": value})
        if np.isfinite(ref_score):
            records.append({"measure": matcher, "statistic": "score_change_cross", "layer": ALL_UNITS,
                            "value": abs(new_score - ref_score)})
        if fixture is not None:
            on_models = matcher in ("weight_matching", "sort_canonical")
            index = fixture.twin_units if on_models else fixture.twin_columns
            twins = np.concatenate([f[i] for f, i in zip(flags, index)])
            records.append({"measure": matcher, "statistic": "twin_flicker_cross", "layer": ALL_UNITS,
                            "value": _nanmean(twins)})
    return records


def minhash_seed_flicker(a: Side, b: Side) -> dict[str, float]:
    """Fraction of partners (A vs B) that differ between MinHash hash seeds 0 and 1, weights fixed."""
    first = matchings(a, b, ("activation_region_minhash",), hash_seed=0)["activation_region_minhash"][0]
    second = matchings(a, b, ("activation_region_minhash",), hash_seed=1)["activation_region_minhash"][0]
    return _per_layer(changed(first, second), a.layers)


# --------------------------------------------------------------------------------------------------
# The sweep's models
# --------------------------------------------------------------------------------------------------


@dataclass
class Family:
    """The models of one configuration (everything but the seed) that the sweep perturbed."""

    arch: str
    specs: dict[int, ModelSpec]  # seed -> spec
    pairs: pd.DataFrame  # perturbation pairs: seed_a, scale_b, perturb_seed_b, model_a, model_b


def families(scores: pd.DataFrame, cache: ZooCache) -> tuple[list[Family], int]:
    """The sweep's perturbation pairs grouped by configuration, with the model specs found in the cache;
    also the number of pairs whose model is not in the cache (skipped)."""
    pert = standard_rows(scores)
    pert = pert[pert["pair_type"].eq("perturbation") & pert["scale_b"].gt(0)]
    pairs = pert.drop_duplicates(["model_a", "model_b"])[["arch_a", "seed_a", "scale_b", "perturb_seed_b",
                                                           "model_a", "model_b"]]
    by_variant = {Variant(spec).key: spec for spec in cache.specs()}
    pairs = pairs.assign(spec=pairs["model_a"].map(by_variant))
    missing = int(pairs["spec"].isna().sum())
    pairs = pairs[pairs["spec"].notna()]
    out: dict[str, Family] = {}
    for spec, row in zip(pairs["spec"], pairs.itertuples()):
        config = {**spec.as_dict(), "seed": None}
        family = out.setdefault(content_key(config), Family(row.arch_a, {}, pd.DataFrame()))
        family.specs[spec.seed] = spec
    for key, family in out.items():
        keys = {Variant(s).key for s in family.specs.values()}
        family.pairs = pairs[pairs["model_a"].isin(keys)].drop(columns="spec")
    return list(out.values()), missing


def _array_side(ctx: AnalysisContext, variant_key: str, model: nn.Sequential | None) -> Side:
    arrays = ctx.representations(variant_key)
    names = [k[len("pre/"):] for k in arrays if k.startswith("pre/")]
    return Side([arrays[f"pre/{n}"] for n in names], model, names)


# --------------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------------


@analysis("flicker", reads_previous=False)
def flicker(ctx: AnalysisContext) -> AnalysisResult:
    scores = standard_rows(ctx.scores)
    pert = scores[scores["status"].eq("ok") & scores["pair_type"].eq("perturbation") & scores["scale_b"].gt(0)]
    if pert["scale_b"].nunique() < 2:
        return AnalysisResult(pd.DataFrame(), "needs perturbation pairs at two or more noise scales")
    cache = ZooCache(ctx.cache_dir)
    found, missing = families(scores, cache)
    if not found:
        return AnalysisResult(pd.DataFrame(), f"the {missing} perturbation pairs' models are not in the cache")
    records: list[dict] = []
    variant_rows: list[dict] = []
    with torch.no_grad():
        for family in found:
            records += _zoo_flicker(ctx, cache, family, variant_rows)
            scales = np.sort(family.pairs["scale_b"].unique())
            scales = scales[np.unique(np.linspace(0, len(scales) - 1, FIXTURE_SCALES).round().astype(int))]
            records += _fixture_flicker(cache, family, scales)
    # Asymmetric measures also have the reversed row m(Ã, A); the flicker drift is that of the seed
    # paper's direction, A -> Ã, so only those rows are passed.
    forward = ctx.scores[~(ctx.scores["pair_type"].eq("perturbation") & ctx.scores["scale_b"].eq(0))]
    drift = drift_table(pd.concat([forward, pd.DataFrame(variant_rows)], ignore_index=True))
    evaluations = pd.concat([_aggregate(pd.DataFrame(records)), _drift_statistics(drift)], ignore_index=True)
    evaluations = evaluations[["arch", "fixture", "measure", "layer", "scale", "statistic", "value", "n"]]
    evaluations.to_csv(ctx.table_path("flicker"), index=False)
    figure = _plot(evaluations, drift, ctx)
    return AnalysisResult(evaluations, _summary(evaluations, missing), [figure])


def _zoo_flicker(ctx: AnalysisContext, cache: ZooCache, family: Family, variant_rows: list[dict]) -> list[dict]:
    """Flicker of the sweep's own perturbation pairs (pre-activations from the representation cache),
    with the next seed's model as reference B; also the drift rows of the in-task measure variants."""
    seeds = sorted(family.specs)
    models = {s: cache.cached_model(family.specs[s]) for s in seeds}
    sides = {s: _array_side(ctx, Variant(family.specs[s]).key, models[s]) for s in seeds}
    refs = {}
    out = []
    for s in seeds:
        b = seeds[(seeds.index(s) + 1) % len(seeds)] if len(seeds) > 1 else None
        if b is not None:
            refs[s] = matchings(sides[s], sides[b])
            for layer, value in minhash_seed_flicker(sides[s], sides[b]).items():
                out.append({"arch": family.arch, "fixture": "zoo", "measure": "activation_region_minhash",
                            "layer": layer, "scale": 0.0, "statistic": "minhash_seed_flicker", "value": value})
    for i, s in enumerate(seeds):  # seed pairs of the variants: the unit of their drift
        for t in seeds[i + 1:]:
            variant_rows += _variant_rows(family, sides[s], sides[t], "seed", 0.0)
    for row in family.pairs.itertuples():
        s = int(row.seed_a)
        noisy_model = None
        if models[s] is not None:
            noisy_model = perturb(models[s], float(row.scale_b), perturbation_seed(s, int(row.perturb_seed_b)))
        noisy = _array_side(ctx, row.model_b, noisy_model)
        b = seeds[(seeds.index(s) + 1) % len(seeds)] if len(seeds) > 1 else None
        stats = pair_flicker(sides[s], noisy, sides[b] if b is not None else None, refs.get(s))
        out += [{**r, "arch": family.arch, "fixture": "zoo", "scale": float(row.scale_b)} for r in stats]
        variant_rows += _variant_rows(family, sides[s], noisy, "perturbation", float(row.scale_b))
    return out


def _variant_rows(family: Family, a: Side, b: Side, pair_type: str, scale: float) -> list[dict]:
    """Rows in the scores' schema for measure variants the sweep cannot hold (one parameter set per
    measure and sweep): the variant is named in the layer column, so drift_table keeps them apart."""
    values = {("activation_region", "network[minhash]"):
              matchings(a, b, ("activation_region_minhash",))["activation_region_minhash"][1]}
    if a.model is not None and b.model is not None:
        for alignment in ("canonical", "weight_matching"):
            values[("weight_distance", f"weights[{alignment}]")] = measures.compute(
                "weight_distance", a.model, b.model, alignment=alignment, relative=True)
    base = {"pair_type": pair_type, "arch_a": family.arch, "arch_b": family.arch, "status": "ok",
            "scale_a": 0.0, "scale_b": scale, "label_randomization_a": 0.0, "label_randomization_b": 0.0,
            "shortcut_a": np.nan, "shortcut_b": np.nan, "input_noise_a": 0.0, "input_noise_b": 0.0}
    return [{**base, "measure": m, "layer_a": layer, "layer_b": layer, "value": float(v)}
            for (m, layer), v in values.items()]


def _fixture_flicker(cache: ZooCache, family: Family, scales: list[float]) -> list[dict]:
    """Flicker of the duplicated and split fixtures of every seed's model under N_DRAWS noise draws per
    scale, with the same fixture of the next seed's model as reference B."""
    models = {s: cache.cached_model(family.specs[s]) for s in sorted(family.specs)}
    models = {s: m for s, m in models.items() if m is not None}
    seeds = sorted(models)[:FIXTURE_SEEDS]
    if not seeds:
        return []
    probe = torch.from_numpy(cache.data_for(family.specs[seeds[0]]).x_probe)
    out = []
    for kind in FIXTURES:
        fixtures = {s: build_fixture(models[s], kind, probe, seed_streams(s, f"flicker_{kind}")[f"flicker_{kind}"])
                    for s in seeds}
        sides = {s: side_of_model(f.model, probe) for s, f in fixtures.items()}
        for s in seeds:
            b = seeds[(seeds.index(s) + 1) % len(seeds)] if len(seeds) > 1 else None
            ref = matchings(sides[s], sides[b]) if b is not None else None
            if b is not None:
                for layer, value in minhash_seed_flicker(sides[s], sides[b]).items():
                    out.append({"arch": family.arch, "fixture": kind, "measure": "activation_region_minhash",
                                "layer": layer, "scale": 0.0, "statistic": "minhash_seed_flicker", "value": value})
            # The fixture keeps the function exactly: report the largest output change as a check.
            gap = float((fixtures[s].model(probe) - models[s](probe)).abs().max())
            out.append({"arch": family.arch, "fixture": kind, "measure": "outputs", "layer": "logits",
                        "scale": 0.0, "statistic": "max_output_change", "value": gap})
            for scale in scales:
                for draw in range(N_DRAWS):
                    noise = seed_streams(s, f"flicker_{kind}_draw{draw}")[f"flicker_{kind}_draw{draw}"]
                    noisy = side_of_model(perturb(fixtures[s].model, float(scale), noise), probe)
                    stats = pair_flicker(sides[s], noisy, sides[b] if b is not None else None, ref, fixtures[s])
                    out += [{**r, "arch": family.arch, "fixture": kind, "scale": float(scale)} for r in stats]
    return out


def _drift_statistics(drift: pd.DataFrame) -> pd.DataFrame:
    """σ₁₀ and σ₅₀ of every measure (and variant) at every layer, and the in-task variants' drift curves.

    σ_f is the noise scale at which the drift has grown by f % of a seed pair's drift beyond its value at
    the smallest scale: some measures do not reach their identity value on real representations (e.g.
    hard correlation matching scores dead units 0 against themselves, so m(A, A) < 1), and that offset
    is not a response to the noise."""
    if drift.empty:
        return pd.DataFrame()
    rows = []
    for (arch, measure, layer), g in drift.groupby(["arch_a", "measure", "layer_a"]):
        g = g.sort_values("scale")
        unit = g["seed_drift"].iloc[0]
        growth = (g["drift"] - g["drift"].iloc[0]).to_numpy()
        for fraction in SIGMA_FRACTIONS:
            sigma = equivalent_scale(g["scale"].to_numpy(), growth, fraction * unit) if unit > 0 else np.nan
            rows.append({"arch": arch, "fixture": "zoo", "measure": measure, "layer": layer, "scale": np.nan,
                         "statistic": f"sigma{round(100 * fraction)}", "value": sigma, "n": int(g["n_pairs"].sum())})
        if "[" in layer:  # variants computed here: their curves are in no other task's table
            rows += [{"arch": arch, "fixture": "zoo", "measure": measure, "layer": layer, "scale": r.scale,
                      "statistic": "drift_in_seed_units", "value": r.drift_in_seed_units, "n": r.n_pairs}
                     for r in g.itertuples()]
    return pd.DataFrame(rows)


def _aggregate(records: pd.DataFrame) -> pd.DataFrame:
    """Mean over pairs and draws (``n`` of them) per cell; the fixtures' output check keeps its maximum."""
    keys = ["arch", "fixture", "measure", "layer", "scale", "statistic"]
    table = records.groupby(keys, dropna=False)["value"].agg(value="mean", n="size").reset_index()
    worst = records[records["statistic"].eq("max_output_change")].groupby(keys)["value"].max()
    check = table["statistic"].eq("max_output_change")
    table.loc[check, "value"] = table.loc[check].set_index(keys).index.map(worst).to_numpy()
    return table


def _summary(evaluations: pd.DataFrame, missing: int) -> str:
    ev = evaluations
    parts = []
    cross = ev[ev["statistic"].eq("match_flicker_cross") & ev["layer"].eq(ALL_UNITS)]
    for fixture, g in cross.groupby("fixture", sort=False):
        means = g.groupby("measure")["value"].mean()
        parts.append(f"{fixture}: mean cross match flicker " + ", ".join(f"{m} {v:.3f}" for m, v in means.items()))
    bits = ev[ev["statistic"].eq("bit_flicker") & ev["layer"].eq(ALL_UNITS) & ev["fixture"].eq("zoo")]
    if not bits.empty:
        top = bits["scale"].max()
        parts.append(f"bit flicker at scale {top:g}: {bits.loc[bits['scale'].eq(top), 'value'].mean():.4f}")
    if missing:
        parts.append(f"{missing} perturbation pairs skipped (model not in the cache)")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------------

#: measures drawn in colour in the drift panel (all others in grey)
HIGHLIGHT = {
    ("activation_region", "network"): ("activation region (exact)", "C3"),
    ("activation_region", "network[minhash]"): ("activation region (MinHash)", "C1"),
    ("weight_distance", "weights"): ("weight distance (raw)", "C0"),
    ("weight_distance", "weights[canonical]"): ("weight distance (canonical)", "C9"),
    ("weight_distance", "weights[weight_matching]"): ("weight distance (weight matching)", "C4"),
    ("cka_linear", None): ("linear CKA", "C2"),
    ("procrustes_orthogonal", None): ("orthogonal Procrustes", "C8"),
    ("correlation_match_hard", None): ("hard correlation match", "C6"),
    ("disagreement", "output"): ("disagreement", "black"),
}
MATCHER_STYLE = {"activation_region": ("C3", "activation region (exact)"),
                 "activation_region_exclude": ("C7", "activation region (exact, degenerate excluded)"),
                 "activation_region_minhash": ("C1", "activation region (MinHash)"),
                 "correlation_matching": ("C6", "correlation matching"),
                 "weight_matching": ("C4", "weight matching"),
                 "sort_canonical": ("C0", "sort-canonical order")}


def _plot(evaluations: pd.DataFrame, drift: pd.DataFrame, ctx: AnalysisContext):
    archs = sorted(evaluations["arch"].dropna().unique())
    panels = ["drift", "bits", "zoo", "duplicated", "split"]
    fig, axes = plt.subplots(len(archs), len(panels), figsize=(4.2 * len(panels), 3.6 * len(archs)), squeeze=False)
    agg = evaluations[evaluations["scale"].gt(0)]
    for row, arch in zip(axes, archs):
        _plot_drift(row[0], drift[drift["arch_a"].eq(arch)] if not drift.empty else drift, arch)
        bits = agg[agg["arch"].eq(arch) & agg["statistic"].eq("bit_flicker")]
        for (fixture, layer), g in bits.groupby(["fixture", "layer"]):
            if fixture == "zoo":
                row[1].plot(g["scale"], g["value"], marker="o", ms=3, lw=2.5 if layer == ALL_UNITS else 1,
                            label=layer)
        row[1].set(xscale="log", yscale="log", xlabel="relative weight-noise scale", ylabel="fraction of bits",
                   title=f"{arch}: bit flicker (trained models)")
        row[1].legend(fontsize=7)
        for ax, fixture in zip(row[2:], ("zoo", "duplicated", "split")):
            part = agg[agg["arch"].eq(arch) & agg["fixture"].eq(fixture) & agg["layer"].eq(ALL_UNITS)]
            for matcher, (color, label) in MATCHER_STYLE.items():
                g = part[part["measure"].eq(matcher) & part["statistic"].eq("match_flicker_cross")]
                if not g.empty:
                    ax.plot(g["scale"], g["value"], marker="o", ms=3, color=color, label=label)
                t = part[part["measure"].eq(matcher) & part["statistic"].eq("twin_flicker_cross")]
                if not t.empty:
                    ax.plot(t["scale"], t["value"], ls=":", color=color)
            ax.set(xscale="log", ylim=(-0.02, 1.02), xlabel="relative weight-noise scale",
                   ylabel="units whose partner in B changes",
                   title=f"{arch}: match flicker, {'trained models' if fixture == 'zoo' else fixture + ' units'}")
            if fixture != "zoo":
                ax.text(0.02, 0.95, "dotted: the twin units only", transform=ax.transAxes, fontsize=7, va="top")
            ax.legend(fontsize=7)
    return plotting.save(fig, ctx, "flicker", dpi=110)


def _plot_drift(ax, drift: pd.DataFrame, arch: str) -> None:
    ax.set(xscale="log", xlabel="relative weight-noise scale", ylabel="drift from m(A, A), seed-pair units",
           title=f"{arch}: score drift (grey: other measures)")
    ax.set_yscale("symlog", linthresh=1e-3)
    if drift.empty:
        return
    layer = last_hidden_layer(sorted(set(drift["layer_a"]) - {"output", "network", "weights"}
                                     - {l for l in drift["layer_a"] if "[" in l}) or ["output"])
    for (measure, lay), g in drift.groupby(["measure", "layer_a"]):
        style = HIGHLIGHT.get((measure, lay)) or (HIGHLIGHT.get((measure, None)) if lay == layer else None)
        if style is None and lay not in (layer, "output", "network", "weights"):
            continue
        g = g.sort_values("scale")
        if style is None:
            ax.plot(g["scale"], g["drift_in_seed_units"], color="0.8", lw=0.7)
        else:
            ax.plot(g["scale"], g["drift_in_seed_units"], color=style[1], lw=2, marker="o", ms=3, label=style[0])
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.legend(fontsize=6)
