"""Functional measures that need whole models: stitching, adversarial transfer, saliency, ModelDiff.

Unlike every other family these measures do not compare stored arrays: they run, differentiate or
extend the two models themselves on a probe set. Each measure takes ``model_a, model_b`` (two
``torch.nn.Module`` classifiers) and the keyword-only ``probe=`` (a tensor or array of N probe inputs,
one per row). The registry passes the models through unvalidated, so :func:`_prepare` checks them:

- both are ``nn.Module`` instances with their floating parameters on one device and in one dtype;
- the probe is given, finite, at least 2-D (N, *input_shape) and N >= 2;
- both models accept the probe's input shape and return N x C logits with the same C >= 2;
- labels, where given, are N integer class indices in [0, C).

Every measure runs the models in eval mode and restores each submodule's own training flag afterwards
(:func:`_eval_mode`); gradients are taken with ``torch.autograd.grad`` with respect to inputs or stitch
parameters only, so nothing accumulates in the models' ``.grad`` and no parameter changes. Computation
runs on the models' device in their dtype (the probe is cast to it); closed-form fits and cosines are
taken in float64.

Costs are kept small by evaluating on a seeded subsample of at most ``max_inputs`` probe inputs. One
``seed`` drives every random choice, split into independent named streams (subsample, split, attack,
perturbation, training) so that changing one choice leaves the others' draws unchanged.

Labels: the registry passes ``labels=`` only to measures registered with ``requires_labels=True`` and then
always requires them. Stitching, adversarial transfer and saliency are registered that way; stitching and
saliency have a parameter that scores against a model's predictions instead, in which case the labels
are validated but not used.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import xxhash
from torch import nn

from measures._memo import digest, one_sided
from measures._registry import UndefinedMeasureError, register

FAMILY = "functional_models"
ATTACKS = ("pgd", "fgsm")
STITCH_FITS = ("least_squares", "task_loss")
STITCH_TARGETS = ("labels", "b_predictions")
SALIENCY_TARGETS = ("label", "own_prediction", "a_prediction")
MODELDIFF_PERTURBATIONS = ("gaussian", "adversarial")

_SURVEY = "Klabunde, Schumacher, Strohmaier, Lemmerich. Similarity of Neural Network Models (survey), §5"
_COST = "one forward pass of each model on at most max_inputs probe inputs"


# --------------------------------------------------------------------------------------------------
# Parameter checks and seeds
# --------------------------------------------------------------------------------------------------


def _check_choice(name: str, param: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"measure {name!r}: {param} must be one of {choices}, got {value!r}")


def _check_int(name: str, param: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"measure {name!r}: {param} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_positive(name: str, param: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ValueError(f"measure {name!r}: {param} must be a positive finite number, got {value!r}")
    return float(value)


def _generators(name: str, seed: object, *streams: str) -> dict[str, torch.Generator]:
    """Independent CPU generators for the named random streams of one seed (numpy SeedSequence).

    Draws are made on the CPU and moved to the models' device, so a seed gives the same subsample,
    start points and noise on every device.
    """
    seed = _check_int(name, "seed", seed, 0)
    children = np.random.SeedSequence(seed).spawn(len(streams))
    return {s: torch.Generator().manual_seed(int(c.generate_state(1)[0])) for s, c in zip(streams, children)}


# --------------------------------------------------------------------------------------------------
# Models and probe set
# --------------------------------------------------------------------------------------------------


def _check_modules(name: str, model_a: object, model_b: object) -> None:
    for side, model in (("A", model_a), ("B", model_b)):
        if not isinstance(model, nn.Module):
            raise ValueError(f"measure {name!r}: model {side} must be a torch.nn.Module, got {type(model).__name__}")


@contextlib.contextmanager
def _eval_mode(*models: nn.Module) -> Iterator[None]:
    """Run the models in eval mode; afterwards every submodule gets back its own training flag.

    Flags are saved per submodule, not per model, because a caller may have set them differently
    (e.g. a frozen BatchNorm inside a model in training mode); ``model.train(flag)`` would lose that.
    """
    flags = [(m, m.training) for model in models for m in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for module, flag in flags:
            module.training = flag


@dataclass(frozen=True)
class _Probe:
    """The probe subsample the measure runs on, with both models' logits on it."""

    x: torch.Tensor  # (n, *input_shape) on the models' device, in their dtype
    labels: torch.Tensor | None  # (n,) int64 class indices on the same device, or None
    logits_a: torch.Tensor  # (n, C), computed without a graph
    logits_b: torch.Tensor


