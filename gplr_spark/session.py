"""One way to get a SparkSession that finds Delta's jars with no network at run time.

On a cluster or Databricks an active session already exists and is returned as is. Locally
the JVM jars come from ``jars/lib`` (filled by ``make setup``), listed file by file: a glob
in ``spark.jars`` is silently skipped by Spark.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JARS_DIR = REPO_ROOT / "jars" / "lib"

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

LOCAL_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "6g",
    "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.adaptive.enabled": "true",
}


def local_jars(jars_dir: Path | None = None) -> list[str]:
    """The jar files that ``make setup`` resolved, as absolute paths (empty if none)."""
    folder = Path(os.environ.get("GPLR_JARS_DIR", jars_dir or DEFAULT_JARS_DIR))
    return sorted(str(p) for p in folder.glob("*.jar")) if folder.is_dir() else []


def get_spark(
    app_name: str = "gplr-spark",
    *,
    master: str | None = None,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """Return the active session, or start a local one with Delta from the bundled jars."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    jars = local_jars()
    if not jars and "spark.jars.packages" not in (conf or {}):
        raise RuntimeError(
            f"no Delta jars in {DEFAULT_JARS_DIR}: run `make setup` (it resolves them with "
            "Maven), or pass conf={'spark.jars.packages': 'io.delta:delta-spark_4.1_2.13:4.4.0'}"
        )
    scratch = Path(tempfile.mkdtemp(prefix="gplr-spark-"))
    settings = {
        **LOCAL_CONF,
        **DELTA_CONF,
        "spark.jars": ",".join(jars),
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        "spark.local.dir": str(scratch / "tmp"),
        **(conf or {}),
    }
    builder = SparkSession.builder.appName(app_name).master(
        master or os.environ.get("GPLR_SPARK_MASTER", "local[2]")
    )
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("GPLR_SPARK_LOG_LEVEL", "ERROR"))
    spark.sparkContext.setCheckpointDir(str(scratch / "checkpoints"))
    return spark
