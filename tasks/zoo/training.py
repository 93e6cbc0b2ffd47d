"""Deterministic training on the CPU, training interventions, weight perturbations and warm starts."""

from __future__ import annotations

import copy
import math
import numbers
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from tasks.zoo.datasets import Dataset
from tasks.zoo.interventions import PROBE_MARKER_SEED, for_domain, randomize_labels


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or non-finite weights: the model has no meaningful weights.
    The message names the configuration and where training diverged."""


def _describe(lr: float, weight_decay: float, epochs: int, batch_size: int, seed: int) -> str:
    return f"seed={seed}, train.lr={lr!r}, train.weight_decay={weight_decay!r}, epochs={epochs}, batch_size={batch_size}"


def check_finite_weights(model: nn.Module, what: str) -> None:
    """Raise :class:`TrainingDivergedError` naming ``what`` when a parameter or buffer is NaN or Inf."""
    bad = [name for name, t in (*model.named_parameters(), *model.named_buffers())
           if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise TrainingDivergedError(f"{what}: non-finite weights in {', '.join(bad)}")


def seed_streams(seed: int, *names: str) -> dict[str, int]:
    """Independent named child seeds of one seed, e.g. ``init``, ``data_order``: each stream is a numpy
    SeedSequence of (seed, crc32(name)), so a stream depends only on its own name, never on which
    other streams are drawn or in which order."""
    return {n: int(np.random.SeedSequence([seed, zlib.crc32(n.encode())]).generate_state(1)[0]) for n in names}


#: Probe inputs per forward pass when probe predictions are recorded during training.
PROBE_BATCH = 4096
#: Probe predictions are recorded at epoch 0 (the starting point), at the last epoch and about this many
#: times in between (every ceil(epochs / RECORDINGS) epochs), whatever the number of epochs.
RECORDINGS = 10


@dataclass
class ProbeHistory:
    """Class probabilities on the probe set recorded during training: a model's trajectory in function
    space (Erhan et al., JMLR 2010). ``probabilities[i]`` (N x C, float32) belongs to ``epochs[i]``;
    epoch 0 is the starting point (the initialisation, or the perturbed model of a warm start)."""

    epochs: list[int] = field(default_factory=list)
    probabilities: list[np.ndarray] = field(default_factory=list)


def recorded_epochs(epochs: int) -> list[int]:
    """The epochs after which :func:`train` records probe predictions: 0, every ceil(epochs / RECORDINGS)
    epochs, and the last one."""
    every = max(1, math.ceil(epochs / RECORDINGS))
    return sorted({0, epochs, *range(every, epochs, every)})


@torch.no_grad()
def probe_probabilities(model: nn.Module, x_probe: np.ndarray) -> np.ndarray:
    """Softmax of ``model``'s logits on the probe inputs (in eval mode, float64 softmax as the extraction
    computes it, returned as float32). Restores the model's train/eval mode; uses no random numbers, so
    recording during training leaves the trained weights bit-identical."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        logits = torch.cat([model(batch.to(device)).cpu() for batch in torch.from_numpy(x_probe).split(PROBE_BATCH)])
    finally:
        model.train(was_training)
    return torch.softmax(logits.double(), dim=1).float().numpy()


def perturbation_seed(model_seed: int, perturb_seed: int) -> int:
    """The noise seed of perturbation ``perturb_seed`` of the model trained from ``model_seed`` (the
    ``perturbation`` stream). Weight-perturbed variants and warm starts share it, so a warm start with
    0 epochs is exactly the perturbed variant with the same scale and perturbation seed."""
    return seed_streams(model_seed * 1_000_003 + perturb_seed, "perturbation")["perturbation"]


#: Each parameter's view in :class:`FlatAdam`'s buffer starts at a multiple of this many bytes: the CPU
#: allocator's alignment, so a kernel whose path depends on a pointer's alignment (BLAS) sees what it sees
#: with a parameter of its own.
FLAT_ALIGN_BYTES = 64


