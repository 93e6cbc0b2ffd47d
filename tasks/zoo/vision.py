"""The vision track (a GPU track, docs/vision.md): MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 read
through torchvision's dataset classes, and four architectures for 28x28 and 32x32 images.

Data are never downloaded at run time. Each loader reads the files torchvision's class expects under
``root`` (default: the environment variable ``SIMBENCH_DATA``, else ``data``) and, when they are missing,
raises an error that names the paths it looked for and how to obtain them. Training split: the dataset's
training set, optionally a seeded stratified subsample of ``max_train`` images. Probe set: a fixed, seeded,
stratified subset of ``probe_size`` test images, kept in test-set order. Inputs are float32 in [0, 1],
shape (C, H, W), without normalisation (the interventions clip noise to [0, 1] and draw markers at 1).

Compared layers (``simbench_layers``) are post-activation block outputs ending with ``logits``; the
penultimate one is the pooled feature vector the classifier reads. Spatial policy: a compared conv map is
average-pooled to at most 7x7 (adaptive average pooling, protocols §3.2) and then flattened channel-major by
the extraction. The pooling is done by a parameter-free ``readout`` submodule of each compared block: the
block calls it on its output and goes on with the full map, so the pooled tensor exists only to be
recorded (extraction hooks modules by name). ``vgg_small`` is the exception: it stays a flat
``nn.Sequential`` that follows the zoo's naming convention, so that the model-based measures (stitching,
weight matching, canonical scaling) apply to it; its compared layers are its max-pooled stage outputs
(16x16, 8x8 and 4x4 maps on 32x32 inputs).

Initialisation: ``training.train`` re-initialises every submodule that has ``reset_parameters`` under the
model seed's ``init`` stream, so every parameter here lives in a module that has one (the ViT's class
token and position embeddings included); PyTorch's default initialisations are therefore the ones used.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tasks.zoo.architectures import architecture
from tasks.zoo.datasets import Dataset, dataset
from tasks.zoo.training import seed_streams

#: Compared conv maps are average-pooled to at most this many positions per side.
READOUT_SIZE = 7

# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class _Source:
    """Where torchvision's class for one dataset reads its files, and how a user obtains them."""

    torchvision_class: str  # the class in torchvision.datasets
    files: tuple[str, ...]  # paths under root that the class reads
    n_classes: int
    how_to_obtain: str


def _idx_source(folder: str, n_classes: int) -> _Source:
    return _Source(
        folder,
        tuple(f"{folder}/raw/{name}" for name in _IDX_FILES),
        n_classes,
        f"Place the four uncompressed IDX files ({', '.join(_IDX_FILES)}) in {{root}}/{folder}/raw/. To obtain "
        f"them, run `python -c \"import torchvision; torchvision.datasets.{folder}('DIR', download=True)\"` on a "
        f"machine with network access and copy DIR/{folder} to {{root}}/{folder}, or gunzip the four .gz files from "
        f"a mirror in torchvision.datasets.{folder}.mirrors into {{root}}/{folder}/raw/.",
    )


def _cifar_source(torchvision_class: str, folder: str, files: tuple[str, ...], n_classes: int, archive: str) -> _Source:
    return _Source(
        torchvision_class,
        tuple(f"{folder}/{name}" for name in files),
        n_classes,
        f"Unpack the official archive https://www.cs.toronto.edu/~kriz/{archive} into {{root}} (`tar xzf {archive} "
        f"-C {{root}}` creates {{root}}/{folder}/), or run `python -c \"import torchvision; "
        f"torchvision.datasets.{torchvision_class}('DIR', download=True)\"` on a machine with network access and "
        f"copy DIR/{folder} to {{root}}/{folder}. torchvision checks the md5 sums of these files.",
    )


