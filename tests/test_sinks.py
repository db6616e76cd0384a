"""Delta sinks: declared schemas, explicit evolution, idempotent per run id."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from gplr_spark import sinks


def _spec(evolve: bool, *extra: str) -> sinks.TableSpec:
    cols = [T.StructField("customer_id", T.StringType()), T.StructField("score", T.DoubleType())]
    cols += [T.StructField(c, T.StringType()) for c in extra]
    return sinks.TableSpec("t", T.StructType(cols), evolve=evolve)


def test_schema_changes_need_a_declaration(spark: SparkSession, frame, tmp_path: Path) -> None:
    target = sinks.TableLocation(str(tmp_path / "t"))
    sinks.write_table(frame({"customer_id": ["a"], "score": [1]}), _spec(False), target, "r1")
    # the int column was cast to the declared double
    stored = spark.read.format("delta").load(target.path)
    assert dict(stored.dtypes)["score"] == "double"
    wider = frame({"customer_id": ["b"], "score": [2.0], "segment": ["s"]})
    with pytest.raises(sinks.SchemaChangeError, match=r"table t: new columns \['segment'\]"):
        sinks.write_table(wider, _spec(False, "segment"), target, "r2")
    with pytest.raises(sinks.SchemaChangeError, match=r"undeclared \['segment'\]"):
        sinks.write_table(wider, _spec(True), target, "r2")
    sinks.write_table(wider, _spec(True, "segment"), target, "r2")
    rows = {r.run_id: r.segment for r in spark.read.format("delta").load(target.path).collect()}
    assert rows == {"r1": None, "r2": "s"}
    with pytest.raises(sinks.SchemaChangeError, match=r"\['segment'\] dropped"):
        sinks.write_table(frame({"customer_id": ["c"], "score": [3.0]}), _spec(True), target, "r3")
    props = spark.sql(f"SHOW TBLPROPERTIES delta.`{target.path}`").collect()
    assert {r.key: r.value for r in props}["delta.enableChangeDataFeed"] == "true"


def test_managed_tables_by_name_are_replaced_per_run(spark: SparkSession, frame) -> None:
    # an empty output path means managed tables in the schema (Unity Catalog's way)
    with pytest.raises(ValueError, match=r"needs output\.schema"):
        sinks.location("", "t", None, None)
    spark.sql("CREATE SCHEMA IF NOT EXISTS gplr_sink_test")
    target = sinks.location("", "scores", None, "gplr_sink_test")
    assert (target.path, target.ref) == ("", "gplr_sink_test.scores")
    rows = frame({"customer_id": ["a", "b"], "score": [1.0, 2.0]})
    for run_id in ("r1", "r1", "r2"):
        sinks.write_table(rows, _spec(False), target, run_id)
    assert spark.table(target.ref).groupBy("run_id").count().orderBy("run_id").collect() == [
        ("r1", 2),
        ("r2", 2),
    ]
    versions = spark.sql(f"DESCRIBE HISTORY {target.ref}").select("version").collect()
    assert len(versions) == 3
    spark.sql("DROP SCHEMA gplr_sink_test CASCADE")
