"""ZooCache.variant_model keeps models read from unchanged model files in the process: every call still
gets a model of its own, with the weights a fresh read (and perturbation) gives, bit for bit."""

from __future__ import annotations

import os

import torch

from tasks.zoo import cache as zoo_cache
from tasks.zoo.cache import ModelSpec, Variant, ZooCache, perturb, perturbation_seed

DATA = {"name": "synthetic", "n_samples": 300, "n_features": 8, "n_classes": 3, "probe_fraction": 0.5,
        "split_seed": 0, "generator_seed": 0}
TRAIN = {"epochs": 2, "batch_size": 64, "lr": 0.003, "weight_decay": 0.0}
SPEC = ModelSpec({"name": "mlp", "depth": 2, "width": 8}, DATA, TRAIN,
                 {"label_randomization": 0.0, "shortcut": None, "input_noise": 0.0}, 0)


def fresh(cache: ZooCache, variant: Variant) -> torch.nn.Module:
    """The variant's model as read without the in-process memo: build, load the file, perturb."""
    model = cache.build(variant.model)
    model.load_state_dict(torch.load(cache.model_path(variant.model), weights_only=True)["state_dict"])
    model.eval()
    return perturb(model, variant.scale, perturbation_seed(variant.model.seed, variant.perturb_seed))


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa) and a.training == b.training


def test_memoised_models_equal_fresh_reads_and_are_copies(tmp_path, monkeypatch):
    cache = ZooCache(tmp_path)
    cache.model(SPEC)  # trains and writes the file
    zoo_cache._loaded.clear()
    reads = []
    monkeypatch.setattr(zoo_cache, "_load_state", lambda *a, **k: reads.append(1) or _load(*a, **k))
    for variant in (Variant(SPEC), Variant(SPEC, 0.1, 0), Variant(SPEC, 0.1, 1)):
        first, second = cache.variant_model(variant), cache.variant_model(variant)
        assert same(first, fresh(cache, variant)) and same(second, fresh(cache, variant))
        assert first is not second and all(p is not q for p, q in zip(first.parameters(), second.parameters()))
        with torch.no_grad():  # a caller changing its model changes no later call's
            next(first.parameters()).add_(1.0)
        assert same(cache.variant_model(variant), fresh(cache, variant))
    assert len(reads) == 3  # one read per variant, the other calls from the memo
    assert not same(cache.variant_model(Variant(SPEC, 0.1, 0)), cache.variant_model(Variant(SPEC, 0.1, 1)))


_load = zoo_cache._load_state


def test_a_replaced_model_file_is_read_again(tmp_path):
    cache = ZooCache(tmp_path)
    cache.model(SPEC)
    zoo_cache._loaded.clear()
    before = cache.variant_model(Variant(SPEC))
    path = cache.model_path(SPEC)
    checkpoint = torch.load(path, weights_only=True)
    with torch.no_grad():
        checkpoint["state_dict"] = {k: v + 1 for k, v in checkpoint["state_dict"].items()}
    checkpoint["sha256"] = zoo_cache.state_digest(checkpoint["state_dict"])
    torch.save(checkpoint, str(path) + ".new")
    os.replace(str(path) + ".new", path)  # what a retraining's atomic write does
    after = cache.variant_model(Variant(SPEC))
    assert same(after, fresh(cache, Variant(SPEC))) and not same(after, before)


def test_a_pair_shares_one_copy_of_each_model_and_a_self_pair_gets_two(tmp_path):
    """``runners.job._pair_model``: the model-based rows of a pair get one copy of each of its models (made on
    first use, equal to a fresh read), and a model paired with itself still gets two distinct copies."""
    from runners.job import _pair_model

    cache = ZooCache(tmp_path)
    cache.model(SPEC)
    a, b = Variant(SPEC), Variant(SPEC, 0.1, 0)
    models: dict = {}
    first = _pair_model(cache, a, models), _pair_model(cache, b, models)
    again = _pair_model(cache, a, models), _pair_model(cache, b, models)
    assert first[0] is again[0] and first[1] is again[1] and first[0] is not first[1]
    assert same(first[0], fresh(cache, a)) and same(first[1], fresh(cache, b))
    itself = _pair_model(cache, a, models), _pair_model(cache, a, models, 1)
    assert itself[0] is first[0] and itself[1] is not itself[0] and same(itself[1], fresh(cache, a))
    assert all(p is not q for p, q in zip(itself[0].parameters(), itself[1].parameters()))
    assert _pair_model(cache, a, {}) is not first[0]  # another pair's store: a copy of its own