_SOURCES = {
    "mnist": _idx_source("MNIST", 10),
    "fashion_mnist": _idx_source("FashionMNIST", 10),
    "cifar10": _cifar_source(
        "CIFAR10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        10, "cifar-10-python.tar.gz",
    ),
    "cifar100": _cifar_source("CIFAR100", "cifar-100-python", ("train", "test", "meta"), 100, "cifar-100-python.tar.gz"),
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder the vision loaders read: ``root`` if given, else ``$SIMBENCH_DATA``, else ``data``."""
    return Path(root if root is not None else os.environ.get("SIMBENCH_DATA", "data")).expanduser()


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` items drawn without replacement, each class in proportion to its count.

    Class quotas are the proportional shares rounded down; the items left over go to the classes with the
    largest remainders (ties to the lower class label). Items within a class are drawn with numpy's
    generator seeded by ``seed``, so the subset is a pure function of (labels, size, seed).
    """
    labels = np.asarray(labels)
    if not 1 <= size <= labels.shape[0]:
        raise ValueError(f"stratified_subset: size must be in [1, {labels.shape[0]}], got {size}")
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * size / labels.shape[0]
    quota = np.floor(share).astype(np.int64)
    leftover = size - int(quota.sum())
    quota[np.argsort(-(share - quota), kind="stable")[:leftover]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False) for c, k in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


def _images(data: Any, index: np.ndarray) -> np.ndarray:
    """uint8 images as torchvision stores them ((N, H, W) tensor for MNIST, (N, H, W, C) array for CIFAR)
    to float32 (N, C, H, W) in [0, 1]."""
    pixels = np.asarray(data)[index]
    pixels = pixels[:, None] if pixels.ndim == 3 else pixels.transpose(0, 3, 1, 2)
    out = pixels.astype(np.float32, order="C")
    out /= 255.0
    return out


def _labels(name: str, targets: Any, n_classes: int) -> np.ndarray:
    labels = np.asarray(targets, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name}: labels outside [0, {n_classes}) in the data files (range {labels.min()}..{labels.max()})")
    return labels


def _load_vision(name: str, root: str | os.PathLike | None, probe_size: int, max_train: int | None,
                 split_seed: int) -> Dataset:
    source = _SOURCES[name]
    folder = data_root(root).resolve()
    missing = [str(folder / f) for f in source.files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"dataset {name!r}: data files not found under {folder} (data.root / $SIMBENCH_DATA); "
            f"missing: {', '.join(missing)}. simbench never downloads data at run time. "
            f"{source.how_to_obtain.format(root=folder)} See docs/vision.md."
        )
    if not isinstance(probe_size, int) or probe_size < 1:
        raise ValueError(f"data.probe_size must be an integer >= 1, got {probe_size!r}")
    if max_train is not None and (not isinstance(max_train, int) or max_train < 1):
        raise ValueError(f"data.max_train must be null or an integer >= 1, got {max_train!r}")
    # Imported here: importing torchvision takes seconds and only these loaders (and resnet18) need it.
    import torchvision.datasets

    cls = getattr(torchvision.datasets, source.torchvision_class)
    try:
        train_set = cls(str(folder), train=True, download=False)
        test_set = cls(str(folder), train=False, download=False)
    except RuntimeError as exc:
        raise RuntimeError(
            f"dataset {name!r}: torchvision.datasets.{source.torchvision_class} rejected the files under {folder} "
            f"({exc}); they exist but fail its integrity (md5) check, e.g. a partial copy or another release. "
            f"Replace them: {source.how_to_obtain.format(root=folder)}"
        ) from exc
    y_train = _labels(name, train_set.targets, source.n_classes)
    y_test = _labels(name, test_set.targets, source.n_classes)
    if probe_size > y_test.shape[0]:
        raise ValueError(f"data.probe_size={probe_size} exceeds the {y_test.shape[0]} test images of {name!r}")
    streams = seed_streams(split_seed, "probe", "train_subsample")
    probe = stratified_subset(y_test, probe_size, streams["probe"])
    if max_train is None or max_train >= y_train.shape[0]:
        train = np.arange(y_train.shape[0])
    else:
        train = stratified_subset(y_train, max_train, streams["train_subsample"])
    return Dataset(
        name=name,
        x_train=_images(train_set.data, train),
        y_train=y_train[train],
        x_probe=_images(test_set.data, probe),
        y_probe=y_test[probe],
        n_classes=source.n_classes,
    )


def _vision_shape(input_shape: tuple[int, int, int], n_classes: int):
    """Shape of a vision dataset from its config, with the size parameters checked (no files read)."""

    def shape(probe_size: int = 2000, max_train: int | None = None, **_: object) -> tuple[tuple[int, ...], int]:
        if isinstance(probe_size, bool) or not isinstance(probe_size, int) or probe_size < 1:
            raise ValueError(f"data.probe_size must be an integer >= 1, got {probe_size!r}")
        if max_train is not None and (isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < 1):
            raise ValueError(f"data.max_train must be null or an integer >= 1, got {max_train!r}")
        return input_shape, n_classes

    return shape


@dataset("mnist", shape=_vision_shape((1, 28, 28), 10))
def mnist(root: str | None = None, probe_size: int = 2000, max_train: int | None = None, split_seed: int = 0) -> Dataset:
    """MNIST handwritten digits (torchvision.datasets.MNIST): 60,000 training and 10,000 test images,
    (1, 28, 28), 10 classes. Reads ``<root>/MNIST/raw/`` (the uncompressed IDX files)."""
    return _load_vision("mnist", root, probe_size, max_train, split_seed)


@dataset("fashion_mnist", shape=_vision_shape((1, 28, 28), 10))
def fashion_mnist(root: str | None = None, probe_size: int = 2000, max_train: int | None = None,
                  split_seed: int = 0) -> Dataset:
    """Fashion-MNIST clothing images (torchvision.datasets.FashionMNIST): 60,000 / 10,000 images, (1, 28, 28),
    10 classes. Reads ``<root>/FashionMNIST/raw/`` (the uncompressed IDX files)."""
    return _load_vision("fashion_mnist", root, probe_size, max_train, split_seed)


@dataset("cifar10", shape=_vision_shape((3, 32, 32), 10))
def cifar10(root: str | None = None, probe_size: int = 2000, max_train: int | None = None, split_seed: int = 0) -> Dataset:
    """CIFAR-10 (torchvision.datasets.CIFAR10): 50,000 / 10,000 colour images, (3, 32, 32), 10 classes.
    Reads ``<root>/cifar-10-batches-py/`` (the python pickles of the official archive)."""
    return _load_vision("cifar10", root, probe_size, max_train, split_seed)


@dataset("cifar100", shape=_vision_shape((3, 32, 32), 100))
def cifar100(root: str | None = None, probe_size: int = 2000, max_train: int | None = None, split_seed: int = 0) -> Dataset:
    """CIFAR-100 (torchvision.datasets.CIFAR100): 50,000 / 10,000 colour images, (3, 32, 32), the 100 fine
    classes. Reads ``<root>/cifar-100-python/`` (the python pickles of the official archive)."""
    return _load_vision("cifar100", root, probe_size, max_train, split_seed)


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


def _image_shape(arch: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"{arch} needs image inputs (C, H, W), got input shape {tuple(input_shape)}")
    c, h, w = (int(s) for s in input_shape)
    return c, h, w


class SpatialReadout(nn.Module):
    """What the benchmark records of a block's conv map: the map average-pooled to at most 7x7.

    Parameter-free. The owning block calls it on its output and goes on with the full map; extraction
    hooks this module by name, so its output is the compared representation of the block.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, (min(x.shape[-2], READOUT_SIZE), min(x.shape[-1], READOUT_SIZE)))


class ClassTokenReadout(nn.Module):
    """What the benchmark records of a transformer block: its output at the class token, (N, dim)."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0]


class ResidualBlock(nn.Module):
    """Basic ResNet block: 3x3 conv, BN, ReLU, 3x3 conv, BN, plus the shortcut (identity, or 1x1 conv + BN
    when the shape changes), then ReLU. ``readout`` records the pooled output."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU()
        self.readout = SpatialReadout()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))
        self.readout(out)  # recorded by extraction's hook; the next block reads the full map
        return out


class SmallResNet(nn.Module):
    """3x3 conv stem (conv1, bn1, relu), stages ``layer1..layerS`` of residual blocks (the first block of
    every stage after the first halves the resolution), global average pooling, ``logits``."""

    def __init__(self, in_channels: int, n_classes: int, widths: tuple[int, ...], blocks_per_stage: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        c = widths[0]
        blocks = []
        for s, width in enumerate(widths, start=1):
            stride = 1 if s == 1 else 2
            stage = [ResidualBlock(c if b == 0 else width, width, stride if b == 0 else 1) for b in range(blocks_per_stage)]
            self.add_module(f"layer{s}", nn.Sequential(*stage))
            blocks += [f"layer{s}.{b}" for b in range(blocks_per_stage)]
            c = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logits = nn.Linear(c, n_classes)
        self.stage_names = [f"layer{s}" for s in range(1, len(widths) + 1)]
        self.simbench_layers = [f"{b}.readout" for b in blocks] + ["avgpool", "logits"]
        self.simbench_preactivations: list[str] = []  # residual streams: no per-unit ReLU regions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for stage in self.stage_names:
            x = self.get_submodule(stage)(x)
        return self.logits(torch.flatten(self.avgpool(x), 1))


class SmallImageResNet18(nn.Module):
    """torchvision's ResNet-18 adapted to 28x28 / 32x32 inputs: its 7x7 stride-2 stem convolution is
    replaced by a 3x3 stride-1 one (taking ``in_channels``) and its stem max-pool is dropped, so layer1
    runs at the input resolution (the usual CIFAR adaptation). The residual stages, global pooling and
    classifier (renamed ``logits``) are torchvision's modules; each block gets a ``readout``."""

    def __init__(self, in_channels: int, n_classes: int):
        super().__init__()
        from torchvision.models import resnet18  # see _load_vision: torchvision is imported on use

        net = resnet18(weights=None, num_classes=n_classes)
        self.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 3, padding=1, bias=False)
        self.bn1, self.relu = net.bn1, net.relu
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.avgpool = net.avgpool
        self.logits = net.fc
        names = []
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            for b, block in enumerate(self.get_submodule(stage)):
                # torchvision's BasicBlock.forward ignores this child; our forward calls it.
                block.add_module("readout", SpatialReadout())
                names.append(f"{stage}.{b}.readout")
        self.simbench_layers = names + ["avgpool", "logits"]
        self.simbench_preactivations: list[str] = []  # residual streams: no per-unit ReLU regions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x)
                block.readout(x)  # recorded by extraction's hook
        return self.logits(torch.flatten(self.avgpool(x), 1))