class FlatAdam:
    """``torch.optim.Adam`` as :func:`train` uses it on the CPU (its per-parameter loop: ~9 operations per
    parameter tensor and step), with every weight bit for bit the same, in ~9 operations per step.

    The trainable contiguous parameters of each dtype become views of one buffer, each starting at a
    :data:`FLAT_ALIGN_BYTES` boundary; :meth:`step` gathers their gradients into one tensor of the same
    layout (zeros in the gaps) and runs ``torch.optim.Adam`` on the buffer. Adam's arithmetic is elementwise,
    and ATen's vectorised body and scalar tail give the same bits for each of its operations
    (tests/zoo/test_flat_adam.py checks both), so each weight takes exactly the steps it would take alone.
    Adam leaves a parameter without a gradient untouched, which a shared buffer cannot: at the first step
    that leaves one without, the state moves to a per-parameter ``torch.optim.Adam`` (each parameter's
    moments are its part of the flat ones, its step count theirs) that takes every later step.
    :meth:`release` gives each parameter its own storage again (a checkpoint of views would store the
    whole buffer once per tensor); call it when training ends.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay = lr, weight_decay
        groups: dict[tuple[torch.dtype, torch.device], list[nn.Parameter]] = {}
        loose = []  # non-contiguous parameters keep their own storage and their own Adam state
        for p in self.params:
            (groups.setdefault((p.dtype, p.device), []) if p.is_contiguous() else loose).append(p)
        #: per buffer: the flat parameter, its parameters with their offsets, the gradient pieces' gaps
        self._flat: list[tuple[nn.Parameter, list[tuple[nn.Parameter, int]], list[torch.Tensor | None]]] = []
        for (dtype, device), members in groups.items():
            align = max(1, FLAT_ALIGN_BYTES // torch.empty(0, dtype=dtype).element_size())
            offsets, end = [], 0
            for p in members:
                offsets.append(end)
                end = -(-(end + p.numel()) // align) * align
            buffer = torch.zeros(end, dtype=dtype, device=device)
            gaps = []
            for i, (p, start) in enumerate(zip(members, offsets)):
                stop = offsets[i + 1] if i + 1 < len(members) else end
                view = buffer[start:start + p.numel()]
                view.copy_(p.detach().reshape(-1))
                p.data = view.view_as(p)
                gaps.append(torch.zeros(stop - start - p.numel(), dtype=dtype, device=device)
                            if stop > start + p.numel() else None)
            self._flat.append((nn.Parameter(buffer), list(zip(members, offsets)), gaps))
        self._loose = loose
        self.optimizer = torch.optim.Adam([f for f, _, _ in self._flat] + loose, lr=lr, weight_decay=weight_decay)
        self._per_parameter: torch.optim.Adam | None = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (a step gathers new ones; zeroed gradients are not supported)."""
        if not set_to_none:
            raise ValueError("FlatAdam.zero_grad: only set_to_none=True is supported")
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """One Adam step of every parameter with a gradient, as ``torch.optim.Adam.step`` takes it."""
        if self._per_parameter is None and any(p.grad is None for p in self.params):
            self._split()
        if self._per_parameter is not None:
            self._per_parameter.step()
            return
        for flat, members, gaps in self._flat:
            pieces = []
            for (p, _), gap in zip(members, gaps):
                pieces.append(p.grad)
                if gap is not None:
                    pieces.append(gap)
            flat.grad = torch.cat([piece.reshape(-1) for piece in pieces])  # the buffer's layout, gaps included
        self.optimizer.step()

    def _split(self) -> None:
        """Continue with a per-parameter Adam whose state is this one's, parameter by parameter."""
        adam = torch.optim.Adam(self.params, lr=self.lr, weight_decay=self.weight_decay)
        for flat, members, _ in self._flat:
            state = self.optimizer.state.get(flat)
            if state:
                for p, start in members:
                    adam.state[p] = {"step": state["step"].clone(),
                                     **{k: state[k][start:start + p.numel()].view_as(p).clone()
                                        for k in ("exp_avg", "exp_avg_sq")}}
        for p in self._loose:
            if self.optimizer.state.get(p):
                adam.state[p] = self.optimizer.state[p]
        self._per_parameter = adam

    def release(self) -> None:
        """Give each flattened parameter its own storage again (same values) and drop the buffers."""
        for _, members, _ in self._flat:
            for p, _ in members:
                p.data = p.data.clone()
        self._flat = []


