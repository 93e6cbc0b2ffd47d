"""Representation-level robustness: drifts of linear CKA against numpy's closed form on the same inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.storage import write_arrays
from tasks import representation_robustness as rr
from tests.tasks.test_benchmark_tests import context, score_row
from tests.tasks.test_sample_size import numpy_cka


def test_outlier_moves_one_row_only():
    x = np.random.default_rng(0).standard_normal((10, 3))
    out = rr.with_outlier(x, 10.0)
    assert np.array_equal(out[1:], x[1:])
    assert np.allclose(out[0], x.mean(0) + 10.0 * (x[0] - x.mean(0)))


def test_representation_robustness_of_linear_cka(tmp_path, monkeypatch):
    monkeypatch.setattr(rr, "N_ROWS", 40)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 5))
    y = np.tanh(x @ rng.standard_normal((5, 4))) + 0.3 * rng.standard_normal((60, 4))
    for key, arr in (("m0", x), ("m1", y)):
        write_arrays({"rep/relu2": arr}, tmp_path / "cache" / "representations" / f"{key}.npz")
    rows = [score_row("cka_linear", "m0", "m1", 0.5, seed_a=0, seed_b=1)]
    rr.representation_robustness(context(tmp_path, rows))
    table = pd.read_csv(tmp_path / "tables" / "representation_robustness.csv")
    cka = table[table["measure"].eq("cka_linear")].set_index(["perturbation", "statistic", "level"])

    stream = np.random.default_rng(rr.SEED)
    keep = np.sort(stream.choice(60, size=40, replace=False))
    xs, ys = x[keep], y[keep]
    unit = abs(numpy_cka(xs, ys, False) - 1.0)
    scale = xs.std(axis=0).mean()
    for sigma in rr.NOISE:
        noisy = xs + stream.normal(0.0, sigma * scale, size=xs.shape)
        drift = abs(numpy_cka(xs, noisy, False) - 1.0)
        assert cka.loc[("noise", "drift", sigma), "drift"] == pytest.approx(drift, abs=1e-10)
        assert cka.loc[("noise", "drift", sigma), "seed_units"] == pytest.approx(drift / unit, rel=1e-8)
    outlier = abs(numpy_cka(rr.with_outlier(xs), ys, False) - numpy_cka(xs, ys, False))
    assert cka.loc[("outlier", "drift", rr.OUTLIER_FACTOR), "drift"] == pytest.approx(outlier, abs=1e-10)
    subs = []
    for _ in range(rr.SUBSAMPLE_REPEATS):
        r = np.sort(stream.choice(40, size=20, replace=False))
        subs.append(numpy_cka(xs[r], ys[r], False))
    assert cka.loc[("subsample", "spread", rr.SUBSAMPLE_FRACTION), "drift"] == pytest.approx(np.std(subs, ddof=1), abs=1e-10)
    assert (tmp_path / "figures" / "representation_robustness.png").exists()


def test_only_the_sweeps_measures_are_perturbed(tmp_path, monkeypatch):
    """A sweep of cka_linear and disagreement: only cka_linear (disagreement reads outputs); a sweep of output
    measures alone: nothing to compute, said so."""
    monkeypatch.setattr(rr, "N_ROWS", 30)
    rng = np.random.default_rng(4)
    for key in ("m0", "m1"):
        write_arrays({"rep/relu2": rng.standard_normal((40, 5))}, tmp_path / "cache" / "representations" / f"{key}.npz")
    rows = [score_row(m, "m0", "m1", 0.5, seed_a=0, seed_b=1) for m in ("cka_linear", "disagreement")]
    rr.representation_robustness(context(tmp_path, rows))
    assert set(pd.read_csv(tmp_path / "tables" / "representation_robustness.csv")["measure"]) == {"cka_linear"}
    result = rr.representation_robustness(context(tmp_path / "outputs", rows[1:]))
    assert result.evaluations.empty and result.summary == "no representational measure in this sweep"
