"""Every command the README shows is run (on a small grid where the README's grid is large) and does
what the README says; the README's rank table is the generated one.

The README is parsed (``simbench.readme.commands``: its ```bash blocks and inline `uv run ...` spans).
Each command must have a row in :data:`COMMANDS`: how it is checked and what it must do. A command
added to the README without a row fails ``test_every_readme_command_has_a_row`` with the line to add.

Kinds of rows:
- ``Plan(...)``: the command's overrides are planned in-process (Hydra composes and validates every
  job, nothing runs): the number of jobs and the results folder the README promises.
- ``Run(small, check)``: the command is run in a subprocess, as ``small`` (the same command on a small
  grid, ``{results}`` a temporary results folder) when the README's grid is large, and ``check`` looks
  at what it printed and wrote.
- ``Elsewhere(test, why)``: run by another test (named; the test must exist).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from simbench.readme import README, commands, normalise, rank_table, rank_table_differences

ROOT = Path(__file__).resolve().parents[1]
SIMBENCH = Path(sys.executable).with_name("simbench")
#: a composite sweep of one tiny part (the benchmark's shape, seconds of work) into results/benchmark
SMALL_BENCHMARK = "parts=[smoke] measures=fast results_dir={results}"


@dataclass(frozen=True)
class Plan:
    n_jobs: int
    folder: str
    parts: int = 0  # a composite sweep's number of parts
    check: Callable | None = None  # more checks on the plan and the normalised command line


@dataclass(frozen=True)
class Run:
    small: str | None  # the command on a small grid (None: the README's command as it is)
    check: Callable[[subprocess.CompletedProcess, Path], None]
    needs: tuple[str, ...] = field(default=())  # rows that must run first (they write what this one reads)


@dataclass(frozen=True)
class Elsewhere:
    test: str  # tests/<file>::<name>
    why: str


def _benchmark_ran(proc, results):
    # the composite's default joblib launcher runs the jobs of all its parts in one pool
    assert re.search(r"\[simbench\] 4 job\(s\) of 4 to run, \d+ at a time \(one pool for its one part\)", proc.stdout)
    assert "Summary of sweep 'benchmark'" in proc.stdout
    assert (results / "benchmark" / "scores.parquet").exists() and (results / "benchmark" / "evaluations.parquet").exists()


def _smoke_ran(proc, results):
    assert "Summary of sweep 'smoke'" in proc.stdout
    scores = pd.read_parquet(results / "smoke" / "scores.parquet")
    assert set(scores["pair_type"]) == {"seed", "perturbation"}


def _collected(proc, results):
    assert proc.returncode == 0 and "collected" in proc.stderr + proc.stdout
    assert (results / "benchmark" / "scores.parquet").exists()


def _analysed(sweep):
    def check(proc, results):
        assert f"Summary of sweep '{sweep}'" in proc.stdout and "[simbench] analysis 1/" in proc.stdout
        assert (results / sweep / "evaluations.parquet").exists()
    return check


def _catalogue_listed(proc, results):
    import measures

    assert proc.stdout.rstrip().endswith(f"{len(measures.names())} measures")
    assert all(name in proc.stdout for name in measures.names())


def _card(proc, results):
    assert proc.stdout.startswith("cka_linear  (rsm, similarity") and "reference:" in proc.stdout


def _docs_current(proc, results):
    assert (results / "measures.md").read_text() == (ROOT / "docs" / "measures.md").read_text(), (
        "docs/measures.md is out of date: uv run python -m measures docs --output docs/measures.md")


def _usage(proc, results):
    assert "usage: simbench COMMAND" in proc.stdout and all(c in proc.stdout for c in ("sweep", "measures", "analyze"))


def _launcher_on_command_line(plan, argv):
    assert plan.launcher == [] and "hydra/launcher=joblib" in plan.part_args


def _svcca_param(plan, argv):
    from hydra import initialize_config_dir

    from runners.sweep import CONF_DIR, _compose

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        assert _compose([a for a in argv if a != "sweep=noise"]).measures.params.svcca.tau == 0.95


def _three_measures(plan, argv):
    assert "measures.include=[cka_linear,svcca,disagreement]" in plan.part_args


#: README command (as `simbench.readme.normalise` spells it) -> how it is checked
COMMANDS: dict[str, Plan | Run | Elsewhere] = {
    "uv run python -m runners.sweep": Run(f"uv run python -m runners.sweep {SMALL_BENCHMARK}", _benchmark_ran),
    "uv run pytest": Elsewhere("tests", "the test suite itself (.ci/run runs it)"),
    "uv run simbench sweep sweep=smoke": Run("uv run simbench sweep sweep=smoke measures=fast results_dir={results}",
                                             _smoke_ran),
    "uv run simbench measures list": Run(None, _catalogue_listed),
    "uv run simbench analyze --sweep smoke": Run("uv run simbench analyze --sweep smoke --results {results}",
                                                 _analysed("smoke"), needs=("uv run simbench sweep sweep=smoke",)),
    "uv run python -m runners.sweep arch=mlp,cnn 'seed=range(5)' perturbation.scale=0,0.01,0.1": Plan(30, "grid"),
    "uv run python -m runners.sweep arch=mlp arch.depth=3 arch.width=128 'seed=range(3)' "
    "intervention.label_randomization=0,0.5": Plan(6, "grid"),
    "uv run python -m runners.sweep 'measures.include=[cka_linear,svcca,disagreement]' name=quick":
        Plan(284, "quick", parts=13, check=_three_measures),
    "uv run python -m runners.sweep sweep=noise measures.params.svcca.tau=0.95": Plan(60, "noise", check=_svcca_param),
    "uv run python -m runners.sweep sweep=noise": Plan(60, "noise"),
    "uv run python -m runners.sweep sweep=smoke": Plan(4, "smoke"),
    "uv run python -m runners.sweep hydra/launcher=joblib hydra.launcher.n_jobs=2":
        Plan(284, "benchmark", parts=13, check=_launcher_on_command_line),
    "uv run python -m runners.sweep sweep=none arch=cnn seed=3 perturbation.scale=0.1": Plan(1, "single"),
    "PYTHONPATH=/path/to/my/code uv run simbench sweep 'measures.modules=[my_pkg.my_measure]'": Elsewhere(
        "tests/integration/test_plugin_measure.py::test_a_configured_module_is_measured_and_ranked_from_any_folder",
        "writes my_pkg into a temporary folder on PYTHONPATH and runs a small sweep with measures.modules"),
    "PYTHONPATH=/path/to/my/code uv run simbench analyze --sweep benchmark --modules my_pkg.my_measure": Elsewhere(
        "tests/integration/test_plugin_measure.py::test_a_configured_module_is_measured_and_ranked_from_any_folder",
        "analyze --modules on that sweep"),
    "cp conf/local/template.yaml conf/local/default.yaml": Elsewhere(
        "tests/test_readme.py::test_site_template_exists", "would overwrite the reader's own site file"),
    "uv run python -m runners.sweep sweep=noise hydra/launcher=slurm": Plan(60, "noise"),
    "uv run python -m runners.sweep sweep=vision hydra/launcher=slurm_gpu runtime.device=cuda": Plan(12, "vision"),  # conf/sweep/vision.yaml: 3 seeds x 4 scales
    "uv run python -m runners.sweep sweep=smoke hydra/launcher=local": Plan(4, "smoke"),
    "uv run pytest tests/measures -k my_measure": Elsewhere("tests/measures/test_properties.py",
                                                            "generated per measure; my_measure is the reader's"),
    "uv run python -m measures catalogue": Elsewhere("tests/measures/test_catalogue.py::test_catalogue_file_is_the_registry",
                                                     "regenerating would write into the repository"),
    "uv run python -m measures docs --output docs/measures.md": Run(
        "uv run python -m measures docs --output {results}/measures.md", _docs_current),
    "uv run python -m measures info NAME": Run("uv run python -m measures info cka_linear", _card),
    "uv run python -m measures list": Run(None, _catalogue_listed),
    "uv run python -m runners.analyze --sweep benchmark": Run(
        "uv run python -m runners.analyze --sweep benchmark --results {results}", _analysed("benchmark"),
        needs=("uv run python -m runners.sweep",)),
    "uv run python -m runners.collect --sweep benchmark": Run(
        "uv run python -m runners.collect --sweep benchmark --results {results}", _collected,
        needs=("uv run python -m runners.sweep",)),
    "uv run python -m runners.sweep sweep=flicker": Plan(96, "flicker"),  # conf/sweep/flicker.yaml: 2 x 3 x 8 x 2
    "uv run python -m simbench.readme ranks": Elsewhere("tests/test_readme.py::test_readme_rank_table_is_generated",
                                                        "rewrites README.md"),
    "uv run simbench": Run(None, _usage),
    "uv run python -m runners.sweep sweep=solutions": Plan(70, "solutions"),
    "uv run python -m runners.compare a.pt b.pt --data probe.npz --arch mlp_small --reference c.pt": Elsewhere(
        "tests/runners/test_compare.py::test_verdict_ranks_the_perturbed_copy_closer_than_another_seed",
        "trains two seeds and a perturbed copy, saves checkpoints and runs this command on them"),
    "uv run python -m runners.compare A B '[--data' '...]' '[--measures' '...]' '[--reference' 'C]'": Elsewhere(
        "tests/runners/test_compare.py::test_every_number_equals_measures_compute", "the synopsis of the command above"),
    "uv run python -m runners.sweep sweep=byo 'byo.features=[a.npz,b.npz,c.npz]'": Elsewhere(
        "tests/zoo/test_byo.py::test_byo_sweep_on_feature_files", "writes the feature files and runs sweep=byo on them"),
    "uv run python -m runners.sweep sweep=byo byo.checkpoints=ckpts/ byo.probe=probe.npz 'byo.arch={name: mlp, width: 64}'":
        Elsewhere("tests/zoo/test_byo.py::test_byo_sweep_on_checkpoints_adds_weight_and_region_measures",
                  "writes the checkpoints and the probe set and runs sweep=byo on them"),
    "uv run python -m runners.paper": Elsewhere(
        "tests/runners/test_paper.py::test_paper_compiles_and_a_changed_result_changes_the_pdf",
        "builds the paper from small results the test writes (the full build needs the default benchmark)"),
    "uv run python -m runners.report --sweep NAME": Elsewhere(
        "tests/runners/test_report.py::test_report_renders_in_headless_chromium", "writes and renders the report of a smoke sweep"),
}

README_COMMANDS = commands(README.read_text())


def test_every_readme_command_has_a_row():
    missing = [c for c in README_COMMANDS if c not in COMMANDS]
    assert not missing, ("README commands without a row in tests/test_readme.py COMMANDS (add each with its "
                         "small-grid form and what it must do):\n" + "\n".join(f"    {c!r}: ...," for c in missing))
    for row in COMMANDS.values():
        if isinstance(row, Elsewhere) and row.test != "tests":
            file, _, name = row.test.partition("::")
            assert (ROOT / file).exists() and name in (ROOT / file).read_text(), row.test


def _argv(command: str) -> list[str]:
    """The command without ``uv run``, with this interpreter (``uv run`` runs the same environment)."""
    words = shlex.split(command)
    assert words[:2] == ["uv", "run"], command
    words = words[2:]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    if words[0] == "simbench":
        return [str(SIMBENCH), *words[1:]]
    raise AssertionError(f"no way to run {command!r}")


@pytest.mark.parametrize("command", [c for c, row in COMMANDS.items() if isinstance(row, Plan)])
def test_readme_sweep_plans(command):
    from runners.sweep import normalise as normalise_argv
    from runners.sweep import plan

    row = COMMANDS[command]
    argv, _ = normalise_argv(_argv(command)[3:])  # after python -m runners.sweep
    p = plan(argv)
    assert (p.n_jobs, p.sweep_dir.name, len(p.parts)) == (row.n_jobs, row.folder, row.parts), command
    if row.check:
        row.check(p, argv)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("readme_results")


@pytest.fixture(scope="module")
def ran(results):
    """Runs a command row once per module (rows that read another's output name it in ``needs``)."""
    done: dict[str, subprocess.CompletedProcess] = {}

    def run(command: str) -> subprocess.CompletedProcess:
        if command not in done:
            row = COMMANDS[command]
            for first in row.needs:
                run(first)
            small = (row.small or command).format(results=results)
            proc = subprocess.run(_argv(small), cwd=ROOT, capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, f"{small}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            done[command] = proc
        return done[command]

    return run


@pytest.mark.parametrize("command", [c for c, row in COMMANDS.items() if isinstance(row, Run)])
def test_readme_commands_run(command, ran, results):
    COMMANDS[command].check(ran(command), results)


def test_site_template_exists():
    assert (ROOT / "conf" / "local" / "template.yaml").exists()
    assert not (ROOT / "conf" / "local" / "default.yaml").exists() or "default.yaml" in (ROOT / ".gitignore").read_text()


def check_rank_table(generated: Path) -> None:
    """README's rank table equals ``generated`` (a ranks.md written by the ranks analysis), row by row."""
    diffs = rank_table_differences(README, generated)
    assert not diffs, (f"README's rank table differs from {generated} in {len(diffs)} row(s) "
                       f"(`uv run python -m simbench.readme ranks --generated {generated}` copies it in):\n"
                       + "\n".join(diffs[:10]))


#: the generated table the README's must equal: the default benchmark's, where it has been run here
GENERATED_RANKS = ROOT / "results" / "benchmark" / "tables" / "ranks.md"
#: the CPU vendor of the machines that generated the README's table (an AMD EPYC, Zen 5; the Zen 4 VM wrote
#: the same table). On an Intel Xeon the same code trains different models (other kernels run there:
#: BENCHMARKS.md, "From an empty cache, twelfth session"), so every rank score moves a little.
README_RANKS_VENDOR = "AuthenticAMD"


def cpu_vendor() -> str | None:
    """``vendor_id`` of /proc/cpuinfo (None where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    found = re.search(r"^vendor_id\s*:\s*(\S+)", text, flags=re.M)
    return found.group(1) if found else None


def table_cells(row: str) -> list[str]:
    """The stripped cells of one Markdown table row."""
    return [c.strip() for c in row.strip("|").split("|")]


def rank_scores(table: list[str]) -> dict[str, float]:
    """measure -> rank_score of a rank table's rows."""
    return {cells[0]: float(cells[2]) for cells in map(table_cells, table[2:])}


def check_rank_conclusions(generated: Path) -> None:
    """What the README concludes from its rank table holds for ``generated``, a table from a CPU that trains
    other models: the same measures, the same best measure, rank scores correlated (Spearman >= 0.9).

    Not the whole order: places 2-4 lie within 0.7 of each other and swap between runs on the Intel VM (with
    MKL_CBWR=COMPATIBLE `procrustes_size_shape` came second instead of `rtd`), inside their intervals."""
    from scipy.stats import spearmanr

    ours, theirs = rank_scores(rank_table(README.read_text())), rank_scores(rank_table(generated.read_text()))
    assert set(ours) == set(theirs), f"measures differ: {sorted(set(ours) ^ set(theirs))}"
    best, found = min(ours, key=ours.get), min(theirs, key=theirs.get)
    assert best == found, f"the best measure differs: README {best}, {generated}: {found}"
    names = sorted(ours)
    rho = spearmanr([ours[n] for n in names], [theirs[n] for n in names])[0]
    assert rho >= 0.9, f"rank scores of {generated} correlate with README's by Spearman {rho:.3f} < 0.9"


def test_readme_rank_table_is_generated():
    assert len(rank_table(README.read_text())) > 2
    if not GENERATED_RANKS.exists():
        pytest.skip(f"{GENERATED_RANKS} not generated here (run the benchmark); nothing to compare with")
    if cpu_vendor() == README_RANKS_VENDOR:
        check_rank_table(GENERATED_RANKS)
    else:  # another CPU trains other models: the table's conclusions must hold, not its digits
        check_rank_conclusions(GENERATED_RANKS)


def test_rank_table_check_finds_a_changed_row(tmp_path):
    """The check itself: a copy of the README's table agrees, one changed number is found."""
    table = "\n".join(rank_table(README.read_text()))
    (tmp_path / "same.md").write_text(table + "\n")
    assert rank_table_differences(README, tmp_path / "same.md") == []
    lines = table.splitlines()
    lines[3] = lines[3].replace("|", "| 99.0 |", 1).replace("| 99.0 |", "|", 1)[:-4] + "0.1 |"
    (tmp_path / "changed.md").write_text("\n".join(lines) + "\n")
    assert [d.split(":")[0] for d in rank_table_differences(README, tmp_path / "changed.md")] == ["row 3"]


def test_rank_conclusions_check(tmp_path):
    """The cross-CPU check itself: small moves of every score pass, a new best measure or scrambled scores fail."""
    lines = rank_table(README.read_text())

    def table_with(scores: Callable[[int, float], float], name: str) -> Path:
        rows = []
        for i, row in enumerate(lines[2:]):
            cells = table_cells(row)
            cells[2] = f"{scores(i, float(cells[2])):.1f}"
            rows.append("| " + " | ".join(cells) + " |")
        (tmp_path / name).write_text("\n".join([*lines[:2], *rows]) + "\n")
        return tmp_path / name

    check_rank_conclusions(table_with(lambda i, v: v + 0.4 * (i % 2), "moved.md"))  # like the Intel VM's table
    with pytest.raises(AssertionError, match="best measure"):
        check_rank_conclusions(table_with(lambda i, v: 50.0 if i == 0 else v, "new_best.md"))
    with pytest.raises(AssertionError, match="Spearman"):
        check_rank_conclusions(table_with(lambda i, v: float(i - 3 if i < 3 else (7 * i) % 37), "scrambled.md"))


#: the tracked copy of the default benchmark's ranks (written by `python -m runners.paper`, see paper/README.md)
TRACKED_RANKS = ROOT / "paper" / "data" / "ranks.csv"


def test_readme_rank_table_matches_the_tracked_ranks():
    """Runs on a fresh clone too: every README row (measure, family, rank score and its interval, the rank per
    test) equals the tracked paper/data/ranks.csv, the same analysis output as tables/ranks.md, to the
    README's one decimal."""
    lines = rank_table(README.read_text())
    header = table_cells(lines[0])
    rows = [table_cells(line) for line in lines[2:]]
    tracked = pd.read_csv(TRACKED_RANKS).set_index("measure")
    assert [r[0] for r in rows] == list(tracked.index), "README rows are not the tracked ranks' measures in order"
    for row in rows:
        for column, cell in zip(header[1:], row[1:]):
            expected = tracked.loc[row[0], column]
            if isinstance(expected, str):
                assert cell == expected, (row[0], column)
            elif cell in ("", "nan", "--"):
                assert pd.isna(expected), (row[0], column)
            else:  # ranks.csv keeps 4 significant digits, the README one decimal
                assert abs(float(cell) - expected) <= 0.051, (row[0], column, cell, expected)
