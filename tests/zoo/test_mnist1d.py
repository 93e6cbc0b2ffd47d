"""MNIST-1D (tasks/zoo/mnist1d.py) and the 1-D tiny10 of the deeper-vision part (sweep=vision_deep)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from tasks.zoo import architectures, datasets
from tasks.zoo.cache import extract
from tasks.zoo.training import train

DEEP = {"channels": [16, 16, 32, 32, 64, 64, 128, 128], "strides": [1, 2, 1, 2, 1, 2, 1, 1]}  # conf/sweep/vision_deep.yaml


def _sorted_rows(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1)
    return x[np.lexsort(x.T[::-1])]


def test_mnist1d_shapes_balance_and_split():
    data = datasets.load("mnist1d", n_samples=500, probe_fraction=0.2)
    assert data.domain == "vision" and data.n_classes == 10 and data.input_shape == (1, 40)
    assert data.x_train.shape == (400, 1, 40) and data.x_probe.shape == (100, 1, 40)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(data.y_probe), np.full(10, 10))  # stratified, balanced classes
    everything = np.concatenate([data.x_train, data.x_probe])
    assert abs(float(everything.mean())) < 1e-5 and float(everything.std()) == pytest.approx(1.0, abs=1e-5)
    assert datasets.describe("mnist1d") == ((1, 40), 10)
    for bad in ({"n_samples": 20}, {"probe_fraction": 1.0}):
        with pytest.raises(ValueError, match="data."):
            datasets.load("mnist1d", **bad)


def test_mnist1d_is_the_package_generator_output():
    """The split holds exactly the signals and labels of mnist1d.make_dataset called directly (the
    package's own code path, default transformation parameters)."""
    from mnist1d.data import get_dataset_args, make_dataset

    data = datasets.load("mnist1d", n_samples=300, generator_seed=7)
    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = 300, 7, 1.0
    ref = make_dataset(args)
    ours = np.concatenate([data.x_train[:, 0], data.x_probe[:, 0]])
    labels = np.concatenate([data.y_train, data.y_probe])
    np.testing.assert_allclose(_sorted_rows(ours), _sorted_rows(ref["x"].astype(np.float32)), rtol=0, atol=0)
    np.testing.assert_array_equal(np.bincount(labels), np.bincount(ref["y"]))
    # each class's signals match (labels travel with their rows)
    for c in range(10):
        np.testing.assert_array_equal(_sorted_rows(ours[labels == c]), _sorted_rows(ref["x"][ref["y"] == c].astype(np.float32)))


def test_mnist1d_is_deterministic_and_leaves_global_random_state_alone():
    np.random.seed(123)
    random.seed(123)
    before = (np.random.get_state()[1].copy(), random.getstate())
    a = datasets.load("mnist1d", n_samples=200)
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]
    b = datasets.load("mnist1d", n_samples=200)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_probe, b.y_probe)
    c = datasets.load("mnist1d", n_samples=200, generator_seed=43)
    assert not np.array_equal(_sorted_rows(a.x_train), _sorted_rows(c.x_train))


def test_tiny10_on_signals_halves_length_every_second_layer():
    data = datasets.load("mnist1d", n_samples=200)
    model = architectures.build("tiny10", data.input_shape, 10, **DEEP)
    assert architectures.representation_layers(model) == [f"relu{i}" for i in range(1, 9)] + ["logits"]
    assert architectures.preactivation_layers(model) == [f"bn{i}" for i in range(1, 9)]
    assert isinstance(model.conv1, nn.Conv1d) and isinstance(model.bn1, nn.BatchNorm1d)
    assert isinstance(model.pool, nn.AdaptiveAvgPool1d)
    arrays = extract(model, data)
    # length 40 -> 20 -> 10 -> 5 at layers 2, 4, 6 (stride 2, padding 1, width 3); channels as configured
    assert [arrays[f"rep/relu{i}"].shape[1] for i in range(1, 9)] == [16 * 40, 16 * 20, 32 * 20, 32 * 10, 64 * 10,
                                                                      64 * 5, 128 * 5, 128 * 5]
    assert arrays["logits"].shape == (40, 10)
    with pytest.raises(ValueError, match=r"\(C, H, W\) or signals \(C, L\)"):
        architectures.build("tiny10", (40,), 10)


def test_tiny10_on_signals_training_is_deterministic():
    data = datasets.load("mnist1d", n_samples=200)
    models = [architectures.build("tiny10", data.input_shape, 10, channels=[8] * 8, strides=DEEP["strides"])
              for _ in range(2)]
    results = [train(m, data, seed=3, epochs=1, batch_size=64, lr=3e-3) for m in models]
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.equal(a, b), name
    assert results[0] == results[1]
