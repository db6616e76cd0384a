"""One small real GPLR run (about 440 OnlineRetail customers) shared by the test files.

It is the quickstart notebook itself, executed locally with the widget shim: a parquet
subset of the bundled data, the offline labeler, real Delta tables and the HTML report in a
temporary folder. Built once per test session; the files reuse it instead of running their
own pipeline.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession

from gplr_spark.notebook import LocalDbutils, run_notebook
from gplr_spark.session import REPO_ROOT

RUN_ID = "tiny"
NOTEBOOKS = REPO_ROOT / "notebooks"
_CACHE: dict[str, Any] = {}


@dataclass
class TinyRun:
    """Where the shared run lives and the quickstart notebook's namespace after it ran."""

    base: Path
    widgets: dict[str, str]
    scope: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def delta(self) -> Path:
        return self.base / "delta"

    @property
    def report_path(self) -> Path:
        return self.base / "report.html"


def tiny_input(folder: Path) -> Path:
    """Every 10th customer id of the bundled OnlineRetail lines, as one parquet file."""
    raw = pd.read_parquet(REPO_ROOT / "data" / "online_retail" / "online_retail.parquet")
    ids = pd.to_numeric(raw["CustomerID"], errors="coerce")
    path = folder / "tiny_online_retail.parquet"
    raw[ids.notna() & (ids % 10 == 0)].to_parquet(path, index=False)
    return path


def run(path: Path, widgets: dict[str, str], spark: SparkSession) -> dict[str, Any]:
    """Execute one notebook with the shim's widgets, sharing the test SparkSession."""
    return run_notebook(path, {"dbutils": LocalDbutils(widgets), "spark": spark})


def tiny_run(spark: SparkSession) -> TinyRun:
    """The shared small run (the quickstart notebook), computed on first use."""
    if "run" not in _CACHE:
        base = Path(tempfile.mkdtemp(prefix="gplr-tiny-"))
        atexit.register(shutil.rmtree, base, True)
        widgets = {
            "input_source": str(tiny_input(base)),
            "output_path": str(base / "delta"),
            "run_id": RUN_ID,
            "labeler": "offline",
            "sample_rate": "0.1",
            "report_path": str(base / "report.html"),
        }
        tiny = TinyRun(base, widgets)
        tiny.scope = run(NOTEBOOKS / "quickstart.py", widgets, spark)
        _CACHE["run"] = tiny
    return _CACHE["run"]
