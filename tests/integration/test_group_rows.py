"""Group-wise measures in the sweep: one row per seed group {0..s}, content-keyed and resumable.

The smoke model trained from seeds 0, 1, 2 (no noise) gives the groups {0, 1} (job of seed 1) and
{0, 1, 2} (job of seed 2). Their values are checked against numpy on the cached probe probabilities
(the argmax predictions of the group's models, read straight from the representation files) and, for two
models, against the pairwise ``disagreement`` row of the same two models (a second code path).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.storage import read_arrays
from tests.integration.conftest import run_sweep

OVERRIDES = ("seed=range(0,3)", "perturbation.scale=0", "hydra/launcher=basic",
             "measures.include=[disagreement,ambiguity,fleiss_kappa,label_entropy]")


def _predictions(results, key: str) -> np.ndarray:
    return read_arrays(results / "cache" / "representations" / f"{key}.npz")["probabilities"].argmax(axis=1)


def test_group_rows_hold_the_groups_of_the_first_seeds(tmp_path):
    run_sweep(tmp_path, *OVERRIDES)
    table = pd.read_parquet(tmp_path / "smoke" / "scores.parquet")
    groups = table[table["pair_type"].eq("seed_group")]
    assert set(groups["measure"]) == {"ambiguity", "fleiss_kappa", "label_entropy"}
    assert groups["status"].eq("ok").all()
    assert sorted(groups["n_models"].unique()) == [2, 3]
    pairs = table[table["pair_type"].eq("seed")]
    key = {0: pairs.loc[pairs["seed_a"].eq(0), "model_a"].iloc[0], 1: pairs.loc[pairs["seed_b"].eq(1), "model_b"].iloc[0],
           2: pairs.loc[pairs["seed_b"].eq(2), "model_b"].iloc[0]}
    for m, g in groups.groupby("n_models"):
        predictions = np.stack([_predictions(tmp_path, key[s]) for s in range(m)])
        unanimous = (predictions == predictions[0]).all(axis=0)
        got = g.set_index("measure")["value"]
        assert got["ambiguity"] == np.mean(~unanimous)
        assert g["model_a"].iloc[0] == key[0] and g["model_b"].iloc[0] == key[m - 1]
        entropy = np.mean([-(np.unique(col, return_counts=True)[1] / m * np.log2(np.unique(col, return_counts=True)[1] / m)).sum()
                           for col in predictions.T])
        assert abs(got["label_entropy"] - entropy) < 1e-12
    two = groups[groups["n_models"].eq(2)].set_index("measure")["value"]
    pair01 = pairs[pairs["seed_a"].eq(0) & pairs["seed_b"].eq(1) & pairs["measure"].eq("disagreement")]["value"].iloc[0]
    assert two["ambiguity"] == pair01  # two models: not unanimous = they disagree

    rerun = run_sweep(tmp_path, *OVERRIDES)
    assert "0 rows computed in this run" in rerun.stdout + rerun.stderr
    again = pd.read_parquet(tmp_path / "smoke" / "scores.parquet")
    assert again["row_key"].is_unique and set(again["row_key"]) == set(table["row_key"])