class PatchEmbedding(nn.Module):
    """Non-overlapping ``patch_size`` patches projected to ``dim`` (a strided conv), a learned class token
    prepended, learned position embeddings added: (N, C, H, W) -> (N, 1 + HW/p², dim)."""

    def __init__(self, in_channels: int, height: int, width: int, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        n_patches = (height // patch_size) * (width // patch_size)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.positions = nn.Parameter(torch.empty(1, 1 + n_patches, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Only this module's own tensors (``proj`` has its own reset_parameters). training.train calls
        # this under the init seed, which is what makes the ViT's initialisation seeded end to end.
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.positions, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.proj(x).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), patches], dim=1) + self.positions


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over all tokens (one qkv projection, one output
    projection; plain Linear layers, so train() re-initialises them)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with a GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(OrderedDict(fc1=nn.Linear(dim, mlp_dim), gelu=nn.GELU(), fc2=nn.Linear(mlp_dim, dim)))
        self.readout = ClassTokenReadout()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        self.readout(x)  # recorded by extraction's hook
        return x


class TinyViT(nn.Module):
    """Vision transformer trained from scratch: patch embedding, ``depth`` transformer blocks, final
    LayerNorm ``norm`` on the class token, ``logits``."""

    def __init__(self, in_channels: int, height: int, width: int, n_classes: int, patch_size: int, dim: int,
                 depth: int, heads: int, mlp_dim: int):
        super().__init__()
        self.patch_embed = PatchEmbedding(in_channels, height, width, patch_size, dim)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.logits = nn.Linear(dim, n_classes)
        self.simbench_layers = [f"blocks.{i}.readout" for i in range(depth)] + ["norm", "logits"]
        self.simbench_preactivations: list[str] = []  # GELU: no ReLU activation regions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.blocks(self.patch_embed(x))
        return self.logits(self.norm(tokens[:, 0]))


