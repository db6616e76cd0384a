"""The Databricks notebooks run locally end to end with the dbutils.widgets shim."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from gplr_spark.config import ConfigError
from gplr_spark.notebook import LocalDbutils, cells, config_from_widgets
from gplr_spark.report import TABLE_NAMES
from tests.tiny_run import NOTEBOOKS, RUN_ID, run, tiny_run


def _snapshot(spark: SparkSession, base) -> dict[str, tuple[int, int]]:
    """Rows and latest Delta version of every table."""
    out = {}
    for name in TABLE_NAMES:
        path = str(base / name)
        version = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").agg(F.max("version")).first()[0]
        out[name] = (spark.read.format("delta").load(path).count(), version)
    return out


def test_every_notebook_is_in_databricks_source_format() -> None:
    books = sorted(p.name for p in NOTEBOOKS.glob("*.py"))
    assert books == ["assign_personas.py", "explore_segments.py", "quickstart.py"]
    for book in books:
        code = cells(NOTEBOOKS / book)
        assert len(code) >= 3
        assert any("dbutils.widgets." in c for c in code)
        assert all("def " not in c for c in code), f"{book}: logic belongs in the package"


def test_widgets_override_config_keys_like_set() -> None:
    dbutils = LocalDbutils({"eps": "1e-4", "k": "3", "run_id": "nb-1", "labeler": "offline"})
    for name in ("config", "eps", "k", "run_id", "labeler", "beta"):
        dbutils.widgets.text(name, "conf/online_retail.toml" if name == "config" else "")
    cfg = config_from_widgets(dbutils)
    assert (cfg.affinity.eps, cfg.assign.k, cfg.output.run_id) == (1e-4, 3, "nb-1")
    assert cfg.labeler.backend == "offline" and cfg.affinity.beta == 0.5  # empty = config
    bad = LocalDbutils({"config": "conf/online_retail.toml", "eps": "-1"})
    bad.widgets.text("config", "")
    bad.widgets.text("eps", "")
    with pytest.raises(ConfigError, match=r"config key 'affinity\.eps'"):
        config_from_widgets(bad)


def test_quickstart_runs_and_writes_the_tables_and_report(spark: SparkSession) -> None:
    tiny = tiny_run(spark)
    result, cfg = tiny.scope["result"], tiny.scope["cfg"]
    assert (cfg.output.run_id, cfg.sampling.sample_rate) == (RUN_ID, 0.1)
    assert result.counts["customers"] > 400 and result.counts["prototypes_labeled"] > 30
    assert set(result.tables) == set(TABLE_NAMES)
    for name in TABLE_NAMES:
        assert spark.read.format("delta").load(str(tiny.delta / name)).count() > 0
    assert tiny.report_path.stat().st_size > 50_000
    assert tiny.scope["report"].plots[:4] == ["distribution", "scores", "cooccurrence", "segments"]


def test_assign_personas_rerun_replaces_the_run(spark: SparkSession) -> None:
    tiny = tiny_run(spark)
    before = _snapshot(spark, tiny.delta)
    scope = run(NOTEBOOKS / "assign_personas.py", tiny.widgets, spark)
    exit_value = json.loads(scope["dbutils"].notebook.exit_value)
    assert exit_value["run_id"] == RUN_ID
    after = _snapshot(spark, tiny.delta)
    for name in TABLE_NAMES:
        rows, version = before[name]
        # same rows, one new commit per table
        assert after[name] == (rows, version + 1), name
    last = spark.sql(f"DESCRIBE HISTORY delta.`{tiny.delta / 'customer_personas'}` LIMIT 1")
    row = last.first()
    assert row["operation"] == "WRITE"
    assert f"run_id = '{RUN_ID}'" in row["operationParameters"]["predicate"]


def test_explore_segments_explains_a_customer(spark: SparkSession) -> None:
    tiny = tiny_run(spark)
    widgets = {"output_path": str(tiny.delta), "run_id": ""}  # empty run id: the latest
    scope = run(NOTEBOOKS / "explore_segments.py", widgets, spark)
    assert scope["tables"].run_id == RUN_ID
    customer = scope["customer"]
    held = {r.persona for r in scope["personas"].collect()}
    explained = {r.persona for r in scope["evidence"].collect()}
    assert customer and held and explained <= held and explained
    assert "customer" in scope["report"].plots
