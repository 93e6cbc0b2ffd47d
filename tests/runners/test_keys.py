"""Content keys: what changes a key and what must not."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from runners.job import job_key, model_spec
from tasks.zoo.cache import ModelSpec, Variant

CONF = Path(__file__).resolve().parents[2] / "conf"


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["sweep=none", *overrides])


def test_paths_threads_device_and_measures_do_not_enter_keys():
    base = _cfg()
    for other in (_cfg("results_dir=/elsewhere"), _cfg("runtime.num_threads=2"), _cfg("runtime.device=auto"),
                  _cfg("measures=fast"), _cfg("name=another")):
        assert job_key(other) == job_key(base)
        assert model_spec(other).key == model_spec(base).key


def test_data_location_does_not_enter_the_model_key():
    a = ModelSpec({"name": "mlp"}, {"name": "mnist", "root": "/a"}, {"epochs": 1}, {}, 0)
    b = ModelSpec({"name": "mlp"}, {"name": "mnist", "root": "/b"}, {"epochs": 1}, {}, 0)
    assert a.key == b.key


def test_semantic_changes_change_the_keys():
    base = _cfg()
    for other in (_cfg("seed=1"), _cfg("arch.width=32"), _cfg("train.epochs=3"),
                  _cfg("intervention.label_randomization=0.5"), _cfg("data.split_seed=1")):
        assert model_spec(other).key != model_spec(base).key
        assert job_key(other) != job_key(base)
    noisy = _cfg("perturbation.scale=0.1")
    assert model_spec(noisy).key == model_spec(base).key  # the perturbation is applied to the same model
    assert job_key(noisy) != job_key(base)
    spec = model_spec(base)
    assert Variant(spec, 0.1, 0).key != Variant(spec, 0.1, 1).key != Variant(spec).key