def _as_tensor(name: str, value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"measure {name!r}: {what} is not an array ({exc})") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"measure {name!r}: {what} must be numeric, got dtype {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array))


def _device_and_dtype(
    name: str, models: tuple[nn.Module, ...], probe: torch.Tensor
) -> tuple[torch.device, torch.dtype]:
    tensors = [
        t for m in models for t in itertools.chain(m.parameters(), m.buffers()) if t.is_floating_point()
    ]
    devices = {t.device for t in tensors}
    dtypes = {t.dtype for t in tensors}
    if len(devices) > 1:
        raise ValueError(
            f"measure {name!r}: the models' parameters are on different devices {sorted(map(str, devices))}"
        )
    if len(dtypes) > 1:
        raise ValueError(f"measure {name!r}: the models' parameters have different dtypes {sorted(map(str, dtypes))}")
    device = devices.pop() if devices else probe.device
    dtype = dtypes.pop() if dtypes else (probe.dtype if probe.is_floating_point() else torch.get_default_dtype())
    return device, dtype


@torch.no_grad()
def _logits(name: str, side: str, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's outputs on ``x``; a model that cannot take the probe's input shape is a caller error."""
    try:
        out = model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(
            f"measure {name!r}: model {side} fails on probe inputs of shape {tuple(x.shape[1:])} "
            f"(both models must take the probe's input shape): {exc}"
        ) from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"measure {name!r}: model {side} must return N x C logits, got {shape}")
    if not torch.isfinite(out).all():
        raise ValueError(f"measure {name!r}: model {side} returns NaN or Inf outputs on the probe inputs")
    return out.detach()


def _prepare(
    name: str,
    model_a: nn.Module,
    model_b: nn.Module,
    probe: Any,
    labels: Any,
    *,
    max_inputs: object,
    generator: torch.Generator,
) -> _Probe:
    """Validate the probe (and labels), draw the seeded subsample and run both models on it.

    Must be called inside :func:`_eval_mode`. The subsample keeps the probe's order (sorted indices).
    """
    if probe is None:
        raise ValueError(f"measure {name!r}: needs probe=... (a tensor of probe inputs, one per row)")
    probe = _as_tensor(name, probe, "probe")
    if probe.ndim < 2:
        raise ValueError(
            f"measure {name!r}: probe must be N x input_shape (at least 2-D), got shape {tuple(probe.shape)}"
        )
    n = probe.shape[0]
    if n < 2:
        raise ValueError(f"measure {name!r}: needs at least 2 probe inputs, got {n}")
    if probe.is_floating_point() and not torch.isfinite(probe).all():
        raise ValueError(f"measure {name!r}: probe contains NaN or Inf values")
    max_inputs = _check_int(name, "max_inputs", max_inputs, 2)

    if labels is not None:
        labels = _as_tensor(name, labels, "labels")
        if labels.ndim != 1 or labels.shape[0] != n:
            raise ValueError(
                f"measure {name!r}: labels must be a vector of {n} class indices (one per probe input), "
                f"got shape {tuple(labels.shape)}"
            )
        if labels.is_floating_point() and not torch.equal(labels, labels.round()):
            raise ValueError(f"measure {name!r}: labels must be integer class indices")
        labels = labels.long()

    index = torch.arange(n)
    if n > max_inputs:
        index = torch.randperm(n, generator=generator)[:max_inputs].sort().values
    device, dtype = _device_and_dtype(name, (model_a, model_b), probe)
    x = probe[index.to(probe.device)].to(device=device, dtype=dtype)
    logits_a = _logits(name, "A", model_a, x)
    logits_b = _logits(name, "B", model_b, x)
    n_classes = logits_a.shape[1]
    if logits_b.shape[1] != n_classes:
        raise ValueError(
            f"measure {name!r}: class counts differ ({n_classes} vs {logits_b.shape[1]}); "
            "both models must classify into the same classes"
        )
    if n_classes < 2:
        raise ValueError(f"measure {name!r}: the models need at least 2 classes, got {n_classes}")
    if labels is not None:
        labels = labels[index.to(labels.device)].to(device)
        if labels.min() < 0 or labels.max() >= n_classes:
            raise ValueError(
                f"measure {name!r}: labels must be class indices in [0, {n_classes}), "
                f"got values in [{int(labels.min())}, {int(labels.max())}]"
            )
    return _Probe(x, labels, logits_a, logits_b)


# --------------------------------------------------------------------------------------------------
# Gradients and attacks
# --------------------------------------------------------------------------------------------------


def _input_gradients(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """∇ₓ f(x_i)_{classes_i} for every row i, same shape as ``x``.

    One backward pass of the summed selected logits gives every row's gradient because rows do not
    interact in an eval-mode model. ``autograd.grad`` w.r.t. the input alone leaves parameters' ``.grad``
    untouched; ``enable_grad`` makes this work inside a caller's ``no_grad`` block.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        selected = model(x).gather(1, classes[:, None]).sum()
        (grad,) = torch.autograd.grad(selected, x)
    return grad


def _loss_gradient_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sign ∇ₓ CE(f(x), y) per row (summed loss: a mean would only rescale, but can underflow)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def _attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    attack: str,
    eps: float,
    steps: int,
    step_size: float,
    start: torch.Tensor | None,
) -> torch.Tensor:
    """Untargeted L∞ adversarial examples for ``model`` at classes ``y`` (cross-entropy ascent).

    FGSM (Goodfellow, Shlens, Szegedy ICLR 2015): x̃ = x + ε·sign ∇ₓ CE(f(x), y).
    PGD (Madry et al. ICLR 2018): x̃⁰ = x + ε·u with ``start`` = u ∈ [−1, 1]^shape (the seeded random
    start, see :func:`_uniform_start`), then ``steps`` times x̃ ← clip_{[x−ε, x+ε]}(x̃ + step_size·sign ∇ₓ
    CE(f(x̃), y)); the last iterate is returned. No box constraint: inputs are not assumed to be images.
    """
    if attack == "fgsm":
        return (x + eps * _loss_gradient_sign(model, x, y)).detach()
    lower, upper = x - eps, x + eps
    adversarial = x + eps * start
    for _ in range(steps):
        adversarial = adversarial + step_size * _loss_gradient_sign(model, adversarial, y)
        adversarial = torch.minimum(torch.maximum(adversarial, lower), upper)
    return adversarial.detach()


