"""The invariance task: the transforms it applies, and how it reports declared and undeclared invariances.

Expected values are closed forms (what each transform does to a matrix, the singular values of the
invertible map) or a second implementation (linear CKA written out in numpy); the contradiction logic
is checked by giving a measure deliberately wrong metadata.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

import measures
from tasks.storage import write_arrays
from tasks.base import AnalysisContext
from tasks.invariance import TOLERANCE, TRANSFORMS, apply, invariance

N_ROWS, WIDTH = 60, 5


def representations(seed: int, n: int = N_ROWS, d: int = WIDTH) -> np.ndarray:
    """Random features with unequal column scales (so anisotropic maps change the geometry)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)


def score_row(measure: str, model_a: str, model_b: str, *, pair_type: str = "seed", layer: str = "relu2",
              arch: str = "mlp", **columns) -> dict:
    """One row of a scores table between two standard models (interventions at their defaults)."""
    row = {"pair_type": pair_type, "status": "ok", "arch_a": arch, "arch_b": arch, "model_a": model_a,
           "model_b": model_b, "seed_a": 0, "seed_b": 1, "layer_a": layer, "layer_b": layer,
           "measure": measure, "value": 0.5, "params": "{}", "scale_a": 0.0, "scale_b": 0.0,
           "label_randomization_a": 0.0, "label_randomization_b": 0.0, "shortcut_a": np.nan,
           "shortcut_b": np.nan, "input_noise_a": 0.0, "input_noise_b": 0.0}
    row.update(columns)
    return row


def sweep(tmp_path, rows: list[dict], arrays: dict[str, dict[str, np.ndarray]]) -> AnalysisContext:
    """A context over ``rows`` with the representations ``{model key: {layer: array}}`` in its cache."""
    for sub in ("tables", "figures"):
        (tmp_path / sub).mkdir(exist_ok=True)
    for key, layers in arrays.items():
        write_arrays({f"rep/{layer}": x for layer, x in layers.items()},
                     tmp_path / "cache" / "representations" / f"{key}.npz")
    return AnalysisContext(sweep_dir=tmp_path, scores=pd.DataFrame(rows), cache_dir=tmp_path / "cache")


def numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA written out: ‖ỸᵀX̃‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F) on column-centred data."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


# --------------------------------------------------------------------------------------------------
# The transforms
# --------------------------------------------------------------------------------------------------


def test_each_transform_is_what_its_name_says():
    """Closed forms of each map applied to Y (rows are inputs, columns are units):

    * orthogonal: Y Q with QᵀQ = I, so every row inner product (the Gram YYᵀ) is unchanged;
    * isotropic scaling: exactly 2.5 Y;
    * permutation: the same columns in another order;
    * translation: Y + one constant row vector;
    * invertible linear: Y M with M = U diag(geomspace(0.3, 3)) V, so M's singular values are that grid;
    * anisotropic scaling: column j multiplied by geomspace(0.3, 3)[j]."""
    y = representations(0)
    rng = np.random.default_rng
    scales = np.geomspace(0.3, 3.0, WIDTH)

    moved = apply("orthogonal", y, rng(0))
    np.testing.assert_allclose(moved @ moved.T, y @ y.T, atol=1e-9)
    assert not np.allclose(moved, y)

    np.testing.assert_array_equal(apply("isotropic_scaling", y, rng(0)), 2.5 * y)

    moved = apply("permutation", y, rng(0))
    order = [int(np.flatnonzero((y == moved[:, [j]]).all(axis=0))[0]) for j in range(WIDTH)]
    assert sorted(order) == list(range(WIDTH))
    np.testing.assert_array_equal(moved, y[:, order])

    shift = apply("translation", y, rng(0)) - y
    np.testing.assert_allclose(shift, np.tile(shift[0], (N_ROWS, 1)), atol=1e-12)
    assert np.abs(shift[0]).min() > 0

    linear_map = np.linalg.lstsq(y, apply("invertible_linear", y, rng(0)), rcond=None)[0]
    np.testing.assert_allclose(np.sort(np.linalg.svd(linear_map, compute_uv=False)), scales, rtol=1e-9)

    np.testing.assert_allclose(apply("anisotropic_scaling", y, rng(0)) / y, np.tile(scales, (N_ROWS, 1)), rtol=1e-12)


def test_unknown_transform_is_rejected():
    with pytest.raises(ValueError, match="unknown transform"):
        apply("shear", representations(0), np.random.default_rng(0))


# --------------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------------

MEASURES = ("cka_linear", "cca_mean_rho", "procrustes_permutation")


def seed_pair_sweep(tmp_path) -> AnalysisContext:
    """Two seeds of one architecture, compared at relu1 and relu2 by three measures with different
    declared invariances; the analysis uses the last hidden layer, relu2 (logits are not hidden)."""
    rows = [score_row(m, "m0", "m1", layer=layer) for m in MEASURES for layer in ("relu1", "relu2", "logits")]
    x, y = representations(1), representations(2)
    return sweep(tmp_path, rows, {"m0": {"relu2": x}, "m1": {"relu2": y}})


def test_declared_invariances_hold_and_undeclared_transforms_move_the_value(tmp_path):
    """On random data every measure stays within 1e-6 (relative) under the transforms its metadata
    declares and moves under the others; none of those rows contradicts the metadata. Rows: one per
    measure and transform, at relu2; 'declared' follows the registry (anisotropic scaling is covered
    by the invertible-linear invariance)."""
    evaluations = invariance(seed_pair_sweep(tmp_path)).evaluations
    assert len(evaluations) == len(MEASURES) * len(TRANSFORMS)
    assert set(evaluations["layer"]) == {"relu2"} and set(evaluations["arch"]) == {"mlp"}
    for row in evaluations.itertuples():
        declared = TRANSFORMS[row.transform] in measures.info(row.measure).invariances
        assert row.declared == declared, (row.measure, row.transform)
        if declared:
            assert row.value <= TOLERANCE, (row.measure, row.transform, row.value)
        else:
            assert row.value > 1e-3, (row.measure, row.transform, row.value)
        assert not row.contradicts


