"""README's layer-identification paragraph (*Three domains*) quotes the tracked
``paper/data/vision_deep_layer_identification.csv`` (``python -m runners.layer_id_summary`` writes it from
``sweep=vision_deep``): every "<measure> 0.xx [0.xx, 0.xx]" in the paragraph (up to the next blank line) equals the file's accuracy and
bootstrap interval, rounded to two decimals."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from tasks.benchmark_tests import layer_identification_summary

ROOT = Path(__file__).resolve().parents[1]
TRACKED = ROOT / "paper" / "data" / "vision_deep_layer_identification.csv"
PARAGRAPH_START = "**Layer identification (Kornblith et al.) on the deeper network"
#: how the paragraph names each measure
LABELS = {"debiased linear CKA": "cka_linear_debiased", "linear CKA": "cka_linear", "RBF CKA": "cka_rbf",
          "orthogonal Procrustes": "procrustes_orthogonal", "RSA": "rsa", "kNN Jaccard": "knn_jaccard",
          "SVCCA": "svcca", "PWCCA": "pwcca", "mean CCA": "cca_mean_rho", "CCA R²": "cca_r2"}
NUMBER = r"(\d\.\d\d)\s+\[(\d\.\d\d),\s+(\d\.\d\d)\]"


def _paragraph() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(PARAGRAPH_START)
    return text[start:text.index("\n\n", start)]


def _quoted(paragraph: str) -> dict[str, set[tuple[str, str, str]]]:
    found: dict[str, set[tuple[str, str, str]]] = {}
    for label, measure in LABELS.items():
        lookbehind = r"(?<!debiased\s)" if label == "linear CKA" else ""
        spaced = r"\s+".join(map(re.escape, label.split()))  # the README wraps lines anywhere
        for match in re.finditer(rf"(?<![\w-]){lookbehind}{spaced}\s+{NUMBER}", paragraph):
            found.setdefault(measure, set()).add(match.groups())
    return found


def test_readme_layer_identification_numbers_match_the_tracked_summary():
    tracked = pd.read_csv(TRACKED).set_index("measure")
    quoted = _quoted(_paragraph())
    assert set(quoted) == set(tracked.index), quoted  # every measure of the summary is quoted
    for measure, numbers in quoted.items():
        row = tracked.loc[measure]
        assert numbers == {tuple(f"{row[c]:.2f}" for c in ("accuracy", "ci_low", "ci_high"))}, measure


def test_quoted_numbers_are_found_and_told_apart():
    text = "linear CKA 0.96 [0.89, 1.00], debiased\nlinear CKA 0.50 [0.40,\n0.60], mean CCA\n0.00 [0.00, 0.00]"
    assert _quoted(text) == {"cka_linear": {("0.96", "0.89", "1.00")}, "cka_linear_debiased": {("0.50", "0.40", "0.60")},
                             "cca_mean_rho": {("0.00", "0.00", "0.00")}}


def test_summary_rounds_sorts_and_names_families():
    table = pd.DataFrame({"arch": ["tiny10"] * 3, "measure": ["svcca", "cka_linear", "rsa"],
                          "statistic": ["layer_identification"] * 3, "value": [0.0, 0.962963, 0.5],
                          "ci_low": [0.0, 0.888889, 0.3], "ci_high": [0.0, 1.0, 0.7], "n_pairs": [3, 3, 3],
                          "baseline": [1 / 9] * 3})
    summary = layer_identification_summary(pd.concat([table, table.assign(statistic="other")]))
    assert list(summary["measure"]) == ["cka_linear", "rsa", "svcca"]
    assert list(summary["family"]) == ["rsm", "rsm", "cca"]
    assert summary.loc[0, "accuracy"] == pytest.approx(0.963) and summary.loc[0, "ci_low"] == pytest.approx(0.8889)
    assert summary.loc[0, "chance"] == pytest.approx(0.1111)


def test_layer_id_summary_command_writes_the_csv_and_names_a_missing_table(tmp_path, capsys):
    from runners.layer_id_summary import main

    table = pd.DataFrame({"arch": ["tiny10"], "measure": ["cka_linear"], "statistic": ["layer_identification"],
                          "value": [0.9], "ci_low": [0.8], "ci_high": [1.0], "n_pairs": [10], "baseline": [1 / 9]})
    (tmp_path / "s" / "tables").mkdir(parents=True)
    table.to_csv(tmp_path / "s" / "tables" / "layer_identification.csv", index=False)
    out = tmp_path / "out.csv"
    assert main(["--sweep", "s", "--results", str(tmp_path), "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert written.to_dict("records") == [{"arch": "tiny10", "measure": "cka_linear", "family": "rsm", "accuracy": 0.9,
                                           "ci_low": 0.8, "ci_high": 1.0, "n_pairs": 10, "chance": 0.1111}]
    assert main(["--sweep", "absent", "--results", str(tmp_path), "--out", str(out)]) == 2
    assert "absent/tables/layer_identification.csv: no layer-identification table" in capsys.readouterr().err
