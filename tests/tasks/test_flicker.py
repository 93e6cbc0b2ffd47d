"""The flicker task: near-tie fixtures, bit and match flicker, and the task on a tiny sweep."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from measures import compute
from measures.activation_region import (
    activation_region_details,
    jaccard_exact,
    jaccard_minhash,
    preactivations,
    signatures,
)
from tasks.flicker import (
    Side,
    bit_flicker,
    build_fixture,
    duplicate_units,
    matchings,
    minhash_jaccard,
    pair_flicker,
    side_of_model,
    split_units,
)
from tasks.zoo import architectures, datasets
from tasks.zoo.training import perturb, train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data():
    return datasets.load("synthetic", n_samples=400, n_features=16, n_classes=4, probe_fraction=0.5,
                         split_seed=0, generator_seed=0)


def _trained(data, seed: int, width: int = 16) -> torch.nn.Sequential:
    model = architectures.build("mlp", data.input_shape, data.n_classes, depth=2, width=width)
    train(model, data, seed=seed, epochs=3, batch_size=64, lr=3e-3)
    return model


@pytest.fixture(scope="module")
def mlps(data):
    return _trained(data, 0), _trained(data, 1)


@pytest.fixture(scope="module")
def probe(data):
    return torch.from_numpy(data.x_probe)


@pytest.mark.parametrize("build", [duplicate_units, split_units])
def test_fixtures_keep_the_function_of_an_mlp(mlps, probe, build):
    model = mlps[0]
    fixture = build(build(model, "fc1", [0, 5]), "fc2", [3])
    assert fixture.fc1.out_features == 18 and fixture.fc2.in_features == 18 and fixture.fc2.out_features == 17
    with torch.no_grad():
        assert (fixture(probe) - model(probe)).abs().max() <= 1e-6
    # the twins' signatures are identical to their originals'
    z1, z2 = [z.numpy() > 0 for z in preactivations(fixture, probe)]
    assert np.array_equal(z1[:, [0, 5]], z1[:, [16, 17]]) and np.array_equal(z2[:, 3], z2[:, 16])


@pytest.mark.parametrize("build", [duplicate_units, split_units])
def test_fixtures_keep_the_function_of_a_cnn(build):
    torch.manual_seed(0)
    model = architectures.build("cnn", (1, 8, 8), 10, channels=(4, 8), hidden=16).eval()
    x = torch.randn(32, 1, 8, 8)
    # conv -> conv (input channels), conv -> flatten -> linear (H*W columns per channel), linear -> linear
    fixture = build(build(build(model, "conv1", [1]), "conv2", [0, 7]), "fc3", [2])
    assert fixture.conv2.in_channels == 5 and fixture.fc3.in_features == 10 * 2 * 2
    with torch.no_grad():
        assert (fixture(x) - model(x)).abs().max() <= 1e-6


def test_fixture_arguments_are_checked(mlps):
    with pytest.raises(ValueError, match="not a hidden layer"):
        duplicate_units(mlps[0], "logits", [0])
    with pytest.raises(ValueError, match="distinct indices"):
        split_units(mlps[0], "fc1", [0, 0])
    with pytest.raises(ValueError, match="fraction"):
        split_units(mlps[0], "fc1", [0], fraction=1.0)


def test_twins_make_the_hungarian_partner_ambiguous(mlps, probe):
    """Closed form: twin units have identical signatures, so their rows of the Jaccard matrix against any
    network B are identical and swapping their partners leaves the matched total unchanged: both
    assignments are optimal, and which one the solver returns is decided by index alone."""
    fixture = duplicate_units(mlps[0], "fc1", [4])
    sig_a = signatures(preactivations(fixture, probe))[0]
    sig_b = signatures(preactivations(split_units(mlps[1], "fc1", [9]), probe))[0]  # 17 units too
    jac = jaccard_exact(sig_a, sig_b).numpy()
    np.testing.assert_array_equal(jac[4], jac[16])
    rows, cols = linear_sum_assignment(jac, maximize=True)
    assert np.array_equal(rows, np.arange(17))
    swapped = cols.copy()
    swapped[[4, 16]] = cols[[16, 4]]
    assert jac[rows, swapped].sum() == jac[rows, cols].sum()


def test_match_flicker_appears_on_twins_and_not_on_the_plain_model(mlps, probe):
    """Under the same noise draws the trained model keeps every partner (no near-ties), while the
    duplicated-unit fixture's twins change partners in some draws (the tie breaks one way or the other)."""
    def cross_flicker(model, reference, fixture=None):
        a, b = side_of_model(model, probe), side_of_model(reference, probe)
        refs = matchings(a, b)
        values = []
        for draw in range(8):
            noisy = side_of_model(perturb(model, 0.05, 100 + draw), probe)
            stats = pd.DataFrame(pair_flicker(a, noisy, b, refs, fixture))
            values.append(stats)
        return pd.concat(values)

    plain = cross_flicker(mlps[0], mlps[1])
    fixture = build_fixture(mlps[0], "duplicated", probe, seed=0)
    reference = build_fixture(mlps[1], "duplicated", probe, seed=1)
    twins = cross_flicker(fixture.model, reference.model, fixture)
    ar = "activation_region"
    self_plain = plain[plain["measure"].eq(ar) & plain["statistic"].eq("match_flicker_self") & plain["layer"].eq("all")]
    assert self_plain["value"].eq(0).all()
    twin = twins[twins["measure"].eq(ar) & twins["statistic"].eq("twin_flicker_cross")]["value"]
    assert 0 < twin.mean() < 1
    for matcher in ("activation_region", "correlation_matching", "weight_matching", "sort_canonical"):
        selected = twins[twins["measure"].eq(matcher) & twins["statistic"].eq("match_flicker_cross")
                         & twins["layer"].eq("all")]
        assert selected["value"].max() > 0, matcher


