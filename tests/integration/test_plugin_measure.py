"""A measure in the user's own module, outside the repository, joins the benchmark by configuration
(``measures.modules=[...]``) or by a ``simbench.measures`` entry point, and gets ranked; the ``simbench``
command runs from a folder whose own ``tasks.py``/``measures.py`` would shadow the project's packages."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

SIMBENCH = Path(sys.executable).with_name("simbench")

RV = '''
import torch

import simbench


@simbench.register("rv_coefficient", family="rsm", kind="similarity", range=(0.0, 1.0), symmetric=True,
                   invariances=("orthogonal", "isotropic_scaling", "translation"), reference="Robert & Escoufier 1976")
def rv_coefficient(X: torch.Tensor, Y: torch.Tensor) -> float:
    """RV coefficient of the centred inputs: tr(Kx Ky) / sqrt(tr(Kx²) tr(Ky²)), K = X X'."""
    X, Y = X - X.mean(0), Y - Y.mean(0)
    kx, ky = X @ X.T, Y @ Y.T
    return float((kx * ky).sum() / torch.sqrt((kx * kx).sum() * (ky * ky).sum()))
'''


def _plugin(root: Path) -> Path:
    """The user's package ``my_pkg.rv`` in a folder of its own (outside the repository)."""
    (root / "my_pkg").mkdir(parents=True)
    (root / "my_pkg" / "__init__.py").write_text("")
    (root / "my_pkg" / "rv.py").write_text(RV)
    return root


def test_a_configured_module_is_measured_and_ranked_from_any_folder(tmp_path):
    plugins = _plugin(tmp_path / "plugins")
    work = tmp_path / "work"
    work.mkdir()
    for shadow in ("tasks.py", "measures.py", "runners.py"):  # a user's own files of those names
        (work / shadow).write_text("raise ImportError('the user file shadowed the project')\n")
    done = subprocess.run(
        [str(SIMBENCH), "sweep", "sweep=layer_id", "name=plug", "data=synthetic", "arch=mlp_small", "train=fast",
         "seed=range(0,3)", "measures=fast", "measures.modules=[my_pkg.rv]",
         "measures.include=[cka_linear,rsa,rv_coefficient]", f"results_dir={tmp_path / 'results'}",
         "hydra/launcher=basic"],
        cwd=work, env={**_env(), "PYTHONPATH": str(plugins)}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[simbench] jobs 3/3 done" in done.stderr
    sweep = tmp_path / "results" / "plug"
    ranks = pd.read_csv(sweep / "tables" / "ranks.csv").set_index("measure")
    assert "rv_coefficient" in ranks.index and np.isfinite(ranks.loc["rv_coefficient", "rank_score"])
    assert ranks.loc["rv_coefficient", "family"] == "rsm"
    # the values are the RV coefficient: on centred data it equals linear CKA (the built-in reference)
    scores = pd.read_parquet(sweep / "scores.parquet")
    pivot = scores.pivot_table(index=["model_a", "model_b", "layer_a", "layer_b"], columns="measure", values="value")
    assert len(pivot) > 10
    np.testing.assert_allclose(pivot["rv_coefficient"], pivot["cka_linear"], rtol=1e-9)
    # the user's module is named where analyses run on their own
    again = subprocess.run([str(SIMBENCH), "analyze", "--sweep", "plug", "--results", str(tmp_path / "results"),
                            "--modules", "my_pkg.rv"], cwd=work, env={**_env(), "PYTHONPATH": str(plugins)},
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "rv_coefficient" in pd.read_csv(sweep / "tables" / "ranks.csv")["measure"].tolist()


def test_an_unimportable_module_is_refused_naming_it(tmp_path):
    done = subprocess.run([str(SIMBENCH), "sweep", "sweep=smoke", "measures.modules=[not_my_pkg.nothing]",
                           f"results_dir={tmp_path}"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert "measures.modules: cannot import measure module 'not_my_pkg.nothing'" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_installed_entry_point_registers_its_measures(tmp_path):
    plugins = _plugin(tmp_path / "plugins")
    dist = plugins / "my_pkg-0.1.dist-info"  # what installing a package with this entry point leaves
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[simbench.measures]\nrv = my_pkg.rv\n")
    code = textwrap.dedent("""
        import simbench
        assert "rv_coefficient" in simbench.names(), simbench.names()
        assert simbench.info("rv_coefficient").family == "rsm"
    """)
    env = {**_env(), "PYTHONPATH": str(plugins)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run([str(SIMBENCH), "measures", "list"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "rv_coefficient" in listed.stdout, listed.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
