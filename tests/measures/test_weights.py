"""Weight-space baselines: the permutation helper, the matchers and ``weight_distance``.

Oracles: numpy norms of the state dicts, function equality of permuted copies, planted permutations and
scales (from the activation-region tests' hand-built copies), and the metric axioms.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import measures
from measures.activation_region import canonicalize, hidden_layers, preactivations
from measures.weights import activation_matching, permute_hidden_units, weight_matching
from tests.measures.test_activation_region import (  # noqa: F401 (arch, model: the same fixtures here)
    arch,
    assert_same_function,
    model,
    planted_copy,
    probe,
    rescaled_copy,
    trained_ish,
)


def distance(a, b, **params) -> float:
    return measures.compute("weight_distance", a, b, **params)


def test_metadata():
    info = measures.info("weight_distance")
    assert (info.family, info.inputs, info.kind) == ("weight_space", "models", "distance")
    assert info.params["alignment"] == "none" and info.stochastic  # the seed orders weight matching


def test_permute_hidden_units_keeps_the_function(arch, model):
    x = probe(arch)
    gen = torch.Generator().manual_seed(2)
    perms = {g.name: torch.randperm(g.units, generator=gen).numpy() for g in hidden_layers(model)}
    permuted = permute_hidden_units(model, perms)
    assert_same_function(model, permuted, x, 1e-12)
    first = hidden_layers(model)[0].name
    assert torch.equal(getattr(permuted, first).weight, getattr(model, first).weight[perms[first]])
    # Permuting back restores the parameters exactly.
    back = permute_hidden_units(permuted, {n: np.argsort(p) for n, p in perms.items()})
    assert all(torch.equal(p, q) for p, q in zip(back.parameters(), model.parameters()))


def test_permute_hidden_units_rejects_bad_permutations():
    model = trained_ish("mlp")
    with pytest.raises(ValueError, match="'logits' is not a hidden layer"):
        permute_hidden_units(model, {"logits": np.arange(5)})
    with pytest.raises(ValueError, match="permutation of range\\(32\\)"):
        permute_hidden_units(model, {"fc1": np.zeros(32, dtype=int)})


def test_raw_distance_is_the_norm_of_the_parameter_difference(arch, model):
    other = trained_ish(arch, seed=1)
    flat = lambda m: np.concatenate([v.numpy().ravel() for v in m.state_dict().values()])  # noqa: E731
    expected = np.linalg.norm(flat(model) - flat(other))
    assert distance(model, other) == pytest.approx(expected, rel=1e-12)
    relative = distance(model, other, relative=True)
    assert relative == pytest.approx(expected / (np.linalg.norm(flat(model)) + np.linalg.norm(flat(other))), rel=1e-12)
    assert 0 < relative < 1
    assert distance(model, model) == 0.0 and distance(model, other) == distance(other, model)


def test_permuted_rescaled_copy_is_at_distance_zero_after_alignment(arch, model):
    """Raw and canonical distances see the symmetries; canonical scaling plus weight matching removes them."""
    copy_, perms = planted_copy(model, seed=3)
    x = probe(arch)
    assert_same_function(model, copy_, x, 1e-6)
    assert distance(model, copy_, relative=True) > 0.1
    assert distance(model, copy_, alignment="canonical", relative=True) > 0.1  # the permutation remains
    assert distance(model, copy_, alignment="weight_matching") < 1e-6
    inverse = {n: np.argsort(p) for n, p in perms.items()}  # partner of A's unit i = B's unit holding it
    found = weight_matching(canonicalize(model), canonicalize(copy_))
    assert found.keys() == inverse.keys() and all(np.array_equal(found[n], inverse[n]) for n in inverse)


def test_activation_matching_recovers_every_unit_that_is_not_dead(arch, model):
    """Dead units (never active on the probe) have no correlation with anything, so activation matching
    cannot place them; every other unit gets its planted partner, and without dead units the aligned
    copy is at distance 0."""
    copy_, perms = planted_copy(model, seed=3)
    x = probe(arch)
    found = activation_matching(model, copy_, x)
    dead_any = False
    for g, z in zip(hidden_layers(model), preactivations(model, x)):
        alive = (z > 0).reshape(z.shape[0], g.units, -1).any(2).any(0).numpy()
        dead_any |= not alive.all()
        assert np.array_equal(found[g.name][alive], np.argsort(perms[g.name])[alive])
    if not dead_any:
        assert distance(model, copy_, alignment="activation_matching", probe=x) < 1e-6


def test_rescaled_copy_is_at_distance_zero_after_canonical_scaling(arch, model):
    gen = torch.Generator().manual_seed(5)
    scales = {
        g.name: torch.exp(4 * torch.rand(g.units, generator=gen, dtype=torch.float64) - 2) for g in hidden_layers(model)
    }
    rescaled = rescaled_copy(model, scales)
    assert distance(model, rescaled) > 1
    assert distance(model, rescaled, alignment="canonical", relative=True) < 1e-9


@pytest.mark.parametrize("alignment", ["none", "canonical"])
def test_triangle_inequality_and_symmetry(alignment):
    nets = [trained_ish("mlp", seed=s) for s in range(4)]
    for a, b, c in [(0, 1, 2), (1, 2, 3), (0, 3, 1), (2, 0, 3)]:
        ab, bc, ac = (distance(nets[i], nets[j], alignment=alignment) for i, j in [(a, b), (b, c), (a, c)])
        assert ac <= ab + bc + 1e-12
        assert ab == pytest.approx(distance(nets[b], nets[a], alignment=alignment), rel=1e-12)


def test_matching_lowers_the_distance_of_an_unrelated_pair():
    """Between independent networks, matching can only lower the canonical distance."""
    a, b = trained_ish("mlp", seed=0), trained_ish("mlp", seed=1)
    canonical = distance(a, b, alignment="canonical")
    matched = distance(a, b, alignment="weight_matching", seed=0)
    assert matched < canonical
    assert matched == distance(a, b, alignment="weight_matching", seed=0)
    assert distance(a, b, alignment="activation_matching", probe=probe("mlp")) < canonical


def test_models_are_validated_with_the_measure_name():
    mlp = trained_ish("mlp")
    narrow = nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(20, 16)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(16, 32)), ("relu2", nn.ReLU()), ("logits", nn.Linear(32, 5)),
    ]))
    with pytest.raises(ValueError, match="measure 'weight_distance': the models have different architectures"):
        distance(mlp, narrow.double())
    gelu = nn.Sequential(OrderedDict([("fc1", nn.Linear(4, 8)), ("act1", nn.GELU()), ("logits", nn.Linear(8, 2))]))
    assert distance(gelu, gelu) == 0.0  # raw distances need no symmetry rules
    with pytest.raises(ValueError, match="measure 'weight_distance': layer 'act1' \\(GELU\\) is not supported"):
        distance(gelu, gelu, alignment="canonical")
    with pytest.raises(ValueError, match="'weight_distance': alignment='activation_matching' needs probe"):
        distance(mlp, mlp, alignment="activation_matching")
    with pytest.raises(ValueError, match="'weight_distance': alignment must be one of"):
        distance(mlp, mlp, alignment="sorted")
    with pytest.raises(ValueError, match="'weight_distance': expected two torch nn.Module"):
        distance(np.zeros(3), mlp)
    zero = nn.Sequential(nn.Linear(3, 2))
    nn.init.zeros_(zero[0].weight), nn.init.zeros_(zero[0].bias)
    with pytest.raises(measures.UndefinedMeasureError, match="weight_distance: both models have all-zero"):
        distance(zero, zero, relative=True)
