"""Deterministic training on the CPU, training interventions and weight perturbations."""

from __future__ import annotations

import copy
import zlib
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from tasks.zoo.datasets import Dataset
from tasks.zoo.interventions import PROBE_MARKER_SEED, add_markers, gaussian_input_noise, randomize_labels


def seed_streams(seed: int, *names: str) -> dict[str, int]:
    """Independent named child seeds of one seed, e.g. ``init``, ``data_order``: each stream is a numpy
    SeedSequence of (seed, crc32(name)), so a stream depends only on its own name, never on which
    other streams are drawn or in which order."""
    return {n: int(np.random.SeedSequence([seed, zlib.crc32(n.encode())]).generate_state(1)[0]) for n in names}


def train(model: nn.Module, data: Dataset, *, seed: int, epochs: int, batch_size: int, lr: float,
          weight_decay: float = 0.0, intervention: dict | None = None, device: str = "cpu") -> dict[str, float]:
    """Train ``model`` in place with Adam and cross-entropy; deterministic for a given seed on the CPU
    (on a GPU, cuDNN/cuBLAS kernels may differ in the last bits between runs).

    ``data`` is the dataset as the model sees it (shortcut markers already applied, see
    :func:`prepare_data`). The seed is split into named streams: ``init`` (weights), ``data_order``
    (mini-batch shuffling), ``labels`` (the label-randomisation draw) and ``augmentation`` (input
    noise), so changing one axis leaves the others unchanged.
    """
    intervention = intervention or {}
    streams = seed_streams(seed, "init", "data_order", "labels", "augmentation")
    torch.manual_seed(streams["init"])
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
    model.to(device)
    y = randomize_labels(data.y_train, intervention.get("label_randomization", 0.0), data.n_classes, streams["labels"])
    sigma_max = float(intervention.get("input_noise", 0.0))
    noise_gen = torch.Generator().manual_seed(streams["augmentation"])
    x_train, y_train = torch.from_numpy(data.x_train).to(device), torch.from_numpy(y).to(device)
    order = torch.Generator().manual_seed(streams["data_order"])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(x_train.shape[0], generator=order).to(device)
        for start in range(0, x_train.shape[0], batch_size):
            idx = perm[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(gaussian_input_noise(x_train[idx], sigma_max, noise_gen)), y_train[idx])
            loss.backward()
            optimizer.step()
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
