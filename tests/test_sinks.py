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
