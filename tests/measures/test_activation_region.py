"""The activation-region metric: signatures, Jaccard routes, MinHash statistics, matching, canonical scaling.

Oracles are independent of the code under test: Python sets and packed-bit popcounts for the Jaccard
index, a brute-force minimum for the MinHash sketch, the binomial standard error √(J(1−J)/k) and
datasketch for the estimator, closed forms for chance levels and planted widths, and hand-built
permuted/rescaled copies of zoo networks (checked to compute the same function) for the invariances.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import measures
from measures.activation_region import (
    activation_region_details,
    canonicalize,
    chance_jaccard,
    hidden_layers,
    jaccard_exact,
    jaccard_minhash,
    minhash_sketch,
    preactivations,
    signatures,
)
from measures.weights import permute_hidden_units
from tasks.zoo.architectures import build

# --------------------------------------------------------------------------------------------------
# Fixtures: trained-ish zoo networks and their hand-built permuted, rescaled copies
# --------------------------------------------------------------------------------------------------

SHAPES = {"mlp": ((20,), {"depth": 2, "width": 32}), "cnn": ((3, 8, 8), {"channels": (8, 16), "hidden": 32})}


def trained_ish(arch: str, seed: int = 0) -> nn.Sequential:
    """A zoo network after a few gradient steps on a random teacher's labels (float64, eval mode)."""
    torch.manual_seed(seed)
    shape, cfg = SHAPES[arch]
    model = build(arch, shape, 5, **cfg)
    x = torch.randn(256, *shape)
    y = (x.flatten(1) @ torch.randn(x[0].numel(), 5)).argmax(1)
    for _ in range(30):  # plain gradient descent: torch.optim's first step imports torch._dynamo (slow)
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.05 * p.grad
    return model.double().eval()