# --------------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------------


@architecture("resnet_small")
def resnet_small(input_shape: tuple[int, ...], n_classes: int, widths: tuple[int, ...] = (32, 64, 128),
                 blocks_per_stage: int = 2) -> nn.Module:
    """Small ResNet with BatchNorm for 28x28 / 32x32 images: a 3x3 stem, one stage of
    ``blocks_per_stage`` basic residual blocks per entry of ``widths`` (stride 2 at each new stage), global
    average pooling, logits. Compared layers: every block's output (pooled to <= 7x7, ``layer<s>.<b>.readout``),
    ``avgpool`` (the pooled features), ``logits``. No pre-activations (residual streams)."""
    c, _, _ = _image_shape("resnet_small", input_shape)
    if not widths or min(widths) < 1 or blocks_per_stage < 1:
        raise ValueError(f"resnet_small needs widths >= 1 and blocks_per_stage >= 1, got {widths}, {blocks_per_stage}")
    return SmallResNet(c, n_classes, tuple(int(w) for w in widths), int(blocks_per_stage))


@architecture("vgg_small")
def vgg_small(input_shape: tuple[int, ...], n_classes: int, channels: tuple[int, ...] = (32, 64, 128),
              convs_per_stage: int = 2, hidden: int = 256) -> nn.Sequential:
    """VGG-style net with BatchNorm, a flat ``nn.Sequential`` in the zoo's naming convention: per entry of
    ``channels`` a stage of ``convs_per_stage`` [3x3 conv ``conv<i>``, ``bn<i>``, ``relu<i>``] and a 2x2
    max-pool ``pool<s>``; then ``flatten``, one dense layer ``fc<k>`` + ``relu<k>`` of ``hidden`` units and
    ``logits``. Compared layers: each stage's output (``pool<s>``, or its last ReLU where the map is too
    small to pool), ``relu<k>``, ``logits``. Pre-activations: ``fc<k>`` only, because the conv layers'
    channel-positions (tens of thousands of units per layer on 32x32 inputs) are too many for the
    activation-region metric's per-unit signatures and matching."""
    c, h, w = _image_shape("vgg_small", input_shape)
    if not channels or min(channels) < 1 or convs_per_stage < 1 or hidden < 1:
        raise ValueError(
            f"vgg_small needs channels, convs_per_stage and hidden >= 1, got {channels}, {convs_per_stage}, {hidden}"
        )
    layers: list[tuple[str, nn.Module]] = []
    stage_outputs = []
    i = 0
    for s, out in enumerate(channels, start=1):
        for _ in range(convs_per_stage):
            i += 1
            layers += [(f"conv{i}", nn.Conv2d(c, out, 3, padding=1, bias=False)), (f"bn{i}", nn.BatchNorm2d(out)),
                       (f"relu{i}", nn.ReLU())]
            c = out
        if h >= 2 and w >= 2:
            layers.append((f"pool{s}", nn.MaxPool2d(2)))
            stage_outputs.append(f"pool{s}")
            h, w = h // 2, w // 2
        else:
            stage_outputs.append(f"relu{i}")
    k = i + 1
    layers += [("flatten", nn.Flatten()), (f"fc{k}", nn.Linear(c * h * w, hidden)), (f"relu{k}", nn.ReLU()),
               ("logits", nn.Linear(hidden, n_classes))]
    model = nn.Sequential(OrderedDict(layers))
    model.simbench_layers = stage_outputs + [f"relu{k}", "logits"]
    model.simbench_preactivations = [f"fc{k}"]
    return model


