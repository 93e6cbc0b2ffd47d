"""The vision track (tasks/zoo/vision.py): the real torchvision loaders on small files written in each
dataset's real on-disk format, and every vision architecture built, extracted and trained at tiny widths.

Fake data: every image is random uint8 noise except its first two pixels (channel 0, row 0, columns 0
and 1), which hold its index in its split (n % 256, n // 256), so a test can tell which written image
every loaded row is and check that image, label and order travel together.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from measures import compute
from runners.job import model_spec
from tasks.zoo import architectures, datasets
from tasks.zoo.cache import Variant, ZooCache, extract
from tasks.zoo.datasets import Dataset
from tasks.zoo.training import train

ROOT = Path(__file__).resolve().parents[2]
VISION_DATASETS = ["mnist", "fashion_mnist", "cifar10", "cifar100"]


# --------------------------------------------------------------------------------------------------
# Writing small datasets in their real formats
# --------------------------------------------------------------------------------------------------


@dataclass
class FakeData:
    """What a writer put on disk: the root to load from and the uint8 images (N, C, H, W) and labels."""

    root: Path
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


def _split(rng: np.random.Generator, per_class: int, n_classes: int, shape: tuple[int, int, int]):
    labels = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    images = rng.integers(0, 256, size=(labels.shape[0], *shape), dtype=np.uint8)
    index = np.arange(labels.shape[0])
    images[:, 0, 0, 0] = index % 256
    images[:, 0, 0, 1] = index // 256
    return images, labels


def written_index(x: np.ndarray) -> np.ndarray:
    """The split index a loaded image was written with (see the module docstring)."""
    pixels = np.rint(x[:, 0, 0, :2] * 255).astype(np.int64)
    return pixels[:, 0] + 256 * pixels[:, 1]


def _write_idx(path: Path, array: np.ndarray) -> None:
    # IDX: magic = two zero bytes, type 0x08 (unsigned byte), number of dimensions; then each dimension
    # as a big-endian uint32; then the bytes in row-major order. torchvision reads the uncompressed files.
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_idx_dataset(root: Path, folder: str, rng: np.random.Generator) -> FakeData:
    """MNIST / Fashion-MNIST: <root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""
    x_train, y_train = _split(rng, 3, 10, (1, 28, 28))
    x_test, y_test = _split(rng, 4, 10, (1, 28, 28))
    raw = root / folder / "raw"
    for prefix, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x[:, 0])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y.astype(np.uint8))
    return FakeData(root, x_train, y_train, x_test, y_test, 10)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def _rows(x: np.ndarray) -> np.ndarray:
    # CIFAR rows: 3072 bytes per image, the 1024 red, then green, then blue pixels, each row-major.
    return x.reshape(x.shape[0], -1)


def _trust_written_files(monkeypatch: pytest.MonkeyPatch, cls: type, folder: Path) -> None:
    # torchvision checks every CIFAR file against the md5 of the official release (CIFAR10._check_integrity
    # and _load_meta). These small files are not that release, so the test points the class's expected
    # checksums at the md5 of the files it wrote itself: the library's check still runs, on these files
    # (test_cifar_checksum_mismatch_is_explained shows that it rejects files it does not expect).
    monkeypatch.setattr(cls, "train_list", [[f, _md5(folder / f)] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, _md5(folder / f)] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / cls.meta["filename"])})


def write_cifar10(root: Path, rng: np.random.Generator) -> FakeData:
    """<root>/cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta (python pickles)."""
    x_train, y_train = _split(rng, 5, 10, (3, 32, 32))
    x_test, y_test = _split(rng, 4, 10, (3, 32, 32))
    folder = root / "cifar-10-batches-py"
    for b, part in enumerate(np.array_split(np.arange(y_train.shape[0]), 5), start=1):
        _pickle(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "labels": y_train[part].tolist(),
                                             "data": _rows(x_train[part]), "filenames": [f"{i}.png" for i in part]})
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": y_test.tolist(),
                                    "data": _rows(x_test), "filenames": [f"{i}.png" for i in range(y_test.shape[0])]})
    _pickle(folder / "batches.meta", {"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": 10,
                                      "num_vis": 3072})
    return FakeData(root, x_train, y_train, x_test, y_test, 10)