def probe(arch: str, n: int = 400, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *SHAPES[arch][0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def rescaled_copy(model: nn.Sequential, scales: dict[str, torch.Tensor]) -> nn.Sequential:
    """Multiply unit i of each named hidden layer by scales[name][i] > 0 and divide what the next affine
    layer reads from it (written out here for the zoo's fc/conv/flatten layout, independently of
    ``canonicalize``)."""
    out = copy.deepcopy(model)
    affine = [n for n, m in out.named_children() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for name, nxt in zip(affine, affine[1:]):
            if name not in scales:
                continue
            c = scales[name].to(torch.float64)
            layer, consumer = getattr(out, name), getattr(out, nxt)
            layer.weight.mul_(c.view(-1, *[1] * (layer.weight.ndim - 1)))
            layer.bias.mul_(c)
            if isinstance(consumer, nn.Conv2d):
                consumer.weight.div_(c.view(1, -1, 1, 1))
            else:  # Linear, possibly after a Flatten of channels: each channel owns H·W consecutive columns
                consumer.weight.div_(c.repeat_interleave(consumer.in_features // len(c)).view(1, -1))
    return out


def planted_copy(model: nn.Sequential, seed: int = 0, spread: float = 2.0):
    """A permuted and rescaled copy (scales e^U(−spread, spread)) and the permutations used."""
    gen = torch.Generator().manual_seed(seed)
    groups = hidden_layers(model)
    scales = {
        g.name: torch.exp(spread * (2 * torch.rand(g.units, generator=gen, dtype=torch.float64) - 1)) for g in groups
    }
    perms = {g.name: torch.randperm(g.units, generator=gen).numpy() for g in groups}
    return permute_hidden_units(rescaled_copy(model, scales), perms), perms


def flat_preacts(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    return [p.flatten(1) for p in preactivations(model, x)]


def channel_rows(p: torch.Tensor) -> torch.Tensor:
    """A conv pre-activation N x C x H x W as (N·H·W) x C: channels are units, positions are samples."""
    return p.permute(0, 2, 3, 1).reshape(-1, p.shape[1])


def assert_same_function(a: nn.Module, b: nn.Module, x: torch.Tensor, rtol: float) -> None:
    ya, yb = a(x), b(x)
    assert (ya - yb).abs().max() <= rtol * ya.abs().max()


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(arch) -> nn.Sequential:
    return trained_ish(arch)


# --------------------------------------------------------------------------------------------------
# Signatures and exact Jaccard
# --------------------------------------------------------------------------------------------------


def test_signatures_are_strictly_positive():
    z = np.array([[0.0, -1.0, 2.0], [1e-300, 0.0, -0.0]])
    (s,) = signatures([z])
    assert s.dtype == torch.bool
    assert s.tolist() == [[False, False, True], [True, False, False]]


def _random_signatures(rng: np.random.Generator, n_samples: int, n_units: int) -> np.ndarray:
    sig = rng.random((n_samples, n_units)) < rng.uniform(0.02, 0.98, n_units)
    sig[:, 0] = False  # dead
    sig[:, 1] = True  # always on
    return sig


def test_gemm_route_equals_set_and_popcount_routes():
    rng = np.random.default_rng(0)
    a, b = _random_signatures(rng, 777, 9), _random_signatures(rng, 777, 7)
    b[:, 2] = a[:, 3]  # one identical pair
    gemm = jaccard_exact(torch.from_numpy(a), torch.from_numpy(b)).numpy()

    sets_a = [set(np.flatnonzero(col)) for col in a.T]
    sets_b = [set(np.flatnonzero(col)) for col in b.T]
    by_sets = np.array([[len(s & t) / len(s | t) if s | t else 1.0 for t in sets_b] for s in sets_a])

    packed_a, packed_b = np.packbits(a, axis=0), np.packbits(b, axis=0)  # bits along N, 8 per byte
    inter = np.bitwise_count(packed_a[:, :, None] & packed_b[:, None, :]).sum(0, dtype=np.int64)
    count_a = np.bitwise_count(packed_a).sum(0, dtype=np.int64)
    count_b = np.bitwise_count(packed_b).sum(0, dtype=np.int64)
    union = count_a[:, None] + count_b[None, :] - inter
    by_popcount = np.where(union > 0, inter / np.maximum(union, 1), 1.0)

    # Exact integers on every route give bit-identical quotients.
    assert np.array_equal(gemm, by_sets)
    assert np.array_equal(gemm, by_popcount)
    assert gemm[3, 2] == 1.0 and gemm[1, 1] == 1.0  # identical pair; two always-on units
    assert gemm[0, 0] == 1.0 and gemm[0, 1] == 0.0  # two dead units: J(∅, ∅) = 1; dead vs always-on: 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sets(st.integers(0, 11)), min_size=3, max_size=3))
def test_jaccard_distance_is_a_metric(sets):
    """1 − J is a metric on finite sets, the empty set included (J(∅, ∅) = 1)."""
    sig = torch.zeros(12, 3, dtype=torch.bool)
    for j, s in enumerate(sets):
        sig[list(s), j] = True
    d = 1 - jaccard_exact(sig, sig).numpy()
    assert np.allclose(np.diag(d), 0) and np.allclose(d, d.T)
    for i, j, k in itertools.permutations(range(3)):
        assert d[i, k] <= d[i, j] + d[j, k] + 1e-12
        assert (d[i, j] == 0) == (sets[i] == sets[j])


# --------------------------------------------------------------------------------------------------
# MinHash
# --------------------------------------------------------------------------------------------------


def test_minhash_sketch_equals_brute_force_minimum():
    """The early-stopping scan gives exactly min over active samples of their rank under permutation t,
    with the documented permutations (default_rng(s_t).permutation lists samples by increasing rank)."""
    rng = np.random.default_rng(3)
    sig = torch.from_numpy(_random_signatures(rng, 300, 12))
    sig[:, 5] = False
    sig[rng.integers(300), 5] = True  # a unit active on a single sample: the scan must reach its rank
    k, seed = 40, 11
    got = minhash_sketch(sig, num_perm=k, seed=seed).numpy()
    expected = np.empty((12, k), dtype=np.int64)
    for t, s in enumerate(np.random.SeedSequence(seed).generate_state(k, dtype=np.uint64)):
        rank = np.argsort(np.random.default_rng(int(s)).permutation(300))  # rank[n] = position of sample n
        for j in range(12):
            active = np.flatnonzero(sig[:, j].numpy())
            expected[j, t] = rank[active].min() if active.size else 300
    assert np.array_equal(got, expected)
    assert np.array_equal(minhash_sketch(sig, num_perm=10, seed=seed).numpy(), expected[:, :10])  # prefix


def _replicated_estimates(k: int, seeds: range, backend: str = "torch", blocks: int = 25) -> np.ndarray:
    """MinHash estimates of J = 210/300 = 0.7 for ``blocks`` copies of one set pair per seed.

    Copy b lives on its own block of 300 sample indices. Under a uniformly random permutation the
    relative orders within disjoint blocks are independent, so the copies give independent estimates.
    """
    block = 300
    sig = torch.zeros(blocks * block, 2 * blocks, dtype=torch.bool)
    for b in range(blocks):
        sig[b * block : b * block + 270, 2 * b] = True  # 60 own + 210 shared
        sig[b * block + 60 : b * block + 300, 2 * b + 1] = True  # 210 shared + 30 own
    est = []
    for s in seeds:
        sk = minhash_sketch(sig, num_perm=k, seed=s, backend=backend)
        est.append((sk[0::2] == sk[1::2]).double().mean(1).numpy())
    return np.concatenate(est)


@pytest.mark.parametrize("k", [16, 128])
def test_minhash_error_matches_binomial_standard_error(k):
    """Over many seeds Ĵ is unbiased and its spread is √(J(1−J)/k) within 10% (true permutations)."""
    j = 0.7
    est = _replicated_estimates(k, range(20))
    se = np.sqrt(j * (1 - j) / k)
    assert abs(est.mean() - j) < 3 * se / np.sqrt(len(est))
    assert abs(est.std(ddof=1) / se - 1) < 0.10


def test_datasketch_agrees_in_distribution():
    """datasketch (affine32, identity hash on sample indices) and the torch sketch estimate the same J
    with the same spread; they are different hash families, so only the distributions are compared."""
    j, k = 0.7, 64
    se = np.sqrt(j * (1 - j) / k)
    ours, theirs = _replicated_estimates(k, range(8)), _replicated_estimates(k, range(8), backend="datasketch")
    for est in (ours, theirs):
        assert abs(est.mean() - j) < 3.5 * se / np.sqrt(len(est))
        assert abs(est.std(ddof=1) / se - 1) < 0.2
    assert abs(ours.mean() - theirs.mean()) < 3.5 * se * np.sqrt(2 / len(ours))


def test_datasketch_backend_matches_its_own_jaccard():
    """The datasketch backend's sketch comparison equals datasketch's MinHash.jaccard."""
    from datasketch import MinHash

    rng = np.random.default_rng(5)
    sig = torch.from_numpy(rng.random((200, 4)) < 0.4)
    sk = minhash_sketch(sig, num_perm=32, seed=7, backend="datasketch")
    ours = jaccard_minhash(sk, sk).numpy()
    hashes = []
    for col in sig.T.numpy():
        m = MinHash(num_perm=32, seed=7, hashfunc=int)
        m.update_batch(np.flatnonzero(col))
        hashes.append(m)
    theirs = np.array([[a.jaccard(b) for b in hashes] for a in hashes])
    assert np.array_equal(ours, theirs)


# --------------------------------------------------------------------------------------------------
# Planted copies: invariance, recovered permutations, canonical scaling
# --------------------------------------------------------------------------------------------------


def test_permuted_rescaled_copy_scores_one_and_permutation_is_recovered(arch, model):
    x = probe(arch)
    copy_, perms = planted_copy(model)
    assert_same_function(model, copy_, x, 1e-6)
    details = activation_region_details(flat_preacts(model, x), flat_preacts(copy_, x))
    assert details["score"] == 1.0
    inverse = {name: np.argsort(p) for name, p in perms.items()}  # copy's unit i is model's unit p[i]
    pre_a, pre_b = preactivations(model, x), preactivations(copy_, x)
    for g, layer, za, zb in zip(hidden_layers(model), details["layers"], pre_a, pre_b):
        sa, sb = signatures([za.flatten(1), zb.flatten(1)])
        # Every unit is matched to one with an identical signature; where a signature is unique in its
        # layer that partner is the planted one. (Units sharing a signature, e.g. dead ones, are
        # interchangeable on the probe set, so no method can tell them apart.)
        assert torch.equal(sa, sb[:, layer["partner"]])
        truth = inverse[g.name] if za.ndim == 2 else _expand_channels(inverse[g.name], za[0, 0].numel())
        first, counts = _unique_columns(sa)
        unique = np.isin(np.arange(sa.shape[1]), first[counts == 1])
        assert unique.mean() > 0.5  # the claim is not vacuous
        assert np.array_equal(layer["partner"][unique], truth[unique])
        if za.ndim == 4:  # channels as units, positions as samples: every channel is identifiable
            per_channel = activation_region_details([channel_rows(za)], [channel_rows(zb)])
            assert per_channel["score"] == 1.0
            assert np.array_equal(per_channel["layers"][0]["partner"], inverse[g.name])


def _unique_columns(sig: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first occurrence of each distinct column and how often it occurs."""
    _, first, counts = np.unique(sig.T.numpy(), axis=0, return_index=True, return_counts=True)
    return first, counts


def _expand_channels(channel_partner: np.ndarray, positions: int) -> np.ndarray:
    """A channel permutation as a permutation of NCHW-flattened channel-position columns."""
    return (channel_partner[:, None] * positions + np.arange(positions)[None, :]).reshape(-1)


@pytest.mark.parametrize("spread", [0.1, 2.0, 5.0])
def test_rescaled_copy_canonicalises_to_identical_parameters(arch, model, spread):
    gen = torch.Generator().manual_seed(1)
    scales = {g.name: torch.exp(spread * (2 * torch.rand(g.units, generator=gen, dtype=torch.float64) - 1))
              for g in hidden_layers(model)}
    rescaled = rescaled_copy(model, scales)
    a, b = canonicalize(model).state_dict(), canonicalize(rescaled).state_dict()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-6, atol=1e-6 * a[name].abs().max().item()), name
    # Signatures see only signs: bit-identical, and the score is exactly 1.
    x = probe(arch)
    before, after = signatures(flat_preacts(model, x)), signatures(flat_preacts(rescaled, x))
    assert all(torch.equal(s, t) for s, t in zip(before, after))


def test_canonical_form_is_unique_up_to_the_permutation(arch, model):
    """canonicalize(P·D·A) = P·canonicalize(A): undoing the permutation gives canonicalize(A)."""
    copy_, perms = planted_copy(model, seed=4)
    aligned = permute_hidden_units(canonicalize(copy_), {n: np.argsort(p) for n, p in perms.items()}).state_dict()
    reference = canonicalize(model).state_dict()
    for name in reference:
        assert torch.allclose(aligned[name], reference[name], rtol=1e-6, atol=1e-9), name


@pytest.mark.parametrize("variant", ["w", "wb"])
def test_canonicalize_keeps_the_function_and_normalises_rows(arch, model, variant):
    canon = canonicalize(model, variant=variant)
    x = probe(arch)
    assert_same_function(model, canon, x, 1e-6)
    for g in hidden_layers(canon):
        layer = getattr(canon, g.name)
        rows = layer.weight.reshape(g.units, -1)
        if variant == "wb":
            rows = torch.cat([rows, layer.bias[:, None]], 1)
        assert torch.allclose(rows.norm(dim=1), torch.ones(g.units, dtype=torch.float64), atol=1e-12)
    # float32 models: computed in float64, written back in float32 (spec tolerance 1e-5 relative).
    model32 = trained_ish(arch).float()
    assert_same_function(model32, canonicalize(model32), x.float(), 1e-5)
    assert canonicalize(model32).logits.weight.dtype == torch.float32


def test_canonicalize_folds_eval_batchnorm():
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 6, 3, padding=1, bias=False)), ("bn1", nn.BatchNorm2d(6)), ("relu1", nn.ReLU()),
        ("pool1", nn.AvgPool2d(2)), ("flatten", nn.Flatten()),
        ("fc2", nn.Linear(6 * 16, 10)), ("bn2", nn.BatchNorm1d(10)), ("relu2", nn.LeakyReLU(0.1)),
        ("logits", nn.Linear(10, 4)),
    ])).double()
    for bn in (net.bn1, net.bn2):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    net.eval()
    x = torch.randn(50, 3, 8, 8, dtype=torch.float64)
    canon = canonicalize(net)
    assert isinstance(canon.bn1, nn.Identity) and isinstance(canon.bn2, nn.Identity)
    assert_same_function(net, canon, x, 1e-10)
    assert [g.batchnorm for g in hidden_layers(net)] == ["bn1", "bn2"]
    # The permutation helper moves BatchNorm parameters and statistics with their units.
    perm = {"conv1": np.roll(np.arange(6), 1), "fc2": np.arange(10)[::-1].copy()}
    assert_same_function(net, permute_hidden_units(net, perm), x, 1e-12)


def test_canonicalize_flags_zero_norm_units_and_keeps_the_function():
    net = trained_ish("mlp")
    with torch.no_grad():
        net.fc1.weight[3] = 0.0
    with pytest.warns(RuntimeWarning, match="1 unit.*'fc1'"):
        canon = canonicalize(net)
    x = probe("mlp")
    assert_same_function(net, canon, x, 1e-10)
    assert all(torch.isfinite(p).all() for p in canon.parameters())


@pytest.mark.parametrize("act", [nn.GELU(), nn.Tanh(), nn.SiLU(), nn.Sigmoid()])
def test_canonicalize_refuses_non_homogeneous_layers(act):
    net = nn.Sequential(OrderedDict([("fc1", nn.Linear(4, 8)), ("act1", act), ("logits", nn.Linear(8, 2))]))
    with pytest.raises(ValueError, match=f"canonicalize: layer 'act1' \\({type(act).__name__}\\) is not supported"):
        canonicalize(net)


def test_canonicalize_refuses_other_layouts():
    with pytest.raises(ValueError, match="expected an nn.Sequential"):
        canonicalize(nn.Linear(3, 3))
    after_relu = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="layer '2' \\(BatchNorm1d\\) must directly follow"):
        canonicalize(after_relu)
    with pytest.raises(ValueError, match="variant"):
        canonicalize(trained_ish("mlp"), variant="b")


def test_preactivations_are_the_relu_inputs():
    net = trained_ish("mlp")
    x = probe("mlp", n=30)
    z1, z2 = preactivations(net, x)
    assert torch.equal(z1, net.fc1(x)) and torch.equal(z2, net.fc2(torch.relu(z1)))
    assert not net.training


# --------------------------------------------------------------------------------------------------
# The network-level score: metric property, degenerate units, chance, widths, parameters
# --------------------------------------------------------------------------------------------------


def _random_network(
    rng: np.random.Generator, latent: np.ndarray, widths: tuple[int, ...], noise: float
) -> list[np.ndarray]:
    """Pre-activations that share structure through ``latent`` (so Jaccards spread over (0, 1))."""
    return [latent @ rng.standard_normal((latent.shape[1], w)) + noise * rng.standard_normal((len(latent), w))
            + rng.normal(0, 0.5, w) for w in widths]


@pytest.mark.parametrize(
    "widths,params",
    [
        (((6, 5), (6, 5), (6, 5)), {}),
        (((6, 5), (6, 5), (6, 5)), {"degenerate": "exclude"}),
        (((6, 5), (6, 5), (6, 5)), {"method": "minhash", "num_perm": 32, "seed": 3}),
        (((4, 7), (6, 5), (9, 3)), {}),
        (((4, 7), (6, 5), (9, 3)), {"layer_weights": "uniform"}),
    ],
    ids=["equal", "exclude", "minhash", "unequal", "uniform"],
)
def test_triangle_inequality_of_one_minus_score(widths, params):
    """D = 1 − S is an optimal-transport distance over units with ground metric 1 − J (1 for unmatched
    or excluded units), so it satisfies the triangle inequality, also for unequal widths and for MinHash
    with a fixed seed (1 − Ĵ is a pseudometric for a fixed hash family)."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        latent = rng.standard_normal((120, 3))
        nets = [_random_network(rng, latent, w, noise=rng.uniform(0.2, 2.0)) for w in widths]
        for layer in nets[0]:
            layer[:, 0] = -1.0  # a dead unit, to exercise the degenerate-unit rule
        d = lambda a, b: 1 - measures.compute("activation_region", a, b, **params)  # noqa: E731
        ab, bc, ac = d(nets[0], nets[1]), d(nets[1], nets[2]), d(nets[0], nets[2])
        assert min(ab, bc, ac) >= 0
        assert ac <= ab + bc + 1e-12


def test_dead_and_always_on_units_are_counted_and_never_nan():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((200, 6))
    z[:, 0] = -1.0  # dead
    z[:, 1] = 0.0  # dead too: exactly 0 is inactive
    z[:, 2] = 3.0  # always on
    details = activation_region_details([z], [z])
    layer = details["layers"][0]
    assert (layer["dead_a"], layer["dead_b"], layer["always_on_a"], layer["always_on_b"]) == (2, 2, 1, 1)
    assert details["score"] == 1.0  # degenerate="match": J(∅, ∅) = 1, so S(A, A) = 1
    assert np.array_equal(layer["partner"], np.arange(6)) and np.isfinite(layer["matched_jaccard"]).all()
    excluded = activation_region_details([z], [z], degenerate="exclude")
    assert excluded["score"] == pytest.approx(3 / 6)  # 3 informative units matched, 3 charged as unmatched
    assert excluded["layers"][0]["partner"][:3].tolist() == [-1, -1, -1]
    nothing = activation_region_details([-np.ones((10, 3))], [np.ones((10, 3))], degenerate="exclude")
    assert nothing["score"] == 0.0 and nothing["layers"][0]["matched_mean"] is None


def test_chance_level_closed_form_and_independent_networks():
    assert chance_jaccard(0.5, 0.5) == pytest.approx(1 / 3)
    assert chance_jaccard(1.0, 0.3) == pytest.approx(0.3)
    assert chance_jaccard(0.0, 0.0) == 1.0 and chance_jaccard(0.0, 0.4) == 0.0
    # Independent Bernoulli signatures: the mean Jaccard over many pairs is the chance level.
    rng = np.random.default_rng(2)
    p, q = 0.3, 0.6
    a = torch.from_numpy(rng.random((20000, 40)) < p)
    b = torch.from_numpy(rng.random((20000, 40)) < q)
    assert jaccard_exact(a, b).mean().item() == pytest.approx(p * q / (p + q - p * q), abs=0.003)
    # Independent networks: score near its chance level, chance-corrected score near 0.
    za = [rng.standard_normal((20000, 32)) + rng.normal(0, 1, 32)]
    zb = [rng.standard_normal((20000, 32)) + rng.normal(0, 1, 32)]
    details = activation_region_details(za, zb)
    assert details["chance_corrected"] == pytest.approx(0.0, abs=0.02)
    assert details["chance"] < details["score"] < details["chance"] + 0.02


def test_wider_network_is_charged_for_unmatched_units():
    """A planted 8-unit subnetwork inside a 16-unit layer: S = 8/16, mean over matched pairs = 1."""
    rng = np.random.default_rng(3)
    wide = rng.standard_normal((300, 16))
    narrow = wide[:, [9, 2, 14, 5, 0, 11, 7, 3]]
    for a, b in [([narrow], [wide]), ([wide], [narrow])]:
        layer = activation_region_details(a, b)["layers"][0]
        assert layer["score"] == 0.5 and layer["matched_mean"] == 1.0
    assert activation_region_details([narrow], [wide])["layers"][0]["partner"].tolist() == [9, 2, 14, 5, 0, 11, 7, 3]


def test_layer_weights_aggregate_per_layer_scores():
    rng = np.random.default_rng(4)
    a = [rng.standard_normal((100, 4)), rng.standard_normal((100, 12))]
    b = [rng.standard_normal((100, 4)), rng.standard_normal((100, 12))]
    units, uniform = activation_region_details(a, b), activation_region_details(a, b, layer_weights="uniform")
    s1, s2 = (layer["score"] for layer in units["layers"])
    assert units["score"] == pytest.approx((4 * s1 + 12 * s2) / 16)
    assert uniform["score"] == pytest.approx((s1 + s2) / 2)


def test_minhash_score_is_seeded_and_reports_exact_jaccard_of_its_pairs():
    rng = np.random.default_rng(5)
    latent = rng.standard_normal((500, 4))
    a, b = _random_network(rng, latent, (10, 10), 0.5), _random_network(rng, latent, (10, 10), 0.5)
    run = lambda **kw: activation_region_details(a, b, method="minhash", num_perm=64, **kw)  # noqa: E731
    first, again, other = run(seed=1), run(seed=1), run(seed=2)
    assert first["score"] == again["score"] and first["score"] != other["score"]
    assert measures.compute("activation_region", a, a, method="minhash", num_perm=16) == 1.0
    # exact_score: the exact Jaccard of the MinHash-chosen pairs, never above the exact optimum.
    exact = activation_region_details(a, b)
    chosen = first["layers"][0]["partner"]
    j = jaccard_exact(*signatures([a[0], b[0]])).numpy()
    assert first["layers"][0]["exact_score"] == pytest.approx(j[np.arange(10), chosen].sum() / 10)
    assert first["exact_score"] <= exact["score"] + 1e-12
    assert abs(first["score"] - exact["score"]) < 0.1
    ds = activation_region_details(a, b, method="minhash", num_perm=64, minhash_backend="datasketch")
    assert abs(ds["score"] - exact["score"]) < 0.1 and ds["datasketch_version"].startswith("2.")


def test_errors_name_the_measure():
    rng = np.random.default_rng(6)
    z = rng.standard_normal((20, 3))
    with pytest.raises(ValueError, match="'activation_region': the networks have different depths \\(2 vs 1"):
        measures.compute("activation_region", [z, z], [z])
    for bad in [{"method": "approx"}, {"degenerate": "drop"}, {"num_perm": 0}, {"seed": -1}, {"minhash_backend": "x"}]:
        with pytest.raises(ValueError, match="'activation_region': "):
            measures.compute("activation_region", [z], [z], **bad)
    with pytest.raises(ValueError, match="unknown parameter"):
        activation_region_details([z], [z], k=3)
    with pytest.raises(ValueError, match="NaN or Inf"):
        activation_region_details([z * np.nan], [z])


def test_benchmark_script_prints_the_table_and_crossovers(monkeypatch, capsys):
    from benchmarks import bench_activation_region as bench

    monkeypatch.setattr(bench, "QUICK", {"n": (8,), "N": (64, 128), "k": (4,)})
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep the session's thread count
    bench.main(["--quick"])
    out = capsys.readouterr().out
    assert "| 8 | 64 | 4 |" in out and "| 8 | 128 | 4 |" in out
    assert "Where MinHash beats the exact GEMM" in out and "\n| 8 | 4 | " in out
