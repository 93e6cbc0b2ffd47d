"""FlatAdam (tasks/zoo/training.py) against torch.optim.Adam, the optimiser it replaces on the CPU: every
weight must come out bit for bit the same, for the zoo's architectures, weight decay, BatchNorm buffers,
parameters of other dtypes or layouts, parameters left without a gradient, and whole training runs
(interventions, warm starts, probe histories) of ``train`` with torch's Adam as the reference."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from tasks.zoo import architectures, datasets, training
from tasks.zoo.training import FLAT_ALIGN_BYTES, FlatAdam, ProbeHistory, train


def assert_same_bits(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and sa[name].shape == sb[name].shape, name
        # bytes, not values: torch.equal would take -0.0 for 0.0
        assert sa[name].contiguous().view(-1).view(torch.uint8).equal(sb[name].contiguous().view(-1).view(torch.uint8)), name


def run_steps(model: nn.Module, optimiser, batches: list[tuple[torch.Tensor, torch.Tensor]], flat: bool) -> None:
    loss_fn = nn.CrossEntropyLoss()
    for x, y in batches:
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimiser.step()
    if flat:
        optimiser.release()


def batches(input_shape: tuple[int, ...], n_classes: int, steps: int = 12, n: int = 16, tokens: int = 0):
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        x = (torch.randint(0, tokens, (n, *input_shape), generator=gen).float() if tokens
             else torch.randn((n, *input_shape), generator=gen))
        out.append((x, torch.randint(0, n_classes, (n,), generator=gen)))
    return out


ARCHS = [
    ("mlp", (1, 8, 8), {}, 0),
    ("cnn", (1, 8, 8), {}, 0),
    ("tiny10", (1, 8, 8), {"channels": (4, 8), "strides": (1, 2)}, 0),  # BatchNorm: buffers stay outside the buffer
    ("transformer", (13,), {"dim": 16, "depth": 2, "heads": 2, "mlp_dim": 24}, 20),
    ("gcn", (21, 5), {}, 0),
    ("sage", (21, 5), {}, 0),
    ("gat", (21, 5), {}, 0),
]


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
@pytest.mark.parametrize("arch,shape,cfg,tokens", ARCHS, ids=[a[0] for a in ARCHS])
def test_flat_adam_gives_torch_adams_weights_bit_for_bit(arch, shape, cfg, tokens, weight_decay):
    torch.manual_seed(0)
    reference = architectures.build(arch, shape, 4, **cfg)
    model = copy.deepcopy(reference)
    data = batches(shape, 4, tokens=tokens)
    run_steps(reference, torch.optim.Adam(reference.parameters(), lr=3e-3, weight_decay=weight_decay), data, flat=False)
    run_steps(model, FlatAdam(model.parameters(), lr=3e-3, weight_decay=weight_decay), data, flat=True)
    assert_same_bits(model, reference)


def test_flat_adam_aligns_each_parameter_and_release_gives_each_its_own_storage():
    torch.manual_seed(0)
    model = architectures.build("cnn", (1, 8, 8), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = FlatAdam(model.parameters(), lr=1e-3)
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert len(storages) == 1  # views of one buffer
    assert all(p.data_ptr() % FLAT_ALIGN_BYTES == 0 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # flattening keeps the values
    optimiser.release()
    assert len({p.untyped_storage().data_ptr() for p in model.parameters()}) == len(list(model.parameters()))
    assert all(p.untyped_storage().nbytes() == p.numel() * p.element_size() for p in model.parameters())


class Mixed(nn.Module):
    """Parameters of two dtypes, one non-contiguous (a transposed view), one frozen, and one that only odd
    steps use (so it has no gradient on even steps, when torch's Adam leaves it alone)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 5)
        self.t = nn.Parameter(torch.randn(5, 6).t())  # (6, 5), not contiguous
        self.frozen = nn.Parameter(torch.randn(5), requires_grad=False)
        self.sometimes = nn.Linear(5, 5)
        self.wide = nn.Parameter(torch.randn(5, dtype=torch.float64))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = self.a(x) + x @ self.t + self.frozen + self.wide.float()
        return self.sometimes(h) if self.calls % 2 else h


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_flat_adam_handles_other_dtypes_layouts_frozen_and_unused_parameters(weight_decay):
    torch.manual_seed(0)
    reference = Mixed()
    model = copy.deepcopy(reference)
    assert not model.t.is_contiguous()
    data = batches((6,), 5, steps=9)
    run_steps(reference, torch.optim.Adam(reference.parameters(), lr=1e-2, weight_decay=weight_decay), data, flat=False)
    run_steps(model, FlatAdam(model.parameters(), lr=1e-2, weight_decay=weight_decay), data, flat=True)
    assert_same_bits(model, reference)
    assert torch.equal(model.frozen, reference.frozen)


def test_atens_vectorised_and_scalar_loops_agree_on_adams_operations():
    """FlatAdam's premise: a weight that sat in the scalar tail of its own tensor's loop sits in the
    vectorised body of the buffer's, so each of Adam's operations must give the same bits either way."""
    gen = torch.Generator().manual_seed(0)
    n = 4096
    p, g, v = torch.randn(n, generator=gen), torch.randn(n, generator=gen) * 1e-3, torch.rand(n, generator=gen) * 1e-6
    ops = {
        "lerp_": lambda p, g, v: p.clone().lerp_(g, 0.1),
        "mul_/addcmul_": lambda p, g, v: v.clone().mul_(0.999).addcmul_(g, g, value=1 - 0.999),
        "sqrt/div/add_": lambda p, g, v: (v.sqrt() / 0.03162).add_(1e-8),
        "addcdiv_": lambda p, g, v: p.clone().addcdiv_(g, v + 1e-8, value=-3e-3),
        "add (weight decay)": lambda p, g, v: g.add(p, alpha=1e-4),
    }
    for name, op in ops.items():
        whole = op(p, g, v)
        for k in (1, 5, 7):  # slices shorter than a vector: the scalar loop only
            parts = torch.cat([op(p[i:i + k], g[i:i + k], v[i:i + k]) for i in range(0, 700, k)])
            assert parts.view(torch.int32).equal(whole[: parts.numel()].view(torch.int32)), name


class TorchAdam(torch.optim.Adam):
    """torch's Adam behind FlatAdam's interface: the reference ``train`` is run with."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=True)

    def release(self) -> None:
        pass


def train_both(monkeypatch, arch: str, data: datasets.Dataset, cfg: dict, **kwargs) -> None:
    """Train one model with FlatAdam and one with torch's Adam; weights, metrics and probe histories must
    agree bit for bit."""
    outcomes = []
    for optimiser in (FlatAdam, TorchAdam):
        monkeypatch.setattr(training, "FlatAdam", optimiser)
        torch.manual_seed(0)
        model = architectures.build(arch, data.input_shape, data.n_classes, **cfg)
        if "start" in kwargs:
            model.load_state_dict(kwargs["start"])
        history = ProbeHistory()
        metrics = train(model, data, seed=3, epochs=3, batch_size=32, lr=3e-3, history=history,
                        **{k: v for k, v in kwargs.items() if k != "start"})
        outcomes.append((model, metrics, history))
    (flat, m_flat, h_flat), (ref, m_ref, h_ref) = outcomes
    assert_same_bits(flat, ref)
    assert m_flat == m_ref
    assert h_flat.epochs == h_ref.epochs
    assert all(np.array_equal(a.view(np.int32), b.view(np.int32)) for a, b in zip(h_flat.probabilities, h_ref.probabilities))


@pytest.fixture(scope="module")
def small_data() -> dict[str, datasets.Dataset]:
    return {"digits": datasets.load("digits"),
            "dyck": datasets.load("dyck", n_samples=240, max_len=12, n_classes=3),
            "sbm": datasets.load("sbm", n_nodes=200, n_features=6, fanout=3)}


@pytest.mark.parametrize("arch,data,cfg,intervention", [
    ("mlp", "digits", {}, {"input_noise": 0.2}),
    ("cnn", "digits", {}, {"label_randomization": 0.5}),
    ("transformer", "dyck", {"dim": 16, "depth": 2, "heads": 2, "mlp_dim": 24}, {"input_noise": 0.3}),
    ("gat", "sbm", {}, {"input_noise": 1.0}),
])
def test_train_gives_the_weights_of_torch_adam(monkeypatch, small_data, arch, data, cfg, intervention):
    train_both(monkeypatch, arch, small_data[data], cfg, intervention=intervention, weight_decay=1e-4)


def test_warm_start_gives_the_weights_of_torch_adam(monkeypatch, small_data):
    data = small_data["digits"]
    torch.manual_seed(0)
    base = architectures.build("mlp", data.input_shape, data.n_classes)
    train(base, data, seed=3, epochs=2, batch_size=32, lr=3e-3)
    train_both(monkeypatch, "mlp", data, {}, start=base.state_dict(),
               warm_start={"scale": 0.3, "seed": 1, "epochs": 2})
