"""Weight-space baselines: parameter distances raw, after canonical scaling and after permutation matching.

ReLU networks compute the same function under permutations of hidden units and positive per-unit
scalings, so a raw parameter distance mixes functional difference with these symmetries. The alignments
here remove them step by step: canonical scaling (:func:`measures.activation_region.canonicalize`), then a
permutation of B's hidden units found from the weights (Git Re-Basin weight matching) or from activation
correlations on a probe set (Git Re-Basin / Li et al. activation matching). The matchers and
:func:`permute_hidden_units` are public so that other code (flicker analyses, merging) can reuse them.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from measures._registry import UndefinedMeasureError, register
from measures.activation_region import HiddenLayer, canonicalize, hidden_layers

_ALIGNMENTS = ("none", "canonical", "weight_matching", "activation_matching")


def permute_hidden_units(model: nn.Sequential, permutations: Mapping[str, Any]) -> nn.Sequential:
    """A copy of ``model`` whose hidden units are reordered; it computes the same function.

    ``permutations`` maps a hidden layer's name (an affine layer of :func:`hidden_layers`, e.g. ``"fc1"`` or
    ``"conv2"``) to an index vector ``perm``: unit i of the copy is unit ``perm[i]`` of ``model``. The rows
    (output channels) and biases of that layer, the parameters and running statistics of its BatchNorm,
    and the inputs of the next affine layer that read those units (input channels of a Conv2d, columns of
    a Linear, or each channel's H·W columns after a Flatten) are permuted together. Layers not named keep
    their order. A matching's partner vector (``partner[i]`` = B's unit matched to A's unit i) applied to B
    puts B's units in A's order.
    """
    groups = {g.name: g for g in hidden_layers(model, "permute_hidden_units")}
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, perm in permutations.items():
            if name not in groups:
                raise ValueError(f"permute_hidden_units: {name!r} is not a hidden layer; hidden layers: {list(groups)}")
            g = groups[name]
            idx = torch.as_tensor(np.asarray(perm), dtype=torch.long)
            if idx.shape != (g.units,) or not torch.equal(idx.sort().values, torch.arange(g.units)):
                raise ValueError(
                    f"permute_hidden_units: the entry for {name!r} must be a permutation of range({g.units})"
                )
            layer = out.get_submodule(name)
            tensors = [layer.weight, layer.bias]
            if g.batchnorm is not None:
                bn = out.get_submodule(g.batchnorm)
                tensors += [bn.weight, bn.bias, bn.running_mean, bn.running_var]
            for t in tensors:
                if t is not None:
                    t.copy_(t[idx.to(t.device)])
            consumer = out.get_submodule(g.consumer).weight
            consumer.copy_(g.inputs_by_unit(consumer)[:, idx.to(consumer.device)].reshape_as(consumer))
    return out


def _affine_parameters(
    model: nn.Sequential, groups: list[HiddenLayer]
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight as out x in_units x positions, bias) of every affine layer, float64 on the CPU.

    Affine layer l > 0 is the consumer of hidden group l − 1, so axis 1 of its weight indexes that group.
    """
    first = next(m for m in model.children() if isinstance(m, (nn.Linear, nn.Conv2d)))
    weights = [first.weight.reshape(first.weight.shape[0], first.weight.shape[1], -1)]
    biases = [first.bias]
    for g in groups:
        consumer = model.get_submodule(g.consumer)
        weights.append(g.inputs_by_unit(consumer.weight))
        biases.append(consumer.bias)
    return [
        (w.detach().to("cpu", torch.float64), None if b is None else b.detach().to("cpu", torch.float64))
        for w, b in zip(weights, biases)
    ]


def weight_matching(
    model_a: nn.Sequential, model_b: nn.Sequential, *, seed: int = 0, max_iter: int = 100
) -> dict[str, np.ndarray]:
    """Permutations of B's hidden units that maximise the weight inner product with A (Git Re-Basin).

    Maximises Σ_l ⟨W_l^A, P_l W_l^B P_{l−1}ᵀ⟩ + ⟨b_l^A, P_l b_l^B⟩ (BatchNorm affine parameters included)
    by coordinate descent: for one layer at a time, in an order drawn from ``seed``, the other
    permutations fixed, the objective is linear in P_l and solved exactly by linear_sum_assignment on
    C = W_l^A (W_l^B P_{l−1}ᵀ)ᵀ + W_{l+1}^Aᵀ (P_{l+1} W_{l+1}^B) (+ bias terms); a layer's permutation is
    only replaced when the objective strictly improves; stops after a sweep without improvement or
    ``max_iter`` sweeps. Starts from the identity. A local optimum in general; data-free.

    Returns ``{layer name: partner}`` with ``partner[i]`` = the unit of B matched to unit i of A, ready for
    :func:`permute_hidden_units` (B). Ainsworth, Hayase, Srinivasa. Git Re-Basin. ICLR 2023.
    """
    groups = _check_pair(model_a, model_b, "weight_matching")
    params_a, params_b = _affine_parameters(model_a, groups), _affine_parameters(model_b, groups)
    bn_a = [_bn_parameters(model_a, g) for g in groups]
    bn_b = [_bn_parameters(model_b, g) for g in groups]
    perms = [torch.arange(g.units) for g in groups]
    order_rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        improved = False
        for l in order_rng.permutation(len(groups)):
            (wa, ba), (wb, bb) = params_a[l], params_b[l]
            if l > 0:
                wb = wb[:, perms[l - 1]]
            cost = wa.flatten(1) @ wb.flatten(1).T
            for x, y in [(ba, bb), *zip(bn_a[l], bn_b[l])]:
                if x is not None:
                    cost += torch.outer(x, y)
            (ca, _), (cb, _) = params_a[l + 1], params_b[l + 1]
            if l + 1 < len(groups):
                cb = cb[perms[l + 1]]
            cost += ca.transpose(0, 1).flatten(1) @ cb.transpose(0, 1).flatten(1).T
            cost = cost.numpy()
            _, col = linear_sum_assignment(cost, maximize=True)
            rows = np.arange(len(col))
            old, new = cost[rows, perms[l].numpy()].sum(), cost[rows, col].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                perms[l] = torch.as_tensor(col)
                improved = True
        if not improved:
            break
    return {g.name: p.numpy() for g, p in zip(groups, perms)}


def _bn_parameters(model: nn.Sequential, g: HiddenLayer) -> tuple[torch.Tensor | None, ...]:
    if g.batchnorm is None or not model.get_submodule(g.batchnorm).affine:
        return ()
    bn = model.get_submodule(g.batchnorm)
    return tuple(t.detach().to("cpu", torch.float64) for t in (bn.weight, bn.bias))


@torch.no_grad()
def _unit_activations(model: nn.Sequential, groups: list[HiddenLayer], probe: torch.Tensor) -> list[torch.Tensor]:
    """Per hidden group, what the next affine layer reads of its units (after ReLU and pooling), as
    samples x units: conv channels are units and each (input, position) is a sample."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        model.get_submodule(g.consumer).register_forward_pre_hook(
            lambda _m, args, name=g.name: captured.__setitem__(name, args[0].detach())
        )
        for g in groups
    ]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters())
        model(probe.to(dtype=param.dtype, device=param.device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    feats = []
    for g in groups:
        x = captured[g.name]
        # N x C x H x W (conv input) or N x C·H·W (flattened, NCHW) -> (N·H·W) x C
        feats.append(x.reshape(x.shape[0], g.units, -1).transpose(1, 2).reshape(-1, g.units).to("cpu", torch.float64))
    return feats


def activation_matching(model_a: nn.Sequential, model_b: nn.Sequential, probe: Any) -> dict[str, np.ndarray]:
    """Permutations of B's hidden units from activation correlations on a probe set (Git Re-Basin).

    Per hidden layer: C_ij = Pearson correlation over the probe set between unit i of A and unit j of B
    (their post-ReLU, post-pooling activations as the next layer reads them; conv channels are units,
    every input-position a sample), then linear_sum_assignment(C, maximize=True). A constant unit (e.g.
    dead on the probe set) has no correlation: its C entries are 0 (convention of correlation matching,
    Li et al. 2016), so constant units are placed among themselves by index, not by identity (weight
    matching can still tell them apart). Correlations ignore positive scaling, so canonicalising first
    does not change the result.

    Returns ``{layer name: partner}`` as :func:`weight_matching` does. Ainsworth, Hayase, Srinivasa. Git
    Re-Basin. ICLR 2023; Li, Yosinski, Clune, Lipson, Hopcroft. Convergent Learning. ICLR 2016.
    """
    groups = _check_pair(model_a, model_b, "activation_matching")
    probe = torch.as_tensor(probe)
    if probe.ndim < 2 or probe.shape[0] < 2 or not torch.isfinite(probe).all():
        raise ValueError("activation_matching: probe must hold at least 2 finite inputs (N x input shape)")
    out = {}
    for g, fa, fb in zip(groups, _unit_activations(model_a, groups, probe), _unit_activations(model_b, groups, probe)):
        za, zb = _standardise(fa), _standardise(fb)
        corr = (za.T @ zb / za.shape[0]).numpy()
        out[g.name] = linear_sum_assignment(corr, maximize=True)[1]
    return out


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """Columns centred and scaled to unit variance; constant columns become 0 (zero correlation)."""
    x = x - x.mean(0)
    sd = x.pow(2).mean(0).sqrt()
    return x / torch.where(sd > 0, sd, 1.0)


def _same_architecture(model_a: Any, model_b: Any, who: str) -> None:
    """Both are torch modules with the same children (names, types) and parameter shapes."""
    for m in (model_a, model_b):
        if not isinstance(m, nn.Module):
            raise ValueError(f"{who}: expected two torch nn.Module models, got {type(m).__name__}")
    layout_a = [(n, type(m).__name__) for n, m in model_a.named_children()]
    layout_b = [(n, type(m).__name__) for n, m in model_b.named_children()]
    shapes_a = [(n, tuple(p.shape)) for n, p in model_a.named_parameters()]
    shapes_b = [(n, tuple(p.shape)) for n, p in model_b.named_parameters()]
    if layout_a != layout_b or shapes_a != shapes_b:
        raise ValueError(
            f"{who}: the models have different architectures (layers {layout_a} vs {layout_b}, "
            f"parameter shapes {shapes_a} vs {shapes_b}); weight-space comparisons need the same architecture"
        )


def _check_pair(model_a: Any, model_b: Any, who: str) -> list[HiddenLayer]:
    """Both models are supported nn.Sequentials of the same architecture; returns their hidden groups."""
    _same_architecture(model_a, model_b, who)
    return hidden_layers(model_a, who)


def _flat_parameters(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@register(
    "weight_distance",
    family="weight_space",
    kind="distance",
    range=(0.0, float("inf")),
    symmetric=True,
    metric=True,
    inputs="models",
    reference=(
        "Ainsworth, Hayase, Srinivasa. Git Re-Basin: Merging Models modulo Permutation Symmetries. ICLR 2023; "
        "canonical scaling: Hennadii, arXiv 2604.16426, 2026"
    ),
    cost="O(P) raw/canonical; + O(Σ_l n_l³) LSA per coordinate-descent sweep (weight matching) or a probe "
    "forward pass + O(N·n_l²) correlations (activation matching)",
)
def weight_distance(
    model_a: nn.Sequential,
    model_b: nn.Sequential,
    *,
    alignment: str = "none",
    relative: bool = False,
    probe: Any = None,
    seed: int = 0,
    max_iter: int = 100,
) -> float:
    """Euclidean distance between the flattened parameter vectors of two same-architecture networks.

    Formula: d = ‖θ_A − π(θ_B)‖₂ over every parameter (weights, biases, BatchNorm affine parameters;
    running statistics are buffers, not parameters), with ``relative=True`` divided by ‖θ_A‖₂ + ‖θ_B‖₂
    (then in [0, 1] by the triangle inequality). Alignments, each refining the previous one:
    ``"none"`` raw parameters; ``"canonical"`` both models canonically scaled
    (:func:`measures.activation_region.canonicalize`, variant "w", eval BatchNorm folded);
    ``"weight_matching"`` canonical, then B's hidden units permuted by :func:`weight_matching` (seeded by
    ``seed``, at most ``max_iter`` sweeps); ``"activation_matching"`` canonical, then B permuted by
    :func:`activation_matching` on ``probe`` (required; an N x input-shape array of inputs).

    Range [0, ∞) ([0, 1] relative); lower is more similar; 0 for identical parameters. Symmetric
    (for the matching alignments up to ties and the local optimum coordinate descent reaches). A metric on
    parameter vectors for ``"none"``, a pseudometric on models for ``"canonical"``; the matching
    alignments minimise over permutations only heuristically, so the triangle inequality is not
    guaranteed there. Invariances: none raw; positive per-unit scaling from ``"canonical"`` on; hidden
    unit permutations with the matching alignments (exactly for a permuted, rescaled copy).

    Models are validated here (this measure takes models, not arrays): both must be nn.Sequential with the
    same layers and parameter shapes, and for any alignment built from supported layers (Linear, Conv2d,
    eval BatchNorm, ReLU/LeakyReLU, pooling, Flatten, Dropout, Identity); otherwise ``ValueError`` naming
    the measure. Computation runs on float64 CPU copies; the models are not modified.

    Reference: Ainsworth, Hayase, Srinivasa. Git Re-Basin. ICLR 2023 (weight and activation matching);
    canonical scaling after Hennadii, arXiv 2604.16426 (2026).
    """
    who = "measure 'weight_distance'"
    if alignment not in _ALIGNMENTS:
        raise ValueError(f"{who}: alignment must be one of {_ALIGNMENTS}, got {alignment!r}")
    if alignment == "activation_matching" and probe is None:
        raise ValueError(f"{who}: alignment='activation_matching' needs probe=... (the inputs to correlate on)")
    if alignment == "none":
        _same_architecture(model_a, model_b, who)
    else:
        _check_pair(model_a, model_b, who)
    a, b = (copy.deepcopy(m).to("cpu", torch.float64) for m in (model_a, model_b))
    if alignment != "none":
        a, b = canonicalize(a), canonicalize(b)
    if alignment == "weight_matching":
        b = permute_hidden_units(b, weight_matching(a, b, seed=seed, max_iter=max_iter))
    elif alignment == "activation_matching":
        b = permute_hidden_units(b, activation_matching(a, b, torch.as_tensor(probe, dtype=torch.float64)))
    theta_a, theta_b = _flat_parameters(a), _flat_parameters(b)
    distance = torch.linalg.vector_norm(theta_a - theta_b)
    if not relative:
        return distance
    scale = torch.linalg.vector_norm(theta_a) + torch.linalg.vector_norm(theta_b)
    if scale == 0:
        raise UndefinedMeasureError(
            "weight_distance: both models have all-zero parameters; the relative distance is 0/0"
        )
    return distance / scale