def test_relative_change_of_linear_cka_matches_numpy(tmp_path):
    """The reported relative change |m(X, T(Y)) − m(X, Y)| / |m(X, Y)| for linear CKA under the two
    deterministic transforms, recomputed with a numpy CKA: exactly 0 for isotropic scaling (2.5Y), and
    the anisotropic column scaling by geomspace(0.3, 3) gives a change computed here independently."""
    evaluations = invariance(seed_pair_sweep(tmp_path)).evaluations.set_index(["measure", "transform"])["value"]
    x, y = representations(1), representations(2)
    base = numpy_cka(x, y)
    for transform, y_t in (("isotropic_scaling", 2.5 * y), ("anisotropic_scaling", y * np.geomspace(0.3, 3.0, WIDTH))):
        expected = abs(numpy_cka(x, y_t) - base) / base
        assert evaluations[("cka_linear", transform)] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_wrong_metadata_is_reported(tmp_path, monkeypatch):
    """Give linear CKA false metadata: it claims invariance to invertible linear maps (which it lacks)
    and omits isotropic scaling (which it has). The two transforms covered by the false claim
    (invertible linear, anisotropic scaling) must be reported as violated declared invariances, and
    isotropic scaling as an undeclared transform that left the value unchanged."""
    real_info = measures.info
    true_cka = real_info("cka_linear")
    false_cka = dataclasses.replace(
        true_cka, invariances=(true_cka.invariances | {"invertible_linear"}) - {"isotropic_scaling"})
    monkeypatch.setattr(measures, "info", lambda name: false_cka if name == "cka_linear" else real_info(name))

    result = invariance(seed_pair_sweep(tmp_path))
    cka = result.evaluations[result.evaluations["measure"].eq("cka_linear")].set_index("transform")
    violated = set(cka.index[cka["contradicts"] & cka["declared"]])
    flagged = set(cka.index[cka["contradicts"] & ~cka["declared"]])
    assert violated == {"invertible_linear", "anisotropic_scaling"}
    assert flagged == {"isotropic_scaling"}
    assert not result.evaluations.loc[result.evaluations["measure"].ne("cka_linear"), "contradicts"].any()
    assert "2 declared invariances violated" in result.summary
    assert "1 undeclared transforms left the value unchanged" in result.summary


def test_an_undefined_measure_gets_one_row_with_the_reason(tmp_path):
    """With 6 rows and 5 units the CCA family is undefined (D >= N − 1): the task records one row with
    transform 'none', no value, and the measure's message; linear CKA is still evaluated."""
    rows = [score_row(m, "m0", "m1") for m in ("cca_mean_rho", "cka_linear")]
    ctx = sweep(tmp_path, rows, {"m0": {"relu2": representations(1, n=6)}, "m1": {"relu2": representations(2, n=6)}})
    evaluations = invariance(ctx).evaluations
    cca = evaluations[evaluations["measure"].eq("cca_mean_rho")]
    assert len(cca) == 1 and cca["transform"].iloc[0] == "none"
    assert np.isnan(cca["value"].iloc[0]) and not cca["contradicts"].iloc[0]
    assert re.search(r"D >= N", cca["note"].iloc[0])
    assert len(evaluations[evaluations["measure"].eq("cka_linear")]) == len(TRANSFORMS)


def test_source_pair_is_the_lowest_seed_pair_else_the_mildest_perturbation(tmp_path):
    """Per architecture the task reads two models' representations: the seed pair with the lowest
    seeds (mlp: m0, m1, not m1, m2, nor a label-randomised pair), or, without seed pairs, a model and
    its copy under the smallest weight noise (cnn: c0 and c0 at scale 0.01, not 0.1). Only those
    models' representations exist in the cache, so reading any other pair would raise."""
    rows = [
        score_row("cka_linear", "m1", "m2", seed_a=1, seed_b=2),
        score_row("cka_linear", "m0", "m1", seed_a=0, seed_b=1),
        score_row("cka_linear", "r0", "r1", seed_a=0, seed_b=0, label_randomization_a=0.5, label_randomization_b=0.5),
        score_row("cka_linear", "c0", "c0@0.1", pair_type="perturbation", arch="cnn", layer="relu3", scale_b=0.1),
        score_row("cka_linear", "c0", "c0@0.01", pair_type="perturbation", arch="cnn", layer="relu3", scale_b=0.01),
    ]
    arrays = {"m0": {"relu2": representations(1)}, "m1": {"relu2": representations(2)},
              "c0": {"relu3": representations(3)}, "c0@0.01": {"relu3": representations(4)}}
    evaluations = invariance(sweep(tmp_path, rows, arrays)).evaluations
    assert evaluations.groupby("arch")["layer"].first().to_dict() == {"cnn": "relu3", "mlp": "relu2"}
    assert len(evaluations) == 2 * len(TRANSFORMS)


def test_without_representational_measures_nothing_is_reported(tmp_path):
    """Functional measures (on outputs) have no representation to transform."""
    rows = [score_row("disagreement", "m0", "m1", layer="output")]
    assert invariance(sweep(tmp_path, rows, {})).evaluations.empty
