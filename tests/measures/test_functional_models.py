"""Model-based functional measures: stitching, adversarial transferability, saliency similarity, ModelDiff.

Every value is checked against something computed independently in the test: closed forms on linear
models (FGSM = ε·sign of a weight difference, input gradient = weight row, saliency = cosine of weight
rows), an explicit permutation matrix for a copy with permuted hidden units, SciPy's cosine distance,
and the exact identity values (a model with itself, or with a functionally identical copy).
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cosine as scipy_cosine_distance
from torch import nn

import measures
from measures import functional_models as fm
from tasks.zoo.architectures import build
from tasks.zoo.datasets import load
from tasks.zoo.training import train

NAMES = ["adversarial_transferability", "modeldiff", "saliency_similarity", "stitching"]


@pytest.fixture(scope="module")
def digits():
    return load("digits")


@pytest.fixture(scope="module")
def probe(digits) -> torch.Tensor:
    return torch.from_numpy(digits.x_probe)


@pytest.fixture(scope="module")
def labels(digits) -> torch.Tensor:
    return torch.from_numpy(digits.y_probe)


def _trained(digits, arch: str, seed: int, epochs: int, **cfg) -> nn.Sequential:
    model = build(arch, digits.input_shape, digits.n_classes, **cfg)
    train(model, digits, seed=seed, epochs=epochs, batch_size=64, lr=1e-2)
    return model


@pytest.fixture(scope="module")
def mlp_a(digits) -> nn.Sequential:
    return _trained(digits, "mlp", 0, 3, depth=2, width=32)


@pytest.fixture(scope="module")
def mlp_b(digits) -> nn.Sequential:
    return _trained(digits, "mlp", 1, 3, depth=2, width=32)


@pytest.fixture(scope="module")
def cnn(digits) -> nn.Sequential:
    return _trained(digits, "cnn", 0, 2, channels=(4, 8), hidden=16)


def _linear(n_classes: int, seed: int) -> nn.Sequential:
    """f(x) = W flatten(x) + b on 8x8 digits, with fixed random weights."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([("flatten", nn.Flatten()), ("logits", nn.Linear(64, n_classes))]))


