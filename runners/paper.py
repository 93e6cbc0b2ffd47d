"""Build the paper from the results: ``python -m runners.paper [--results results] [--no-sweeps]``.

Reads the default benchmark (``results/benchmark/``, from ``python -m runners.sweep``) and the flicker and
solutions sweeps (``results/flicker/``, ``results/solutions/``), then

1. writes the generated fragments under ``paper/generated/``: every in-text number as a LaTeX macro
   (``numbers.tex``), the tables (``*_table.tex``, ``ranks_full.tex``) and the figures (``figures/*.png``,
   copied from the sweeps);
2. copies the small processed tables the paper uses to the tracked ``paper/data/`` (the rank table, the
   benchmark's quality statistics, every number with the table it came from in ``numbers.csv``) and the summary
   tables the README's result sections quote (:func:`readme_tables`, including those of the small
   ``sweep=significance`` and ``sweep=cross_model`` runs when present), so a reader can check the README and
   the paper without rerunning (``tests/test_readme_numbers.py`` does);
3. compiles ``paper/build/paper.pdf`` with latexmk (pdflatex + bibtex; Debian: latexmk,
   texlive-latex-recommended, texlive-fonts-recommended).

A missing benchmark stops the build naming the command to run (it takes about 4-5 minutes on 2 cores). The
flicker and solutions sweeps (about 2 minutes each) are run by this command when their results are missing,
unless ``--no-sweeps`` is given, in which case the build stops naming them. Nothing in ``generated/`` is
written by hand: change a result and the PDF changes.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.storage import read_parquet

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "paper"
#: the sweeps the paper reads, the command that makes each, and whether this command may run it itself
SWEEPS = {
    "benchmark": ("uv run python -m runners.sweep", False),
    "flicker": ("uv run python -m runners.sweep sweep=flicker", True),
    "solutions": ("uv run python -m runners.sweep sweep=solutions", True),
}
#: the files of each sweep the paper needs (relative to results/<sweep>/)
NEEDS = {
    "benchmark": ["scores.parquet", "evaluations.parquet", "tables/ranks.csv", "tables/rank_differences.csv",
                  "tables/ranks.tex", "figures/ranks.png", "figures/layer_identification.png",
                  "figures/pc_deletion.png", "figures/robustness.png"],
    "flicker": ["tables/flicker.csv", "figures/flicker.png"],
    "solutions": ["tables/solutions.csv", "figures/solutions.png"],
}
#: the quality statistic of each ranked test: (task, statistic, what it asks), as in tasks.benchmark_tests.QUALITY
TESTS = {
    "accuracy_correlation": "ReSi 1: Spearman of representational distance and accuracy difference over seed pairs",
    "jsd_correlation": "ReSi 2: Spearman of representational distance and output JSD",
    "disagreement_correlation": "ReSi 2: Spearman of representational distance and prediction disagreement",
    "label_randomization": "ReSi 3: AUPRC of same-level vs different-level pairs (random labels)",
    "shortcut_affinity": "ReSi 4: AUPRC, shortcut marker reliability",
    "augmentation": "ReSi 5: AUPRC, training input noise",
    "layer_monotonicity": "ReSi 6: similarity falls with layer distance (Spearman score)",
    "layer_identification": "Kornblith et al.: layer i of one seed is most like layer i of another (accuracy)",
    "pc_deletion": "Ding et al.: Spearman of drift and probe accuracy loss as PCs are deleted",
}


class MissingResults(FileNotFoundError):
    """A sweep the paper needs has not been run (the message names the command)."""


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, where it is, the command that regenerates it and its measured wall time."""

    claim: str
    where: str
    command: str
    runtime: str
    runtime_source: str


