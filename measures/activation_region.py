"""Activation-region metric: binary ReLU signatures, exact and MinHash Jaccard, Hungarian matching.

A hidden unit's *signature* on an ordered probe set x_1..x_N is the set S = {n : z(x_n) > 0} of samples
on which its pre-activation is strictly positive (a discrete picture of its activation region). Two
networks are compared layer by layer: every pair of units gets the Jaccard index of their signatures
(exactly, by one matrix product, or estimated with MinHash), units are matched one-to-one by
``scipy.optimize.linear_sum_assignment`` and the matched Jaccards are aggregated into one score.

Seed method: K. Hennadii, "Functional Similarity Metric for Neural Networks: Overcoming Parametric
Ambiguity via Activation Region Analysis", arXiv 2604.16426 (2026). The aggregation, the rule for dead and
always-on units and the chance correction are this project's definitions (``docs/activation_region.md`` §5-6).

The module also holds the model-side helpers the metric relies on: :func:`hidden_layers` (the unit groups
of a supported ``nn.Sequential``), :func:`canonicalize` (canonical positive scaling, which quotients out the
scaling symmetry of ReLU networks) and :func:`preactivations` (what a model feeds its ReLUs on a probe set).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from measures import _validation
from measures._registry import register

#: Largest integer count that a float32 GEMM accumulates exactly (24-bit significand).
_FLOAT32_EXACT_COUNT = 2**24
#: Elements per intermediate block in the MinHash routines (bounds their peak memory, ~16-64 MB).
_BLOCK_ELEMENTS = 2**24

# --------------------------------------------------------------------------------------------------
# Supported networks and canonical scaling
# --------------------------------------------------------------------------------------------------

_AFFINE = (nn.Linear, nn.Conv2d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)
# Positively homogeneous (f(cz) = c f(z) for c > 0), so a positive per-unit scale passes through them.
_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU)
# Act per channel (or not at all, in eval mode), so they commute with positive per-unit scaling and with
# permutations of units.
_PASSTHROUGH = (nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)
_SUPPORTED = _AFFINE + _BATCHNORM + _HOMOGENEOUS + _PASSTHROUGH
_SUPPORTED_NAMES = (
    "Linear, Conv2d, BatchNorm1d/2d (eval mode, directly after an affine layer), ReLU, LeakyReLU, MaxPool2d, "
    "AvgPool2d, Flatten, Dropout, Identity"
)


@dataclass(frozen=True)
class HiddenLayer:
    """One group of hidden units of a supported ``nn.Sequential``: the outputs of a non-final affine layer.

    ``name`` is the affine layer (``fc<i>``/``conv<i>``) whose output rows/channels are the units,
    ``batchnorm`` the eval-mode BatchNorm directly after it (or None), ``consumer`` the next affine layer,
    which reads each unit as one input channel, one input column, or (after a Flatten, NCHW order) H·W
    consecutive input columns.
    """

    name: str
    units: int
    batchnorm: str | None
    consumer: str

    def inputs_by_unit(self, consumer_weight: torch.Tensor) -> torch.Tensor:
        """The consumer's weight viewed as (out, units, positions): axis 1 indexes this group's units.

        A Linear reads unit c at columns c·HW .. (c+1)·HW − 1 (NCHW flattening; HW = 1 after a dense
        layer); a Conv2d reads it as input channel c (positions = kernel taps).
        """
        return consumer_weight.view(consumer_weight.shape[0], self.units, -1)


def hidden_layers(model: nn.Module, who: str = "hidden_layers") -> list[HiddenLayer]:
    """The hidden-unit groups of a supported ``nn.Sequential``, in forward order.

    Supported children: Linear, Conv2d (groups=1), eval-mode BatchNorm directly after an affine layer,
    ReLU, LeakyReLU, MaxPool2d, AvgPool2d, Flatten (default dims), Dropout, Identity. Every affine layer
    except the last is a hidden group; the last one is the output layer that absorbs all scale.
    Anything else raises ``ValueError`` naming the layer (``who`` prefixes the message).
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"{who}: expected an nn.Sequential, got {type(model).__name__}")
    children = list(model.named_children())
    for i, (name, module) in enumerate(children):
        kind = type(module).__name__
        if not isinstance(module, _SUPPORTED):
            raise ValueError(
                f"{who}: layer {name!r} ({kind}) is not supported; supported layers: {_SUPPORTED_NAMES}. "
                "Non-homogeneous activations (GELU, SiLU, Tanh, Sigmoid, ...) do not commute with positive "
                "scaling, and containers or other layers have no permutation/scaling rule here"
            )
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ValueError(f"{who}: layer {name!r} (Conv2d) has groups={module.groups}; only groups=1 is supported")
        if isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) != (1, -1):
            raise ValueError(f"{who}: layer {name!r} (Flatten) must flatten dims 1..-1 (NCHW order)")
        if isinstance(module, _BATCHNORM):
            prev = children[i - 1][1] if i > 0 else None
            if not isinstance(prev, _AFFINE):
                raise ValueError(
                    f"{who}: layer {name!r} ({kind}) must directly follow a Linear or Conv2d layer to be folded "
                    "(BatchNorm after a ReLU is not supported)"
                )
            if not module.track_running_stats or module.running_mean is None:
                raise ValueError(f"{who}: layer {name!r} ({kind}) has no running statistics to fold (eval mode)")

    affine = [i for i, (_, m) in enumerate(children) if isinstance(m, _AFFINE)]
    if not affine:
        raise ValueError(f"{who}: the model has no Linear or Conv2d layer")
    groups = []
    for i, j in zip(affine, affine[1:]):
        name, layer = children[i]
        consumer_name, consumer = children[j]
        units = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
        between = [m for _, m in children[i + 1 : j]]
        flattens = any(isinstance(m, nn.Flatten) for m in between)
        if isinstance(consumer, nn.Conv2d):
            if isinstance(layer, nn.Linear) or flattens or consumer.in_channels != units:
                raise ValueError(
                    f"{who}: layer {consumer_name!r} (Conv2d) cannot read the {units} units of {name!r} channel-wise"
                )
        else:
            if consumer.in_features % units or (isinstance(layer, nn.Linear) and consumer.in_features != units):
                raise ValueError(
                    f"{who}: layer {consumer_name!r} has {consumer.in_features} inputs, "
                    f"which do not split into the {units} units of {name!r}"
                )
            if isinstance(layer, nn.Conv2d) and not flattens:
                raise ValueError(f"{who}: a Flatten must sit between {name!r} (Conv2d) and {consumer_name!r} (Linear)")
        batchnorm = children[i + 1][0] if isinstance(children[i + 1][1], _BATCHNORM) else None
        groups.append(HiddenLayer(name, units, batchnorm, consumer_name))
    return groups


