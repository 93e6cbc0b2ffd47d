"""Deterministic training on the CPU, training interventions and weight perturbations."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from tasks.zoo.datasets import Dataset


def seed_streams(seed: int, *names: str) -> dict[str, int]:
    """Independent named child seeds of one job seed (numpy SeedSequence), e.g. init, data_order."""
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1)[0]) for n, c in zip(names, children)}


def randomize_labels(y: np.ndarray, rate: float, n_classes: int, seed: int) -> np.ndarray:
    """Label randomisation (Zhang et al. 2017): each training label is replaced, once and before
    training, with probability ``rate`` by a uniformly random class (which may equal the true one)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"intervention.label_randomization must be in [0, 1], got {rate}")
    rng = np.random.default_rng(seed)
    y = y.copy()
    flip = rng.random(y.shape[0]) < rate
    y[flip] = rng.integers(0, n_classes, size=int(flip.sum()))
    return y


def train(model: nn.Module, data: Dataset, *, seed: int, epochs: int, batch_size: int, lr: float,
          weight_decay: float = 0.0, label_randomization: float = 0.0, device: str = "cpu") -> dict[str, float]:
    """Train ``model`` in place with Adam and cross-entropy; deterministic for a given seed on the CPU
    (on a GPU, cuDNN/cuBLAS kernels may differ in the last bits between runs).

    The seed is split into named streams: ``init`` (weights), ``data_order`` (mini-batch shuffling)
    and ``labels`` (the label-randomisation draw), so changing one axis leaves the others unchanged.
    """
    streams = seed_streams(seed, "init", "data_order", "labels")
    torch.manual_seed(streams["init"])
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
    model.to(device)
    y = randomize_labels(data.y_train, label_randomization, data.n_classes, streams["labels"])
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
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        train_acc = (model(x_train).argmax(1).cpu() == torch.from_numpy(data.y_train)).double().mean().item()
        probe_pred = model(torch.from_numpy(data.x_probe).to(device)).argmax(1).cpu()
        probe_acc = (probe_pred == torch.from_numpy(data.y_probe)).double().mean().item()
    return {"train_accuracy": train_acc, "probe_accuracy": probe_acc, "final_loss": float(loss.item())}


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