def _module_key(model: nn.Module) -> tuple:
    """Content key of a model: its class, structure, mode and a 128-bit xxHash of every parameter and buffer
    (names, dtypes, shapes and bytes); two models with the same key compute the same function."""
    h = xxhash.xxh3_128()
    for key, tensor in model.state_dict(keep_vars=False).items():
        h.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        h.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes())
    return (type(model).__qualname__, repr(model), model.training, h.hexdigest())


def _uniform_start(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """U[−1, 1] noise shaped like ``x`` (drawn on the CPU, then moved): the PGD random start direction."""
    return (2.0 * torch.rand(x.shape, generator=generator, dtype=x.dtype) - 1.0).to(x.device)


def _row_cosines(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Cosine of each row pair in float64; two zero rows count as 1 (same), exactly one zero row as 0."""
    u, v = u.flatten(1).double(), v.flatten(1).double()
    norm_u, norm_v = u.norm(dim=1), v.norm(dim=1)
    both_zero = (norm_u == 0) & (norm_v == 0)
    cos = (u * v).sum(dim=1) / (norm_u * norm_v).clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(both_zero, torch.ones_like(cos), cos).clamp(-1.0, 1.0)


# --------------------------------------------------------------------------------------------------
# Stitching
# --------------------------------------------------------------------------------------------------


def _resolve_layer(name: str, model_a: nn.Module, model_b: nn.Module, layer: object) -> str:
    for side, model in (("A", model_a), ("B", model_b)):
        if not isinstance(model, nn.Sequential):
            raise ValueError(
                f"measure {name!r}: model {side} must be an nn.Sequential (layers are addressed by name), "
                f"got {type(model).__name__}"
            )
    if layer == "auto":
        relus = [n for n, m in model_b.named_children() if isinstance(m, nn.ReLU)]
        if not relus:
            raise ValueError(f"measure {name!r}: layer='auto' needs a ReLU child in model B; it has none")
        layer = relus[0]
    for side, model in (("A", model_a), ("B", model_b)):
        children = [n for n, _ in model.named_children()]
        if layer not in children:
            raise ValueError(f"measure {name!r}: model {side} has no layer {layer!r}; its layers: {children}")
        if children.index(layer) == len(children) - 1:
            raise ValueError(
                f"measure {name!r}: layer {layer!r} is the last layer of model {side}; nothing to stitch into"
            )
    return str(layer)


def _split_at(model: nn.Sequential, layer: str) -> tuple[nn.Sequential, nn.Sequential]:
    """(bottom, top): the layers up to and including ``layer``, and the rest (shared modules, no copy)."""
    cut = [n for n, _ in model.named_children()].index(layer) + 1
    return model[:cut], model[cut:]


def _as_samples(h: torch.Tensor) -> torch.Tensor:
    """Rows = samples, columns = units: (N, D) as is; conv maps (N, C, *S) to (N·|S|, C), positions as samples."""
    return h if h.ndim == 2 else h.movedim(1, -1).reshape(-1, h.shape[1])


def _apply_stitch(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """T(h) = hW + b on units: a dense affine map, or a 1x1 convolution on conv maps (same at every position)."""
    if h.ndim == 2:
        return h @ weight + bias
    return (h.movedim(1, -1) @ weight + bias).movedim(-1, 1)


def _least_squares_stitch(h_a: torch.Tensor, h_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Direct matching: the affine map (W, b) minimising ‖h_a W + 1bᵀ − h_b‖_F, in float64.

    Rows are samples, columns units. Solved on centred data, W = pinv(h̃_a) h̃_b and b = mean(h_b) − mean(h_a)W:
    the minimum-norm least-squares solution, so units that are constant on the fit inputs (dead ReLUs)
    get zero rows and rank-deficient senders are handled (Csiszárik et al. 2021, "direct matching").
    """
    a, b = h_a.double(), h_b.double()
    mean_a, mean_b = a.mean(dim=0), b.mean(dim=0)
    weight = torch.linalg.pinv(a - mean_a) @ (b - mean_b)
    return weight, mean_b - mean_a @ weight


def _train_stitch(
    top_b: nn.Module,
    h_a: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Task-loss matching: Adam on the cross-entropy of top_b(T(h_a)) w.r.t. the stitch (W, b) only.

    Starts from the given (least-squares) map; mini-batches are drawn in a seeded order. Gradients are
    taken with ``autograd.grad`` w.r.t. (W, b), so B's parameters receive none.
    """
    weight = weight.detach().clone().requires_grad_(True)
    bias = bias.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    n = h_a.shape[0]
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(h_a.device)
            for start in range(0, n, batch_size):
                batch = order[start : start + batch_size]
                loss = F.cross_entropy(top_b(_apply_stitch(h_a[batch], weight, bias)), targets[batch])
                weight.grad, bias.grad = torch.autograd.grad(loss, [weight, bias])
                optimizer.step()
    return weight.detach(), bias.detach()


@register(
    "stitching",
    family=FAMILY,
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=False,
    inputs="models",
    requires_labels=True,
    reference="Csiszárik, Kőrösi-Szabó, Matszangosz, Papp, Varga. Similarity and Matching of Neural Network "
    "Representations. NeurIPS 2021 (direct least-squares matching); Bansal, Nakkiran, Barak. Revisiting Model "
    "Stitching to Compare Neural Representations. NeurIPS 2021 (task-loss stitching)",
    cost=_COST + "; plus an SVD of the fit representations (least_squares) or epochs x fit inputs "
    "forward/backward passes through B's top (task_loss)",
)
def stitching(
    model_a: nn.Module,
    model_b: nn.Module,
    *,
    labels: torch.Tensor,
    probe: Any = None,
    layer: str = "relu1",
    fit: str = "least_squares",
    target: str = "labels",
    fit_fraction: float = 0.5,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 32,
    max_inputs: int = 256,
    seed: int = 0,
) -> float:
    """Relative accuracy of the stitched network B_{>l} ∘ T ∘ A_{≤l} (A = sender, B = receiver).

    Formula: an affine stitch T(h) = hW + b maps A's representation at ``layer`` to B's at the same-named
    layer; score = min(1, acc(B_{>l} ∘ T ∘ A_{≤l}) / acc(B)), both accuracies on the same evaluation inputs.
    Range [0, 1]; higher is more similar (1 = no stitching penalty); asymmetric (A's features must carry
    what B's top needs, not vice versa).

    Conventions (all parameters):
    - ``layer``: a child name present in both ``nn.Sequential`` models (``"relu1"``, the output of the first
      hidden ReLU, by default); ``"auto"`` = the first ReLU child of B. Widths may differ. Conv maps are
      stitched channel-wise by a 1x1 convolution (positions as samples; spatial sizes must match), dense
      layers by a full affine map. No BatchNorm in the stitch.
    - ``fit``: ``"least_squares"`` = direct matching, the closed-form minimum-norm affine least-squares map
      from A's to B's representation (deterministic given the inputs; Csiszárik et al.'s "direct matching");
      ``"task_loss"`` = start from that map and train it with Adam (``lr``, ``epochs``, ``batch_size``, seeded
      batch order) on the cross-entropy of the stitched network (Bansal et al.; Csiszárik et al.'s
      "task loss matching"). Task-loss matching can produce off-distribution representations and flatter
      similarity across depths (Balogh & Jelasity 2024): report both.
    - ``target``: ``"labels"`` scores accuracy against the labels (and trains on them); ``"b_predictions"``
      scores agreement with B's own predictions (and trains on them), for which acc(B) = 1, so the score is
      the agreement rate. The registry requires labels in both cases; the second does not use them.
    - ``fit_fraction``: a seeded split of the (subsampled) probe set; T is fitted on this fraction and the
      accuracies are measured on the rest, so the score is out of sample. ``fit_fraction=1`` fits and
      evaluates on the same inputs.
    - Values above 1 (the stitched network beats B on these inputs) are clipped to 1, so the range is [0, 1]
      and the identity value is 1. acc(B) = 0 on the evaluation inputs raises ``UndefinedMeasureError``.

    ``max_inputs`` (seeded) bounds the probe subsample; ``seed`` drives the subsample, the split and the
    training order. A model stitched with itself by least squares gets 1: T is the identity on every unit
    that varies on the fit inputs (exactly 1 unless a unit constant on the fit inputs varies on the
    evaluation inputs); likewise a copy with permuted hidden units, for which T is the permutation.
    Reference: Csiszárik et al. NeurIPS 2021; Bansal, Nakkiran, Barak NeurIPS 2021.
    """
    name = "stitching"
    _check_modules(name, model_a, model_b)
    _check_choice(name, "fit", fit, STITCH_FITS)
    _check_choice(name, "target", target, STITCH_TARGETS)
    if isinstance(fit_fraction, bool) or not isinstance(fit_fraction, (int, float)) or not 0 < fit_fraction <= 1:
        raise ValueError(f"measure {name!r}: fit_fraction must be in (0, 1], got {fit_fraction!r}")
    epochs = _check_int(name, "epochs", epochs, 1)
    batch_size = _check_int(name, "batch_size", batch_size, 1)
    lr = _check_positive(name, "lr", lr)
    layer = _resolve_layer(name, model_a, model_b, layer)
    streams = _generators(name, seed, "subsample", "split", "training")

    with _eval_mode(model_a, model_b):
        data = _prepare(name, model_a, model_b, probe, labels, max_inputs=max_inputs, generator=streams["subsample"])
        n = data.x.shape[0]
        if fit_fraction == 1:
            fit_rows = eval_rows = torch.arange(n)
        else:
            n_fit = int(round(fit_fraction * n))
            if not 2 <= n_fit < n:
                raise ValueError(
                    f"measure {name!r}: fit_fraction={fit_fraction} of {n} probe inputs leaves {n_fit} to fit and "
                    f"{n - n_fit} to evaluate; need at least 2 and 1"
                )
            order = torch.randperm(n, generator=streams["split"])
            fit_rows, eval_rows = order[:n_fit].sort().values, order[n_fit:].sort().values
        fit_rows, eval_rows = fit_rows.to(data.x.device), eval_rows.to(data.x.device)
        reference = data.labels if target == "labels" else data.logits_b.argmax(dim=1)

        bottom_a, _ = _split_at(model_a, layer)
        bottom_b, top_b = _split_at(model_b, layer)
        with torch.no_grad():
            h_a, h_b = bottom_a(data.x), bottom_b(data.x)
        if h_a.ndim != h_b.ndim or h_a.shape[2:] != h_b.shape[2:]:
            raise ValueError(
                f"measure {name!r}: representations at layer {layer!r} have shapes {tuple(h_a.shape[1:])} (A) and "
                f"{tuple(h_b.shape[1:])} (B); an affine stitch needs both dense, or conv maps of equal spatial size"
            )
        weight, bias = _least_squares_stitch(_as_samples(h_a[fit_rows]), _as_samples(h_b[fit_rows]))
        weight, bias = weight.to(h_b.dtype), bias.to(h_b.dtype)
        if fit == "task_loss":
            weight, bias = _train_stitch(
                top_b, h_a[fit_rows], reference[fit_rows], weight, bias,
                epochs=epochs, lr=lr, batch_size=batch_size, generator=streams["training"],
            )
        with torch.no_grad():
            stitched = top_b(_apply_stitch(h_a[eval_rows], weight, bias)).argmax(dim=1)
        truth = reference[eval_rows]
        accuracy_b = (data.logits_b[eval_rows].argmax(dim=1) == truth).double().mean()
        accuracy_stitched = (stitched == truth).double().mean()
    if accuracy_b == 0:
        raise UndefinedMeasureError(
            f"{name}: model B classifies none of the {len(eval_rows)} evaluation inputs correctly"
        )
    return min(1.0, float(accuracy_stitched / accuracy_b))


# --------------------------------------------------------------------------------------------------
# Adversarial transferability
# --------------------------------------------------------------------------------------------------


def _transfer_rate(
    name: str, source: str, model: nn.Module, other: nn.Module, x: torch.Tensor, y: torch.Tensor,
    logits: torch.Tensor, start: torch.Tensor | None, **attack: Any,
) -> torch.Tensor:
    """Trans(f→f'): among f's successful adversarials (from inputs f gets right), the share f' also gets wrong.

    ``start`` holds one PGD start direction per probe input, shared by both directions, so swapping the
    models gives exactly the same score.
    """
    correct = logits.argmax(dim=1) == y
    if not correct.any():
        raise UndefinedMeasureError(f"{name}: model {source} classifies no probe input correctly; nothing to attack")
    start = None if start is None else start[correct]
    x, y = x[correct], y[correct]

    def attack_model() -> tuple[torch.Tensor, torch.Tensor]:
        adversarial = _attack(model, x, y, start=start, **attack)
        with torch.no_grad():
            return adversarial, model(adversarial).argmax(dim=1) != y

    # One-sided: the attack on f depends on f and the probe only, so a model compared with several partners
    # is attacked once (keyed by its weights and architecture, the inputs, labels, start and settings).
    adversarial, fooled = one_sided("adversarial_transferability.attack", x, attack_model, model=_module_key(model),
                                    y=digest(y), start=None if start is None else digest(start), **attack)
    with torch.no_grad():
        transferred = other(adversarial).argmax(dim=1) != y
    if not fooled.any():
        raise UndefinedMeasureError(
            f"{name}: no attack on model {source} succeeded on its {len(y)} correctly classified inputs "
            "(raise eps or steps)"
        )
    return (fooled & transferred).double().sum() / fooled.double().sum()


@register(
    "adversarial_transferability",
    family=FAMILY,
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    inputs="models",
    requires_labels=True,
    reference="Papernot, McDaniel, Goodfellow. Transferability in Machine Learning: from Phenomena to "
    "Black-Box Attacks using Adversarial Samples. arXiv 1605.07277 (2016); "
    "Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to Adversarial Attacks. "
    "ICLR 2018 (PGD); " + _SURVEY,
    cost=_COST + "; plus (steps + 1) forward/backward passes of each model on its correctly classified inputs",
)
def adversarial_transferability(
    model_a: nn.Module,
    model_b: nn.Module,
    *,
    labels: torch.Tensor,
    probe: Any = None,
    attack: str = "pgd",
    eps: float = 0.1,
    steps: int = 10,
    step_size: float = 0.025,
    max_inputs: int = 256,
    seed: int = 0,
) -> float:
    """Symmetrised share of one model's successful adversarial examples that also fool the other.

    Formula: for f → f', attack f on the probe inputs it classifies correctly; with S = the adversarials
    that f misclassifies, Trans(f→f') = |{x̃ ∈ S : f'(x̃) ≠ y}| / |S|; score = ½(Trans(A→B) + Trans(B→A)).
    Range [0, 1]; higher is more similar (shared adversarial directions); symmetric. A model with itself
    scores exactly 1.

    Conventions (parameters): untargeted L∞ attacks on the cross-entropy at the true label, written in
    torch. ``attack="pgd"`` (default): seeded uniform random start in the ε-ball, ``steps`` signed-gradient
    steps of ``step_size``, projection onto the ball after each, last iterate; ``"fgsm"``: one step of size
    ``eps`` from the clean input (``steps`` and ``step_size`` unused). ``eps`` is absolute, in input units
    (digits pixels lie in [0, 1]); no clipping to a data range. Whether f' classifies the clean input
    correctly is not conditioned on (f' errors count as transfers). ``max_inputs`` (seeded) bounds the probe
    subsample; the PGD start of each probe input is drawn once from ``seed`` and shared by both directions
    (so the score is exactly symmetric). No correctly classified input or no successful attack for a
    model raises ``UndefinedMeasureError``. Hwang et al.'s log-scaled variant is not implemented.
    Reference: Papernot et al. 2016; Madry et al. ICLR 2018; survey §5.
    """
    name = "adversarial_transferability"
    _check_modules(name, model_a, model_b)
    _check_choice(name, "attack", attack, ATTACKS)
    eps = _check_positive(name, "eps", eps)
    steps = _check_int(name, "steps", steps, 1)
    step_size = _check_positive(name, "step_size", step_size)
    streams = _generators(name, seed, "subsample", "attack")
    settings = {"attack": attack, "eps": eps, "steps": steps, "step_size": step_size}

    with _eval_mode(model_a, model_b):
        data = _prepare(name, model_a, model_b, probe, labels, max_inputs=max_inputs, generator=streams["subsample"])
        start = _uniform_start(data.x, streams["attack"]) if attack == "pgd" else None
        a_to_b = _transfer_rate(name, "A", model_a, model_b, data.x, data.labels, data.logits_a, start, **settings)
        b_to_a = _transfer_rate(name, "B", model_b, model_a, data.x, data.labels, data.logits_b, start, **settings)
    return 0.5 * (a_to_b + b_to_a)


# --------------------------------------------------------------------------------------------------
# Saliency similarity
# --------------------------------------------------------------------------------------------------


@register(
    "saliency_similarity",
    family=FAMILY,
    kind="similarity",
    range=(-1.0, 1.0),
    symmetric=True,
    inputs="models",
    requires_labels=True,
    reference="Jones, Springer, Kenyon, Moore. If You've Trained One You've Trained Them All: "
    "Inter-Architecture Similarity Increases With Robustness. UAI 2022; Simonyan, Vedaldi, Zisserman. Deep "
    "Inside Convolutional Networks. ICLR Workshop 2014 (gradient saliency)",
    cost=_COST + "; plus one backward pass of each model",
)
def saliency_similarity(
    model_a: nn.Module,
    model_b: nn.Module,
    *,
    labels: torch.Tensor,
    probe: Any = None,
    target: str = "label",
    max_inputs: int = 256,
    seed: int = 0,
) -> float:
    """Mean cosine between the two models' input-gradient saliency maps of a chosen class logit.

    Formula: (1/N) Σ_i cos(∇ₓ f_A(x_i)_{c_i}, ∇ₓ f_B(x_i)_{c'_i}), gradients of the logits (pre-softmax),
    flattened over the input dimensions. Range [−1, 1]; higher is more similar; symmetric for the default.

    Conventions (parameters): ``target`` is the class whose logit is differentiated: ``"label"`` (default,
    c_i = c'_i = y_i, the given label), ``"own_prediction"`` (each model its own argmax, first maximum on
    ties), ``"a_prediction"`` (A's argmax for both; asymmetric). The registry requires labels for every
    target; only ``"label"`` uses them. A zero gradient (e.g. every ReLU on the path inactive) has no
    direction: two zero gradients count as cosine 1, exactly one as 0. Cosines in float64. The SSIM variant
    of Jones et al. is not implemented. ``max_inputs`` (seeded by ``seed``) bounds the probe subsample.
    A model with itself scores 1; for linear models f(x) = Wx + b the gradient is the weight row W_c.
    Reference: Jones et al. UAI 2022; Simonyan et al. 2014.
    """
    name = "saliency_similarity"
    _check_modules(name, model_a, model_b)
    _check_choice(name, "target", target, SALIENCY_TARGETS)
    streams = _generators(name, seed, "subsample")

    with _eval_mode(model_a, model_b):
        data = _prepare(name, model_a, model_b, probe, labels, max_inputs=max_inputs, generator=streams["subsample"])
        if target == "label":
            class_a = class_b = data.labels
        elif target == "own_prediction":
            class_a, class_b = data.logits_a.argmax(dim=1), data.logits_b.argmax(dim=1)
        else:
            class_a = class_b = data.logits_a.argmax(dim=1)
        grad_a = _input_gradients(model_a, data.x, class_a)
        grad_b = _input_gradients(model_b, data.x, class_b)
    return _row_cosines(grad_a, grad_b).mean()


# --------------------------------------------------------------------------------------------------
# ModelDiff
# --------------------------------------------------------------------------------------------------


def _decision_distances(model: nn.Module, x_perturbed: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """DDV: cosine distance 1 − cos(p_i, p̃_i) between the softmax outputs on x_i (``logits``, already
    computed) and on x̃_i, in float64.

    Computed as ½‖p/‖p‖ − p̃/‖p̃‖‖², which equals 1 − cos but stays accurate (and ≥ 0) when the
    two outputs are nearly parallel, the common case for small perturbations.
    """
    with torch.no_grad():
        perturbed_logits = model(x_perturbed)
    p = F.normalize(torch.softmax(logits.double(), dim=1), dim=1)
    q = F.normalize(torch.softmax(perturbed_logits.double(), dim=1), dim=1)
    return 0.5 * (p - q).square().sum(dim=1)


@register(
    "modeldiff",
    family=FAMILY,
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    inputs="models",
    reference="Li, Zhang, Liu, Yang, Liu. ModelDiff: Testing-Based DNN Similarity Comparison for Model Reuse "
    "Detection. ISSTA 2021",
    cost=_COST + " and its perturbation; plus (steps + 1) forward/backward passes of A (adversarial)",
)
def modeldiff(
    model_a: nn.Module,
    model_b: nn.Module,
    *,
    probe: Any = None,
    perturbation: str = "gaussian",
    scale: float = 0.1,
    steps: int = 10,
    max_inputs: int = 256,
    seed: int = 0,
) -> float:
    """Cosine similarity of the two models' decision distance vectors on pairs (x_i, x̃_i).

    Formula: DDV_f = (1 − cos(softmax f(x_i), softmax f(x̃_i)))_{i=1..N}; score = cos(DDV_A, DDV_B).
    Range [0, 1] (DDV entries are ≥ 0); higher is more similar; symmetric for the default perturbation.

    Conventions (parameters): ``perturbation="gaussian"`` (default): x̃ = x + scale·ε, ε ~ N(0, I) seeded,
    the same x̃ for both models; ``"adversarial"``: x̃ = PGD adversarial of model A at A's own prediction
    (L∞, ε = ``scale``, ``steps`` steps of 2.5·scale/steps, seeded random start; see
    ``adversarial_transferability``), which makes the measure asymmetric (the pairs come from A).
    Li et al. additionally search the pairs for diversity and divergence; here they are the probe inputs
    and one perturbation each. A zero DDV (the perturbation leaves a model's outputs unchanged on every
    input) has no direction and raises ``UndefinedMeasureError``. ``max_inputs`` (seeded) bounds the probe
    subsample. A model with itself scores 1. Reference: Li et al. ISSTA 2021.
    """
    name = "modeldiff"
    _check_modules(name, model_a, model_b)
    _check_choice(name, "perturbation", perturbation, MODELDIFF_PERTURBATIONS)
    scale = _check_positive(name, "scale", scale)
    steps = _check_int(name, "steps", steps, 1)
    streams = _generators(name, seed, "subsample", "perturbation")

    with _eval_mode(model_a, model_b):
        data = _prepare(name, model_a, model_b, probe, None, max_inputs=max_inputs, generator=streams["subsample"])
        if perturbation == "gaussian":
            noise = torch.randn(data.x.shape, generator=streams["perturbation"], dtype=data.x.dtype)
            x_perturbed = data.x + scale * noise.to(data.x.device)
        else:
            x_perturbed = _attack(
                model_a, data.x, data.logits_a.argmax(dim=1), attack="pgd", eps=scale, steps=steps,
                step_size=2.5 * scale / steps, start=_uniform_start(data.x, streams["perturbation"]),
            )
        ddv_a = _decision_distances(model_a, x_perturbed, data.logits_a)
        ddv_b = _decision_distances(model_b, x_perturbed, data.logits_b)
    for side, ddv in (("A", ddv_a), ("B", ddv_b)):
        if not ddv.any():
            raise UndefinedMeasureError(
                f"{name}: the decision distance vector of model {side} is zero (the perturbation does not change "
                "its outputs on any probe input)"
            )
    return _row_cosines(ddv_a[None, :], ddv_b[None, :])[0].clamp(0.0, 1.0)
