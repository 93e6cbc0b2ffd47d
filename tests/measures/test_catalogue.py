"""The generated catalogue (what `python -m measures list|info` read without importing torch) is the
registry's metadata, and the commands that read it import neither torch nor the family modules."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import measures
from measures import _catalogue

ROOT = Path(__file__).resolve().parents[2]


def test_catalogue_file_is_the_registry():
    on_disk = json.loads(_catalogue.PATH.read_text())
    live = json.loads(json.dumps(_catalogue.generate(), ensure_ascii=False))
    assert on_disk == live, ("measures/catalogue.json differs from the registry; regenerate it with "
                             "`uv run python -m measures catalogue` and commit it")
    assert [e["name"] for e in on_disk["measures"]] == measures.names()


def test_list_and_info_do_not_import_torch():
    code = ("import sys; from measures.__main__ import main; main(['list']); main(['info', 'cka_linear']); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'measures.rsm' not in sys.modules, 'family module imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "cka_linear" in done.stdout and f"{len(measures.names())} measures" in done.stdout


def test_mistyped_measure_gets_a_suggestion():
    done = subprocess.run([sys.executable, "-m", "measures", "info", "cka_liner"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "did you mean 'cka_linear'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "measures", "list"],
    [sys.executable, "-c", "import sys; from simbench.cli import main; sys.exit(main(['measures', 'list']))"],
], ids=["python -m measures", "simbench"])
def test_listing_into_a_closed_pipe_exits_141_without_a_traceback(command):
    """`python -m measures list | head -1` (and `simbench measures list | head -1`): the reader goes away
    after a few bytes; the command ends like one killed by SIGPIPE, quietly (measures._cli)."""
    import fcntl

    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, 4096)  # the listing (~15 kB) cannot fit: a write must fail
    proc = subprocess.Popen(command, stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    os.close(write_end)
    assert os.read(read_end, 10)
    os.close(read_end)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
