"""Warm starts, recorded probe predictions, and the "are the solutions different?" task."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.zoo.cache import ModelSpec, Variant, ZooCache, extract
from tasks.zoo.training import recorded_epochs, warm_start_config

ROOT = Path(__file__).resolve().parents[2]
DATA = {"name": "synthetic", "n_samples": 400, "n_features": 16, "n_classes": 4, "probe_fraction": 0.5,
        "split_seed": 0, "generator_seed": 0}
TRAIN = {"epochs": 4, "batch_size": 64, "lr": 0.003, "weight_decay": 0.0, "warm_start": None}
NO_INTERVENTION = {"label_randomization": 0.0, "shortcut": None, "input_noise": 0.0}


def spec(seed: int = 0, warm_start: dict | None = None) -> ModelSpec:
    return ModelSpec({"name": "mlp", "depth": 2, "width": 16}, DATA, {**TRAIN, "warm_start": warm_start},
                     NO_INTERVENTION, seed)


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> ZooCache:
    return ZooCache(tmp_path_factory.mktemp("cache"))


def test_null_warm_start_leaves_the_model_key_unchanged():
    without = ModelSpec(spec().arch, DATA, {k: v for k, v in TRAIN.items() if k != "warm_start"}, NO_INTERVENTION, 0)
    assert spec().key == without.key
    assert spec(warm_start={"scale": 1, "seed": 0, "epochs": 2}).key == spec(warm_start={"scale": 1.0, "seed": 0,
                                                                                         "epochs": 2}).key
    assert spec(warm_start={"scale": 0.1, "seed": 0, "epochs": 2}).key != spec().key
    assert spec(warm_start={"scale": 0.1, "seed": 0, "epochs": 2}).origin.key == spec().key


@pytest.mark.parametrize("bad", [{"scale": -1, "seed": 0, "epochs": 1}, {"scale": 0.1, "seed": 0},
                                 {"scale": 0.1, "seed": 0, "epochs": 1.5}, {"scale": "x", "seed": 0, "epochs": 1}])
def test_invalid_warm_starts_are_rejected(bad):
    with pytest.raises(ValueError, match="train.warm_start"):
        warm_start_config(bad)


def test_warm_start_with_scale_0_and_0_epochs_returns_the_base_model_exactly(cache):
    base = cache.model(spec())
    restarted = cache.model(spec(warm_start={"scale": 0.0, "seed": 0, "epochs": 0}))
    assert states_equal(base, restarted)


def test_warm_start_with_0_epochs_is_the_perturbed_variant(cache):
    copy = cache.model(spec(warm_start={"scale": 0.3, "seed": 2, "epochs": 0}))
    assert states_equal(copy, cache.variant_model(Variant(spec(), 0.3, 2)))
    assert not states_equal(copy, cache.model(spec()))


def test_warm_start_retrains_deterministically(cache, tmp_path):
    ws = spec(warm_start={"scale": 0.3, "seed": 0, "epochs": 2})
    first = cache.model(ws)
    second = ZooCache(tmp_path).model(ws)  # from an empty cache: origin trained, then the warm start
    assert states_equal(first, second)
    assert not states_equal(first, cache.variant_model(Variant(spec(), 0.3, 0)))


def test_last_checkpoint_predictions_equal_the_final_models(cache):
    for s in (spec(1), spec(warm_start={"scale": 0.3, "seed": 0, "epochs": 2})):
        model = cache.model(s)
        epochs, probabilities = cache.probe_history(s)
        final_epochs = s.warm_start["epochs"] if s.warm_start else s.train["epochs"]
        assert list(epochs) == recorded_epochs(final_epochs)
        final = extract(model, cache.data_for(s))["probabilities"]
        np.testing.assert_allclose(probabilities[-1], final, rtol=0, atol=1e-7)
        assert np.array_equal(probabilities[-1].argmax(1), final.argmax(1))
    assert recorded_epochs(30) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30] and recorded_epochs(0) == [0]


def test_recording_does_not_change_training(cache, tmp_path):
    """The model trained with probe recording equals one trained by the bare training loop."""
    from tasks.zoo.training import train

    s = spec(2)
    recorded = cache.model(s)
    bare = cache.build(s)
    train(bare, cache.data_for(s), seed=2, **{k: v for k, v in TRAIN.items() if k != "warm_start"})
    assert states_equal(recorded, bare)


def test_model_files_without_probe_history_still_load(cache):
    s = spec(3)
    model = cache.model(s)
    path = cache.model_path(s)
    old = torch.load(path, weights_only=True)
    torch.save({k: v for k, v in old.items() if not k.startswith("probe_history")}, path)
    trained = cache.trained
    assert states_equal(cache.model(s), model) and cache.trained == trained  # loaded, not retrained
    assert cache.probe_history(s) is None
    assert states_equal(cache.cached_model(s), model)
    assert s.key in {x.key for x in cache.specs()}


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    levels = "[null,{scale:0.3,seed:0,epochs:0},{scale:0.3,seed:0,epochs:3}]"
    cmd = [sys.executable, "-m", "runners.sweep", "sweep=solutions", "data=synthetic", "train=fast", "arch=mlp",
           "arch.width=16", "seed=range(0,3)", "compare.groups.n_seeds=3", f"compare.groups.levels={levels}",
           f"train.warm_start={levels[1:-1]}", "measures.include=[disagreement,jsd,cka_linear]",
           f"results_dir={results}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results / "solutions", proc


def test_solutions_task_runs_end_to_end(tiny_sweep):
    out, proc = tiny_sweep
    assert "solutions: mlp: disagreement with the origin" in proc.stdout
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores["warm_start_b"].notna().any() and scores["warm_start_a"].isna().any()
    table = pd.read_csv(out / "tables" / "solutions.csv")
    assert {"mean_vs_origin", "mean_vs_other_seeds", "mean_vs_start", "mean_seed_pairs", "drift_in_seed_units",
            "origin_closer_rate", "undone_fraction", "map_nearest_base_is_origin"} <= set(table["statistic"])
    assert set(table["warm_start"]) == {"none", "scale=0.3, epochs=0", "scale=0.3, epochs=3"}
    for name in ("model_map.png", "solutions.png"):
        assert (out / "figures" / name).stat().st_size > 10_000
    # the perturbed copy (0 epochs) is exactly a noisy model: its disagreement with the origin is the
    # same number the scores hold for that pair
    mean = table[table["statistic"].eq("mean_vs_origin") & table["measure"].eq("disagreement")
                 & table["warm_start"].eq("scale=0.3, epochs=0")]["value"]
    rows = scores[scores["measure"].eq("disagreement") & scores["warm_start_a"].isna()
                  & scores["warm_start_b"].str.contains('"epochs": 0', na=False) & scores["seed_a"].eq(scores["seed_b"])]
    assert len(rows) == 3 and mean.iloc[0] == pytest.approx(rows["value"].mean())