def write_cifar100(root: Path, rng: np.random.Generator) -> FakeData:
    """<root>/cifar-100-python/train, test, meta (python pickles; fine and coarse labels)."""
    x_train, y_train = _split(rng, 2, 100, (3, 32, 32))
    x_test, y_test = _split(rng, 3, 100, (3, 32, 32))
    folder = root / "cifar-100-python"
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        _pickle(folder / name, {"filenames": [f"{i}.png" for i in range(y.shape[0])], "batch_label": name,
                                "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(), "data": _rows(x)})
    _pickle(folder / "meta", {"fine_label_names": [f"fine{c}" for c in range(100)],
                              "coarse_label_names": [f"coarse{c}" for c in range(20)]})
    return FakeData(root, x_train, y_train, x_test, y_test, 100)


def write_fake(name: str, root: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> FakeData:
    """Write dataset ``name`` under ``root``; CIFAR checksums are trusted when ``monkeypatch`` is given."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name in ("mnist", "fashion_mnist"):
        return write_idx_dataset(root, "MNIST" if name == "mnist" else "FashionMNIST", rng)
    if name == "cifar10":
        fake = write_cifar10(root, rng)
        if monkeypatch is not None:
            _trust_written_files(monkeypatch, torchvision.datasets.CIFAR10, root / "cifar-10-batches-py")
        return fake
    fake = write_cifar100(root, rng)
    if monkeypatch is not None:
        _trust_written_files(monkeypatch, torchvision.datasets.CIFAR100, root / "cifar-100-python")
    return fake


@pytest.fixture(params=VISION_DATASETS)
def fake(request, tmp_path, monkeypatch) -> tuple[str, FakeData]:
    return request.param, write_fake(request.param, tmp_path, monkeypatch)


def _probe_size(fake: FakeData) -> int:
    return 2 * fake.n_classes if fake.n_classes == 10 else fake.n_classes  # 2 resp. 1 test image per class


# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------


def test_loader_reads_the_real_format(fake):
    """Shapes (C, H, W), float32 in [0, 1] = byte / 255 exactly, channel/row/column layout, labels in
    file order, class count: the whole training split comes back as written."""
    name, data = fake
    ds = datasets.load(name, root=str(data.root), probe_size=_probe_size(data))
    assert ds.name == name and ds.n_classes == data.n_classes
    assert ds.x_train.dtype == np.float32 and ds.x_probe.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.input_shape == data.x_train.shape[1:] == ((1, 28, 28) if "mnist" in name else (3, 32, 32))
    assert ds.x_train.flags["C_CONTIGUOUS"] and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    np.testing.assert_array_equal(ds.x_train, data.x_train.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(ds.y_train, data.y_train)


def test_probe_set_is_a_stratified_subset_of_the_test_set(fake):
    """The probe set holds test images only, each with its own label, in test-set order, and exactly the
    same number per class (the test sets here are balanced)."""
    name, data = fake
    size = _probe_size(data)
    ds = datasets.load(name, root=str(data.root), probe_size=size)
    index = written_index(ds.x_probe)
    assert ds.x_probe.shape == (size, *data.x_test.shape[1:])
    assert np.all(np.diff(index) > 0), "probe rows are distinct and in test-set order"
    np.testing.assert_array_equal(ds.x_probe, data.x_test[index].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(ds.y_probe, data.y_test[index])
    assert np.bincount(ds.y_probe, minlength=data.n_classes).tolist() == [size // data.n_classes] * data.n_classes


def test_splits_are_deterministic_and_seeded(fake):
    """Same arguments, same arrays; another split_seed draws another probe subset and training subsample;
    max_train keeps a stratified subset of the training images with their labels."""
    name, data = fake
    kwargs = dict(root=str(data.root), probe_size=_probe_size(data), max_train=data.n_classes)
    a, b = datasets.load(name, **kwargs), datasets.load(name, **kwargs)
    for field in ("x_train", "y_train", "x_probe", "y_probe"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert np.bincount(a.y_train, minlength=data.n_classes).tolist() == [1] * data.n_classes
    train_index = written_index(a.x_train)
    np.testing.assert_array_equal(a.x_train, data.x_train[train_index].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(a.y_train, data.y_train[train_index])
    other = datasets.load(name, **kwargs, split_seed=1)
    assert not np.array_equal(written_index(other.x_probe), written_index(a.x_probe))
    assert not np.array_equal(written_index(other.x_train), train_index)


def test_stratified_subset_quotas():
    """Unbalanced classes: proportional quotas, leftovers to the largest remainders, no repeats."""
    from tasks.zoo.vision import stratified_subset

    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    picked = stratified_subset(labels, 15, seed=3)
    assert np.bincount(labels[picked]).tolist() == [8, 4, 3]  # shares 7.5, 4.5, 3.0: ties go to class 0
    assert len(set(picked)) == 15 and np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(picked, stratified_subset(labels, 15, seed=3))
    with pytest.raises(ValueError, match="size must be in"):
        stratified_subset(labels, 101, seed=0)


@pytest.mark.parametrize("name", VISION_DATASETS)
def test_missing_files_say_where_and_how(name, tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        datasets.load(name, root=str(tmp_path / "nowhere"))
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "never downloads" in message
    assert "download=True" in message and "docs/vision.md" in message
    assert ("raw/train-images-idx3-ubyte" in message) if "mnist" in name else ("kriz" in message)


def test_cifar_checksum_mismatch_is_explained(tmp_path):
    """Files that exist but are not the official release fail torchvision's md5 check; the error says so."""
    write_fake("cifar10", tmp_path)  # checksums not trusted
    with pytest.raises(RuntimeError, match=r"integrity \(md5\) check.*Replace them"):
        datasets.load("cifar10", root=str(tmp_path))


def test_bad_sizes_are_rejected(tmp_path):
    data = write_fake("mnist", tmp_path)
    with pytest.raises(ValueError, match="probe_size=41 exceeds the 40 test images"):
        datasets.load("mnist", root=str(data.root), probe_size=41)
    with pytest.raises(ValueError, match="max_train must be null or an integer >= 1"):
        datasets.load("mnist", root=str(data.root), max_train=0)


def test_registries_know_the_vision_track_after_a_plain_import():
    """``import tasks.zoo.datasets`` alone (as runners.config and tasks.zoo.cache do) registers the
    vision datasets and architectures, without importing torchvision until a loader needs it."""
    code = (
        "import sys, tasks.zoo.datasets as d, tasks.zoo.architectures as a\n"
        "assert {'mnist', 'fashion_mnist', 'cifar10', 'cifar100'} <= set(d.DATASETS), sorted(d.DATASETS)\n"
        "assert {'resnet_small', 'vgg_small', 'vit_tiny', 'resnet18'} <= set(a.ARCHITECTURES), sorted(a.ARCHITECTURES)\n"
        "assert 'torchvision' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --------------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------------

TINY = {
    "resnet_small": dict(widths=(4, 8), blocks_per_stage=1),
    "vgg_small": dict(channels=(4, 8), convs_per_stage=1, hidden=8),
    "vit_tiny": dict(dim=8, depth=2, heads=2, mlp_dim=16),
    "resnet18": {},  # torchvision's fixed widths
}
SHAPES = [(1, 28, 28), (3, 32, 32)]


def tiny_dataset(shape: tuple[int, ...], n_train: int = 16, n_probe: int = 6, n_classes: int = 4) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(
        name="tiny",
        x_train=rng.random((n_train, *shape), dtype=np.float32),
        y_train=np.arange(n_train) % n_classes,
        x_probe=rng.random((n_probe, *shape), dtype=np.float32),
        y_probe=np.arange(n_probe) % n_classes,
        n_classes=n_classes,
    )


@pytest.mark.parametrize("shape", SHAPES, ids=["28x28x1", "32x32x3"])
@pytest.mark.parametrize("arch", list(TINY))
def test_forward_and_extraction(arch, shape):
    """Logits of shape (N, C); every declared compared layer is extracted with N rows, the last is the
    logits; conv maps come pooled to <= 7x7; pre-activations exactly as declared."""
    model = architectures.build(arch, shape, 4, **TINY[arch])
    data = tiny_dataset(shape)
    assert model(torch.from_numpy(data.x_train[:5])).shape == (5, 4)
    layers = architectures.representation_layers(model)
    assert layers[-1] == "logits" and len(layers) >= 4
    arrays = extract(model, data)
    for layer in layers:
        assert arrays[f"rep/{layer}"].shape[0] == 6 and np.isfinite(arrays[f"rep/{layer}"]).all()
    np.testing.assert_array_equal(arrays["rep/logits"], arrays["logits"])
    pre = [k for k in arrays if k.startswith("pre/")]
    assert pre == [f"pre/{n}" for n in architectures.preactivation_layers(model)]
    dims = {layer: arrays[f"rep/{layer}"].shape[1] for layer in layers}
    if arch == "resnet_small":
        assert dims["layer1.0.readout"] == 4 * 49 and dims["avgpool"] == 8  # 28 or 32 -> 7x7 readout
    elif arch == "resnet18":
        assert dims["layer1.0.readout"] == 64 * 49 and dims["layer4.1.readout"] == 512 * 16 and dims["avgpool"] == 512
        assert len(layers) == 10
    elif arch == "vit_tiny":
        assert layers == ["blocks.0.readout", "blocks.1.readout", "norm", "logits"] and dims["blocks.1.readout"] == 8
    else:
        assert layers == ["pool1", "pool2", "relu3", "logits"] and pre == ["pre/fc3"]
        assert dims["pool1"] == 4 * (shape[1] // 2) * (shape[2] // 2) and arrays["pre/fc3"].shape == (6, 8)
    if arch != "vgg_small":
        assert pre == [], "no activation-region pre-activations for residual streams or GELU"


def test_resnet18_is_torchvisions_adapted_to_small_images():
    """3x3 stride-1 stem, no stem max-pool (layer1 runs at the input resolution), torchvision's blocks."""
    model = architectures.build("resnet18", (3, 32, 32), 10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert isinstance(model.layer1[0], torchvision.models.resnet.BasicBlock)
    assert sum(p.numel() for p in model.parameters()) > 11_000_000
    shapes = []
    handle = model.layer1[-1].register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)) and None)
    model.eval()(torch.zeros(2, 3, 32, 32))
    handle.remove()
    assert shapes == [(2, 64, 32, 32)]


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="image inputs"):
        architectures.build("resnet_small", (64,), 10)
    with pytest.raises(ValueError, match="patch_size 5 must divide"):
        architectures.build("vit_tiny", (3, 32, 32), 10, patch_size=5)


@pytest.mark.parametrize("arch,shape", [("resnet_small", (3, 32, 32)), ("vgg_small", (1, 28, 28)),
                                        ("vit_tiny", (3, 32, 32)), ("resnet18", (1, 28, 28))])
def test_one_epoch_trains_and_is_seeded(arch, shape):
    """One epoch runs; two models built under different global RNG states and trained with the same
    seed end bit-identical, so train() re-initialises every parameter (the ViT's class token and position
    embeddings included) from the model seed."""
    data = tiny_dataset(shape, n_train=8, n_probe=4) if arch == "resnet18" else tiny_dataset(shape)
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        model = architectures.build(arch, shape, data.n_classes, **TINY[arch])
        metrics = train(model, data, seed=7, epochs=1, batch_size=8, lr=1e-3)
        assert all(np.isfinite(v) for v in metrics.values())
        states.append(model.state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


def test_vgg_small_supports_the_weight_space_measures():
    """vgg_small is a flat nn.Sequential with BatchNorm after each conv, which the permutation/scaling
    machinery supports: weight matching runs and a permuted copy is at distance ~0 after matching."""
    from measures.weights import permute_hidden_units

    model = architectures.build("vgg_small", (3, 32, 32), 4, **TINY["vgg_small"]).eval()
    rng = np.random.default_rng(0)
    permutations = {"conv1": rng.permutation(4), "conv2": rng.permutation(8), "fc3": rng.permutation(8)}
    permuted = permute_hidden_units(model, permutations)
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(model(x), permuted(x))
    assert compute("weight_distance", model, permuted) > 0.1
    assert compute("weight_distance", model, permuted, alignment="weight_matching") < 1e-6


def test_vision_config_runs_through_the_zoo_cache(tmp_path, monkeypatch):
    """conf/data/mnist.yaml (root from $SIMBENCH_DATA), conf/arch/resnet_small.yaml and conf/train/vision.yaml
    composed by Hydra, with shortcut markers and input noise: the model trains, and the cached
    representations hold every compared layer on the probe set with the probe labels."""
    data = write_fake("mnist", tmp_path / "data")
    monkeypatch.setenv("SIMBENCH_DATA", str(data.root))
    overrides = ["sweep=none", "data=mnist", "data.probe_size=20", "arch=resnet_small", "arch.widths=[4,8]",
                 "arch.blocks_per_stage=1", "train=vision", "train.epochs=1", "train.batch_size=16",
                 "intervention.shortcut=0.5", "intervention.input_noise=0.1"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    assert OmegaConf.to_container(cfg.data, resolve=True)["root"] == str(data.root)
    spec = model_spec(cfg)
    arrays = ZooCache(tmp_path / "cache").representations(Variant(spec))
    layers = architectures.representation_layers(architectures.build("resnet_small", (1, 28, 28), 10, widths=(4, 8),
                                                                      blocks_per_stage=1))
    assert [k[4:] for k in arrays if k.startswith("rep/")] == layers
    assert all(arrays[f"rep/{layer}"].shape[0] == 20 for layer in layers)
    probe = datasets.load("mnist", probe_size=20)
    np.testing.assert_array_equal(arrays["labels"], probe.y_probe)
