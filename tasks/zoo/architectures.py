"""Architectures of the zoo. Each is one function that returns an ``nn.Sequential`` with named layers.

Naming convention (the extraction, canonicalisation and activation-region code rely on it):
``fc<i>`` / ``conv<i>`` are affine layers, ``relu<i>`` the ReLU after them, ``pool<i>`` pooling,
``flatten`` the conv-to-dense reshape and ``logits`` the final affine layer. The representations
compared by the benchmark are the outputs of every ``relu<i>`` plus ``logits``; the pre-activations
used by the activation-region metric are the outputs of the affine layer feeding each ``relu<i>``.

To add an architecture: write one function ``name(input_shape, n_classes, **cfg) -> nn.Sequential``
following the naming convention, decorate it with ``@architecture("name")`` and add
``conf/arch/name.yaml`` with ``name: name`` plus the function's keyword arguments.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

ARCHITECTURES: dict[str, Callable[..., nn.Sequential]] = {}


def architecture(name: str) -> Callable[[Callable[..., nn.Sequential]], Callable[..., nn.Sequential]]:
    def decorator(fn: Callable[..., nn.Sequential]) -> Callable[..., nn.Sequential]:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = fn
        return fn

    return decorator


def build(name: str, input_shape: tuple[int, ...], n_classes: int, **cfg) -> nn.Sequential:
    """Build architecture ``name``; unknown names list the valid ones."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; valid choices: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](tuple(input_shape), n_classes, **cfg)


def representation_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose outputs are compared: every ReLU, then the logits.

    A model that is not a flat ``nn.Sequential`` (a ResNet, a ViT) declares its own list of module
    names (as given by ``named_modules()``) in the attribute ``simbench_layers``.
    """
    if hasattr(model, "simbench_layers"):
        return list(model.simbench_layers)
    names = [n for n, m in model.named_children() if isinstance(m, nn.ReLU)]
    return names + ["logits"]


def preactivation_layers(model: nn.Module) -> list[str]:
    """Names of the affine layers whose outputs feed a ReLU (one per hidden layer); models that are not
    flat ``nn.Sequential`` declare them in ``simbench_preactivations`` (empty: not supported)."""
    if hasattr(model, "simbench_preactivations"):
        return list(model.simbench_preactivations)
    children = list(model.named_children())
    return [children[i - 1][0] for i, (_, m) in enumerate(children) if isinstance(m, nn.ReLU) and i > 0]


@torch.no_grad()
def run_capturing(model: nn.Module, x: torch.Tensor, names: list[str], batch_size: int = 4096
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run ``x`` through ``model`` in eval mode, batch by batch on the model's device, and return the
    outputs of the modules ``names`` (flattened per row, on the CPU) and the logits (on the CPU).

    Raises ``ValueError`` naming the modules the model does not have.
    """
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"model has no module(s) named {missing} to extract; its modules are "
                         f"{[n for n in modules if n]}")
    captured: dict[str, list[torch.Tensor]] = {}
    hooks = [modules[n].register_forward_hook(
        lambda _m, _i, out, n=n: captured.setdefault(n, []).append(out.detach().cpu()))
        for n in dict.fromkeys(names)]
    device = next(model.parameters(), torch.empty(0)).device
    model.eval()
    try:
        logits = torch.cat([model(batch.to(device)).cpu() for batch in x.split(batch_size)])
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.cat(captured[n]).flatten(1) for n in dict.fromkeys(names)}, logits


@architecture("mlp")
def mlp(input_shape: tuple[int, ...], n_classes: int, depth: int = 2, width: int = 64) -> nn.Sequential:
    """Fully connected ReLU network: ``depth`` hidden layers of ``width`` units, then the logits."""
    for key, value in (("depth", depth), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"arch.{key} must be an integer >= 1, got {value!r}")
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    fan_in = math.prod(input_shape)
    for i in range(1, depth + 1):
        layers += [(f"fc{i}", nn.Linear(fan_in, width)), (f"relu{i}", nn.ReLU())]
        fan_in = width
    layers.append(("logits", nn.Linear(fan_in, n_classes)))
    return nn.Sequential(OrderedDict(layers))


@architecture("cnn")
def cnn(
    input_shape: tuple[int, ...], n_classes: int, channels: tuple[int, ...] = (4, 8), hidden: int = 64
) -> nn.Sequential:
    """Small conv net for 8x8 images: [3x3 conv, ReLU, 2x2 max-pool] per entry of ``channels``, one
    hidden dense layer of ``hidden`` units, then the logits. Inputs must be (C, H, W)."""
    if len(input_shape) != 3:
        raise ValueError(f"cnn needs image inputs (C, H, W), got input shape {input_shape}")
    if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in (*channels, hidden)):
        raise ValueError(f"arch.channels and arch.hidden must be integers >= 1, got {list(channels)}, {hidden!r}")
    c, h, w = input_shape
    layers: list[tuple[str, nn.Module]] = []
    for i, out in enumerate(channels, start=1):
        layers += [(f"conv{i}", nn.Conv2d(c, out, 3, padding=1)), (f"relu{i}", nn.ReLU())]
        if h >= 2 and w >= 2:
            layers.append((f"pool{i}", nn.MaxPool2d(2)))
            h, w = h // 2, w // 2
        c = out
    k = len(channels) + 1
    layers += [
        ("flatten", nn.Flatten()),
        (f"fc{k}", nn.Linear(c * h * w, hidden)),
        (f"relu{k}", nn.ReLU()),
        ("logits", nn.Linear(hidden, n_classes)),
    ]
    return nn.Sequential(OrderedDict(layers))


@architecture("tiny10")
def tiny10(input_shape: tuple[int, ...], n_classes: int,
           channels: tuple[int, ...] = (16, 16, 16, 32, 32, 32, 64, 64),
           strides: tuple[int, ...] = (1, 1, 1, 2, 1, 1, 2, 1)) -> nn.Sequential:
    """Tiny-10-style conv net (Kornblith et al. 2019, App. C): per entry of ``channels`` a size-3 conv with the
    given stride, BatchNorm and ReLU; then global average pooling and the logits. Inputs are images (C, H, W)
    (3x3 convs) or signals (C, L) such as MNIST-1D (1-D convs of width 3). Compared layers: every ReLU (maps
    flattened channel-major) and the logits."""
    if len(input_shape) not in (2, 3):
        raise ValueError(f"tiny10 needs image inputs (C, H, W) or signals (C, L), got input shape {input_shape}")
    if len(channels) != len(strides) or not channels:
        raise ValueError(f"arch.channels and arch.strides must be non-empty and of equal length, "
                         f"got {list(channels)} and {list(strides)}")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (*channels, *strides)):
        raise ValueError(f"arch.channels and arch.strides must be integers >= 1, got {list(channels)}, {list(strides)}")
    conv, norm, pool = ((nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d) if len(input_shape) == 3
                        else (nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d))
    c = input_shape[0]
    layers: list[tuple[str, nn.Module]] = []
    for i, (out, stride) in enumerate(zip(channels, strides), start=1):
        layers += [(f"conv{i}", conv(c, out, 3, stride=stride, padding=1)), (f"bn{i}", norm(out)),
                   (f"relu{i}", nn.ReLU())]
        c = out
    layers += [("pool", pool(1)), ("flatten", nn.Flatten()), ("logits", nn.Linear(c, n_classes))]
    return nn.Sequential(OrderedDict(layers))
