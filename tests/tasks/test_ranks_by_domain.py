"""Ranks per domain (ReSi aggregates within each domain and overall) on a hand-computed table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.benchmark_tests import arch_domains, ranks
from tests.tasks.test_benchmark_tests import context, quality, score_row


def test_ranks_by_domain_aggregate_within_each_domains_cells(tmp_path):
    """Two measures, one test, three architectures in two domains (mlp and cnn on digits: vision;
    transformer on dyck: language). Per cell, rank 1 = best:

        mlp          cka .9  svcca .1  -> 1, 2
        cnn          cka .2  svcca .8  -> 2, 1
        transformer  cka .3  svcca .6  -> 2, 1

    vision: medians over its two cells: cka 1.5, svcca 1.5; language: cka 2, svcca 1;
    overall: median over the three cells: cka 2, svcca 1."""
    rows = [score_row("cka_linear", "a", "b", 0.5, arch=arch, dataset=data, domain=domain)
            for arch, data, domain in (("mlp", "digits", "vision"), ("cnn", "digits", "vision"),
                                       ("transformer", "dyck", "language"))]
    previous = [quality("layer_identification", "layer_identification", {
        ("mlp", "cka_linear"): 0.9, ("mlp", "svcca"): 0.1, ("cnn", "cka_linear"): 0.2, ("cnn", "svcca"): 0.8,
        ("transformer", "cka_linear"): 0.3, ("transformer", "svcca"): 0.6})]
    evaluations = ranks(context(tmp_path, rows, previous)).evaluations

    table = pd.read_csv(tmp_path / "tables" / "ranks_by_domain.csv").set_index("measure")
    assert table.loc["cka_linear", ["vision", "language", "overall"]].tolist() == [1.5, 2.0, 2.0]
    assert table.loc["svcca", ["vision", "language", "overall"]].tolist() == [1.5, 1.0, 1.0]
    assert table.loc["svcca", "family"] == "cca"
    by_domain = evaluations[evaluations["statistic"].eq("rank_score_by_domain")]
    assert by_domain.set_index(["measure", "domain"])["value"].to_dict()[("cka_linear", "language")] == 2.0
    markdown = (tmp_path / "tables" / "ranks_by_domain.md").read_text()
    assert "| measure | family | language | vision | overall |" in markdown
    assert "Cells per domain: language 1, vision 2." in markdown
    assert (tmp_path / "figures" / "ranks_by_domain.png").exists()


def test_arch_domains_fall_back_to_the_dataset_for_rows_without_a_domain():
    """Rows from before the domain column get their dataset's registered domain; an architecture trained
    in two domains gets both."""
    scores = pd.DataFrame([score_row("cka_linear", "a", "b", 0.5, arch="mlp", dataset="digits"),
                           score_row("cka_linear", "a", "b", 0.5, arch="gcn", dataset="sbm", domain="graph"),
                           score_row("cka_linear", "a", "b", 0.5, arch="tiny", dataset="synthetic", domain=np.nan),
                           score_row("cka_linear", "a", "b", 0.5, arch="tiny", dataset="dyck", domain="language")])
    assert arch_domains(scores) == {"mlp": "vision", "gcn": "graph", "tiny": "language+synthetic"}


@pytest.mark.parametrize("columns", [[], ["arch_a"]])
def test_arch_domains_of_a_table_without_models_is_empty(columns):
    assert arch_domains(pd.DataFrame(columns=columns)) == {}
