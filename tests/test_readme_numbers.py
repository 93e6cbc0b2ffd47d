"""Every number in the README's result sections comes from a tracked table in ``paper/data/``.

``runners.paper`` copies the benchmark's (and the small ``significance`` / ``cross_model`` sweeps') summary
tables into ``paper/data/``. :data:`CHECKS` ties each README number to one of them: the README phrase with
``{}`` where the number stands, the table, a pandas query selecting rows, the column (or a pandas expression
of columns), how the rows are reduced and how the number is written. A number that drifts from its table
fails with the text the table gives. :func:`test_every_number_is_checked_or_declared` scans the sections:
a number that no check covers must be on :data:`PARAMETERS` (settings of the run, not results),
:data:`RUN_LOG` (timings and counts of one run that no table holds), :data:`DEEP` (layer identification
on ``tiny10``, checked by the vision_deep helper's table when merged) or in a paragraph of
:data:`PARAGRAPHS` (exempt as a whole, with the reason). Adding a number to the README is one line here.

Regenerate the tables: ``uv run python -m runners.paper --no-sweeps`` (after ``uv run python -m
runners.sweep`` and ``uv run python -m runners.sweep sweep=significance`` / ``sweep=cross_model``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from simbench.readme import README

DATA = Path(__file__).resolve().parents[1] / "paper" / "data"
#: the README sections whose numbers are checked (by heading prefix)
SECTIONS = ("Results on the embedded default", "Three domains: vision, language, graphs", "Does a score mean anything?")


def pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def pct_bare(value: float) -> str:
    return f"{100 * value:.0f}"


@dataclass(frozen=True)
class N:
    phrase: str  # README text, "{}" where the number stands
    table: str  # file in paper/data/
    where: str  # pandas query ("" = every row)
    column: str = "value"  # a column or a pandas expression of columns
    fmt: str | Callable[[float], str] = ".2f"
    agg: str = "one"  # one (exactly one row), min, max, sum, count, median, mean

    def value(self, data: Path = DATA) -> float:
        frame = _table(data / self.table)
        rows = frame.query(self.where) if self.where else frame
        if self.agg == "count":
            return float(len(rows))
        values = pd.to_numeric(rows.eval(self.column) if self.column not in rows else rows[self.column],
                               errors="coerce")
        if self.agg == "one":
            if len(values) != 1:
                raise AssertionError(f"{self.table} [{self.where}] selects {len(values)} rows, not one")
            return float(values.iloc[0])
        return float(getattr(values.dropna(), self.agg)())

    def text(self, data: Path = DATA) -> str:
        value = self.value(data)
        return self.fmt(value) if callable(self.fmt) else format(value, self.fmt)


@functools.cache
def _table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


MACRO = "numbers.csv"
DOMAIN = "ranks_by_domain_summary.csv"
FAMILY = "statistic == 'family_mean_rank_score' and key == '{}' and domain == '{}'"
CKA = "cka_bias.csv"
SIG = "significance.csv"
SIG_SEED = "pair_type == 'seed' and measure == '{}'"
CROSS = "cross_model.csv"
CROSS_ROW = "measure == 'cka_linear' and rule == '{}' and config_a == '{}' and config_b == '{}'"
ROBUST = "representation_robustness.csv"
OUTLIER = "perturbation == 'outlier' and measure == '{}'"
STOP = "stop_searching.csv"
STOP_ROW = "arch == '{}' and statistic == '{}' and n_models == 5 and measure == '{}'"
PAIR = "sample_size_pair.csv"
PC = "pc_deletion_reaction.csv"
PC_CKA = "measure == 'cka_linear' and "

LAYER_ID = "layer_identification.csv"
VISION_DEEP = "vision_deep_layer_identification.csv"
LANG = "arch == 'transformer' and measure == '{}'"

CHECKS: list[N] = [
    # Results on the embedded default
    N("{} score rows over", MACRO, "macro == 'BenchScoreRowsText'", fmt=",.0f"),
    N("over {} models and", MACRO, "macro == 'BenchModels'", fmt=".0f"),
    N("models and {} measures (the four group-wise", MACRO, "macro == 'NMeasuresRegistered'", fmt=".0f"),
    N("layer of another seed (mean accuracy {})", MACRO, "macro == 'LayerIdCCA'"),
    N("the RSM family usually does ({})", MACRO, "macro == 'LayerIdRSM'"),
    N("only after {} of the principal components", PC, PC_CKA + "domain == 'vision'", fmt=pct, agg="min"),
    N("only after {} of the principal components", PC, PC_CKA + "domain == 'vision'", fmt=pct, agg="max"),
    N("on the language transformer after {}", PC, PC_CKA + "domain == 'language'", fmt=pct),
    N("on the graph models after {}-75%", PC, PC_CKA + "domain == 'graph'", fmt=pct_bare, agg="min"),
    N("on the graph models after 61-{}", PC, PC_CKA + "domain == 'graph'", fmt=pct, agg="max"),
    N("(mean position {} of 38", DOMAIN, "statistic == 'family_mean_position' and key == 'statistics'", fmt=".1f"),
    N("(mean position 25.5 of {}", MACRO, "macro == 'NRanked'", fmt=".0f"),
    N("the score of the best ({})", MACRO, "macro == 'TopScore'", fmt=".1f"),
    N("significant differences ({}) are unchanged", MACRO, "macro == 'NSignificantPairs'", fmt=".0f"),
    N("topology moved from 17.3 to {}, now third", DOMAIN, "statistic == 'family_mean_position' and key == 'topology'", fmt=".1f"),
    N("instead of {} / 2.0% for mlp / cnn", MACRO, "macro == 'CrossCorrMlp'", fmt=".1%"),
    N("instead of 3.6% / {} for mlp / cnn", MACRO, "macro == 'CrossCorrCnn'", fmt=".1%"),
    N("only the CCA family is lower, {};", DOMAIN, "statistic == 'family_mean_position' and key == 'cca'",
      fmt=".1f"),
    N("the neighbourhood family is first, {},", DOMAIN, "statistic == 'family_mean_position' and key == 'neighbours'",
      fmt=".1f"),
    N("then RSM, {};", DOMAIN, "statistic == 'family_mean_position' and key == 'rsm'", fmt=".1f"),
    N("they are {} on the vision models", DOMAIN, FAMILY.format("statistics", "vision"), fmt=".1f"),
    N("{} on language and", DOMAIN, FAMILY.format("statistics", "language"), fmt=".1f"),
    N("on language and {} on graphs", DOMAIN, FAMILY.format("statistics", "graph"), fmt=".1f"),
    N("where the CCA family is {},", DOMAIN, FAMILY.format("cca", "vision"), fmt=".1f"),
    N("where the CCA family is §, {} and", DOMAIN, FAMILY.format("cca", "language"), fmt=".1f"),
    N("where the CCA family is §, § and {}:", DOMAIN, FAMILY.format("cca", "graph"), fmt=".1f"),
    N("retraining from another seed is {} (relative", MACRO, "macro == 'EquivalentNoiseMedian'", fmt=".3f"),
    N("the sweep computes the {} that compare", MACRO, "macro == 'NMeasuresRegistered'", fmt=lambda v: f"{v - 4:.0f}"),
    N("the ranks cover the {} representational measures", MACRO, "macro == 'NRanked'", fmt=".0f"),
    N("The catalogue has {} measures", MACRO, "macro == 'NMeasuresRegistered'", fmt=".0f"),
    N("on MNIST-1D (`sweep=vision_deep`, not part of this run) linear CKA reaches {}", VISION_DEEP,
      "measure == 'cka_linear'", "accuracy"),
    N("(0.74 on 8x8 digits) and SVCCA {}, near", VISION_DEEP, "measure == 'svcca'", "accuracy"),
    # Three domains: layer identification on the language transformer
    N("(5 compared layers, chance {};", LAYER_ID, LANG.format("cka_linear"), "chance", fmt=".1f"),
    N("4 seeds, {} seed pairs;", LAYER_ID, LANG.format("cka_linear"), "n_pairs", fmt=".0f"),
    N("layer_identification.csv`): linear CKA {} [", LAYER_ID, LANG.format("cka_linear"), "accuracy"),
    N("linear CKA 0.83 [{}, 0.98]", LAYER_ID, LANG.format("cka_linear"), "ci_low"),
    N("linear CKA 0.83 [0.65, {}]", LAYER_ID, LANG.format("cka_linear"), "ci_high"),
    N("orthogonal Procrustes {} [0.70", LAYER_ID, LANG.format("procrustes_orthogonal"), "accuracy"),
    N("orthogonal Procrustes 0.83 [{}, 0.95]", LAYER_ID, LANG.format("procrustes_orthogonal"), "ci_low"),
    N("orthogonal Procrustes 0.83 [0.70, {}]", LAYER_ID, LANG.format("procrustes_orthogonal"), "ci_high"),
    N("SVCCA {} [0.20", LAYER_ID, LANG.format("svcca"), "accuracy"),
    N("SVCCA 0.23 [{}, 0.30]", LAYER_ID, LANG.format("svcca"), "ci_low"),
    N("SVCCA 0.23 [0.20, {}]", LAYER_ID, LANG.format("svcca"), "ci_high"),
    N("mean CCA and PWCCA {}.", LAYER_ID, "arch == 'transformer' and measure in ['cca_mean_rho', 'pwcca']",
      "accuracy", agg="max"),
    # Three domains: how the rankings differ
    N("{} (vision),", DOMAIN, "statistic == 'cells' and domain == 'vision'", fmt=".0f"),
    N("{} (language) and", DOMAIN, "statistic == 'cells' and domain == 'language'", fmt=".0f"),
    N("and {} (graph) (test, architecture) cells", DOMAIN, "statistic == 'cells' and domain == 'graph'", fmt=".0f"),
    *[N(f"{label} " + " / ".join("{}" if d == domain else "§" for d in ("vision", "language", "graph", "overall")),
        DOMAIN, FAMILY.format(family, domain), fmt=".1f")
      for label, family in (("CCA", "cca"), ("neighbours", "neighbours"), ("topology", "topology"), ("RSM", "rsm"),
                            ("alignment", "alignment"), ("descriptive statistics", "statistics"))
      for domain in ("vision", "language", "graph", "overall")],
    N("in the lower half on digits ({})", "ranks_by_domain.csv", "measure == 'cka_linear'", "vision", ".1f"),
    N("in the upper third in language ({})", "ranks_by_domain.csv", "measure == 'cka_linear'", "language", ".1f"),
    N("in the upper third on graphs ({})", "ranks_by_domain.csv", "measure == 'cka_linear'", "graph", ".1f"),
    N("kNN Jaccard the reverse ({} /", "ranks_by_domain.csv", "measure == 'knn_jaccard'", "vision", ".1f"),
    N("kNN Jaccard the reverse (§ / {} /", "ranks_by_domain.csv", "measure == 'knn_jaccard'", "language", ".1f"),
    N("kNN Jaccard the reverse (§ / § / {})", "ranks_by_domain.csv", "measure == 'knn_jaccard'", "graph", ".1f"),
    N("vision and graphs (Spearman of the rank scores {})", DOMAIN,
      "statistic == 'spearman' and key == 'vision' and domain == 'graph'"),
    N("language and graphs ({})", DOMAIN, "statistic == 'spearman' and key == 'language' and domain == 'graph'"),
    N("hardly between vision and language ({})", DOMAIN,
      "statistic == 'spearman' and key == 'vision' and domain == 'language'"),
    # Does a score mean anything?
    N("biased linear CKA is {} at N = 16", CKA, "n == 16 and d == 64", "cka_linear"),
    N("{} at N = 128,", CKA, "n == 128 and d == 64", "cka_linear"),
    N("{} at N = 512 and", CKA, "n == 512 and d == 64", "cka_linear", ".3f"),
    N("{} at N = 1024;", CKA, "n == 1024 and d == 64", "cka_linear", ".3f"),
    N("falls below 0.1 between N = {} and", CKA, "d == 64 and cka_linear >= 0.1", "n", ".0f", "max"),
    N("between N = 512 and {} (from", CKA, "d == 64 and cka_linear < 0.1", "n", ".0f", "min"),
    N("(from N = {} for D = 16,", CKA, "d == 16 and cka_linear < 0.1", "n", ".0f", "min"),
    N("N = {} for D = 256)", CKA, "d == 256 and cka_linear < 0.1", "n", ".0f", "min"),
    N("Debiased CKA stays within ±{} of 0 from", CKA, "n >= 64", "abs(cka_linear_debiased)", ".3f", "max"),
    N("on (up to {} at N = 16", CKA, "", "abs(cka_linear_debiased)", ".3f", "max"),
    N("On two cnn seeds (final hidden layer, N = {}", PAIR, "arch == 'cnn'", "n", ".0f", "max"),
    N("the {} `statistics` measures give exactly the same value", PAIR,
      "n == 512 and family == 'statistics' and seed_pair == shuffled", "measure", ".0f", "count"),
    *[N(phrase, PAIR, f"n == 512 and measure == '{measure}'", column, ".3f")
      for measure, pair, shuffled in (("second_order_cosine", "`second_order_cosine` {} vs",
                                       "`second_order_cosine` 1.000 vs {}"),
                                      ("cknna", "`cknna` {} vs", "`cknna` 0.946 vs {}"),
                                      ("aligned_cosine", "`aligned_cosine` {} vs", "`aligned_cosine` 0.972 vs {}"),
                                      ("cka_linear", "CKA ({} vs", "CKA (0.703 vs {})"),
                                      ("rsa", "RSA ({} vs", "RSA (0.682 vs {})"),
                                      ("knn_jaccard", "kNN Jaccard ({} vs", "kNN Jaccard (0.297 vs {})"))
      for phrase, column in ((pair, "seed_pair"), (shuffled, "shuffled"))],
    N("all {} rows have the smallest", SIG, "", "n_pairs", ".0f", "sum"),
    N("smallest attainable p-value ({})", SIG, "", "max_p", lambda v: f"1/{1 / v:.0f}", "max"),
    N("linear CKA of two seeds {} against", SIG, SIG_SEED.format("cka_linear"), "median_value", ".3f"),
    N("against a null median of {} (95% quantile", SIG, SIG_SEED.format("cka_linear"), "median_null_q50", ".3f"),
    N("(95% quantile {}), 95%", SIG, SIG_SEED.format("cka_linear"), "median_null_q95", ".3f"),
    N("CI width {}; Procrustes", SIG, SIG_SEED.format("cka_linear"), "median_ci_width", ".3f"),
    N("Procrustes {} against a null of", SIG, SIG_SEED.format("procrustes_orthogonal"), "median_value", ".3f"),
    N("against a null of {} (`tables/significance.csv`)", SIG, SIG_SEED.format("procrustes_orthogonal"),
      "median_null_q50", ".3f"),
    N("(cnn, final hidden layer, {} rows)", ROBUST, "perturbation == 'outlier' and arch == 'cnn'", "n", ".0f", "max"),
    N("changes the RSM norm difference by {} times", ROBUST, OUTLIER.format("rsm_norm_difference"), "seed_units",
      ".1f"),
    N("(`procrustes_size_shape`) by {},", ROBUST, OUTLIER.format("procrustes_size_shape"), "seed_units", ".1f"),
    N("NBS by {} and", ROBUST, OUTLIER.format("nbs"), "seed_units", ".1f"),
    N("linear CKA by {}, but", ROBUST, OUTLIER.format("cka_linear"), "seed_units", ".1f"),
    N("but RSA only {},", ROBUST, OUTLIER.format("rsa"), "seed_units"),
    N("kNN Jaccard {} and mean CCA", ROBUST, OUTLIER.format("knn_jaccard"), "seed_units"),
    N("mean CCA {} (rank-", ROBUST, OUTLIER.format("cca_mean_rho"), "seed_units"),
    N("unit scale moves {} of the", ROBUST, "perturbation == 'noise' and level == 0.1 and seed_units < 1", "measure",
      ".0f", "count"),
    N("of the {} measures by less", ROBUST, "perturbation == 'noise' and level == 0.1 and seed_units == seed_units",
      "measure", ".0f", "count"),
    N("`intrinsic_dimension_difference` by {} (", ROBUST,
      "perturbation == 'noise' and level == 0.1 and measure == 'intrinsic_dimension_difference'", "seed_units", ".1f"),
    N("Over the {} model pairs", "measure_agreement.csv", "", "max_model_pairs", ",.0f", "max"),
    N("the median Spearman ρ between two measures is {};", "measure_agreement.csv", "", "median_spearman", ".2f",
      "max"),
    N("they form {} clusters", "measure_agreement.csv", "", "n_clusters", ".0f", "max"),
    N("the largest holding {} measures", "measure_agreement.csv", "", "cluster_size", ".0f", "max"),
    N("is {} (mlp) and", STOP, STOP_ROW.format("mlp", "class_threshold", "disagreement"), fmt=".4f"),
    N("and {} (cnn); every pair", STOP, STOP_ROW.format("cnn", "class_threshold", "disagreement"), fmt=".4f"),
    N("(mean {} for mlp,", STOP, STOP_ROW.format("mlp", "mean_pair_distance", "disagreement"), fmt=".3f"),
    N("{} for cnn), so", STOP, STOP_ROW.format("cnn", "mean_pair_distance", "disagreement"), fmt=".3f"),
    N("so each of the {} seeds is its own", STOP, STOP_ROW.format("mlp", "solution_classes", "disagreement"),
      fmt=".0f"),
    N("so each of the {} seeds is its own", STOP, STOP_ROW.format("cnn", "solution_classes", "disagreement"),
      fmt=".0f"),
    N("Fleiss' kappa is {} (mlp)", STOP, STOP_ROW.format("mlp", "group_value", "fleiss_kappa"), fmt=".3f"),
    N("and {} (cnn), ambiguity", STOP, STOP_ROW.format("cnn", "group_value", "fleiss_kappa"), fmt=".3f"),
    N("not unanimous) {} and", STOP, STOP_ROW.format("mlp", "group_value", "ambiguity"), fmt=".3f"),
    N("not unanimous) 0.038 and {}, label", STOP, STOP_ROW.format("cnn", "group_value", "ambiguity"), fmt=".3f"),
    N("label entropy {} and", STOP, STOP_ROW.format("mlp", "group_value", "label_entropy"), fmt=".3f"),
    N("label entropy 0.033 and {} bits", STOP, STOP_ROW.format("cnn", "group_value", "label_entropy"), fmt=".3f"),
    N("two seeds of the mlp score {},", CROSS, CROSS_ROW.format("max", "mlp 3L d=64", "mlp 3L d=64"), fmt=".3f"),
    N("a 3-hidden-layer mlp {} and", CROSS, CROSS_ROW.format("max", "mlp 3L d=64", "mlp 4L d=64"), fmt=".3f"),
    N("a 128-unit mlp {};", CROSS, CROSS_ROW.format("max", "mlp 3L d=64", "mlp 3L d=128"), fmt=".3f"),
    N("the mlp vs the cnn {} ({}", CROSS, CROSS_ROW.format("max", "mlp 3L d=64", "cnn 4L d=256")),
    N("({} for the wide mlp)", CROSS, CROSS_ROW.format("max", "mlp 3L d=128", "cnn 4L d=256")),
    N("while two cnn seeds score {}", CROSS, CROSS_ROW.format("max", "cnn 4L d=256", "cnn 4L d=256")),
    N("the same way (cnn seeds {},", CROSS, CROSS_ROW.format("matched_depth", "cnn 4L d=256", "cnn 4L d=256")),
    N("mlp vs cnn {}); under", CROSS, CROSS_ROW.format("matched_depth", "mlp 3L d=64", "cnn 4L d=256")),
    N("two cnn seeds ({}) score below", CROSS, CROSS_ROW.format("mean", "cnn 4L d=256", "cnn 4L d=256")),
    N("the mlp vs the cnn ({})", CROSS, CROSS_ROW.format("mean", "mlp 3L d=64", "cnn 4L d=256")),
]

#: settings of the runs (grids, thresholds, configuration facts, published numbers), not results: each phrase's
#: numbers are exempt wherever the phrase occurs in the sections
PARAMETERS = [
    "13 parts", "2-core", "10% of its span", "0.9 Kornblith", "ReSi's tests 3-5", "tests 1-2 and 6", "4-job grid",
    "the 4 group-wise", "4 classes, 1,500 sentences, 300 probe", "3 pre-norm blocks, dim 32", "1,000-node",
    "fanout 4", "2 message-passing layers, width 32", "30% of the nodes", "8 conv", "1,024-dimensional",
    "N = 2..K", "σ = 0.01", "N >= 3", "<= 0.1", "(32, 128, 512)", "D = 8, 64", "N = 4096", "σ = 0.01, 0.1, 0.5",
    "1 − ρ", "5 %", "10 seed pairs", "ρ >= 0.8", "Not after 5 seeds", "2 seeds each", "3 mlp seeds",
    "weight noise 0.1", "100 permutations, 50 bootstrap", "95%", "100 times", "noise of 0.1 unit", "D = 64",
    "N = 16", "N = 128", "N = 512", "N = 1024", "D = 16", "D = 256", "below 0.1", "N ≈ 9·D", "over 5 seeds",
    "the 5 seeds", "from N = 64", "3-hidden-layer", "128-unit", "1 = best", "Tiny-10", "2-hop", "U(0, r_max)", "group parts tests 3-5", "of 0 from",
    "CKA ≥ 0.9 and CCA near 0", "MNIST-1D (1-D signals", "style; 1-D convs", "the 4-job", "up to 640 dimensions",
    "(5 compared layers", "4 seeds, 6",
]
#: one run's wall/CPU times and job counts (from its log, not a table)
RUN_LOG = ["(10 jobs; with", "66 s wall clock and 66 CPU seconds", "machine at load 2", "jobs 10, 7 and 7 s",
           "284 jobs", "19 min 43 s", "5 min 18 s", "598 s", "5 min 33 s", "627 s", "5-minute target", "family 6, model 207", "up to 1.5", "Spearman ρ ≥ 0.9 (0.96", "Zen 4 and Zen 5 VMs", "8 min 59.5 s", "1,009 s", "7 min 24 s-9 min 13 s", "840-1,032 s", "8 min 20 s-10 min 19 s", "940-1,172 s", "6 min 37 s-8 min 12 s", "753-928 s", "7.1-10.8 s", "9.1-13.9 s", "7 min 28 s-7 min 38 s", "846-863 s", "8.2-8.6 s", "11-20 %", "6 min 18 s-7 min 28 s", "709-847 s", "7.4-10.4 s", "by 15 %", "30 minutes apart", "10-12 s", "3 min 34 s", "402 s", "6.3 s", "7.4-8.4 s", "1.5x faster", "2.0e-10", "1.57e-9", "2.1e-7", "3.3e-16", "near 0.2", "family 26, Zen 5", "Zen 4", "Zen 5", "~1e-17", "~1e-14", "0.83 instead of 0.80", "130 instead of 121 significant", "from 17.3", "4.2% / 1.7%", "3.3% / 1.9%", "every unit are 0", "1.44e-10", "1,419 s", "7 min 51 s", "1,452 s", "54 min", "near 10", "101,998 values", "53 s", "34 s", "under 5 s", "70% of the time"]
#: the earlier digits run of the deeper vision model (its numbers are in the exempt "How we got there" paragraph)
DEEP = ["(0.74 on 8x8 digits)"]  # the earlier digits run of vision_deep, in the "How we got there" paragraph
#: paragraphs exempt as a whole (from this start to the next bold paragraph or the section's end), and why
PARAGRAPHS = {
    "Cost, measured as CPU seconds": "RUN_LOG: CPU seconds of single runs of the new parts, from their logs",
    "**Layer identification (Kornblith et al.) on the deeper network": "checked by tests/test_readme_vision_deep.py "
                                                                        "against paper/data/vision_deep_layer_identification.csv",
    "**How we got there, and the other domains.": "RUN_LOG: an earlier digits run of vision_deep and quick checks "
                                                   "outside the sweep, in no table",
}

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?!\w)")


def sections(text: str) -> str:
    """The checked sections, whitespace collapsed, the rank table (checked by test_readme.py) and code left out."""
    parts = re.split(r"^## ", text, flags=re.M)
    kept = [p for p in parts if p.startswith(SECTIONS)]
    assert len(kept) == len(SECTIONS), f"README sections not found: {SECTIONS}"
    body = "\n".join(kept)
    body = re.sub(r"```.*?```", " ", body, flags=re.S)
    body = re.sub(r"^\| measure \| family \| rank_score.*?(?=\n\n)", " ", body, flags=re.S | re.M)
    return " ".join(body.replace("−", "-").split())


def _norm(phrase: str) -> str:
    return " ".join(phrase.replace("−", "-").split())


def _paragraph_spans(text: str, starts: list[str]) -> list[tuple[int, int]]:
    """Spans exempted whole: from a listed paragraph start to the next bold paragraph start or section end."""
    spans = []
    for start in starts:
        for m in re.finditer(re.escape(_norm(start)), text):
            end = text.find(" **", m.end())
            spans.append((m.start(), end if end > 0 else len(text)))
    return spans


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.phrase[:60])
def test_readme_number_matches_its_table(check):
    text = sections(README.read_text())
    expected = _norm(check.phrase).replace("{}", check.text(), 1)
    pattern = re.escape(expected).replace(r"§", r"[-\d.]+").replace(re.escape("{}"), r"[-\d.,%]+")
    assert re.search(pattern, text), (
        f"README should say {expected!r} (paper/data/{check.table}, {check.where or 'all rows'}: {check.column})")


def covered(text: str, data: Path = DATA) -> list[tuple[int, int]]:
    spans = []
    for check in CHECKS:
        expected = _norm(check.phrase).replace("{}", check.text(data), 1)
        offset = _norm(check.phrase).index("{}")
        pattern = re.escape(expected).replace(r"§", r"[-\d.]+").replace(re.escape("{}"), r"[-\d.,%]+")
        for m in re.finditer(pattern, text):
            # the placeholder's position in the match: § fields before it may differ in length
            head = re.match(re.escape(_norm(check.phrase)[:offset]).replace(r"§", r"[-\d.]+"), text[m.start():])
            start = m.start() + (head.end() if head else offset)
            spans.append((start, start + len(check.text(data))))
    for phrase in PARAMETERS + RUN_LOG + DEEP:
        spans += [(m.start(), m.end()) for m in re.finditer(re.escape(_norm(phrase)), text)]
    spans += _paragraph_spans(text, list(PARAGRAPHS))
    spans += [(m.start(), m.end()) for m in re.finditer(r"`[^`]*`", text)]  # code: names, not numbers
    return spans


def unchecked_numbers(text: str, data: Path = DATA) -> list[str]:
    spans = covered(text, data)
    return [f"{m.group()!r} in ...{text[max(0, m.start() - 50):m.end() + 30]}..."
            for m in NUMBER.finditer(text) if not any(a <= m.start() and m.end() <= b for a, b in spans)]


def test_every_number_is_checked_or_declared():
    missing = unchecked_numbers(sections(README.read_text()))
    assert not missing, ("numbers in the README's result sections that no check covers (add an N(...) row to "
                         "CHECKS, or the phrase to PARAMETERS / RUN_LOG):\n" + "\n".join(missing))


def test_a_changed_table_value_fails_its_check(tmp_path):
    """The checks read the tables: a changed value in a copy of paper/data changes the expected text."""
    check = next(c for c in CHECKS if c.table == CKA and c.where == "n == 16 and d == 64")
    frame = pd.read_csv(DATA / CKA)
    frame.loc[frame["n"].eq(16) & frame["d"].eq(64), "cka_linear"] = 0.5
    frame.to_csv(tmp_path / CKA, index=False)
    assert check.text(tmp_path) == "0.50" != check.text()
    expected = _norm(check.phrase).replace("{}", check.text(tmp_path))
    assert expected not in sections(README.read_text())


def test_scan_finds_an_unlisted_number():
    text = sections(README.read_text()) + " Linear CKA found 0.77 of the layers."
    assert any(m.startswith("'0.77'") for m in unchecked_numbers(text))
