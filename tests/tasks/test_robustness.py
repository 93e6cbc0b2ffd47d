"""Drift is measured from m(A, A): the self pair where the sweep computed it, the identity value otherwise."""

import numpy as np
import pandas as pd
import pytest

from tasks.robustness import drift_table


def _row(pair_type, model_a, model_b, value, scale_b=0.0, measure="correlation_match_hard", layer="relu1",
         scale_a=0.0):
    return {"pair_type": pair_type, "model_a": model_a, "model_b": model_b, "value": value, "status": "ok",
            "measure": measure, "layer_a": layer, "layer_b": layer, "arch_a": "mlp", "scale_a": scale_a,
            "scale_b": scale_b,
            "label_randomization_a": 0.0, "label_randomization_b": 0.0, "shortcut_a": np.nan, "shortcut_b": np.nan,
            "input_noise_a": 0.0, "input_noise_b": 0.0}


def test_drift_is_measured_from_the_self_pair():
    # Dead units keep correlation matching at 0.8 on identical inputs: drift must start from 0.8, not 1.
    rows = [_row("self", "A", "A", 0.8), _row("perturbation", "A", "A~", 0.79, scale_b=0.01),
            _row("seed", "A", "B", 0.6)]
    table = drift_table(pd.DataFrame(rows))
    assert table["drift"].iloc[0] == pytest.approx(0.01)
    assert table["seed_drift"].iloc[0] == pytest.approx(0.2)
    assert table["drift_in_seed_units"].iloc[0] == pytest.approx(0.05)


def test_without_self_pairs_the_identity_value_is_the_reference():
    rows = [_row("perturbation", "A", "A~", 0.79, scale_b=0.01), _row("seed", "A", "B", 0.6)]
    table = drift_table(pd.DataFrame(rows))
    assert table["drift"].iloc[0] == pytest.approx(0.21)  # correlation_match_hard: identity value 1
    assert np.isfinite(table["drift_in_seed_units"].iloc[0])


def test_reverse_direction_is_filed_at_its_noise_scale_and_measured_from_the_clean_model():
    """An asymmetric measure also stores m(Ã, A) (the noisy copy first: scale_a = σ, scale_b = 0). That
    row belongs at σ, and its reference is the clean model's self pair m(A, A), found through model_b."""
    measure = "linear_regression"
    rows = [_row("self", "A", "A", 0.9, measure=measure),
            _row("perturbation", "A", "A~", 0.85, scale_b=0.01, measure=measure),
            _row("perturbation", "A~", "A", 0.80, scale_a=0.01, measure=measure),
            _row("seed", "A", "B", 0.5, measure=measure)]
    table = drift_table(pd.DataFrame(rows))
    assert list(table["scale"]) == [0.01]
    assert table["n_pairs"].iloc[0] == 2
    assert table["drift"].iloc[0] == pytest.approx((0.05 + 0.10) / 2)


def test_measure_heatmap_orders_by_family_and_survives_an_empty_table(tmp_path):
    """The figure helper groups rows by the registry's families and draws a note, not an error, when a
    sweep leaves no finite value (e.g. a narrow rerun without noise pairs)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    import measures
    from tasks import plotting

    names = ["svcca", "cka_linear", "knn_jaccard", "cca_r2"]
    order = plotting.by_family(names)
    families = [measures.info(m).family for m in order]
    assert order == ["cca_r2", "svcca", "cka_linear", "knn_jaccard"]
    assert families == sorted(families, key=measures.FAMILIES.index)
    fig, axes = plotting.figure(2, len(names))
    plotting.measure_heatmap(axes[0][0], pd.DataFrame({0.1: [0.1, 0.2, 0.3, 0.4]}, index=names), norm=plt.Normalize(0, 1))
    empty = plotting.measure_heatmap(axes[0][1], pd.DataFrame(), norm=plt.Normalize(0, 1))
    fig.colorbar(empty, ax=axes[0].tolist())
    fig.savefig(tmp_path / "figure.png")
    assert [t.get_text() for t in axes[0][0].get_yticklabels()] == order
    plt.close(fig)