@architecture("vit_tiny")
def vit_tiny(input_shape: tuple[int, ...], n_classes: int, patch_size: int = 4, dim: int = 128, depth: int = 6,
             heads: int = 4, mlp_dim: int = 256) -> nn.Module:
    """Tiny vision transformer trained from scratch (ReSi's ViTs start from ImageNet-21k checkpoints,
    which are not usable offline): ``patch_size`` patches, a class token, ``depth`` pre-norm blocks of
    ``heads``-head self-attention and a GELU MLP of ``mlp_dim``, final LayerNorm, linear head on the class
    token. Compared layers: each block's output at the class token (``blocks.<i>.readout``), ``norm`` (the
    normalised class token the head reads), ``logits``. No pre-activations (GELU)."""
    c, h, w = _image_shape("vit_tiny", input_shape)
    if h % patch_size or w % patch_size:
        raise ValueError(f"vit_tiny: patch_size {patch_size} must divide the image size {h}x{w}")
    if dim % heads:
        raise ValueError(f"vit_tiny: dim {dim} must be divisible by heads {heads}")
    if min(patch_size, dim, depth, heads, mlp_dim) < 1:
        raise ValueError("vit_tiny: patch_size, dim, depth, heads and mlp_dim must be >= 1")
    return TinyViT(c, h, w, n_classes, patch_size, dim, depth, heads, mlp_dim)


@architecture("resnet18")
def resnet18(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """torchvision.models.resnet18(weights=None, num_classes=n_classes) adapted to small images: 3x3
    stride-1 stem, no stem max-pool (see :class:`SmallImageResNet18`); widths 64-512 as in torchvision
    (11M parameters). Compared layers: the outputs of its 8 blocks (pooled to <= 7x7,
    ``layer<s>.<b>.readout``), ``avgpool``, ``logits``. No pre-activations (residual streams)."""
    c, _, _ = _image_shape("resnet18", input_shape)
    return SmallImageResNet18(c, n_classes)
