"""CITATION.cff is valid under the Citation File Format schema (cffconvert), and the version, licence and
"How to cite" section agree with pyproject.toml and LICENSE."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CFFCONVERT = Path(sys.executable).parent / "cffconvert"


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CFFCONVERT), "--validate", "-i", str(path)], capture_output=True, text=True, timeout=120)


def test_citation_cff_is_valid_and_an_invalid_one_is_not(tmp_path):
    ok = validate(ROOT / "CITATION.cff")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    del broken["authors"]  # required by the schema: the validator must notice
    (tmp_path / "CITATION.cff").write_text(yaml.safe_dump(broken))
    assert validate(tmp_path / "CITATION.cff").returncode != 0


def test_version_and_licence_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(citation["version"]) == project["version"]
    assert citation["license"] == project["license"]["text"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    readme = (ROOT / "README.md").read_text()
    assert "## How to cite" in readme and f"version {project['version']}" in readme