def _fold_batchnorm(model: nn.Sequential, groups: list[HiddenLayer]) -> None:
    """Fold every eval-mode BatchNorm into the affine layer before it (in place); BN becomes Identity.

    W' = (γ/σ)·W, b' = γ(b − μ)/σ + β with σ = √(var + eps).
    """
    for g in groups:
        if g.batchnorm is None:
            continue
        layer, bn = model.get_submodule(g.name), model.get_submodule(g.batchnorm)
        gain = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
        weight = layer.weight * gain.view(-1, *([1] * (layer.weight.ndim - 1)))
        layer.weight = nn.Parameter(weight.detach().clone())
        layer.bias = nn.Parameter((gain * (bias - bn.running_mean) + shift).detach().clone())
        setattr(model, g.batchnorm, nn.Identity())


def canonicalize(model: nn.Sequential, *, variant: str = "w", eps: float = 1e-12) -> nn.Sequential:
    """A function-identical copy of a ReLU ``nn.Sequential`` in canonical positive scaling.

    Forward sweep over the hidden groups (:func:`hidden_layers`), in order, so that compensating layer l
    has already changed the inputs of layer l+1 before its norms are taken:
    r_i = ‖W_i‖₂ (row of a Linear, Frobenius norm of a Conv2d output channel; ``variant="w"``) or
    ‖[W_i, b_i]‖₂ (``variant="wb"``); W_i ← W_i / r_i, b_i ← b_i / r_i; the consumer's inputs that read
    unit i (a column, an input-channel slice, or the H·W columns a Flatten gives a channel) ← · r_i.
    Every hidden unit ends with a unit-norm weight, the output layer absorbs all scale, and since
    ReLU(c z) = c ReLU(z) for c > 0 (and max/average pooling act per channel) the function is unchanged.

    Uniqueness: if B = D·A for positive diagonal scalings D of every hidden layer, both canonicalise to
    the same parameters (normalisation removes D_l; the compensation multiplies by D_l r, cancelling the
    D_l⁻¹ in the next layer's columns). With a matching permutation this quotients out the generic
    symmetry group of ReLU networks (Phuong & Lampert 2020); it is not injective on functions in general
    (hidden symmetries, Grigsby et al. 2023). Signatures never change: sign(c z) = sign(z).

    Conventions: eval-mode BatchNorm is folded into the affine layer before it first and replaced by
    ``nn.Identity`` (the copy computes the eval-mode function). Units whose norm is at most ``eps`` times
    the largest norm of their layer are left unscaled (dividing would amplify noise or divide by zero)
    and reported in a ``RuntimeWarning``. Arithmetic runs in float64 and is written back in the model's
    dtype. Unsupported layers (GELU, Tanh, ...) raise ``ValueError`` naming the layer.
    """
    if variant not in ("w", "wb"):
        raise ValueError(f"canonicalize: variant must be 'w' or 'wb', got {variant!r}")
    groups = hidden_layers(model, "canonicalize")
    out = copy.deepcopy(model)
    with torch.no_grad():
        _fold_batchnorm(out, groups)
        # Work in float64 on every affine layer's (weight, bias) and write back once at the end, so that
        # a rescaled copy canonicalises to the same numbers up to the rounding of its own parameters.
        affine = {n: m for n, m in out.named_children() if isinstance(m, _AFFINE)}
        weight = {n: m.weight.detach().to(torch.float64).clone() for n, m in affine.items()}
        bias = {
            n: (m.bias.detach().to(torch.float64).clone() if m.bias is not None else None) for n, m in affine.items()
        }
        for g in groups:
            w, b = weight[g.name], bias[g.name]
            rows = w.reshape(g.units, -1)
            if variant == "wb" and b is not None:
                rows = torch.cat([rows, b[:, None]], dim=1)
            r = torch.linalg.vector_norm(rows, dim=1)
            tiny = r <= eps * r.max()
            if tiny.any():
                warnings.warn(
                    f"canonicalize: {int(tiny.sum())} unit(s) of layer {g.name!r} have (near-)zero weight norm "
                    "and were left unscaled",
                    RuntimeWarning,
                    stacklevel=2,
                )
            r = torch.where(tiny, torch.ones_like(r), r)
            weight[g.name] = w / r.view(-1, *([1] * (w.ndim - 1)))
            if b is not None:
                bias[g.name] = b / r
            consumer = weight[g.consumer]
            weight[g.consumer] = (g.inputs_by_unit(consumer) * r.view(1, -1, 1)).view_as(consumer)
        for n, m in affine.items():
            m.weight.copy_(weight[n])
            if m.bias is not None:
                m.bias.copy_(bias[n])
    return out