def warm_start_config(value: Any) -> dict[str, Any] | None:
    """Validate and normalise ``train.warm_start``: None, or {scale: float >= 0, seed: int >= 0,
    epochs: int >= 0} (scale as a float, so ``1`` and ``1.0`` give the same model key)."""
    if value is None:
        return None
    if not hasattr(value, "keys") or set(value.keys()) != {"scale", "seed", "epochs"}:
        raise ValueError(f"train.warm_start: must be null or {{scale: ..., seed: ..., epochs: ...}}, got {value!r}")
    scale, seed, epochs = value["scale"], value["seed"], value["epochs"]
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not scale >= 0 or not math.isfinite(scale):
        raise ValueError(f"train.warm_start.scale: must be a number >= 0, got {scale!r}")
    for key, v in (("seed", seed), ("epochs", epochs)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"train.warm_start.{key}: must be an integer >= 0, got {v!r}")
    return {"scale": float(scale), "seed": int(seed), "epochs": int(epochs)}


def train(model: nn.Module, data: Dataset, *, seed: int, epochs: int, batch_size: int, lr: float,
          weight_decay: float = 0.0, intervention: dict | None = None, device: str = "cpu",
          warm_start: dict | None = None, history: ProbeHistory | None = None) -> dict[str, float]:
    """Train ``model`` in place with Adam and cross-entropy; deterministic for a given seed on the CPU
    (on a GPU, cuDNN/cuBLAS kernels may differ in the last bits between runs).

    ``data`` is the dataset as the model sees it (shortcut markers already applied, see
    :func:`prepare_data`). The seed is split into named streams: ``init`` (weights), ``data_order``
    (mini-batch shuffling), ``labels`` (the label-randomisation draw) and ``augmentation`` (input
    noise), so changing one axis leaves the others unchanged.

    ``warm_start`` ({scale, seed, epochs}, see :func:`warm_start_config`): instead of initialising,
    ``model`` must hold the trained weights of the same configuration; they get relative Gaussian noise
    :func:`perturb` of ``scale`` with noise seed :func:`perturbation_seed` (seed, warm_start.seed), then
    training continues for ``warm_start.epochs`` epochs (``epochs`` is the base model's and is ignored)
    with a fresh Adam state, the same labels (``labels`` stream) and new named streams for the data order
    and input noise (``warm_start_data_order``, ``warm_start_augmentation`` of the (seed, warm-start
    seed) pair). Scale 0 with 0 epochs returns the weights unchanged.

    ``history``: if given, probe-set probabilities are appended to it at :func:`recorded_epochs`.
    Recording uses no random numbers and leaves the model's mode as it was, so it does not change
    the trained weights.
    """
    intervention = intervention or {}
    warm_start = warm_start_config(warm_start)
    streams = seed_streams(seed, "init", "data_order", "labels", "augmentation")
    if warm_start is None:
        torch.manual_seed(streams["init"])
        for module in model.modules():
            if hasattr(module, "reset_parameters") and module is not model:
                module.reset_parameters()
        model.to(device)
    else:
        model.to(device)
        pair = seed * 1_000_003 + warm_start["seed"]
        restart = seed_streams(pair, "warm_start_data_order", "warm_start_augmentation")
        streams.update(data_order=restart["warm_start_data_order"], augmentation=restart["warm_start_augmentation"])
        noisy = perturb(model, warm_start["scale"], perturbation_seed(seed, warm_start["seed"]))
        model.load_state_dict(noisy.state_dict())
        epochs = warm_start["epochs"]
    y = randomize_labels(data.y_train, intervention.get("label_randomization", 0.0), data.n_classes, streams["labels"])
    sigma_max = float(intervention.get("input_noise", 0.0))
    augment = for_domain(data.domain).augment
    noise_gen = torch.Generator().manual_seed(streams["augmentation"])
    x_train, y_train = torch.from_numpy(data.x_train).to(device), torch.from_numpy(y).to(device)
    order = torch.Generator().manual_seed(streams["data_order"])
    # on the CPU the same Adam steps on one flat buffer (FlatAdam: the same weights, ~9 operations per step
    # instead of ~9 per parameter tensor)
    flat = torch.device(device).type == "cpu"
    optimizer = (FlatAdam if flat else torch.optim.Adam)(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    record = set(recorded_epochs(epochs)) if history is not None else set()

    def checkpoint(epoch: int) -> None:
        if epoch in record:
            history.epochs.append(epoch)
            history.probabilities.append(probe_probabilities(model, data.x_probe))

    checkpoint(0)
    model.train()
    loss = torch.tensor(float("nan"))
    try:
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(x_train.shape[0], generator=order).to(device)
            for start in range(0, x_train.shape[0], batch_size):
                idx = perm[start : start + batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(augment(x_train[idx], sigma_max, noise_gen)), y_train[idx])
                if not math.isfinite(loss.item()):  # (a Python float: ~0.3 µs, torch.isfinite ~7 µs per step)
                    # Adam would carry NaN into every weight; the model is recorded as diverged instead
                    raise TrainingDivergedError(f"training diverged ({_describe(lr, weight_decay, epochs, batch_size, seed)}): "
                                                f"the loss became {loss.item()} at epoch {epoch}, batch {start // batch_size + 1}")
                loss.backward()
                optimizer.step()
            checkpoint(epoch)
    finally:
        if flat:
            optimizer.release()
    check_finite_weights(model, f"training diverged ({_describe(lr, weight_decay, epochs, batch_size, seed)})")
    model.eval()
    with torch.no_grad():
        train_acc = (model(x_train).argmax(1).cpu() == torch.from_numpy(data.y_train)).double().mean().item()
        probe_pred = model(torch.from_numpy(data.x_probe).to(device)).argmax(1).cpu()
        probe_acc = (probe_pred == torch.from_numpy(data.y_probe)).double().mean().item()
    return {"train_accuracy": train_acc, "probe_accuracy": probe_acc, "final_loss": float(loss.item())}


def prepare_data(data: Dataset, intervention: dict, seed: int) -> Dataset:
    """The dataset as a model with this intervention sees it: with shortcut markers (training markers
    from the model seed's ``shortcut`` stream, uninformative probe markers shared by every model) when
    ``intervention.shortcut`` is set, unchanged otherwise."""
    rate = intervention.get("shortcut")
    if rate is None:
        return data
    add_markers = for_domain(data.domain).shortcut  # the domain's marker: a pixel, a token, a node feature
    x_train = add_markers(data.x_train, data.y_train, float(rate), data.n_classes, seed_streams(seed, "shortcut")["shortcut"])
    x_probe = add_markers(data.x_probe, data.y_probe, 0.0, data.n_classes, PROBE_MARKER_SEED)
    return replace(data, x_train=x_train, x_probe=x_probe)


def perturb(model: nn.Module, scale: float, seed: int) -> nn.Module:
    """A copy of ``model`` with relative Gaussian noise on every parameter tensor.

    Each tensor P becomes P + scale · rms(P) · ε with ε ~ N(0, I), so ‖noise‖ ≈ scale · ‖P‖ for every
    weight matrix and bias alike. ``scale = 0`` returns an exact copy. The noise comes from its own
    generator seeded by ``seed`` and visits parameters in ``named_parameters`` order.
    """
    if scale < 0:
        raise ValueError(f"perturbation.scale must be >= 0, got {scale}")
    noisy = copy.deepcopy(model)
    if scale == 0:
        return noisy
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in noisy.named_parameters():
            rms = p.pow(2).mean().sqrt()
            p.add_(scale * rms * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device))
    return noisy
