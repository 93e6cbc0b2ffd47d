"""The language and graph domains and the deeper vision model: data, architectures, interventions.

Expected values come from outside the code under test: an independent parse of the sentences, networkx's
graph, binomial bounds on the intervention rates, hand-computed message passing, chance accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tasks.zoo.cache import extract
from tasks.zoo import architectures, datasets, graph, interventions, language
from tasks.zoo.training import prepare_data, train

TOKEN = {v: k for k, v in {**{f"open{b}": t for b, t in language.OPEN.items()},
                           **{f"close{b}": t for b, t in language.CLOSE.items()}}.items()}


def parse(row: np.ndarray) -> tuple[bool, int, int]:
    """(balanced and properly nested, deepest bracket depth, number of words) of one encoded sentence:
    a second parser, written here from the token table alone."""
    stack: list[str] = []
    deepest = words = 0
    for t in row[1:].astype(int):
        name = TOKEN.get(t)
        if name is not None and name.startswith("open"):
            stack.append(name[-1])
            deepest = max(deepest, len(stack))
        elif name is not None:
            if not stack or stack.pop() != name[-1]:
                return False, deepest, words
        elif t >= language.WORD_BASE:
            words += 1
        else:
            assert t == language.PAD
    return not stack, deepest, words


def binomial_ok(hits: int, n: int, p: float) -> bool:
    """Within 5 standard deviations of n·p (a false alarm probability below 1e-6)."""
    return abs(hits - n * p) <= 5 * np.sqrt(n * p * (1 - p)) + 1


# --------------------------------------------------------------------------------------------------
# Language
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dyck() -> datasets.Dataset:
    return datasets.load("dyck", n_samples=800, max_len=20, n_classes=4)


def test_dyck_sentences_are_nested_and_labelled_by_their_deepest_bracket(dyck):
    x = np.concatenate([dyck.x_train, dyck.x_probe])
    y = np.concatenate([dyck.y_train, dyck.y_probe])
    assert dyck.domain == "language" and dyck.input_shape == (21,) and dyck.n_classes == 4
    assert x.shape == (800, 21) and np.bincount(y).tolist() == [200] * 4
    assert (x[:, 0] == language.NO_MARK).all()
    parsed = [parse(row) for row in x]
    assert all(ok for ok, _, _ in parsed)
    assert [deepest - 1 for _, deepest, _ in parsed] == y.tolist()
    # structure, not the bag of tokens: the number of brackets overlaps between classes
    brackets = (x >= language.OPEN["("]) & (x < language.WORD_BASE)
    counts = brackets.sum(1)
    assert counts[y == 0].max() > counts[y == 1].min()
    assert datasets.describe("dyck", n_samples=800, max_len=20) == ((21,), 4)


def test_dyck_is_deterministic_and_seeded(dyck):
    again = datasets.load("dyck", n_samples=800, max_len=20, n_classes=4)
    other = datasets.load("dyck", n_samples=800, max_len=20, n_classes=4, generator_seed=1)
    assert np.array_equal(again.x_train, dyck.x_train) and np.array_equal(again.y_probe, dyck.y_probe)
    assert not np.array_equal(other.x_train, dyck.x_train)


@pytest.mark.parametrize("cfg, message", [({"max_len": 5}, "max_len"), ({"n_classes": 9}, "n_classes"),
                                          ({"p_open": 1.5}, "p_open")])
def test_dyck_rejects_bad_settings(cfg, message):
    with pytest.raises(ValueError, match=message):
        datasets.describe("dyck", **cfg)


def test_transformer_layers_and_shapes(dyck):
    model = architectures.build("transformer", dyck.input_shape, 4, dim=16, depth=2, heads=2, mlp_dim=32)
    arrays = extract(model, dyck)
    assert architectures.representation_layers(model) == ["blocks.0.readout", "blocks.1.readout", "norm", "logits"]
    assert arrays["rep/blocks.0.readout"].shape == (160, 16) and arrays["rep/logits"].shape == (160, 4)  # 20% of 800
    assert architectures.preactivation_layers(model) == []
    with pytest.raises(ValueError, match="divisible"):
        architectures.build("transformer", dyck.input_shape, 4, dim=10, heads=4)
    with pytest.raises(ValueError, match="token ids"):
        model(torch.full((1, 21), float(language.VOCAB_SIZE)))


def test_transformer_training_is_deterministic_and_learns_the_grammar(dyck):
    """Same seed -> identical weights; the trained encoder beats chance (0.25) on the probe set."""
    models = [architectures.build("transformer", dyck.input_shape, 4, dim=16, depth=1, heads=2) for _ in range(2)]
    for m in models:
        train(m, dyck, seed=3, epochs=1, batch_size=64, lr=3e-3, intervention={"input_noise": 0.5})
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.equal(a, b), name
    learned = train(architectures.build("transformer", dyck.input_shape, 4), dyck, seed=3, epochs=15, batch_size=64,
                    lr=3e-3)
    assert learned["probe_accuracy"] > 0.45


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_marker_token_is_predictive_at_rate_p(rate):
    n, c = 4000, 4
    y = np.random.default_rng(0).integers(0, c, n)
    x = np.full((n, 10), language.NO_MARK, dtype=np.float32)
    marked = language.add_marker_token(x, y, rate, c, seed=1)
    assert np.array_equal(marked[:, 1:], x[:, 1:])
    hits = int((marked[:, 0] == language.MARK_BASE + y).sum())
    assert binomial_ok(hits, n, rate + (1 - rate) / c)  # informative, or a random class that happens to match
    assert set(np.unique(marked[:, 0]).astype(int)) <= set(range(language.MARK_BASE, language.MARK_BASE + c))


def test_language_shortcut_through_prepare_data(dyck):
    data = prepare_data(dyck, {"shortcut": 1.0}, seed=0)
    assert np.array_equal(data.x_train[:, 0], language.MARK_BASE + dyck.y_train)
    assert np.array_equal(data.x_train[:, 1:], dyck.x_train[:, 1:])
    hits = int((data.x_probe[:, 0] == language.MARK_BASE + dyck.y_probe).sum())
    assert binomial_ok(hits, len(dyck.y_probe), 0.25)  # the probe markers carry no information


def test_word_noise_replaces_words_at_the_drawn_rate_and_keeps_the_structure(dyck):
    x = torch.from_numpy(np.repeat(dyck.x_train, 5, axis=0))
    noisy = language.word_noise(x, 0.6, torch.Generator().manual_seed(0))
    words = x >= language.WORD_BASE
    assert torch.equal(noisy[~words], x[~words])  # brackets, markers and padding untouched
    assert (noisy[words] >= language.WORD_BASE).all()
    changed = int((noisy != x).sum())
    # a word is redrawn with probability r ~ U(0, 0.6) (mean 0.3), and the new word differs w.p. 7/8
    assert binomial_ok(changed, int(words.sum()), 0.3 * (1 - 1 / language.N_WORDS))
    assert torch.equal(language.word_noise(x, 0.6, torch.Generator().manual_seed(0)), noisy)
    assert torch.equal(language.word_noise(x, 0.0, torch.Generator()), x)
    with pytest.raises(ValueError, match="input_noise"):
        language.word_noise(x, 1.5, torch.Generator())


# --------------------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------------------

SBM = dict(n_nodes=400, n_blocks=4, n_features=8, fanout=3, hops=2, p_in=0.08, p_out=0.01, feature_signal=1.0)


@pytest.fixture(scope="module")
def sbm() -> datasets.Dataset:
    return datasets.load("sbm", **SBM)


def test_computation_trees_follow_the_graphs_edges():
    """Each child of a tree position is a neighbour (in networkx's graph) of the node at its parent."""
    g, blocks = graph.sbm_graph(60, 3, 0.3, 0.02, seed=0)
    g.add_node(60)  # an isolated node stands in for itself
    trees = graph.computation_trees(g, fanout=3, hops=2, seed=0)
    assert trees.shape == (61, 1 + 3 + 9) and (trees[:, 0] == np.arange(61)).all()
    # breadth-first layout: position i of level d (offset 1 + ... + 3^(d-1)) has parent i // 3 of level d - 1
    parent_of = {1 + i: 0 for i in range(3)} | {4 + i: 1 + i // 3 for i in range(9)}
    for tree in trees:
        for position, parent_position in parent_of.items():
            parent, child = tree[parent_position], tree[position]
            assert child in set(g.neighbors(parent)) or (g.degree(parent) == 0 and child == parent)
    assert np.bincount(blocks).tolist() == [20, 20, 20]


def test_sbm_shapes_classes_and_determinism(sbm):
    assert sbm.domain == "graph" and sbm.input_shape == (13, 8) and sbm.n_classes == 4
    assert len(sbm.y_probe) == 120 and np.bincount(sbm.y_probe).tolist() == [30] * 4
    again = datasets.load("sbm", **SBM)
    assert np.array_equal(again.x_probe, sbm.x_probe) and np.array_equal(again.y_train, sbm.y_train)
    assert datasets.describe("sbm", **SBM) == ((13, 8), 4)


def test_sage_layer_matches_a_hand_computed_update():
    """One sage layer on fanout-2 trees of one hop: root' = ReLU(W_s x_0 + b + W_n mean(x_1, x_2))."""
    model = architectures.build("sage", (3, 4), 2, layers=1, width=5)
    x = torch.randn(7, 3, 4)
    layer = model.convs[0]
    expected = torch.relu(x[:, 0] @ layer.lin.weight.T + layer.lin.bias + x[:, 1:].mean(1) @ layer.lin_neigh.weight.T)
    assert torch.allclose(model(x), expected @ model.logits.weight.T + model.logits.bias, atol=1e-6)


def test_gcn_and_gat_layers_match_hand_computed_updates():
    x = torch.randn(7, 4, 2)  # fanout 3, one hop
    gcn = architectures.build("gcn", (4, 2), 2, layers=1, width=5)
    hidden = torch.relu(gcn.convs[0].lin(x.mean(1)))
    assert torch.allclose(gcn(x), gcn.logits(hidden), atol=1e-6)
    gat = architectures.build("gat", (4, 2), 2, layers=1, width=5)
    wh = gat.convs[0].lin(x)  # (7, 4, 5)
    a = gat.convs[0].att.weight[0]
    scores = torch.nn.functional.leaky_relu(wh[:, :1] @ a[:5] + wh @ a[5:], 0.2)  # (7, 4)
    hidden = torch.relu((torch.softmax(scores, dim=1).unsqueeze(-1) * wh).sum(1))
    assert torch.allclose(gat(x), gat.logits(hidden), atol=1e-6)


@pytest.mark.parametrize("arch", ["gcn", "sage", "gat"])
def test_gnn_layers_shapes_and_depth_check(sbm, arch):
    model = architectures.build(arch, sbm.input_shape, 4, layers=2, width=6)
    arrays = extract(model, sbm)
    assert [k for k in arrays if k.startswith("rep/")] == ["rep/convs.0.readout", "rep/convs.1.readout", "rep/logits"]
    assert arrays["rep/convs.1.readout"].shape == (120, 6)
    with pytest.raises(ValueError, match="data.hops=3"):
        architectures.build(arch, sbm.input_shape, 4, layers=3)


def test_gcn_recovers_the_blocks_and_trains_deterministically(sbm):
    models = [architectures.build("gcn", sbm.input_shape, 4) for _ in range(2)]
    metrics = [train(m, sbm, seed=0, epochs=20, batch_size=64, lr=3e-3) for m in models]
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()):
        assert torch.equal(a, b)
    # features alone: a logistic regression on the node's own features is the baseline to beat
    from sklearn.linear_model import LogisticRegression
    own = LogisticRegression(max_iter=1000).fit(sbm.x_train[:, 0], sbm.y_train).score(sbm.x_probe[:, 0], sbm.y_probe)
    assert metrics[0]["probe_accuracy"] > max(0.25 + 0.2, own)


@pytest.mark.parametrize("rate", [0.0, 0.75, 1.0])
def test_marker_feature_is_predictive_at_rate_p(rate):
    n, c = 4000, 4
    y = np.random.default_rng(0).integers(0, c, n)
    x = np.random.default_rng(1).standard_normal((n, 5, 3)).astype(np.float32)
    marked = graph.add_marker_features(x, y, rate, c, seed=2)
    assert marked.shape == (n, 5, 3 + c) and np.array_equal(marked[..., :3], x)
    assert (marked[:, 1:, 3:] == 0).all() and (marked[:, 0, 3:].sum(1) == 1).all()
    assert binomial_ok(int((marked[:, 0, 3:].argmax(1) == y).sum()), n, rate + (1 - rate) / c)
    assert interventions.for_domain("graph").shortcut_shape((5, 3), c) == (5, 3 + c)


def test_feature_noise_scale_is_uniform_up_to_sigma_max():
    x = torch.zeros(20000, 4, 8)
    noisy = graph.feature_noise(x, 0.8, torch.Generator().manual_seed(0))
    per_node = noisy.flatten(1).std(1)
    assert per_node.max() < 0.8 * 1.4 and abs(float(per_node.mean()) - 0.4) < 0.02  # σ ~ U(0, 0.8): mean 0.4
    assert torch.equal(graph.feature_noise(x, 0.0, torch.Generator()), x)


# --------------------------------------------------------------------------------------------------
# Deeper vision, domains
# --------------------------------------------------------------------------------------------------


def test_tiny10_has_nine_compared_layers_and_bn_preactivations():
    data = datasets.load("digits", probe_fraction=0.1)
    model = architectures.build("tiny10", data.input_shape, 10)
    assert architectures.representation_layers(model) == [f"relu{i}" for i in range(1, 9)] + ["logits"]
    assert architectures.preactivation_layers(model) == [f"bn{i}" for i in range(1, 9)]
    arrays = extract(model, data)
    # 8x8 maps at 16 channels, a stride-2 conv to 4x4 at layer 4, to 2x2 at layer 7
    assert [arrays[f"rep/relu{i}"].shape[1] for i in (1, 4, 7)] == [16 * 64, 32 * 16, 64 * 4]
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d)
    with pytest.raises(ValueError, match="equal length"):
        architectures.build("tiny10", (1, 8, 8), 10, channels=[4, 4], strides=[1])


def test_every_dataset_has_a_domain_with_interventions():
    assert datasets.domain_of("digits") == "vision" and datasets.domain_of("sbm") == "graph"
    assert datasets.domain_of("dyck") == "language" and datasets.load("digits").domain == "vision"
    for name in datasets.DATASETS:
        interventions.for_domain(datasets.domain_of(name))
    with pytest.raises(ValueError, match="known domains"):
        interventions.for_domain("audio")
    with pytest.raises(ValueError, match="valid choices"):
        datasets.domain_of("imagenet")


def test_tiny10_training_is_deterministic():
    data = datasets.load("digits", probe_fraction=0.5)
    models = [architectures.build("tiny10", data.input_shape, 10, channels=[4] * 8) for _ in range(2)]
    for m in models:
        train(m, data, seed=1, epochs=1, batch_size=64, lr=1e-3)
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.equal(a, b), name
