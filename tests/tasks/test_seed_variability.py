"""Seed variability: the spread of a measure over seed pairs and its equivalent weight-noise scale.

The synthetic drift curves are linear in log10(scale), which is exactly what the task's log-linear
interpolation assumes, so the equivalent scale has a closed form: with drift(s) = slope · log10(s / s0),
the scale whose drift equals the seed drift t is s0 · 10^(t / slope).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tasks.base import AnalysisContext
from tasks.seed_variability import equivalent_scale, seed_variability

SCALES = np.array([1e-3, 1e-2, 1e-1, 1.0])
S0 = 1e-4  # drift = slope · log10(scale / S0) is slope · (1, 2, 3, 4) on SCALES


def log_linear_drift(slope: float) -> np.ndarray:
    return slope * np.log10(SCALES / S0)


def closed_form_scale(target: float, slope: float) -> float:
    """The scale at which slope · log10(s / S0) equals ``target``."""
    return S0 * 10 ** (target / slope)


# --------------------------------------------------------------------------------------------------
# equivalent_scale
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.1, 0.15, 0.25, 0.3, 0.37, 0.4])
def test_equivalent_scale_inverts_a_drift_linear_in_log_scale(target):
    """Between grid points the log-linear interpolation is exact for such a curve, and at a grid point
    it returns that scale: s0 · 10^(t / slope)."""
    assert equivalent_scale(SCALES, log_linear_drift(0.1), target) == pytest.approx(closed_form_scale(target, 0.1))


def test_equivalent_scale_at_grid_points_of_a_drift_linear_in_scale():
    """drift = 2 · scale reaches 2 · s exactly at grid point s."""
    for s in SCALES:
        assert equivalent_scale(SCALES, 2 * SCALES, 2 * s) == pytest.approx(s)


def test_equivalent_scale_ignores_the_order_of_the_grid():
    rng = np.random.default_rng(0)
    order = rng.permutation(SCALES.size)
    assert equivalent_scale(SCALES[order], log_linear_drift(0.1)[order], 0.25) == pytest.approx(10**-1.5)


def test_equivalent_scale_edge_cases():
    """Never reached: inf. Reached at the smallest scale already: that scale. A curve that rises, dips
    and rises again is read at its first crossing. No target or no grid: NaN."""
    drift = log_linear_drift(0.1)
    assert equivalent_scale(SCALES, drift, 0.5) == np.inf
    assert equivalent_scale(SCALES, drift, 0.05) == pytest.approx(SCALES[0])
    bumpy = np.array([0.1, 0.3, 0.2, 0.4])
    assert equivalent_scale(SCALES, bumpy, 0.2) == pytest.approx(10**-2.5)  # halfway, in log10, from 1e-3 to 1e-2
    assert np.isnan(equivalent_scale(SCALES, drift, np.nan))
    assert np.isnan(equivalent_scale(np.array([]), np.array([]), 0.2))


def test_equivalent_scale_on_a_segment_from_scale_zero():
    """A grid that includes scale 0 (an unperturbed copy) has no log scale on its first segment; the
    drift there is read linearly: with drift 0 at scale 0 and 0.5 at 1e-3, drift 0.2 is at 0.4e-3.
    (Log-linear interpolation from log 0 = -inf used to give NaN.)"""
    assert equivalent_scale(np.array([0.0, 1e-3, 1e-2]), np.array([0.0, 0.5, 1.0]), 0.2) == pytest.approx(4e-4)
    assert equivalent_scale(np.array([0.0, 1e-3, 1e-2]), np.array([0.0, 0.5, 1.0]), 0.75) == pytest.approx(10**-2.5)


# --------------------------------------------------------------------------------------------------
# The analysis on a synthetic sweep
# --------------------------------------------------------------------------------------------------


def score_row(measure: str, model_a: str, model_b: str, value: float, *, pair_type: str = "seed",
              layer: str = "relu1", **columns) -> dict:
    """One row of a scores table between two standard models (interventions at their defaults)."""
    row = {"pair_type": pair_type, "status": "ok", "arch_a": "mlp", "arch_b": "mlp", "model_a": model_a,
           "model_b": model_b, "layer_a": layer, "layer_b": layer, "measure": measure, "value": float(value),
           "scale_a": 0.0, "scale_b": 0.0, "label_randomization_a": 0.0, "label_randomization_b": 0.0,
           "shortcut_a": np.nan, "shortcut_b": np.nan, "input_noise_a": 0.0, "input_noise_b": 0.0}
    row.update(columns)
    return row


def perturbation_rows(measure: str, identity: float, sign: float, drifts: dict[str, np.ndarray]) -> list[dict]:
    """Each model against its own noisy copies at SCALES, with the given drift from m(A, A) = identity
    (``sign`` = −1 for a similarity, whose value falls, +1 for a distance, whose value grows)."""
    return [score_row(measure, model, f"{model}@{s}", identity + sign * d, pair_type="perturbation", scale_b=s)
            for model, drift in drifts.items() for s, d in zip(SCALES, drift)]


def synthetic_sweep(tmp_path) -> AnalysisContext:
    """Three seeds of an mlp, every measure at relu1, no self pairs (m(A, A) is the identity value):

    * linear CKA (similarity, identity 1): seed values 0.8, 0.75, 0.7 -> mean 0.75, sample s.d. 0.05,
      seed drift 0.25; weight noise on m0 and m1 drifts 0.1 · log10(s/1e-4) ∓ 0.02 (mean over the two
      models 0.1 · log10(s/1e-4)), so the equivalent scale is 1e-4 · 10^2.5 = 10^-1.5;
    * Procrustes (distance, identity 0): seed values 0.4, 0.5, 0.6 -> seed drift 0.5; noise drift
      0.25 · log10(s/1e-4), which reaches 0.5 at the grid point 1e-2;
    * RSA: seed values 0.2, 0.3, 0.1 (drift 0.8) but noise moves it by at most 0.4: inf;
    * kNN Jaccard: seed pairs only, no noise curve: NaN.

    Rows the task must ignore: label-randomised seed pairs, a cross-layer seed pair, a failed row."""
    seeds = [("m0", "m1"), ("m0", "m2"), ("m1", "m2")]
    rows = []
    for measure, values in {"cka_linear": (0.8, 0.75, 0.7), "procrustes_orthogonal": (0.4, 0.5, 0.6),
                            "rsa": (0.2, 0.3, 0.1), "knn_jaccard": (0.6, 0.5, 0.4)}.items():
        rows += [score_row(measure, a, b, v) for (a, b), v in zip(seeds, values)]
    cka = log_linear_drift(0.1)
    rows += perturbation_rows("cka_linear", 1.0, -1.0, {"m0": cka - 0.02, "m1": cka + 0.02})
    rows += perturbation_rows("procrustes_orthogonal", 0.0, 1.0, {"m0": log_linear_drift(0.25)})
    rows += perturbation_rows("rsa", 1.0, -1.0, {"m0": log_linear_drift(0.1)})
    rows += [score_row("cka_linear", "r0", "r1", 0.0, label_randomization_a=0.5, label_randomization_b=0.5),
             score_row("cka_linear", "m0", "m1", 0.0, layer_b="relu2"),
             score_row("cka_linear", "m1", "m2", 0.0, status="error")]
    for sub in ("tables", "figures"):
        (tmp_path / sub).mkdir(exist_ok=True)
    return AnalysisContext(sweep_dir=tmp_path, scores=pd.DataFrame(rows), cache_dir=tmp_path / "cache")


def test_seed_statistics_and_equivalent_noise_scale(tmp_path):
    """Seed mean and sample standard deviation (numpy, ddof=1) over the three seed pairs, and the
    equivalent noise scale from the closed form of each curve (see :func:`synthetic_sweep`)."""
    result = seed_variability(synthetic_sweep(tmp_path))
    table = result.evaluations.set_index(["measure", "statistic"])
    assert set(result.evaluations["arch"]) == {"mlp"} and set(result.evaluations["layer"]) == {"relu1"}
    assert set(result.evaluations["n_pairs"]) == {3}
    for measure, values in {"cka_linear": (0.8, 0.75, 0.7), "procrustes_orthogonal": (0.4, 0.5, 0.6),
                            "rsa": (0.2, 0.3, 0.1), "knn_jaccard": (0.6, 0.5, 0.4)}.items():
        assert table.loc[(measure, "seed_mean"), "value"] == pytest.approx(np.mean(values))
        assert table.loc[(measure, "seed_std"), "value"] == pytest.approx(np.std(values, ddof=1))
    equivalent = table.xs("equivalent_noise_scale", level="statistic")["value"]
    assert equivalent["cka_linear"] == pytest.approx(closed_form_scale(0.25, 0.1))
    assert equivalent["cka_linear"] == pytest.approx(10**-1.5)
    assert equivalent["procrustes_orthogonal"] == pytest.approx(closed_form_scale(0.5, 0.25))
    assert equivalent["procrustes_orthogonal"] == pytest.approx(1e-2)
    assert equivalent["rsa"] == np.inf
    assert math.isnan(equivalent["knn_jaccard"])
    assert all(path.exists() for path in result.figures)


def test_without_seed_pairs_the_task_is_not_applicable(tmp_path):
    """Only weight-noise rows: there is no seed drift to compare with."""
    rows = perturbation_rows("cka_linear", 1.0, -1.0, {"m0": log_linear_drift(0.1)})
    ctx = AnalysisContext(sweep_dir=tmp_path, scores=pd.DataFrame(rows), cache_dir=tmp_path / "cache")
    assert seed_variability(ctx).evaluations.empty


def test_reverse_direction_rows_of_an_asymmetric_measure_count_at_their_noise_scale(tmp_path):
    """Asymmetric measures are computed in both directions, so the sweep also records m(noisy copy, clean
    model) with the noise on side a (scale_a = s, scale_b = 0), as in results/benchmark for linear
    regression, PWCCA and KL divergence. Those rows belong at scale s. Here the forward rows drift
    0.1 log10(s/1e-4) − 0.02 and the reverse ones + 0.02, so the curve over both is 0.1 log10(s/1e-4)
    and the seed drift 0.25 is matched at 10^-1.5. Filed under scale 0, the reverse rows make the curve
    start above the seed drift and the equivalent scale came out as 0 (the bug this test caught)."""
    drift = log_linear_drift(0.1)
    rows = [score_row("linear_regression", a, b, 1 - d) for (a, b), d in
            zip([("m0", "m1"), ("m1", "m0"), ("m0", "m2")], (0.2, 0.25, 0.3))]
    rows += perturbation_rows("linear_regression", 1.0, -1.0, {"m0": drift - 0.02})
    rows += [score_row("linear_regression", f"m0@{s}", "m0", 1 - (d + 0.02), pair_type="perturbation", scale_a=s)
             for s, d in zip(SCALES, drift)]
    for sub in ("tables", "figures"):
        (tmp_path / sub).mkdir(exist_ok=True)
    ctx = AnalysisContext(sweep_dir=tmp_path, scores=pd.DataFrame(rows), cache_dir=tmp_path / "cache")
    evaluations = seed_variability(ctx).evaluations
    got = evaluations[evaluations["statistic"].eq("equivalent_noise_scale")]["value"].iloc[0]
    assert got == pytest.approx(10**-1.5)