@torch.no_grad()
def preactivations(model: nn.Sequential, probe: Any) -> list[torch.Tensor]:
    """What ``model`` feeds each of its ReLU/LeakyReLU children on ``probe``, in forward order.

    Conv maps keep their N x C x H x W shape. For :func:`activation_region` flatten each to N x (C·H·W)
    (``[p.flatten(1) for p in preactivations(model, x)]``: every channel-position is a unit, the zoo's
    extraction convention); for channels as units with positions as samples, reshape one conv layer to
    (N·H·W) x C (``p.permute(0, 2, 3, 1).reshape(-1, C)``) and compare that layer on its own.
    The model runs in eval mode (its mode is restored afterwards).
    """
    captured: list[torch.Tensor] = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
        for m in model.children()
        if isinstance(m, _HOMOGENEOUS)
    ]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters())
        model(torch.as_tensor(probe).to(dtype=param.dtype, device=param.device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return captured


# --------------------------------------------------------------------------------------------------
# Signatures, Jaccard, MinHash
# --------------------------------------------------------------------------------------------------


def signatures(preacts: Sequence[Any]) -> list[torch.Tensor]:
    """Binary signatures of every unit: per layer an N x D_l bool tensor, True where z > 0.

    Strict ">": a pre-activation of exactly 0 counts as inactive (ReLU(0) = 0 carries no signal).
    Inputs are per-layer N x D_l arrays or tensors (numpy is converted, tensors keep their device).
    """
    return [torch.as_tensor(z) > 0 for z in preacts]


def jaccard_exact(sig_a: torch.Tensor, sig_b: torch.Tensor) -> torch.Tensor:
    """Exact Jaccard index of every unit pair: an n_a x n_b float64 tensor.

    J_ij = |S_i ∩ T_j| / |S_i ∪ T_j|: the intersections of all pairs come from one matrix product SᵀT of
    the 0/1 signature matrices (exact integers: float32 holds counts up to 2²⁴ exactly, float64 is used
    beyond), the unions from the counts, |S_i| + |T_j| − |S_i ∩ T_j|. Convention: J(∅, ∅) = 1 (two
    never-active units have the same, empty, region on the probe set); this keeps 1 − J a metric.
    """
    dtype = torch.float32 if sig_a.shape[0] <= _FLOAT32_EXACT_COUNT else torch.float64
    a, b = sig_a.to(dtype), sig_b.to(dtype)
    inter = (a.T @ b).round().to(torch.int64)
    union = a.sum(0).to(torch.int64)[:, None] + b.sum(0).to(torch.int64)[None, :] - inter
    # int64 / int64 would divide in the default float32; divide in float64 (the correctly rounded quotient)
    return torch.where(union > 0, inter.to(torch.float64) / union.clamp(min=1), 1.0)


def _permutation_orders(n_samples: int, seeds: np.ndarray, device: torch.device) -> torch.Tensor:
    """One uniformly random ordering of [0, N) per seed: row t lists the samples by increasing hash."""
    orders = np.stack([np.random.default_rng(int(s)).permutation(n_samples) for s in seeds])
    return torch.from_numpy(orders).to(device)


def _first_active_rank(sig_t: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """min over each unit's active samples of their rank in each ordering: n x k, N for empty units.

    ``sig_t`` is the n x N signature matrix (units as rows). The minimum is the first active sample in
    the ordering, so the scan walks the orderings in windows of doubling width and drops a unit as soon
    as every ordering has met one of its samples: about 1/p ranks for a unit with activity rate p instead
    of all N. The result equals the full minimum exactly.
    """
    k, n_samples = order.shape
    sketch = torch.full((sig_t.shape[0], k), n_samples, dtype=torch.int64, device=sig_t.device)
    pending = sig_t.any(1).nonzero().squeeze(1)
    lo, width = 0, 16
    while pending.numel() and lo < n_samples:
        width = max(1, min(width, _BLOCK_ELEMENTS // (k * pending.numel())))
        hi = min(n_samples, lo + width)
        block = sig_t[pending[:, None, None], order[None, :, lo:hi]]  # pending x k x window
        hit, first = block.max(-1)  # max returns the index of the first maximum, i.e. the first active rank
        current = sketch[pending]
        sketch[pending] = torch.where((current == n_samples) & hit, first + lo, current)
        pending = pending[(sketch[pending] == n_samples).any(1)]
        lo, width = hi, 2 * width
    return sketch


def minhash_sketch(sig: torch.Tensor, *, num_perm: int = 128, seed: int = 0, backend: str = "torch") -> torch.Tensor:
    """MinHash sketches of every unit's signature (an N x n bool matrix): an n x num_perm int64 tensor.

    ``backend="torch"`` (vectorised, on the signature's device): true random permutations π_t of the
    sample indices (exact min-wise independence), m_t(S) = min_{n ∈ S} π_t(n), sentinel N for S = ∅.
    Then Pr[m_t(S) = m_t(T)] = J(S, T) exactly and the num_perm trials are i.i.d. Permutation t is
    ``np.random.default_rng(s_t).permutation(N)`` (samples in increasing hash order) with s_t the t-th word
    of ``np.random.SeedSequence(seed).generate_state(num_perm, np.uint64)``, so sketches from separate
    calls with the same N and ``seed`` are comparable, and a smaller ``num_perm`` gives a prefix of a
    larger one. Cost: O(k·N) to draw the permutations plus about k/p rank lookups per unit of rate p.

    ``backend="datasketch"`` (reference/oracle; Python loop over units): ``datasketch.MinHash`` with its
    default scheme (affine32 in datasketch 2.0: MurmurHash3 finalizer then a·h + b mod 2³², only
    approximately min-wise independent), ``hashfunc=int`` on the sample indices; empty sets keep the
    maximum hash value. Both backends agree in distribution (E[Ĵ] = J, Var Ĵ ≈ J(1−J)/k), not bit for bit.
    """
    if backend == "datasketch":
        from datasketch import MinHash

        columns = [np.flatnonzero(col) for col in sig.T.cpu().numpy()]
        hashed = MinHash.bulk(columns, num_perm=num_perm, seed=seed, hashfunc=int)
        return torch.from_numpy(np.stack([m.hashvalues.astype(np.int64) for m in hashed])).to(sig.device)
    if backend != "torch":
        raise ValueError(f"minhash_sketch: backend must be 'torch' or 'datasketch', got {backend!r}")
    n_samples = sig.shape[0]
    sig_t = sig.T.contiguous()
    seeds = np.random.SeedSequence(seed).generate_state(num_perm, dtype=np.uint64)
    # Orderings are generated in chunks so that k x N int64 indices never sit in memory at once.
    per_chunk = max(1, _BLOCK_ELEMENTS // (4 * n_samples))
    parts = [
        _first_active_rank(sig_t, _permutation_orders(n_samples, seeds[s : s + per_chunk], sig.device))
        for s in range(0, num_perm, per_chunk)
    ]
    return torch.cat(parts, dim=1)


def jaccard_minhash(sketch_a: torch.Tensor, sketch_b: torch.Tensor) -> torch.Tensor:
    """MinHash estimate of every unit pair's Jaccard index: Ĵ_ij = (1/k) Σ_t 1[m_t(S_i) = m_t(T_j)].

    An n_a x n_b float64 tensor; matches are counted one hash function at a time (n_a·n_b memory).
    For a fixed hash family 1 − Ĵ is a pseudometric on sets (each 1[a ≠ c] ≤ 1[a ≠ b] + 1[b ≠ c]).
    """
    a, b = sketch_a.T.contiguous(), sketch_b.T.contiguous()
    matches = torch.zeros(a.shape[1], b.shape[1], dtype=torch.int32, device=a.device)
    for t in range(a.shape[0]):
        matches += a[t, :, None] == b[t, None, :]
    return matches.to(torch.float64) / a.shape[0]


def chance_jaccard(rate_a: Any, rate_b: Any) -> np.ndarray:
    """Expected Jaccard index of independent units with activity rates p, q: pq / (p + q − pq).

    (Intersection ≈ pqN, union ≈ (p + q − pq)N.) 1/3 at p = q = 1/2; q when p = 1 (an always-on unit's
    Jaccard with any unit is that unit's rate, exactly its chance level). Convention: 1 for p = q = 0,
    consistent with J(∅, ∅) = 1.
    """
    p, q = np.asarray(rate_a, dtype=np.float64), np.asarray(rate_b, dtype=np.float64)
    union = p + q - p * q
    return np.divide(p * q, union, out=np.ones(np.broadcast(p, q).shape), where=union > 0)


# --------------------------------------------------------------------------------------------------
# The measure
# --------------------------------------------------------------------------------------------------

_CHOICES = {
    "method": ("exact", "minhash"),
    "minhash_backend": ("torch", "datasketch"),
    "degenerate": ("match", "exclude"),
    "layer_weights": ("units", "uniform"),
}


def _check_params(params: dict[str, Any]) -> None:
    for key, valid in _CHOICES.items():
        if params[key] not in valid:
            raise ValueError(f"measure 'activation_region': {key} must be one of {valid}, got {params[key]!r}")
    for key, low in (("num_perm", 1), ("seed", 0)):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"measure 'activation_region': {key} must be an integer >= {low}, got {value!r}")


def _details(pre_a: list[torch.Tensor], pre_b: list[torch.Tensor], **params: Any) -> dict[str, Any]:
    """Everything :func:`activation_region` computes, on validated inputs."""
    _check_params(params)
    if len(pre_a) != len(pre_b):
        raise ValueError(
            f"measure 'activation_region': the networks have different depths ({len(pre_a)} vs {len(pre_b)} "
            "hidden layers); layers are matched pairwise, so pass one pre-activation matrix per hidden layer "
            "of each network (compare a sub-list of layers for networks of different depth)"
        )
    sig_a, sig_b = signatures(pre_a), signatures(pre_b)
    n_samples = sig_a[0].shape[0]
    if params["method"] == "minhash":
        # Every layer of both networks in one call: they share the probe set, so one set of permutations.
        sketches = minhash_sketch(
            torch.cat(sig_a + sig_b, 1), num_perm=params["num_perm"], seed=params["seed"],
            backend=params["minhash_backend"],
        ).split([s.shape[1] for s in sig_a + sig_b])
        sketch_a, sketch_b = sketches[: len(sig_a)], sketches[len(sig_a) :]

    layers = []
    for l, (sa, sb) in enumerate(zip(sig_a, sig_b)):
        count_a, count_b = sa.sum(0).cpu().numpy(), sb.sum(0).cpu().numpy()
        n_a, n_b = sa.shape[1], sb.shape[1]
        sim = jaccard_exact(sa, sb) if params["method"] == "exact" else jaccard_minhash(sketch_a[l], sketch_b[l])
        if params["degenerate"] == "exclude":
            rows = np.flatnonzero((count_a > 0) & (count_a < n_samples))
            cols = np.flatnonzero((count_b > 0) & (count_b < n_samples))
        else:
            rows, cols = np.arange(n_a), np.arange(n_b)
        sim = sim.cpu().numpy()
        r, c = linear_sum_assignment(sim[np.ix_(rows, cols)], maximize=True)
        ia, ib = rows[r], cols[c]
        partner = np.full(n_a, -1, dtype=np.int64)
        partner[ia] = ib
        matched = sim[ia, ib]
        width = max(n_a, n_b)
        chance = chance_jaccard(count_a[ia] / n_samples, count_b[ib] / n_samples)
        layer = {
            "score": float(matched.sum() / width),
            "matched_mean": float(matched.mean()) if matched.size else None,
            "partner": partner,
            "matched_jaccard": matched,
            "n_a": n_a,
            "n_b": n_b,
            "dead_a": int((count_a == 0).sum()),
            "dead_b": int((count_b == 0).sum()),
            "always_on_a": int((count_a == n_samples).sum()),
            "always_on_b": int((count_b == n_samples).sum()),
            "chance": float(chance.sum() / width),
        }
        layer["chance_corrected"] = _chance_corrected(layer["score"], layer["chance"])
        if params["method"] == "minhash":
            # Winner's curse: maximising a sum of noisy estimates inflates it under near-ties, so report the
            # exact Jaccard of the chosen pairs beside the estimate (cheap: only the matched columns).
            ia_t, ib_t = torch.as_tensor(ia, device=sa.device), torch.as_tensor(ib, device=sb.device)
            inter = (sa[:, ia_t] & sb[:, ib_t]).sum(0).cpu().numpy()
            union = count_a[ia] + count_b[ib] - inter
            exact = np.divide(inter, union, out=np.ones(len(ia)), where=union > 0)
            layer["exact_score"] = float(exact.sum() / width)
        layers.append(layer)

    weights = np.array([max(x["n_a"], x["n_b"]) if params["layer_weights"] == "units" else 1 for x in layers], float)

    def aggregate(key: str) -> float:
        return float(np.dot(weights, [x[key] for x in layers]) / weights.sum())

    out = {
        **params,
        "n_samples": n_samples,
        "score": aggregate("score"),
        "chance": aggregate("chance"),
        "weights": weights / weights.sum(),
        "layers": layers,
    }
    out["chance_corrected"] = _chance_corrected(out["score"], out["chance"])
    if params["method"] == "minhash":
        out["exact_score"] = aggregate("exact_score")
        if params["minhash_backend"] == "datasketch":
            from importlib.metadata import version

            out["datasketch_version"] = version("datasketch")
    return out


def _chance_corrected(score: float, chance: float) -> float | None:
    """(S − S₀)/(1 − S₀); None where the chance level is already 1 (nothing to correct against)."""
    return (score - chance) / (1.0 - chance) if chance < 1.0 else None


@register(
    "activation_region",
    family="activation_region",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=("permutation", "isotropic_scaling"),
    inputs="preactivations",
    reference=(
        "Hennadii. Functional Similarity Metric for Neural Networks: Overcoming Parametric Ambiguity via "
        "Activation Region Analysis. arXiv 2604.16426, 2026 (aggregation and degenerate-unit rule: this project)"
    ),
    cost="O(N·n_a·n_b) GEMM (exact) or O(k·N + n·k/p) sketches + O(n_a·n_b·k) comparisons (MinHash); "
    "O(n³) LSA per layer",
)
def activation_region(
    pre_a: list[torch.Tensor],
    pre_b: list[torch.Tensor],
    *,
    method: str = "exact",
    num_perm: int = 128,
    seed: int = 0,
    minhash_backend: str = "torch",
    degenerate: str = "match",
    layer_weights: str = "units",
) -> float:
    """Activation-region similarity: matched Jaccard of binary ReLU signatures, aggregated over layers.

    Formula: per hidden layer l, signatures S_i = {n : z_i(x_n) > 0}; J_ij = |S_i ∩ T_j| / |S_i ∪ T_j|
    (``method="exact"``, one GEMM) or its MinHash estimate with ``num_perm`` permutations drawn from
    ``seed`` (``method="minhash"``; ``minhash_backend="datasketch"`` uses datasketch as an oracle);
    a one-to-one matching M_l = linear_sum_assignment(J, maximize=True) (rectangular for unequal widths);
    S_l = Σ_{(i,j)∈M_l} J_ij / max(n_a, n_b), so unmatched units of the wider network count 0;
    S = Σ_l w_l S_l with w_l ∝ max(n_a, n_b) (``layer_weights="units"``, i.e. the mean over all units)
    or w_l = 1/L (``"uniform"``). Pre-activations are two lists with one N x D_l matrix per hidden layer
    on the same ordered probe set.

    Range [0, 1]; higher is more similar; 1 iff the widths agree and every unit has a partner with an
    identical signature.
    Symmetric. Invariant to permutations of the units of any layer and to positive per-unit scaling of
    pre-activations (signatures only see signs), hence to canonical scaling; not to translation.
    Metric structure: 1 − J is a metric on sets (with J(∅, ∅) = 1); for equal widths 1 − S_l is the
    Wasserstein-1 distance between the uniform measures on the two layers' units under it, so 1 − S is
    a pseudometric (also with MinHash for a fixed seed, since 1 − Ĵ is then a pseudometric). For
    unequal widths unmatched units act as points at distance 1 and the wider width is the denominator;
    the triangle inequality held in every randomised check (tests; 6,000 random triples of depth 1-3 and
    widths 1-8 while developing) but is not proven there.

    Conventions [ours]: strict z > 0; ties resolved by scipy's deterministic assignment. Dead units
    (never active) and always-on units carry no region information. ``degenerate="match"`` (default)
    keeps them in the matching with J(∅, ∅) = 1 (two dead units agree; an always-on unit's J with any
    unit equals that unit's rate, its chance level), so S(A, A) = 1 always. ``degenerate="exclude"``
    (docs/activation_region.md §8) leaves them out of the matching and charges them as unmatched in the
    denominator; then S(A, A) = 1 − (degenerate units)/(units). Never NaN. Networks of different depth
    raise ``ValueError``. Chance levels (independent units: pq/(p+q−pq)), the chance-corrected score,
    per-layer scores, permutations and dead/always-on counts: :func:`activation_region_details`.
    Conv layers: every column is a unit (flattened channel-positions); see :func:`preactivations`.

    Reference: Hennadii, arXiv 2604.16426 (2026) (signatures, MinHash, Hungarian matching); the
    aggregation and the degenerate-unit rule are this project's (``docs/activation_region.md`` §3, §6).
    """
    return _details(
        pre_a, pre_b, method=method, num_perm=num_perm, seed=seed, minhash_backend=minhash_backend,
        degenerate=degenerate, layer_weights=layer_weights,
    )["score"]


def activation_region_details(pre_a: Sequence[Any], pre_b: Sequence[Any], **params: Any) -> dict[str, Any]:
    """Everything behind :func:`activation_region`: per-layer scores, permutations, counts, chance levels.

    Takes the same inputs and keyword parameters as ``measures.compute("activation_region", ...)`` (same
    validation) and returns a dict with the parameters used, ``n_samples``, ``score`` (= the measure),
    ``chance`` S₀ (the same aggregation over the chosen pairs of the independent-unit chance level
    pq/(p+q−pq), i.e. the score those pairs would get if units were independent with the same rates),
    ``chance_corrected`` (S − S₀)/(1 − S₀) (None if S₀ = 1; it still contains the small gain of
    maximising over pairs, so it sits slightly above 0 for independent networks), ``weights`` and
    ``layers``: one dict per layer with ``score``, ``matched_mean`` (mean J over matched pairs, None if
    none), ``partner`` (for each unit i of network A the index of its matched unit in B, −1 if unmatched;
    ``measures.weights.permute_hidden_units(model_b, {name: partner})`` aligns B to A), ``matched_jaccard``,
    ``n_a``, ``n_b``, ``dead_a``, ``dead_b``, ``always_on_a``, ``always_on_b``, ``chance`` and
    ``chance_corrected``. With ``method="minhash"`` also ``exact_score`` (exact Jaccard of the
    MinHash-chosen pairs, per layer and overall) and, for the datasketch backend, ``datasketch_version``.
    """
    from measures._registry import info

    spec = info("activation_region")
    unknown = set(params) - set(spec.params)
    if unknown:
        raise ValueError(
            f"measure 'activation_region': unknown parameter(s) {sorted(unknown)}; "
            f"valid parameters: {sorted(spec.params)}"
        )
    pre_a, pre_b = _validation.validate(spec, (pre_a, pre_b))
    return _details(pre_a, pre_b, **{**spec.params, **params})