def _permuted_copy(model: nn.Sequential, perm: torch.Tensor) -> nn.Sequential:
    """A copy whose hidden unit j of fc1/relu1 is the original's unit perm[j]: the same function."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.fc1.weight.copy_(model.fc1.weight[perm])
        other.fc1.bias.copy_(model.fc1.bias[perm])
        other.fc2.weight.copy_(model.fc2.weight[:, perm])
    return other


def compute(name: str, a, b, probe, labels, **params) -> float:
    if measures.info(name).requires_labels:
        params.setdefault("labels", labels)
    return measures.compute(name, a, b, probe=probe, **params)


# --- metadata ----------------------------------------------------------------------------------------


def test_metadata():
    assert measures.names(family="functional_models") == NAMES
    for name in NAMES:
        info = measures.info(name)
        assert info.inputs == "models" and info.kind == "similarity" and info.stochastic
        assert info.params["probe"] is None and "max_inputs" in info.params
        assert "Range" in info.doc and "Reference" in info.doc
    assert measures.info("stitching").symmetric is False
    assert measures.info("modeldiff").requires_labels is False
    assert all(measures.info(n).requires_labels for n in NAMES if n != "modeldiff")


# --- stitching -----------------------------------------------------------------------------------------


def _relu1(model: nn.Sequential, probe: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model[:3](probe)  # flatten, fc1, relu1


def test_least_squares_stitch_of_a_model_with_itself_is_the_identity(mlp_a, probe):
    h = _relu1(mlp_a, probe).double()
    weight, bias = fm._least_squares_stitch(h, h)
    alive = h.std(dim=0) > 0
    torch.testing.assert_close(h @ weight + bias, h, rtol=0, atol=1e-10)
    identity = torch.eye(int(alive.sum()), dtype=torch.float64)
    torch.testing.assert_close(weight[alive][:, alive], identity, rtol=0, atol=1e-10)
    torch.testing.assert_close(bias, torch.zeros_like(bias), rtol=0, atol=1e-10)


@pytest.mark.parametrize("params", [{}, {"layer": "relu2"}, {"layer": "auto"}, {"target": "b_predictions"},
                                    {"fit_fraction": 1.0}, {"max_inputs": 10_000}])
def test_stitching_a_model_with_itself_is_one(mlp_a, probe, labels, params):
    assert compute("stitching", mlp_a, mlp_a, probe, labels, **params) == 1.0


@pytest.mark.parametrize("layer", ["relu1", "relu3"])  # a conv map (1x1-conv stitch) and the dense layer
def test_stitching_a_cnn_with_itself_is_one(cnn, probe, labels, layer):
    assert compute("stitching", cnn, cnn, probe, labels, layer=layer) == 1.0


def test_stitching_recovers_a_permutation_of_hidden_units(mlp_a, probe, labels):
    width = mlp_a.fc1.out_features
    perm = torch.randperm(width, generator=torch.Generator().manual_seed(7))
    permuted = _permuted_copy(mlp_a, perm)
    with torch.no_grad():
        torch.testing.assert_close(permuted(probe), mlp_a(probe), rtol=1e-5, atol=1e-5)
    # Closed form: B's unit j is A's unit perm[j], so h_B = h_A P with P[perm[j], j] = 1.
    expected = torch.zeros(width, width, dtype=torch.float64)
    expected[perm, torch.arange(width)] = 1.0
    h_a, h_b = _relu1(mlp_a, probe).double(), _relu1(permuted, probe).double()
    weight, bias = fm._least_squares_stitch(h_a, h_b)
    alive = h_a.std(dim=0) > 0  # dead units are zero on every input: their rows are 0 (minimum norm)
    assert alive.sum() >= width // 2
    torch.testing.assert_close(weight[alive], expected[alive], rtol=0, atol=1e-8)
    torch.testing.assert_close(bias, torch.zeros_like(bias), rtol=0, atol=1e-8)
    assert compute("stitching", mlp_a, permuted, probe, labels) == 1.0
    assert compute("stitching", permuted, mlp_a, probe, labels) == 1.0


def test_stitching_between_different_models(mlp_a, mlp_b, cnn, probe, labels):
    value = compute("stitching", mlp_a, mlp_b, probe, labels)
    assert 0.5 < value <= 1.0  # same architecture, different seeds: stitchable with a small penalty
    trained = compute("stitching", mlp_a, mlp_b, probe, labels, fit="task_loss", seed=3)
    assert 0.0 <= trained <= 1.0
    assert compute("stitching", mlp_a, mlp_b, probe, labels, fit="task_loss", seed=3) == trained
    assert compute("stitching", mlp_a, mlp_a, probe, labels, fit="task_loss") >= 0.9
    with pytest.raises(ValueError, match="affine stitch needs"):  # dense sender, conv receiver
        compute("stitching", mlp_a, cnn, probe, labels)
    with pytest.raises(ValueError, match="has no layer 'relu9'"):
        compute("stitching", mlp_a, mlp_b, probe, labels, layer="relu9")
    with pytest.raises(ValueError, match="nn.Sequential"):
        compute("stitching", _Wrapped(mlp_a), mlp_b, probe, labels)


class _Wrapped(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


# --- adversarial transferability -------------------------------------------------------------------------


def test_fgsm_on_a_linear_model_is_the_sign_of_a_weight_difference(probe):
    model = _linear(2, seed=0).eval()
    x = probe[:64]
    y = torch.arange(64) % 2
    adversarial = fm._attack(model, x, y, attack="fgsm", eps=0.1, steps=1, step_size=0.1, start=None)
    # Two classes: ∇ₓ CE(Wx + b, y) = p_{1−y} (w_{1−y} − w_y), whose sign is sign(w_{1−y} − w_y).
    w = model.logits.weight.detach()
    expected = x + 0.1 * torch.sign(w[1 - y] - w[y]).view(-1, 1, 8, 8)
    assert torch.equal(adversarial, expected)
    # PGD on a linear binary model climbs the same constant direction and ends on the same corner.
    start = fm._uniform_start(x, torch.Generator().manual_seed(0))
    pgd = fm._attack(model, x, y, attack="pgd", eps=0.1, steps=10, step_size=0.025, start=start)
    assert torch.equal(pgd, expected)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("attack", ["pgd", "fgsm"])
def test_transferability(mlp_a, mlp_b, probe, labels, attack):
    assert compute("adversarial_transferability", mlp_a, mlp_a, probe, labels, attack=attack) == 1.0
    forward = compute("adversarial_transferability", mlp_a, mlp_b, probe, labels, attack=attack)
    assert 0.0 <= forward <= 1.0
    assert compute("adversarial_transferability", mlp_b, mlp_a, probe, labels, attack=attack) == forward


def test_transferability_reuses_a_models_attack_only_for_the_same_weights(mlp_a, mlp_b, probe, labels, monkeypatch):
    """Each model's attack is memoised by its weights (measures._memo): comparing one model with several
    partners, or with a model whose weights were changed in place, gives the values computed without the memo."""
    from measures import _memo

    changed = copy.deepcopy(mlp_b)

    def run() -> list[float]:
        out = []
        for scale in (1.0, 1.5, 0.5):  # the same object with other weights: no stale attack may be served
            with torch.no_grad():
                for p, q in zip(changed.parameters(), mlp_b.parameters()):
                    p.copy_(q * scale)
            out += [compute("adversarial_transferability", mlp_a, partner, probe, labels)
                    for partner in (mlp_b, changed, mlp_a, changed)]
        return out

    _memo.clear()
    memoised = run()
    monkeypatch.setattr(_memo, "MAX_ENTRIES", 0)  # disabled: every attack computed afresh
    assert memoised == run()
    assert memoised[2] == 1.0 and len(set(memoised)) > 2


def test_transferability_without_successful_attacks_is_undefined(mlp_a, probe, labels):
    with pytest.raises(measures.UndefinedMeasureError, match="no attack on model A succeeded"):
        compute("adversarial_transferability", mlp_a, mlp_a, probe, labels, eps=1e-9, step_size=1e-9)


# --- saliency --------------------------------------------------------------------------------------------


def test_input_gradient_of_a_linear_model_is_its_weight_row(probe):
    model = _linear(10, seed=1).eval()
    classes = torch.arange(50) % 10
    gradient = fm._input_gradients(model, probe[:50], classes)
    torch.testing.assert_close(gradient, model.logits.weight.detach()[classes].view(-1, 1, 8, 8), rtol=0, atol=0)


def test_saliency_of_linear_models_is_the_cosine_of_weight_rows(probe, labels):
    a, b = _linear(10, seed=2), _linear(10, seed=3)
    wa, wb = a.logits.weight.detach().double().numpy(), b.logits.weight.detach().double().numpy()
    y = labels.numpy()
    expected = np.mean([1.0 - scipy_cosine_distance(wa[c], wb[c]) for c in y])
    value = compute("saliency_similarity", a, b, probe, labels, max_inputs=len(y))
    assert value == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("target", ["label", "own_prediction", "a_prediction"])
def test_saliency_of_a_model_with_itself_is_one(mlp_a, mlp_b, probe, labels, target):
    assert compute("saliency_similarity", mlp_a, mlp_a, probe, labels, target=target) == pytest.approx(1.0, abs=1e-12)
    value = compute("saliency_similarity", mlp_a, mlp_b, probe, labels, target=target)
    assert -1.0 <= value < 1.0


def test_saliency_is_symmetric(mlp_a, mlp_b, probe, labels):
    forward = compute("saliency_similarity", mlp_a, mlp_b, probe, labels)
    assert compute("saliency_similarity", mlp_b, mlp_a, probe, labels) == pytest.approx(forward, abs=1e-15)


# --- ModelDiff -------------------------------------------------------------------------------------------


def test_decision_distances_match_scipy(mlp_a, probe):
    x = probe[:40]
    x_perturbed = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, perturbed = mlp_a(x), mlp_a(x_perturbed)
    ddv = fm._decision_distances(mlp_a, x_perturbed, logits)
    p = torch.softmax(logits.double(), 1).numpy()
    q = torch.softmax(perturbed.double(), 1).numpy()
    expected = [scipy_cosine_distance(p[i], q[i]) for i in range(len(x))]
    np.testing.assert_allclose(ddv.numpy(), expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("perturbation", ["gaussian", "adversarial"])
def test_modeldiff_identity(mlp_a, mlp_b, probe, labels, perturbation):
    assert compute("modeldiff", mlp_a, mlp_a, probe, labels, perturbation=perturbation) == pytest.approx(1.0, abs=1e-12)
    # A copy with permuted hidden units computes the same function (up to float32 summation order).
    permuted = _permuted_copy(mlp_a, torch.randperm(32, generator=torch.Generator().manual_seed(1)))
    value = compute("modeldiff", mlp_a, permuted, probe, labels, perturbation=perturbation)
    assert value == pytest.approx(1.0, abs=1e-4)
    value = compute("modeldiff", mlp_a, mlp_b, probe, labels, perturbation=perturbation)
    assert 0.0 <= value < 0.99


def test_modeldiff_is_symmetric_for_gaussian_pairs(mlp_a, mlp_b, probe, labels):
    forward = compute("modeldiff", mlp_a, mlp_b, probe, labels)
    assert compute("modeldiff", mlp_b, mlp_a, probe, labels) == forward


# --- shared contract: determinism, modes, gradients, bad input ------------------------------------------------


def _with_dropout(model: nn.Sequential) -> nn.Sequential:
    """The model with a Dropout after relu1: different outputs per call in training mode, same in eval mode."""
    layers = list(copy.deepcopy(model).named_children())
    layers.insert(3, ("drop1", nn.Dropout(0.5)))
    return nn.Sequential(OrderedDict(layers))


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_used_and_restored_without_gradient_leaks(name, mlp_a, mlp_b, probe, labels):
    a, b = _with_dropout(mlp_a), copy.deepcopy(mlp_b)
    a.train()
    a.drop1.eval()  # a mixed mode must come back exactly as the caller left it
    b.train()
    before = [copy.deepcopy(m.state_dict()) for m in (a, b)]
    flags = [[m.training for m in model.modules()] for model in (a, b)]

    value = compute(name, a, b, probe, labels, seed=5)
    assert compute(name, a, b, probe, labels, seed=5) == value  # deterministic under a fixed seed
    a.drop1.train()  # dropout active if the measure forgot eval(): the identity value would break
    assert compute(name, a, a, probe, labels) == pytest.approx(1.0, abs=1e-12)
    a.drop1.eval()

    assert [[m.training for m in model.modules()] for model in (a, b)] == flags
    for model, state in zip((a, b), before):
        assert all(p.grad is None for p in model.parameters())
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize("name", NAMES)
def test_seed_controls_the_subsample(name, mlp_a, mlp_b, probe, labels):
    values = {compute(name, mlp_a, mlp_b, probe, labels, max_inputs=40, seed=s) for s in (0, 1, 2)}
    assert len(values) > 1
    assert compute(name, mlp_a, mlp_b, probe.numpy(), labels.numpy(), max_inputs=40, seed=1) in values


def _raises(name: str, match: str, *args, **kwargs) -> None:
    with pytest.raises(ValueError, match=match) as exc:
        measures.compute(name, *args, **kwargs)
    assert str(exc.value).startswith(f"measure {name!r}:"), exc.value


@pytest.mark.parametrize("name", NAMES)
def test_bad_input(name, digits, mlp_a, probe, labels):
    kw = {"labels": labels} if measures.info(name).requires_labels else {}
    five_classes = build("mlp", digits.input_shape, 5, depth=2, width=32)
    vectors = build("mlp", (20,), digits.n_classes, depth=2, width=32)  # expects 20 features, not 8x8 images
    _raises(name, "needs probe", mlp_a, mlp_a, **kw)
    _raises(name, "class counts differ", mlp_a, five_classes, probe=probe, **kw)
    _raises(name, "model B fails on probe inputs of shape", mlp_a, vectors, probe=probe, **kw)
    _raises(name, "model A must be a torch.nn.Module", probe.numpy(), mlp_a, probe=probe, **kw)
    _raises(name, "model B must be a torch.nn.Module", mlp_a, "mlp", probe=probe, **kw)
    _raises(name, "at least 2-D", mlp_a, mlp_a, probe=probe.flatten(), **kw)
    _raises(name, "NaN or Inf", mlp_a, mlp_a, probe=probe * torch.nan, **kw)
    _raises(name, "max_inputs must be an integer", mlp_a, mlp_a, probe=probe, max_inputs=1, **kw)
    _raises(name, "seed must be an integer", mlp_a, mlp_a, probe=probe, seed=-1, **kw)
    _raises(name, "takes 2 input", mlp_a, probe=probe, **kw)
    if kw:
        _raises(name, "labels must be a vector", mlp_a, mlp_a, probe=probe, labels=labels[:-1])
        _raises(name, r"class indices in \[0, 10\)", mlp_a, mlp_a, probe=probe, labels=labels + 10)
        _raises(name, "needs labels", mlp_a, mlp_a, probe=probe)


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("stitching", {"fit": "sgd"}, "fit must be one of"),
        ("stitching", {"target": "logits"}, "target must be one of"),
        ("stitching", {"fit_fraction": 0.0}, "fit_fraction must be in"),
        ("stitching", {"lr": -1.0}, "lr must be a positive"),
        ("adversarial_transferability", {"attack": "cw"}, "attack must be one of"),
        ("adversarial_transferability", {"eps": 0.0}, "eps must be a positive"),
        ("adversarial_transferability", {"steps": 0}, "steps must be an integer"),
        ("saliency_similarity", {"target": "logit"}, "target must be one of"),
        ("modeldiff", {"perturbation": "rotation"}, "perturbation must be one of"),
        ("modeldiff", {"scale": float("inf")}, "scale must be a positive"),
    ],
)
def test_bad_parameters(name, params, match, mlp_a, probe, labels):
    kw = {"labels": labels} if measures.info(name).requires_labels else {}
    _raises(name, match, mlp_a, mlp_a, probe=probe, **kw, **params)


def _model_state(model: nn.Module) -> list:
    """Everything a measure could leave changed in a model: every tensor of its state (bit for bit), the
    training flags, requires_grad and gradients of its parameters, and its hooks."""
    return [
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [(p.requires_grad, p.grad is None) for p in model.parameters()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
    ]


def _same_state(before: list, after: list) -> bool:
    state, now = before[0], after[0]
    return state.keys() == now.keys() and all(torch.equal(v, now[k]) for k, v in state.items()) and before[1:] == after[1:]


#: every model-based measure with its defaults, and weight_distance with each of its alignments
UNCHANGED_CASES = [(n, {}) for n in measures.names(inputs="models")] + [
    ("weight_distance", {"alignment": a}) for a in ("canonical", "weight_matching", "activation_matching")]


@pytest.mark.parametrize(("name", "params"), UNCHANGED_CASES, ids=[f"{n}-{p.get('alignment', 'default')}"
                                                                    for n, p in UNCHANGED_CASES])
def test_models_are_left_unchanged(name, params, mlp_a, mlp_b, probe, labels):
    """No model-based measure changes the models it is given: a sweep job gives all the model-based rows of
    a pair the same two models (``runners.job._pair_model``), so a change would reach the later rows. A second
    call on the same models must give the same value."""
    a, b = copy.deepcopy(mlp_a), copy.deepcopy(mlp_b)
    before = [_model_state(m) for m in (a, b)]
    first = compute(name, a, b, probe, labels, **params)
    assert all(_same_state(s, _model_state(m)) for s, m in zip(before, (a, b))), f"{name} changed a model"
    assert compute(name, a, b, probe, labels, **params) == first
