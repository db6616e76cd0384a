"""The HTML report of the shared small run: self-contained, and it renders in Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pyspark.sql import SparkSession

from gplr_spark.report import ReportError, build_report, load_run
from gplr_spark.session import REPO_ROOT
from tests.tiny_run import RUN_ID, tiny_run

PLOTS = ["distribution", "scores", "cooccurrence", "segments", "customer", "timings"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Setup installs Debian's chromium where it can (root + apt-get); CI must not skip the check.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Debian `chromium` is not installed (apt-get install chromium)",
)
# Appended to a copy of the report: after load, record every image's decoded size in the DOM.
PROBE = (
    "<script>window.addEventListener('load',()=>{document.body.dataset.probe="
    "JSON.stringify([...document.images].map(i=>[i.closest('figure').id,i.naturalWidth,"
    "i.naturalHeight]));});</script>"
)


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "CI=true but Debian `chromium` is missing: run scripts/setup.sh"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


@pytest.fixture(scope="module")
def report_file(spark: SparkSession) -> Path:
    return tiny_run(spark).report_path


def test_report_is_one_self_contained_page(report_file: Path) -> None:
    page = report_file.read_text()
    images = re.findall(r'<figure id="(\w+)"><img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert [name for name, _ in images] == PLOTS
    for _, data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing to fetch: no external scripts, styles or images
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert f"run {RUN_ID}" in page and "Top " in page  # the customer's purchase history
    assert "LLM cost (USD)" in page


@needs_chromium
def test_report_renders_in_headless_chromium(report_file: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.html"
    probe.write_text(report_file.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    found = re.search(r'data-probe="([^"]+)"', dom)
    assert found, "the page never finished loading"
    sizes = json.loads(found.group(1).replace("&quot;", '"'))
    assert [s[0] for s in sizes] == PLOTS
    assert all(w > 200 and h > 100 for _, w, h in sizes), sizes
    shot = tmp_path / "report.png"
    _chromium("--window-size=1100,2400", f"--screenshot={shot}", report_file.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2400, 1100)
    # not blank: a good share of non-white pixels and many grey levels (plots, text)
    assert (pixels < 240).mean() > 0.05
    assert len(np.unique(pixels)) > 50


def test_report_names_a_missing_run(spark: SparkSession) -> None:
    tiny = tiny_run(spark)
    with pytest.raises(ReportError, match="run 'nope' is not in"):
        load_run(spark, str(tiny.delta), "nope")
    tables = load_run(spark, str(tiny.delta))  # no run id: the latest
    with pytest.raises(ReportError, match="customer 'nobody' has no personas"):
        build_report(tables, customer_id="nobody")


def test_report_job_rejects_a_bad_key_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "jobs" / "report.py"), "--set", "report.file=x.html"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: config key 'report.file': Extra inputs are not permitted (got 'x.html')"
    ]