def test_matchings_agree_with_the_measures(mlps, probe):
    """The task's cached matchers give the measures' own partners and scores (activation_region exact,
    degenerate units excluded, MinHash; correlation_match_hard), and the sparse MinHash Jaccard equals
    jaccard_minhash bit for bit."""
    a, b = side_of_model(mlps[0], probe), side_of_model(mlps[1], probe)
    found = matchings(a, b)
    for matcher, params in (("activation_region", {}), ("activation_region_exclude", {"degenerate": "exclude"}),
                            ("activation_region_minhash", {"method": "minhash", "num_perm": 128, "seed": 0})):
        details = activation_region_details(a.pre, b.pre, **params)
        assert found[matcher][1] == pytest.approx(details["score"], abs=1e-12)
        for partner, layer in zip(found[matcher][0], details["layers"]):
            np.testing.assert_array_equal(partner, layer["partner"])
    for layer in range(2):
        expected = jaccard_minhash(a.sketches(0)[layer], b.sketches(0)[layer]).numpy()
        np.testing.assert_array_equal(minhash_jaccard(a.sketches(0)[layer], b.sketches(0)[layer], probe.shape[0]),
                                      expected)
    one_layer = Side(a.pre[:1], None, a.layers[:1]), Side(b.pre[:1], None, b.layers[:1])
    score = matchings(*one_layer, ("correlation_matching",))["correlation_matching"][1]
    assert score == pytest.approx(compute("correlation_match_hard", np.maximum(a.pre[0], 0).astype(np.float64),
                                          np.maximum(b.pre[0], 0).astype(np.float64)), abs=1e-9)


def test_bit_flicker_equals_a_numpy_count():
    """Hand-built pre-activations: 3 inputs x 2 units and 3 x 1; z = 0 counts as inactive (strict z > 0)."""
    a = [np.array([[1.0, -1.0], [0.0, 2.0], [-3.0, 0.5]]), np.array([[0.2], [0.3], [-0.1]])]
    b = [np.array([[0.5, 1.0], [1e-9, 2.0], [-3.0, 0.0]]), np.array([[0.2], [-0.3], [0.0]])]
    # layer 1: (1,-1)->(+,+) flips one bit, (0,2)->(+,+) flips one (0 is inactive), (.5)->(0) flips one
    assert bit_flicker(a, b) == [3 / 6, 1 / 3]
    expected = [np.count_nonzero((x > 0) != (y > 0)) / x.size for x, y in zip(a, b)]
    assert bit_flicker(a, b) == expected


def test_self_matching_of_an_unperturbed_model_is_the_identity(mlps, probe):
    a = side_of_model(mlps[0], probe)
    same = Side([p.copy() for p in a.pre], mlps[0], a.layers)
    stats = pd.DataFrame(pair_flicker(a, same, None, None))
    assert stats["value"].eq(0).all()
    details = activation_region_details(a.pre, same.pre)
    assert details["score"] == 1.0


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    cmd = [sys.executable, "-m", "runners.sweep", "sweep=smoke", f"results_dir={results}", "name=flicker",
           "perturbation.scale=0,0.01,0.1", "measures.include=[cka_linear,disagreement,activation_region]"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results / "flicker", proc


def test_flicker_task_runs_end_to_end(tiny_sweep):
    out, proc = tiny_sweep
    assert "flicker: duplicated: mean cross match flicker" in proc.stdout
    table = pd.read_csv(out / "tables" / "flicker.csv")
    assert (out / "figures" / "flicker.png").stat().st_size > 10_000
    assert {"bit_flicker", "match_flicker_self", "match_flicker_cross", "twin_flicker_cross", "score_change_cross",
            "minhash_seed_flicker", "sigma10", "sigma50", "drift_in_seed_units", "max_output_change"} <= set(table["statistic"])
    assert set(table["fixture"]) == {"zoo", "duplicated", "split"}
    assert {"activation_region", "activation_region_minhash", "correlation_matching", "weight_matching",
            "sort_canonical"} <= set(table["measure"])
    assert table.loc[table["statistic"].eq("max_output_change"), "value"].max() <= 1e-5
    assert table.loc[table["statistic"].eq("drift_in_seed_units"), "scale"].gt(0).all()
    bits = table[table["statistic"].eq("bit_flicker") & table["fixture"].eq("zoo") & table["layer"].eq("all")]
    assert bits.sort_values("scale")["value"].is_monotonic_increasing
    evaluations = pd.read_parquet(out / "evaluations.parquet")
    assert "flicker" in set(evaluations["task"])
