"""The graph domain: node classification on stochastic-block-model graphs with GCN-, GraphSAGE- and GAT-style
networks, and the graph versions of the shortcut and augmentation interventions.

Data (``sbm``): a graph from networkx's ``stochastic_block_model`` (``n_blocks`` equal blocks, edge
probability ``p_in`` within and ``p_out`` between blocks); a node's class is its block. Node features are
``n_features``-dimensional Gaussians whose mean depends weakly on the block (``feature_signal`` times a
random unit vector per block), so features alone classify poorly and a model gains by aggregating
neighbours. The probe set is a fixed stratified subset of the nodes; the other nodes are the training set.

Sampled computation trees (GraphSAGE's mini-batching, Hamilton et al. 2017): every node is one input row,
its ``hops``-level neighbourhood tree with ``fanout`` neighbours drawn per tree node (uniformly, with
replacement; a node without neighbours stands in for itself), drawn once from ``split_seed``. The row holds
the features of the tree's nodes in breadth-first order, shape (T, F) with T = 1 + f + ... + f^hops; the
children of position i of level d are positions f·i ... f·i + f − 1 of level d + 1. So a node's prediction
depends only on its own row, the zoo's training, extraction and caching apply unchanged, and a layer's
representation of the probe set is the root nodes' embeddings (N x D).

Models: ``layers`` message-passing layers (``layers`` must equal the data's ``hops``), each updating every
tree level from its children and shrinking the tree by one level, then a linear ``logits`` on the root:

* ``gcn`` (Kipf & Welling 2017, on the sampled tree): h' = ReLU(W · mean(h, children));
* ``sage`` (Hamilton et al. 2017, mean aggregator): h' = ReLU(W_self h + W_neigh mean(children));
* ``gat`` (Veličković et al. 2018, one head): h' = ReLU(Σ_j α_j (W h_j + b)) over j ∈ {self} ∪ children,
  with α = softmax_j LeakyReLU(a_selfᵀ (W h + b) + a_neighᵀ (W h_j + b)).

Compared layers: the root embedding after each layer (``convs.<i>.readout``) and the logits.

Interventions (ReSi's, adapted to nodes):

* label randomisation: as in every domain (training nodes' labels);
* shortcut: ``n_blocks`` marker features are appended to every tree position; the root's marker is the
  one-hot of its true class with probability ``p`` and of a uniformly random class otherwise (the other
  positions' markers are zero), so a node attribute predicts the class; probe nodes' markers are
  uninformative;
* augmentation (``intervention.input_noise`` = σ_max): per training node σ ~ U(0, σ_max) and Gaussian
  noise of that scale on every feature of its tree (features are not bounded, so nothing is clipped).
"""

from __future__ import annotations

import numpy as np
import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from tasks.zoo.architectures import architecture
from tasks.zoo.datasets import Dataset, _split, dataset
from tasks.zoo.interventions import DOMAIN_INTERVENTIONS, DomainInterventions

# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def tree_size(fanout: int, hops: int) -> int:
    """Positions of a computation tree: 1 + f + ... + f^hops."""
    return sum(fanout**d for d in range(hops + 1))


