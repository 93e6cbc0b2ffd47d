"""The HTML report of a sweep: built from a real ``sweep=smoke`` run, checked as HTML (every table and
figure of the sweep is in it, byte for byte) and rendered in headless Chromium (the DOM the browser
built, the images it decoded, console errors, a screenshot).

The browser tests need Debian's ``chromium``; without it they skip with the reason. Set
SIMBENCH_REQUIRE_CHROMIUM=1 to turn that skip into a failure (``.ci/run`` does when it runs as root and
installed chromium).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from runners.report import MAX_ROWS, write_report
from tests.runners.chromium import Chromium, find_chromium

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """A real smoke sweep (train, compare, collect, analyze: the analyze stage writes the report)."""
    results = tmp_path_factory.mktemp("report")
    proc = subprocess.run([sys.executable, "-m", "runners.sweep", "sweep=smoke", "measures=fast",
                           f"results_dir={results}"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results / "smoke"


class _Page(HTMLParser):
    """Collects the tables (id -> body row count), images (data-name -> src) and element ids of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, int] = {}
        self.images: dict[str, str] = {}
        self.ids: set[str] = set()
        self._table: str | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.rows[self._table] = 0
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table and self._in_body:
            self.rows[self._table] += 1
        elif tag == "img":
            self.images[a.get("data-name") or ""] = a.get("src") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "tbody":
            self._in_body = False


def test_report_holds_every_table_figure_measure_and_the_provenance(smoke):
    report = smoke / "report.html"
    assert report.exists(), "runners.analyze did not write report.html"
    page = _Page()
    page.feed(report.read_text(encoding="utf-8"))
    tables = sorted((smoke / "tables").glob("*.csv"))
    figures = sorted((smoke / "figures").glob("*.png"))
    assert tables and figures
    for path in tables:  # every table, with its rows (up to the cut)
        assert page.rows[f"tbl-{path.stem}"] == min(len(pd.read_csv(path)), MAX_ROWS), path.name
    for path in figures:  # every figure embedded, byte for byte
        prefix = "data:image/png;base64,"
        assert page.images[path.stem].startswith(prefix)
        assert base64.b64decode(page.images[path.stem][len(prefix):]) == path.read_bytes(), path.name
    scores = pd.read_parquet(smoke / "scores.parquet")
    assert {f"measure-{m}" for m in scores["measure"].unique()} <= page.ids  # every measure's card
    text = report.read_text(encoding="utf-8")
    assert scores["git_commit"].iloc[0] in text and "multirun.yaml" in text  # provenance
    # a new analysis's table and figure appear without changes to the report
    pd.DataFrame({"measure": ["x_measure"], "value": [1.5]}).to_csv(smoke / "tables" / "zz_new.csv", index=False)
    (smoke / "figures" / "zz_new.png").write_bytes(figures[0].read_bytes())
    try:
        page = _Page()
        page.feed(write_report(smoke).read_text(encoding="utf-8"))
        assert page.rows["tbl-zz_new"] == 1 and "zz_new" in page.images
    finally:
        (smoke / "tables" / "zz_new.csv").unlink()
        (smoke / "figures" / "zz_new.png").unlink()
        write_report(smoke)


def test_report_without_scores_names_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="scores.parquet"):
        write_report(tmp_path / "nothing")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        reason = "headless Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("SIMBENCH_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"SIMBENCH_REQUIRE_CHROMIUM=1 but {reason}")
        pytest.skip(reason)
    chromium = Chromium(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


def test_console_and_image_checks_catch_a_broken_page(browser, tmp_path):
    """The checks used below do fail on a page with a console error, an exception and a broken image."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img id="b" src="data:image/png;base64,AAAA">'
                   '<script>console.error("planted error"); undefined_function();</script></body></html>')
    browser.messages.clear()
    browser.open(bad.as_uri())
    levels = {level for level, _ in browser.errors()}
    assert any("planted error" in text for _, text in browser.errors())
    assert "exception" in levels
    assert browser.evaluate("document.getElementById('b').naturalWidth") == 0


def test_report_renders_in_headless_chromium(smoke, browser, tmp_path):
    browser.messages.clear()
    browser.open((smoke / "report.html").as_uri())
    assert browser.errors() == [], browser.errors()
    # the DOM the browser built: the ranks table with one row per ranked measure, visible on the page
    ranks = pd.read_csv(smoke / "tables" / "ranks.csv")
    assert browser.evaluate("document.querySelectorAll('#ranks-table tbody tr').length") == len(ranks)
    header = browser.evaluate("[...document.querySelectorAll('#ranks-table thead th')].map(e => e.textContent)")
    assert {"rank_score", "rank_score_ci_low", "rank_score_ci_high"} <= set(header)
    assert browser.evaluate("document.getElementById('ranks-table').getBoundingClientRect().height") > 20 * len(ranks)
    first = browser.evaluate("document.querySelector('#ranks-table tbody tr td').textContent")
    assert first == ranks["measure"].iloc[0]
    # every figure decoded by the browser at its file's pixel size
    decoded = browser.evaluate("Object.fromEntries([...document.images].map(i => [i.dataset.name, "
                               "[i.complete, i.naturalWidth, i.naturalHeight]]))")
    for path in sorted((smoke / "figures").glob("*.png")):
        with Image.open(path) as image:
            assert decoded[path.stem] == [True, *image.size], path.name
    # the screenshot shows a page, not a blank: dark text and figures on white
    shot = np.asarray(Image.open(browser.screenshot(tmp_path / "report.png")).convert("L"), dtype=float)
    assert shot.shape[0] > 2000 and shot.std() > 10 and (shot < 100).mean() > 0.001