#: wall time of `python -m runners.paper --no-sweeps` with every result present: 36.7 s measured with /usr/bin/time
#: on the 2-core development machine while other work shared it (5.8 s user + 1.2 s system of Python and TeX)
PAPER_BUILD_TIME = "37 s"
#: Every claim of the paper and how to regenerate it. Times: wall clock on a 2-core machine without a GPU,
#: from an empty cache unless said otherwise; the source of each time is named.
CLAIMS = [
    Claim("Rank scores with 95% bootstrap intervals, the number of significant pairwise differences, best and "
          "worst measure (ranks table and figure)", "Results", "uv run python -m runners.sweep",
          "3 min 34 s", "README (empty cache)"),
    Claim("Mean position of each family in the rank order (families table)", "Results",
          "uv run python -m runners.sweep", "same run", "README"),
    Claim("Layer identification accuracy of the CCA family, the RSM family and linear CKA", "Results",
          "uv run python -m runners.sweep", "same run", "README"),
    Claim("Fraction of principal components deleted before linear CKA reacts", "Results",
          "uv run python -m runners.sweep", "same run", "README"),
    Claim("Median weight-noise scale that moves a measure as far as retraining", "Results",
          "uv run python -m runners.sweep", "same run", "README"),
    Claim("All of the above again from the benchmark's existing scores (analyses only)", "Results",
          "uv run python -m runners.analyze --sweep benchmark", "about 40 s", "README"),
    Claim("Bit flicker; sigma_10 of the weight distance, the activation-region score and disagreement", "Flicker",
          "uv run python -m runners.sweep sweep=flicker", "1 min 51 s", "docs/flicker_and_solutions.md"),
    Claim("Cross match flicker of exact-Jaccard vs correlation matching; MinHash hash-seed flicker", "Flicker",
          "uv run python -m runners.sweep sweep=flicker", "same run", "docs/flicker_and_solutions.md"),
    Claim("Weight distance and disagreement of retrained models to their origin and between seeds; origin "
          "recognised in weight space", "Solutions", "uv run python -m runners.sweep sweep=solutions", "1 min 30 s",
          "docs/flicker_and_solutions.md"),
    Claim("This PDF: generated numbers, tables, figures and paper/data/ from the results above", "all",
          "uv run python -m runners.paper", PAPER_BUILD_TIME, "measured (/usr/bin/time), results present"),
]


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def require_results(results: Path, run_sweeps: bool) -> None:
    """Check every file the paper needs; run the small sweeps when allowed, else raise naming the command."""
    for sweep, (command, runnable) in SWEEPS.items():
        missing = [f for f in NEEDS[sweep] if not (results / sweep / f).exists()]
        if not missing:
            continue
        if runnable and run_sweeps:
            print(f"[paper] results/{sweep} lacks {', '.join(missing)}: running `{command}` (about 2 minutes)",
                  flush=True)
            overrides = command.split("runners.sweep", 1)[1].split()
            subprocess.run([sys.executable, "-m", "runners.sweep", *overrides, f"results_dir={results.resolve()}"],
                           cwd=ROOT, check=True)
            missing = [f for f in NEEDS[sweep] if not (results / sweep / f).exists()]
            if not missing:
                continue
        raise MissingResults(f"the paper needs results/{sweep}/ ({', '.join(missing)} missing); run `{command}`"
                             + ("" if runnable else " first (about 4-5 minutes on 2 cores)"))


def _read(results: Path, sweep: str, name: str) -> pd.DataFrame:
    path = results / sweep / name
    frame = read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if frame is None:
        raise MissingResults(f"cannot read {path}; run `{SWEEPS[sweep][0]}`")
    return frame


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------


def _tex(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(table.get(c, c) for c in str(text)).replace("--", "-{}-")  # no en-dash ligature in options


def _tt_list(names: list[str]) -> str:
    return ", ".join("\\texttt{" + _tex(n) + "}" for n in names)


def _fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "$\\infty$"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.{digits}g}"  # 13.5, 3.9, 0.56, 0.043, 0.0015


def _pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}\\%"


