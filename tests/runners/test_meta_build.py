"""The plan's model check builds each architecture on the meta device without its random initialisation
(``runners.config._build_on_meta``): the same modules and parameter shapes as a real build, and none of
the ~900 modules that torch's Python meta kernel of ``normal_`` would import (1.8 s of a no-op rerun)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from runners.config import _build_on_meta, _skip_random_init
from tasks.zoo import architectures
from tasks.zoo.graph import tree_size

SHAPES = {
    "mlp": (64,), "cnn": (1, 8, 8), "transformer": (25,), "resnet_small": (3, 32, 32), "tiny10": (3, 32, 32),
    "vgg_small": (3, 32, 32), "vit_tiny": (3, 32, 32), "resnet18": (3, 32, 32),
    "gcn": (tree_size(3, 2), 16), "sage": (tree_size(3, 2), 16), "gat": (tree_size(3, 2), 16),
}


def test_every_architecture_is_covered():
    assert set(SHAPES) == set(architectures.ARCHITECTURES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_meta_build_matches_a_real_build(name):
    meta = _build_on_meta(name, SHAPES[name], 10)
    real = architectures.build(name, SHAPES[name], 10)  # the second code path: a CPU build, initialised
    assert [(n, p.shape, p.dtype) for n, p in meta.named_parameters()] == \
        [(n, p.shape, p.dtype) for n, p in real.named_parameters()]
    assert [(n, b.shape) for n, b in meta.named_buffers()] == [(n, b.shape) for n, b in real.named_buffers()]
    assert all(p.is_meta for p in meta.parameters())


def test_config_errors_still_raise_on_meta():
    with pytest.raises(ValueError, match="divisible"):
        _build_on_meta("transformer", (25,), 10, dim=30, heads=4)


def test_other_tensors_are_initialised_as_usual():
    with _skip_random_init():
        torch.manual_seed(0)
        inside = torch.nn.init.normal_(torch.empty(5, 3), std=2.0)
        uniform = torch.empty(4).uniform_()
    torch.manual_seed(0)
    assert torch.equal(inside, torch.empty(5, 3).normal_(0.0, 2.0))
    assert torch.equal(uniform, torch.empty(4).uniform_())


def test_transformer_check_does_not_import_the_compiler_stack():
    code = ("import sys\nfrom runners.config import _build_on_meta\n_build_on_meta('transformer', (25,), 10)\n"
            "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
