"""runners.paper: a missing sweep stops the build naming the command; the generated numbers and tables come
from the results (a changed result changes the PDF's text); the PDF compiles with Debian's TeX.

The results tree here is small and made in the test: the benchmark's rank tables are written by the real
ranks analysis from hand-made quality statistics, the flicker and solutions tables have the columns their
analyses write. The compile tests need latexmk, pdflatex and pdftotext; without them they skip with the
reason (SIMBENCH_REQUIRE_TEX=1 turns the skip into a failure; ``.ci/run`` sets it as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from runners import paper  # noqa: E402
from tasks.base import AnalysisContext  # noqa: E402
from tasks.benchmark_tests import ranks  # noqa: E402

MEASURES = ["cka_linear", "svcca", "rsa", "knn_jaccard"]


def _figure(path: Path, label: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.plot([0, 1], [0, 1])
    ax.set_title(label)
    fig.savefig(path, dpi=50)
    plt.close(fig)


def make_results(root: Path, cka_layer_id: float = 0.9) -> Path:
    """A results tree with everything the paper reads; ``cka_layer_id`` is cka_linear's layer
    identification accuracy on both architectures (it decides the top measure and \\LayerIdCKA)."""
    bench = root / "benchmark"
    (bench / "tables").mkdir(parents=True)
    (bench / "figures").mkdir()
    archs, layers = ["mlp", "cnn"], ["fc1", "fc2", "logits"]
    scores = pd.DataFrame([
        {"model_a": f"{arch}0", "model_b": f"{arch}1", "arch_a": arch, "dataset": "digits", "pair_type": "seed",
         "layer_a": layer, "measure": m, "value": 0.5, "git_commit": "abc123def456", "status": "ok"}
        for arch in archs for layer in layers for m in MEASURES])
    scores.to_parquet(bench / "scores.parquet")
    rng = np.random.default_rng(0)
    quality = {"accuracy_correlation": ("output_correlation", "spearman_accuracy_difference"),
               "layer_identification": ("layer_identification", "layer_identification"),
               "layer_monotonicity": ("layer_monotonicity", "monotonicity"),
               "pc_deletion": ("pc_deletion", "pc_sensitivity")}
    previous = []
    for task, statistic in quality.values():
        rows = [{"task": task, "arch": arch, "measure": m, "statistic": statistic,
                 "value": cka_layer_id if (m == "cka_linear" and task == "layer_identification") else rng.uniform(0, 0.8)}
                for arch in archs for m in MEASURES]
        previous.append(pd.DataFrame(rows))
    previous.append(pd.DataFrame([{"task": "pc_deletion", "arch": arch, "measure": "cka_linear",
                                   "statistic": "pc_fraction_at_reaction", "value": 0.875} for arch in archs]))
    previous.append(pd.DataFrame([{"task": "seed_variability", "arch": arch, "measure": m,
                                   "statistic": "equivalent_noise_scale", "value": v}
                                  for arch in archs for m, v in zip(MEASURES, [0.3, 0.5, 0.7, np.inf])]))
    ctx = AnalysisContext(sweep_dir=bench, scores=scores, cache_dir=root / "cache", previous=previous)
    result = ranks(ctx)
    evaluations = pd.concat([*previous, result.evaluations.assign(task="ranks")], ignore_index=True)
    evaluations.to_parquet(bench / "evaluations.parquet")
    for name in ("layer_identification", "pc_deletion", "robustness"):
        _figure(bench / "figures" / f"{name}.png", name)

    flicker = root / "flicker"
    rows = []
    for arch in archs:
        for scale in (1e-4, 1e-3, 1e-2, 0.1):
            rows += [
                {"arch": arch, "fixture": "zoo", "measure": "signature_bits", "layer": "all", "scale": scale,
                 "statistic": "bit_flicker", "value": 0.15 * scale},
                {"arch": arch, "fixture": "zoo", "measure": "activation_region", "layer": "all", "scale": scale,
                 "statistic": "match_flicker_cross", "value": 0.12},
                {"arch": arch, "fixture": "zoo", "measure": "correlation_matching", "layer": "all", "scale": scale,
                 "statistic": "match_flicker_cross", "value": 0.03}]
        rows += [{"arch": arch, "fixture": "zoo", "measure": "weight_distance", "layer": "weights", "scale": np.nan,
                  "statistic": "sigma10", "value": np.inf},
                 {"arch": arch, "fixture": "zoo", "measure": "activation_region", "layer": "network", "scale": np.nan,
                  "statistic": "sigma10", "value": 0.043},
                 {"arch": arch, "fixture": "zoo", "measure": "disagreement", "layer": "output", "scale": np.nan,
                  "statistic": "sigma10", "value": 0.031},
                 {"arch": arch, "fixture": "zoo", "measure": "activation_region_minhash", "layer": "all", "scale": 0.0,
                  "statistic": "minhash_seed_flicker", "value": 0.7}]
    (flicker / "tables").mkdir(parents=True)
    pd.DataFrame(rows).assign(n=6).to_csv(flicker / "tables" / "flicker.csv", index=False)
    _figure(flicker / "figures" / "flicker.png", "flicker")

    solutions = root / "solutions"
    rows = []
    for arch in archs:
        for noise in (0.1, 1.0):
            for epochs in (0, 30):
                label = f"scale={noise:g}, epochs={epochs}"
                rows += [{"arch": arch, "warm_start": label, "measure": "weight_distance", "layer": "weights",
                          "statistic": "mean_vs_origin", "value": 10 * noise + epochs / 10},
                         {"arch": arch, "warm_start": label, "measure": "weight_distance", "layer": "weights",
                          "statistic": "drift_in_seed_units", "value": noise},
                         {"arch": arch, "warm_start": label, "measure": "weight_distance", "layer": "weights",
                          "statistic": "origin_closer_rate", "value": 1.0},
                         {"arch": arch, "warm_start": label, "measure": "disagreement", "layer": "output",
                          "statistic": "mean_vs_origin", "value": 0.02}]
            rows += [{"arch": arch, "warm_start": f"scale={noise:g}, epochs=30", "measure": m, "layer": layer,
                      "statistic": "mean_seed_pairs", "value": v}
                     for m, layer, v in (("weight_distance", "weights", 18.0), ("disagreement", "output", 0.019))]
    (solutions / "tables").mkdir(parents=True)
    pd.DataFrame(rows).assign(n=5).to_csv(solutions / "tables" / "solutions.csv", index=False)
    _figure(solutions / "figures" / "solutions.png", "solutions")
    return root


def copy_paper_source(tmp: Path) -> Path:
    target = tmp / "paper"
    target.mkdir()
    for name in ("paper.tex", "references.bib"):
        shutil.copyfile(paper.PAPER / name, target / name)
    return target


def test_missing_results_name_the_sweep_to_run(tmp_path):
    with pytest.raises(paper.MissingResults, match=r"results/benchmark/.*`uv run python -m runners\.sweep`"):
        paper.require_results(tmp_path, run_sweeps=False)
    make_results(tmp_path)
    shutil.rmtree(tmp_path / "flicker")
    with pytest.raises(paper.MissingResults, match=r"results/flicker/.*sweep=flicker"):
        paper.require_results(tmp_path, run_sweeps=False)


def test_generated_numbers_and_tables_come_from_the_results(tmp_path):
    results = make_results(tmp_path / "results")
    target = copy_paper_source(tmp_path)
    numbers = paper.generate(results, target).items
    table = pd.read_csv(results / "benchmark" / "tables" / "ranks.csv")
    top = table.sort_values("rank_score", kind="stable").iloc[0]
    assert numbers["TopMeasure"][1] == top["measure"] == "cka_linear"  # identification 0.9 beats every U(0, .8)
    assert numbers["TopScore"][0] == f"{top['rank_score']:.1f}"
    assert numbers["TopLow"][1] == top["rank_score_ci_low"]
    assert numbers["LayerIdCKA"][0] == "0.90"
    assert numbers["PcCkaReactPercent"][0] == "88"  # 0.875 as a percentage
    assert numbers["EquivalentNoiseMedian"][1] == pytest.approx(0.5)  # median of 0.3, 0.5, 0.7 (inf dropped)
    assert numbers["SigmaTenWeightsMlp"][0] == "$\\infty$" and numbers["SigmaTenRegionCnn"][0] == "0.043"
    assert numbers["BitFlickerMlp"][0] == "0.0015"  # 0.15 sigma at sigma = 1e-2
    assert numbers["CrossExactMlp"][0] == "12.0\\%" and numbers["CrossCorrCnn"][0] == "3.0\\%"
    assert numbers["WeightToOriginMlp"][1] == pytest.approx(13.0)  # noise 1.0, 30 epochs: 10 + 3
    assert numbers["DisagreeSeedsCnn"][0] == "1.9\\%" and numbers["SolutionsHighNoise"][0] == "1"
    tex = (target / "generated" / "numbers.tex").read_text()
    assert "\\newcommand{\\TopMeasure}{cka\\_linear}" in tex
    ranks_tex = (target / "generated" / "ranks_table.tex").read_text()
    rows = [line for line in ranks_tex.splitlines() if line[:1].isdigit()]
    expected = table.sort_values("rank_score", kind="stable")["measure"].str.replace("_", "\\_")
    assert [line.split(" & ")[1] for line in rows] == ["\\texttt{" + m + "}" for m in expected]
    # the tracked tables
    data = pd.read_csv(target / "data" / "ranks.csv")
    assert list(data["measure"]) == list(table.sort_values("rank_score", kind="stable")["measure"])
    assert {"rank_score_ci_low", "rank_score_ci_high"} <= set(data.columns)
    assert set(pd.read_csv(target / "data" / "numbers.csv")["macro"]) == set(numbers)


def _require_tex() -> None:
    missing = [tool for tool in ("latexmk", "pdflatex", "bibtex", "pdftotext") if shutil.which(tool) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed (Debian: latexmk texlive-latex-recommended " \
                 "texlive-fonts-recommended poppler-utils)"
        if os.environ.get("SIMBENCH_REQUIRE_TEX") == "1":
            pytest.fail(f"SIMBENCH_REQUIRE_TEX=1 but {reason}")
        pytest.skip(reason)


def _pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def test_paper_compiles_and_a_changed_result_changes_the_pdf(tmp_path):
    _require_tex()
    results = make_results(tmp_path / "results")
    target = copy_paper_source(tmp_path)
    paper.generate(results, target)
    text = _pdf_text(paper.compile_pdf(target))
    assert "cka_linear" in text and "Layer identification" in text
    assert "0.90" in text  # \LayerIdCKA
    assert "??" not in text  # every reference and citation resolved
    # change one result (cka_linear's layer identification) and rebuild: the number in the PDF follows
    shutil.rmtree(results)
    make_results(results, cka_layer_id=0.85)
    paper.generate(results, target)
    changed = _pdf_text(paper.compile_pdf(target))
    assert "0.85" in changed and "linear CKA alone with 0.90" not in " ".join(changed.split())


def test_readme_holds_the_claims_table_as_generated():
    readme = (paper.ROOT / "README.md").read_text()
    assert paper.claims_markdown(paper.CLAIMS) in readme
    commands = {c.command for c in paper.CLAIMS}
    assert "uv run python -m runners.paper" in commands and all(c.runtime for c in paper.CLAIMS)


def test_readme_tables_summarise_ranks_by_domain_and_copy_what_exists(tmp_path):
    """The README's tables: family means and domain correlations against numpy / scipy on a small frame; a
    sweep that is missing is named and leaves the tracked copy alone."""
    from scipy.stats import spearmanr

    wide = pd.DataFrame({"measure": ["a", "b", "c", "d"], "family": ["rsm", "rsm", "cca", "cca"],
                         "graph": [1.0, 2.0, 4.0, 3.0], "vision": [2.0, 1.0, 3.0, 4.0], "overall": [1.5, 1.5, 3.5, 3.5]})
    evaluations = pd.DataFrame({"task": "ranks", "statistic": ["rank_x", "rank_x", "rank_y", "rank_score"],
                                "arch": ["g1", "v1", "g1", None], "measure": "a", "value": 1.0})
    scores = pd.DataFrame({"arch_a": ["g1", "v1"], "domain": ["graph", "vision"]})
    summary = paper.ranks_by_domain_summary(wide, evaluations, scores).set_index(["statistic", "key", "domain"])["value"]
    assert summary[("family_mean_rank_score", "cca", "graph")] == np.mean([4.0, 3.0])
    assert summary[("family_mean_rank_score", "rsm", "vision")] == np.mean([2.0, 1.0])
    assert summary[("spearman", "vision", "graph")] == pytest.approx(spearmanr(wide["graph"], wide["vision"]).statistic)
    assert summary[("family_mean_position", "rsm", "overall")] == 1.5  # positions 1.5, 1.5 (tied), 3.5, 3.5
    assert summary[("cells", "", "graph")] == 2 and summary[("cells", "", "vision")] == 1  # (test, arch) pairs

    results = make_results(tmp_path / "results")
    (results / "benchmark" / "tables" / "cka_bias.csv").write_text("n,d,cka_linear,cka_linear_debiased\n16,64,0.8,0.0\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "significance.csv").write_text("kept\n")
    notes = paper.readme_tables(results, data)
    assert pd.read_csv(data / "cka_bias.csv")["cka_linear"].tolist() == [0.8]
    assert (data / "significance.csv").read_text() == "kept\n"
    assert any("sweep=significance" in note for note in notes)