class Numbers:
    """The paper's macros: name -> (LaTeX text, raw value, source)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, object, str]] = {}

    def add(self, name: str, text: str, value: object, source: str) -> None:
        if not name.isalpha():
            raise ValueError(f"macro name {name!r} must be letters only")
        self.items[name] = (text, value, source)

    def tex(self) -> str:
        lines = ["% generated by runners.paper from results/: do not edit"]
        lines += [f"\\newcommand{{\\{name}}}{{{text}}}" for name, (text, _, _) in self.items.items()]
        return "\n".join(lines) + "\n"

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"macro": name, "text": text, "value": value, "source": source}
                             for name, (text, value, source) in self.items.items()])


def _mean(frame: pd.DataFrame, **where: object) -> float:
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        mask &= frame[column].isin(value) if isinstance(value, (list, tuple, set)) else frame[column].eq(value)
    values = pd.to_numeric(frame.loc[mask, "value"], errors="coerce").dropna()
    finite = values[np.isfinite(values)]
    if len(finite):
        return float(finite.mean())
    return float(values.iloc[0]) if len(values) and (values == values.iloc[0]).all() else float("nan")  # all inf


def benchmark_numbers(results: Path, numbers: Numbers) -> dict[str, pd.DataFrame]:
    scores = _read(results, "benchmark", "scores.parquet")
    evaluations = _read(results, "benchmark", "evaluations.parquet")
    ranks = _read(results, "benchmark", "tables/ranks.csv")
    differences = _read(results, "benchmark", "tables/rank_differences.csv")
    src = "results/benchmark/"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    numbers.add("SimbenchVersion", project["version"], project["version"], "pyproject.toml")
    commits = scores["git_commit"].astype(str).value_counts()
    numbers.add("ResultsCommit", _tex(commits.index[0][:10]), commits.index[0], src + "scores.parquet git_commit")
    models = set(scores["model_a"]) | set(scores["model_b"])
    pairs = scores[scores["model_a"] != scores["model_b"]].drop_duplicates(["model_a", "model_b"])
    numbers.add("BenchModels", str(len(models)), len(models), src + "scores.parquet")
    numbers.add("BenchScoreRowsText", f"{len(scores):,}", len(scores), src + "scores.parquet")
    numbers.add("BenchPairsText", f"{len(pairs):,}", len(pairs), src + "scores.parquet")
    numbers.add("NMeasuresRegistered", str(scores["measure"].nunique()), scores["measure"].nunique(),
                src + "scores.parquet")
    archs = sorted(set(scores["arch_a"].dropna()))
    datasets = sorted(set(scores["dataset"].dropna())) if "dataset" in scores.columns else []
    numbers.add("BenchArchs", str(len(archs)), len(archs), src + "scores.parquet")
    zoo = (f"The default benchmark's models are the architectures {_tt_list(archs)} "
           f"trained on {_tt_list(datasets) or 'the embedded data'}.")
    numbers.add("ZooDescription", zoo, "; ".join(archs + datasets), src + "scores.parquet")
    numbers.add("ZooShort", f"{len(archs)} small architectures on {', '.join(_tex(d) for d in datasets)}",
                len(archs), src + "scores.parquet")

    ranked = ranks.sort_values("rank_score", kind="stable").reset_index(drop=True)
    numbers.add("NRanked", str(len(ranked)), len(ranked), src + "tables/ranks.csv")
    numbers.add("NRankedOthers", str(len(ranked) - 1), len(ranked) - 1, src + "tables/ranks.csv")
    tests = [t for t in TESTS if t in ranks.columns]
    numbers.add("NTests", str(len(tests)), len(tests), src + "tables/ranks.csv")
    cells = evaluations[evaluations["task"].eq("ranks") & evaluations["statistic"].str.startswith("rank_")
                        & evaluations["arch"].notna()]
    per_test = cells.groupby("statistic")["arch"].nunique()
    cell_text = str(int(per_test.min())) if per_test.min() == per_test.max() else f"{per_test.min()}--{per_test.max()}"
    numbers.add("CellsPerTest", cell_text, cell_text, src + "evaluations.parquet")
    for prefix, row in (("Top", ranked.iloc[0]), ("Bottom", ranked.iloc[-1])):
        numbers.add(f"{prefix}Measure", _tex(row["measure"]), row["measure"], src + "tables/ranks.csv")
        numbers.add(f"{prefix}Score", f"{row['rank_score']:.1f}", row["rank_score"], src + "tables/ranks.csv")
        numbers.add(f"{prefix}Low", f"{row['rank_score_ci_low']:.1f}", row["rank_score_ci_low"], src + "tables/ranks.csv")
        numbers.add(f"{prefix}High", f"{row['rank_score_ci_high']:.1f}", row["rank_score_ci_high"], src + "tables/ranks.csv")
    top_beats = int(ranked.iloc[0]["n_significantly_better_than"])
    numbers.add("TopBeats", str(top_beats), top_beats, src + "tables/ranks.csv")
    n_sig = int(differences["significant"].sum())
    numbers.add("NSignificantPairs", f"{n_sig:,}", n_sig, src + "tables/rank_differences.csv")
    numbers.add("NPairs", f"{len(differences):,}", len(differences), src + "tables/rank_differences.csv")
    from tasks.benchmark_tests import N_BOOT_RANKS

    numbers.add("RankBootReplicates", f"{N_BOOT_RANKS:,}", N_BOOT_RANKS, "tasks/benchmark_tests.py")

    families = (ranked.assign(position=ranked["rank_score"].rank(method="average"))
                .groupby("family").agg(n=("measure", "size"), mean_position=("position", "mean"),
                                       best=("measure", "first"), members=("measure", list))
                .sort_values("mean_position").reset_index())
    for prefix, row in (("Best", families.iloc[0]), ("Worst", families.iloc[-1])):
        numbers.add(f"{prefix}Family", _tex(row["family"]), row["family"], src + "tables/ranks.csv")
        numbers.add(f"{prefix}FamilyPosition", f"{row['mean_position']:.1f}", row["mean_position"],
                    src + "tables/ranks.csv")

    layer_id = evaluations[evaluations["task"].eq("layer_identification") & evaluations["statistic"].eq("layer_identification")]
    family_of = ranks.set_index("measure")["family"]
    layer_id = layer_id.assign(family=layer_id["measure"].map(family_of))
    for name, where in (("LayerIdCCA", {"family": "cca"}), ("LayerIdRSM", {"family": "rsm"}),
                        ("LayerIdCKA", {"measure": "cka_linear"})):
        value = _mean(layer_id, **where)
        numbers.add(name, f"{value:.2f}", value, src + "evaluations.parquet (layer_identification)")
    n_layers = scores.loc[scores["pair_type"].eq("seed"), ["arch_a", "layer_a"]].drop_duplicates().groupby("arch_a").size()
    chance = float((1 / n_layers).mean()) if len(n_layers) else float("nan")
    numbers.add("LayerIdChance", f"{chance:.2f}", chance, src + "scores.parquet (layers per architecture)")
    react = _mean(evaluations, task="pc_deletion", measure="cka_linear", statistic="pc_fraction_at_reaction")
    numbers.add("PcCkaReactPercent", "n/a" if math.isnan(react) else f"{100 * react:.0f}", react,
                src + "evaluations.parquet (pc_deletion)")
    equivalent = evaluations[evaluations["task"].eq("seed_variability")
                             & evaluations["statistic"].eq("equivalent_noise_scale")]["value"]
    equivalent = pd.to_numeric(equivalent, errors="coerce").replace([np.inf, -np.inf], np.nan).dropna()
    median = float(equivalent.median()) if len(equivalent) else float("nan")
    numbers.add("EquivalentNoiseMedian", _fmt(median), median, src + "evaluations.parquet (seed_variability)")
    quality = (evaluations[evaluations["task"].eq("ranks") & evaluations["statistic"].str.startswith("rank_")
                           & evaluations["arch"].notna()])
    return {"ranks": ranked, "families": families, "quality": quality}


def _flicker_value(table: pd.DataFrame, **where: object) -> float:
    return _mean(table, **where)


def flicker_numbers(results: Path, numbers: Numbers) -> pd.DataFrame:
    table = _read(results, "flicker", "tables/flicker.csv")
    src = "results/flicker/tables/flicker.csv"
    zoo = table[table["fixture"].eq("zoo")] if "fixture" in table.columns else table
    scales = np.sort(pd.to_numeric(zoo["scale"], errors="coerce").dropna().unique())

    def nearest(target: float) -> float:
        positive = scales[scales > 0]
        return float(positive[np.argmin(np.abs(np.log(positive) - np.log(target)))]) if len(positive) else target

    rows = []
    for arch, suffix in (("mlp", "Mlp"), ("cnn", "Cnn")):
        at = zoo[zoo["arch"].eq(arch)]
        values = {
            "BitFlicker": (_flicker_value(at, layer="all", measure="signature_bits", statistic="bit_flicker",
                                          scale=nearest(1e-2)), _fmt),
            # sigma_10 rows: the weight distance is compared on layer "weights", the activation region on
            # "network" (whole-network scores), disagreement on "output"
            "SigmaTenWeights": (_flicker_value(at, measure="weight_distance", layer="weights", statistic="sigma10"),
                                _fmt),
            "SigmaTenRegion": (_flicker_value(at, measure="activation_region", layer="network", statistic="sigma10"),
                               _fmt),
            "SigmaTenDisagreement": (_flicker_value(at, measure="disagreement", statistic="sigma10"), _fmt),
            "CrossExact": (_flicker_value(at, layer="all", measure="activation_region", statistic="match_flicker_cross",
                                          scale=nearest(1e-3)), _pct),
            "CrossCorr": (_flicker_value(at, layer="all", measure="correlation_matching",
                                         statistic="match_flicker_cross", scale=nearest(1e-3)), _pct),
            "MinhashSeed": (_flicker_value(at, layer="all", measure="activation_region_minhash",
                                           statistic="minhash_seed_flicker"), _pct),
        }
        for name, (value, fmt) in values.items():
            numbers.add(name + suffix, fmt(value), value, src)
            rows.append({"arch": arch, "number": name, "value": value})
    return pd.DataFrame(rows)


def solutions_numbers(results: Path, numbers: Numbers) -> pd.DataFrame:
    table = _read(results, "solutions", "tables/solutions.csv")
    src = "results/solutions/tables/solutions.csv"
    starts = [w for w in table["warm_start"].dropna().unique() if str(w) not in ("none", "nan", "")]
    retrained = sorted((w for w in starts if "epochs=0" not in str(w)), key=str)
    noises = sorted({_noise_of(w) for w in retrained} - {None})
    high = max(noises) if noises else float("nan")
    numbers.add("SolutionsNoises", ", ".join(f"{n:g}" for n in noises), noises, src)
    numbers.add("SolutionsHighNoise", f"{high:g}", high, src)
    epochs = sorted({_epochs_of(w) for w in retrained} - {None, 0})
    numbers.add("SolutionsEpochs", ", ".join(str(e) for e in epochs), epochs, src)
    at_high = [w for w in retrained if _noise_of(w) == high]
    rows = []
    closer = []
    for arch, suffix in (("mlp", "Mlp"), ("cnn", "Cnn")):
        t = table[table["arch"].eq(arch)]
        values = {
            "WeightToOrigin": (_mean(t, warm_start=at_high, measure="weight_distance", statistic="mean_vs_origin"), _fmt),
            "WeightSeeds": (_mean(t, measure="weight_distance", statistic="mean_seed_pairs"), _fmt),
            "DisagreeOrigin": (_mean(t, warm_start=at_high, measure="disagreement", statistic="mean_vs_origin"), _pct),
            "DisagreeSeeds": (_mean(t, measure="disagreement", statistic="mean_seed_pairs"), _pct),
            "WeightDriftSeedUnits": (_mean(t, warm_start=at_high, measure="weight_distance",
                                           statistic="drift_in_seed_units"), _fmt),
        }
        closer.append(_mean(t, warm_start=retrained, measure="weight_distance", statistic="origin_closer_rate"))
        for name, (value, fmt) in values.items():
            numbers.add(name + suffix, fmt(value), value, src)
            rows.append({"arch": arch, "number": name, "value": value})
    worst = float(np.nanmin(closer)) if not all(math.isnan(c) for c in closer) else float("nan")
    numbers.add("OriginCloserWeightsMin", _pct(worst), worst, src)
    return pd.DataFrame(rows)


def _noise_of(warm_start: object) -> float | None:
    for part in str(warm_start).replace(",", " ").split():
        if part.startswith("scale="):
            return float(part.split("=", 1)[1])
    return None


def _epochs_of(warm_start: object) -> int | None:
    for part in str(warm_start).replace(",", " ").split():
        if part.startswith("epochs="):
            return int(float(part.split("=", 1)[1]))
    return None


# --------------------------------------------------------------------------------------------------
# The README's tables
# --------------------------------------------------------------------------------------------------

#: the small sweeps whose summary tables the README quotes (not needed by the PDF): copied when present
README_SWEEPS = {
    "significance": "uv run python -m runners.sweep sweep=significance",
    "cross_model": "uv run python -m runners.sweep sweep=cross_model",
}


def _domain_of_arch(scores: pd.DataFrame) -> pd.Series:
    """Architecture -> its domain (empty for results older than the domain column)."""
    if "domain" not in scores.columns:
        return pd.Series(dtype=object)
    return scores.dropna(subset=["arch_a", "domain"]).drop_duplicates("arch_a").set_index("arch_a")["domain"]


def ranks_by_domain_summary(ranks_by_domain: pd.DataFrame, evaluations: pd.DataFrame,
                            scores: pd.DataFrame) -> pd.DataFrame:
    """Long table (statistic, key, domain, value): each family's mean rank score per domain and overall
    (``family_mean_rank_score``), each family's mean position in the overall order (``family_mean_position``,
    as the paper's families table), the Spearman correlation of the domains' rank scores (``spearman``, key =
    the other domain) and the number of (test, architecture) cells per domain (``cells``)."""
    columns = [c for c in ranks_by_domain.columns if c not in ("measure", "family")]
    rows = [{"statistic": "family_mean_rank_score", "key": family, "domain": domain, "value": value}
            for family, means in ranks_by_domain.groupby("family")[columns].mean().iterrows()
            for domain, value in means.items()]
    position = ranks_by_domain["overall"].rank(method="average")  # 1 = best of the ranked measures
    rows += [{"statistic": "family_mean_position", "key": family, "domain": "overall", "value": value}
             for family, value in position.groupby(ranks_by_domain["family"]).mean().items()]
    rho = ranks_by_domain[columns].corr(method="spearman")
    rows += [{"statistic": "spearman", "key": other, "domain": domain, "value": rho.loc[domain, other]}
             for domain in columns for other in columns if domain != other]
    cells = evaluations[evaluations["task"].eq("ranks") & evaluations["statistic"].str.startswith("rank_")
                        & ~evaluations["statistic"].str.startswith("rank_score") & evaluations["arch"].notna()]
    cells = cells.assign(domain=cells["arch"].map(_domain_of_arch(scores))).drop_duplicates(["statistic", "arch"])
    rows += [{"statistic": "cells", "key": "", "domain": domain, "value": float(n)}
             for domain, n in cells.groupby("domain").size().items()]
    return pd.DataFrame(rows)


def measure_agreement_summary(evaluations: pd.DataFrame) -> pd.DataFrame:
    """One row per measure of the agreement analysis: its cluster (average linkage cut at
    ``tasks.measure_agreement.CLUSTER_RHO``), the cluster's size, and the sweep-wide numbers the README quotes
    (the most model pairs behind a correlation, the median Spearman over distinct measure pairs, the number of
    clusters) repeated on every row."""
    rows = evaluations[evaluations["task"].eq("measure_agreement") & evaluations["statistic"].eq("spearman")]
    if rows.empty:
        return pd.DataFrame()
    distinct = rows[rows["measure"] < rows["other_measure"]]
    clusters = rows.drop_duplicates("measure").set_index("measure")["cluster"].astype(int)
    sizes = clusters.map(clusters.value_counts())
    return pd.DataFrame({"measure": clusters.index, "cluster": clusters.to_numpy(), "cluster_size": sizes.to_numpy(),
                         "n_clusters": clusters.nunique(), "max_model_pairs": int(rows["n_pairs"].max()),
                         "median_spearman": float(pd.to_numeric(distinct["value"]).median())})


def readme_tables(results: Path, data: Path) -> list[str]:
    """Copy to ``data`` the small summary tables the README's result sections quote (``tests/test_readme.py``
    checks every number there against them). A source that is missing keeps the tracked copy and is named in
    the returned notes with the command that makes it."""
    notes: list[str] = []

    def table(sweep: str, name: str) -> pd.DataFrame | None:
        path = results / sweep / "tables" / name
        if path.exists():
            return pd.read_csv(path)
        notes.append(f"results/{sweep}/tables/{name} missing: paper/data/ keeps its copy "
                     f"(run `{README_SWEEPS.get(sweep, SWEEPS.get(sweep, ('',))[0])}`)")
        return None

    def write(frame: pd.DataFrame | None, name: str) -> None:
        if frame is not None and not frame.empty:
            frame.to_csv(data / name, index=False, float_format="%.6g")

    evaluations = _read(results, "benchmark", "evaluations.parquet")
    scores = _read(results, "benchmark", "scores.parquet")
    write(table("benchmark", "cka_bias.csv"), "cka_bias.csv")
    layer_id = table("benchmark", "layer_identification.csv")
    if layer_id is not None:
        from tasks.benchmark_tests import layer_identification_summary

        write(layer_identification_summary(layer_id), "layer_identification.csv")
    write(table("benchmark", "stop_searching.csv"), "stop_searching.csv")
    by_domain = table("benchmark", "ranks_by_domain.csv")
    write(by_domain, "ranks_by_domain.csv")
    if by_domain is not None:
        write(ranks_by_domain_summary(by_domain, evaluations, scores), "ranks_by_domain_summary.csv")
    sample = table("benchmark", "sample_size.csv")
    if sample is not None:  # the real seed pair beside its shuffled baseline (the independent inputs: cka_bias)
        pair = sample[~sample["source"].eq("independent")]
        pair = pair.assign(arch=pair["source"].str.split().str[0],
                           kind=np.where(pair["source"].str.endswith("shuffled"), "shuffled", "seed_pair"))
        write(pair.pivot(index=["arch", "measure", "family", "n", "d"], columns="kind", values="value")
              .reset_index().rename_axis(columns=None), "sample_size_pair.csv")
    robust = table("benchmark", "representation_robustness.csv")
    if robust is not None:
        write(robust[robust["statistic"].eq("drift")].drop(columns=["statistic"]), "representation_robustness.csv")
    pc = evaluations[evaluations["task"].eq("pc_deletion") & evaluations["statistic"].eq("pc_fraction_at_reaction")]
    write(pc[[c for c in ("arch", "layer", "measure", "value") if c in pc]].assign(
          domain=pc["arch"].map(_domain_of_arch(scores))),
          "pc_deletion_reaction.csv")
    write(measure_agreement_summary(evaluations), "measure_agreement.csv")
    significance = table("significance", "significance.csv")
    write(significance, "significance.csv")
    cross = table("cross_model", "cross_model.csv")
    write(cross, "cross_model.csv")
    return notes


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def ranks_table(ranks: pd.DataFrame) -> str:
    lines = [r"\begin{table}[tbp]\centering\small",
             r"\caption{Rank scores (ReSi's rule, 1 = best) with 95\% bootstrap intervals, and how many measures each "
             r"beats / loses to significantly (BH-adjusted, FDR 5\%). Generated from \texttt{tables/ranks.csv}.}",
             r"\label{tab:ranks}",
             r"\begin{tabular}{rllrrrr}\toprule",
             r"\# & measure & family & rank score & 95\% interval & better than & worse than \\\midrule"]
    for i, row in enumerate(ranks.itertuples(), start=1):
        lines.append(f"{i} & \\texttt{{{_tex(row.measure)}}} & {_tex(row.family)} & {row.rank_score:.1f} & "
                     f"{row.rank_score_ci_low:.1f}--{row.rank_score_ci_high:.1f} & "
                     f"{int(row.n_significantly_better_than)} & {int(row.n_significantly_worse_than)} \\\\")
    lines += [r"\bottomrule\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def families_table(families: pd.DataFrame, n_ranked: int) -> str:
    lines = [r"\begin{table}[tbp]\centering\small",
             rf"\caption{{The ranked measures by family, with the family's mean position in the rank order (1 = best of "
             rf"{n_ranked}). Generated from \texttt{{tables/ranks.csv}}.}}",
             r"\label{tab:families}",
             r"\begin{tabularx}{\linewidth}{lrrX}\toprule",
             r"family & measures & mean position & members (best first) \\\midrule"]
    for row in families.itertuples():
        members = ", ".join(f"\\texttt{{{_tex(m)}}}" for m in row.members)
        lines.append(f"{_tex(row.family)} & {row.n} & {row.mean_position:.1f} & {members} \\\\")
    lines += [r"\bottomrule\end{tabularx}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def tests_table(quality: pd.DataFrame) -> str:
    lines = [r"\begin{table}[tbp]\centering\small",
             r"\caption{The ranked tests, their quality statistic and their cells in this run. Generated from "
             r"\texttt{evaluations.parquet}.}",
             r"\label{tab:tests}",
             r"\begin{tabularx}{\linewidth}{lXrr}\toprule",
             r"test & quality statistic (higher is better) & cells & measures ranked \\\midrule"]
    for test, text in TESTS.items():
        part = quality[quality["statistic"].eq(f"rank_{test}")]
        if part.empty:
            continue
        ranked = part.dropna(subset=["value"])
        lines.append(f"\\texttt{{{_tex(test)}}} & {_tex(text)} & {part['arch'].nunique()} & {ranked['measure'].nunique()} \\\\")
    lines += [r"\bottomrule\end{tabularx}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def claims_table(claims: list[Claim]) -> str:
    lines = [r"\begin{small}", r"\begin{longtable}{p{0.33\linewidth}p{0.30\linewidth}p{0.08\linewidth}p{0.19\linewidth}}",
             r"\toprule claim & command & time (2 cores) & time from \\\midrule\endhead"]
    for c in claims:
        lines.append(f"{_tex(c.claim)} & \\texttt{{{_tex(c.command)}}} & {_tex(c.runtime)} & {_tex(c.runtime_source)} \\\\")
    lines += [r"\bottomrule", r"\end{longtable}", r"\end{small}"]
    return "\n".join(lines) + "\n"


def claims_markdown(claims: list[Claim]) -> str:
    """The claims table as it appears in the README."""
    lines = ["| claim | command | wall time, 2 cores | time from |", "|---|---|---|---|"]
    lines += [f"| {c.claim} | `{c.command}` | {c.runtime} | {c.runtime_source} |" for c in claims]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------------


def generate(results: Path, paper: Path = PAPER) -> Numbers:
    """Write paper/generated/ and paper/data/ from the results; return the numbers."""
    generated, data = paper / "generated", paper / "data"
    if generated.exists():
        shutil.rmtree(generated)
    (generated / "figures").mkdir(parents=True)
    data.mkdir(parents=True, exist_ok=True)
    numbers = Numbers()
    bench = benchmark_numbers(results, numbers)
    flicker = flicker_numbers(results, numbers)
    solutions = solutions_numbers(results, numbers)
    (generated / "numbers.tex").write_text(numbers.tex())
    (generated / "ranks_table.tex").write_text(ranks_table(bench["ranks"]))
    (generated / "families_table.tex").write_text(families_table(bench["families"], len(bench["ranks"])))
    (generated / "tests_table.tex").write_text(tests_table(bench["quality"]))
    (generated / "claims_table.tex").write_text(claims_table(CLAIMS))
    shutil.copyfile(results / "benchmark" / "tables" / "ranks.tex", generated / "ranks_full.tex")
    for sweep, files in NEEDS.items():
        for name in files:
            if name.startswith("figures/"):
                shutil.copyfile(results / sweep / name, generated / name)
    # the tracked, small processed tables (a few KB each)
    bench["ranks"].to_csv(data / "ranks.csv", index=False, float_format="%.4g")
    per_test = (bench["quality"].assign(test=lambda d: d["statistic"].str.removeprefix("rank_"))
                .pivot_table(index=["measure", "arch"], columns="test", values="value").reset_index())
    per_test.to_csv(data / "ranks_per_cell.csv", index=False, float_format="%.4g")
    pd.concat([flicker.assign(sweep="flicker"), solutions.assign(sweep="solutions")]).to_csv(
        data / "flicker_solutions.csv", index=False, float_format="%.4g")
    numbers.table().to_csv(data / "numbers.csv", index=False)
    (data / "claims.md").write_text(claims_markdown(CLAIMS))
    for note in readme_tables(results, data):
        print(f"[paper] {note}", flush=True)
    return numbers


def compile_pdf(paper: Path = PAPER) -> Path:
    """latexmk -pdf into paper/build/; raise with the log's errors when TeX fails or is missing."""
    latexmk = shutil.which("latexmk")
    if latexmk is None or shutil.which("pdflatex") is None:
        raise RuntimeError("latexmk and pdflatex are needed to compile the paper; on Debian: apt-get install "
                           "latexmk texlive-latex-recommended texlive-fonts-recommended")
    build = paper / "build"
    build.mkdir(exist_ok=True)
    proc = subprocess.run([latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
                           f"-outdir={build}", "paper.tex"], cwd=paper, capture_output=True, text=True, timeout=600)
    pdf = build / "paper.pdf"
    if proc.returncode != 0 or not pdf.exists():
        log = (build / "paper.log").read_text(errors="replace") if (build / "paper.log").exists() else proc.stdout
        lines = log.splitlines()
        # each TeX error line ("./file.tex:12: ..." with -file-line-error, or "! ...") and the two lines after it,
        # which show the offending input
        errors = [line for i, first in enumerate(lines) if first.startswith("!") or ".tex:" in first
                  for line in lines[i:i + 3]]
        raise RuntimeError(f"latexmk failed ({proc.returncode}); from {build / 'paper.log'}:\n"
                           + "\n".join(errors[-30:] or lines[-30:]))
    return pdf


def build(results: Path, run_sweeps: bool = True, paper: Path = PAPER) -> Path:
    require_results(results, run_sweeps)
    generate(results, paper)
    return compile_pdf(paper)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runners.paper", description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="results directory (default: results)")
    parser.add_argument("--no-sweeps", action="store_true",
                        help="do not run the flicker/solutions sweeps when their results are missing: fail instead")
    args = parser.parse_args(argv)
    try:
        pdf = build(Path(args.results), run_sweeps=not args.no_sweeps)
    except MissingResults as error:
        raise SystemExit(f"[paper] {error}") from None
    print(f"[paper] wrote {pdf} (fragments in {PAPER / 'generated'}, tracked tables in {PAPER / 'data'})")


if __name__ == "__main__":
    main()