def _sbm_shape(n_nodes: int = 800, n_blocks: int = 4, n_features: int = 16, fanout: int = 4, hops: int = 2,
               p_in: float = 0.03, p_out: float = 0.01, probe_fraction: float = 0.3,
               **_: object) -> tuple[tuple[int, ...], int]:
    for key, value, low in (("n_blocks", n_blocks, 2), ("n_features", n_features, 1), ("fanout", fanout, 1),
                            ("hops", hops, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"data.{key} must be an integer >= {low}, got {value!r}")
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes < 4 * n_blocks:
        raise ValueError(f"data.n_nodes must be an integer >= 4 x n_blocks = {4 * n_blocks}, got {n_nodes!r}")
    for key, value in (("p_in", p_in), ("p_out", p_out)):
        if not 0 <= value <= 1:
            raise ValueError(f"data.{key} must be a probability in [0, 1], got {value}")
    if not 0 < probe_fraction < 1:
        raise ValueError(f"data.probe_fraction must be in (0, 1), got {probe_fraction}")
    return (tree_size(fanout, hops), n_features), n_blocks


def computation_trees(graph: nx.Graph, fanout: int, hops: int, seed: int) -> np.ndarray:
    """Node ids of every node's sampled computation tree, (n_nodes, T), breadth-first (module docstring):
    ``fanout`` neighbours per tree node drawn uniformly with replacement; an isolated node is its own
    neighbour."""
    rng = np.random.default_rng(seed)
    neighbours = [np.fromiter(graph.neighbors(v), dtype=np.int64) for v in range(graph.number_of_nodes())]
    level = np.arange(graph.number_of_nodes())[:, None]
    levels = [level]
    for _ in range(hops):
        flat = level.reshape(-1)
        drawn = np.empty((flat.size, fanout), dtype=np.int64)
        for i, v in enumerate(flat):
            options = neighbours[v] if neighbours[v].size else np.array([v])
            drawn[i] = options[rng.integers(options.size, size=fanout)]
        level = drawn.reshape(level.shape[0], -1)
        levels.append(level)
    return np.concatenate(levels, axis=1)


def sbm_graph(n_nodes: int, n_blocks: int, p_in: float, p_out: float, seed: int) -> tuple[nx.Graph, np.ndarray]:
    """The stochastic block model graph (networkx) and each node's block."""
    sizes = [n_nodes // n_blocks + (1 if b < n_nodes % n_blocks else 0) for b in range(n_blocks)]
    probs = [[p_in if a == b else p_out for b in range(n_blocks)] for a in range(n_blocks)]
    graph = nx.stochastic_block_model(sizes, probs, seed=seed)
    blocks = np.repeat(np.arange(n_blocks), sizes)
    return graph, blocks


@dataset("sbm", shape=_sbm_shape, domain="graph")
def sbm(n_nodes: int = 800, n_blocks: int = 4, n_features: int = 16, feature_signal: float = 0.5, p_in: float = 0.03,
        p_out: float = 0.01, fanout: int = 4, hops: int = 2, probe_fraction: float = 0.3, split_seed: int = 0,
        generator_seed: int = 0) -> Dataset:
    """Node classification on a stochastic block model graph (module docstring): one row per node, its
    sampled computation tree's features; class = block."""
    _sbm_shape(n_nodes, n_blocks, n_features, fanout, hops, p_in, p_out, probe_fraction)
    graph, blocks = sbm_graph(n_nodes, n_blocks, p_in, p_out, generator_seed)
    rng = np.random.default_rng(generator_seed)
    means = rng.standard_normal((n_blocks, n_features))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    features = feature_signal * means[blocks] + rng.standard_normal((n_nodes, n_features))
    trees = computation_trees(graph, fanout, hops, split_seed)
    return _split("sbm", features[trees], blocks, probe_fraction, split_seed)  # rows: (T, F) per node


# --------------------------------------------------------------------------------------------------
# Interventions
# --------------------------------------------------------------------------------------------------


def add_marker_features(x: np.ndarray, y: np.ndarray, rate: float, n_classes: int, seed: int) -> np.ndarray:
    """Shortcut (ReSi test 4) for nodes: ``n_classes`` marker features appended to every tree position; the
    root's is the one-hot of the true class with probability ``rate`` and of a random class otherwise."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"intervention.shortcut must be in [0, 1] or null, got {rate}")
    rng = np.random.default_rng(seed)
    informative = rng.random(y.shape[0]) < rate
    cls = np.where(informative, y, rng.integers(0, n_classes, size=y.shape[0]))
    markers = np.zeros((*x.shape[:2], n_classes), dtype=x.dtype)
    markers[np.arange(x.shape[0]), 0, cls] = 1.0
    return np.concatenate([x, markers], axis=2)


def feature_noise(x: torch.Tensor, sigma_max: float, generator: torch.Generator) -> torch.Tensor:
    """Augmentation (ReSi test 5) for nodes: per node σ ~ U(0, sigma_max), x + σ·ε on its whole tree."""
    if sigma_max <= 0:
        return x
    sigma = torch.rand(x.shape[0], generator=generator) * sigma_max
    noise = torch.randn(x.shape, generator=generator) * sigma.view(-1, 1, 1)
    return x + noise.to(x.device, x.dtype)


DOMAIN_INTERVENTIONS["graph"] = DomainInterventions(
    add_marker_features, lambda shape, n_classes: (shape[0], shape[1] + n_classes), feature_noise)


# --------------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------------


class RootReadout(nn.Module):
    """What the benchmark records of a message-passing layer: the root nodes' embeddings, (N, D)."""

    def forward(self, root: torch.Tensor) -> torch.Tensor:
        return root


class TreeLayer(nn.Module):
    """One message-passing layer on computation trees: levels [(N, f^d, D_in)] -> levels one shorter."""

    def __init__(self, kind: str, d_in: int, d_out: int):
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(d_in, d_out)
        if kind == "sage":
            self.lin_neigh = nn.Linear(d_in, d_out, bias=False)
        if kind == "gat":
            self.att = nn.Linear(2 * d_out, 1, bias=False)  # its weight is [a_self, a_neigh]
        self.readout = RootReadout()

    def update(self, h: torch.Tensor, children: torch.Tensor) -> torch.Tensor:
        """h: (N, P, D_in), children: (N, P, f, D_in) -> (N, P, D_out)."""
        if self.kind == "gcn":
            return F.relu(self.lin(torch.cat([h.unsqueeze(2), children], dim=2).mean(dim=2)))
        if self.kind == "sage":
            return F.relu(self.lin(h) + self.lin_neigh(children.mean(dim=2)))
        wh = self.lin(torch.cat([h.unsqueeze(2), children], dim=2))  # (N, P, 1 + f, D_out)
        d = wh.shape[-1]
        a_self, a_neigh = self.att.weight[0, :d], self.att.weight[0, d:]
        scores = F.leaky_relu((wh[:, :, :1] @ a_self).unsqueeze(-1) + (wh @ a_neigh).unsqueeze(-1), 0.2)
        alpha = torch.softmax(scores, dim=2)
        return F.relu((alpha * wh).sum(dim=2))

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for d in range(len(levels) - 1):
            h, below = levels[d], levels[d + 1]
            out.append(self.update(h, below.view(h.shape[0], h.shape[1], -1, h.shape[2])))
        self.readout(out[0][:, 0])  # recorded by extraction's hook
        return out


class TreeGNN(nn.Module):
    """``layers`` :class:`TreeLayer` s of one kind, then ``logits`` on the root embedding."""

    def __init__(self, kind: str, fanout: int, n_features: int, n_classes: int, layers: int, width: int):
        super().__init__()
        self.fanout = fanout
        dims = [n_features] + [width] * layers
        self.convs = nn.ModuleList([TreeLayer(kind, dims[i], dims[i + 1]) for i in range(layers)])
        self.logits = nn.Linear(width, n_classes)
        self.simbench_layers = [f"convs.{i}.readout" for i in range(layers)] + ["logits"]
        self.simbench_preactivations: list[str] = []  # message passing is not a flat ReLU stack

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = [self.fanout**d for d in range(len(self.convs) + 1)]
        levels = list(torch.split(x, sizes, dim=1))
        for conv in self.convs:
            levels = conv(levels)
        return self.logits(levels[0][:, 0])


def _tree_gnn(kind: str, input_shape: tuple[int, ...], n_classes: int, layers: int, width: int) -> TreeGNN:
    if len(input_shape) != 2:
        raise ValueError(f"{kind} needs computation-tree inputs (positions, features), got input shape {input_shape}")
    for key, value in (("layers", layers), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"arch.{key} must be an integer >= 1, got {value!r}")
    positions = input_shape[0]
    fanout = next((f for f in range(1, positions + 1) if tree_size(f, layers) >= positions), positions)
    if tree_size(fanout, layers) != positions:
        raise ValueError(f"{kind} with arch.layers={layers} needs computation trees of {layers} hops, and inputs "
                         f"of {positions} positions are not such a tree for any fanout; set data.hops={layers}")
    return TreeGNN(kind, fanout, input_shape[1], n_classes, layers, width)


@architecture("gcn")
def gcn(input_shape: tuple[int, ...], n_classes: int, layers: int = 2, width: int = 32) -> TreeGNN:
    """GCN-style network on sampled computation trees (module docstring)."""
    return _tree_gnn("gcn", input_shape, n_classes, layers, width)


@architecture("sage")
def sage(input_shape: tuple[int, ...], n_classes: int, layers: int = 2, width: int = 32) -> TreeGNN:
    """GraphSAGE-style network (mean aggregator) on sampled computation trees (module docstring)."""
    return _tree_gnn("sage", input_shape, n_classes, layers, width)


@architecture("gat")
def gat(input_shape: tuple[int, ...], n_classes: int, layers: int = 2, width: int = 32) -> TreeGNN:
    """GAT-style network (one attention head) on sampled computation trees (module docstring)."""
    return _tree_gnn("gat", input_shape, n_classes, layers, width)
