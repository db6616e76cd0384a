"""sinks: idempotent Delta writes, one run at a time, with declared schemas.

Every table is partitioned by run_id and written with replaceWhere on it, so rerunning a
run replaces exactly that run's rows in one atomic commit and never duplicates them.
Change data feed is on. Each table's columns are declared here (TableSpec); a write is cast
to the declared schema, and a table whose stored schema differs is only evolved when its
spec says so (added columns via mergeSchema); any other change is an error naming the
table and the columns, never a silent rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

TABLE_PROPERTIES = {"delta.enableChangeDataFeed": "true"}


@dataclass(frozen=True)
class TableLocation:
    """A Delta table by path (optionally registered as catalog.schema.name), or a managed
    table by name only (path empty), e.g. in Unity Catalog, where volumes hold no tables."""

    path: str
    name: str | None = None

    @property
    def ref(self) -> str:
        """How SQL names the table: ``delta.`path` `` or the qualified name."""
        return f"delta.`{self.path}`" if self.path else str(self.name)


class SchemaChangeError(ValueError):
    """A write whose columns differ from the table's in a way its spec does not allow."""


@dataclass(frozen=True)
class TableSpec:
    """A table's declared columns (without run_id) and whether columns may be added."""

    name: str
    schema: T.StructType
    evolve: bool = False


def _fields(*cols: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(n, t) for n, t in cols])


_S, _D, _L = T.StringType(), T.DoubleType(), T.LongType()
TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "customer_personas",
            _fields(
                ("customer_id", _S),
                ("persona", _S),
                ("score", _D),
                ("rank", T.IntegerType()),
                ("source", _S),
            ),
        ),
        TableSpec("persona_catalog", _fields(("version", _S), ("name", _S), ("definition", _S))),
        TableSpec(
            "persona_segments",
            _fields(
                ("persona", _S),
                ("customers", _L),
                ("share", _D),
                ("revenue", _D),
                ("revenue_share", _D),
                ("top_items", T.ArrayType(_S)),
            ),
        ),
        TableSpec(
            "persona_evidence",
            _fields(
                ("customer_id", _S),
                ("persona", _S),
                ("item_id", _S),
                ("item_name", _S),
                ("contribution", _D),
            ),
        ),
    )
}


def location(base_path: str, table: str, catalog: str | None, schema: str | None) -> TableLocation:
    """``base_path/table``; an empty base path means a managed table (needs a schema)."""
    qualified = ".".join(p for p in (catalog, schema, table) if p) if schema else None
    if not base_path:
        if qualified is None:
            raise ValueError(f"table {table}: an empty output path needs output.schema")
        return TableLocation(path="", name=qualified)
    return TableLocation(path=f"{base_path.rstrip('/')}/{table}", name=qualified)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_run(
    df: DataFrame,
    target: TableLocation,
    run_id: str,
    *,
    merge_schema: bool = False,
) -> None:
    """Replace ``run_id``'s rows of the table at ``target`` with ``df`` (run_id column added)."""
    rows = df.withColumn("run_id", F.lit(run_id)) if "run_id" not in df.columns else df
    rows = rows.select("run_id", *[c for c in rows.columns if c != "run_id"])
    writer = (
        rows.write.format("delta")
        .mode("overwrite")
        .partitionBy("run_id")
        .option("replaceWhere", f"run_id = {_quote(run_id)}")
    )
    for key, value in TABLE_PROPERTIES.items():
        writer = writer.option(key, value)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if not target.path:
        _write_managed(rows, str(target.name), run_id, merge_schema)
        return
    writer.save(target.path)
    if target.name:
        spark = df.sparkSession
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {target.name} USING DELTA LOCATION {_quote(target.path)}"
        )


def _write_managed(rows: DataFrame, name: str, run_id: str, merge_schema: bool) -> None:
    """The same replace-by-run_id for a managed table, through DataFrameWriterV2."""
    spark = rows.sparkSession
    writer = rows.writeTo(name)
    if not spark.catalog.tableExists(name):
        writer = writer.using("delta").partitionedBy(F.col("run_id"))
        for key, value in TABLE_PROPERTIES.items():
            writer = writer.tableProperty(key, value)
        writer.create()
        return
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    writer.overwrite(F.col("run_id") == F.lit(run_id))


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """``df`` as exactly the declared columns, in order and cast; missing or extra is an error."""
    declared = [f.name for f in spec.schema.fields]
    have = [c for c in df.columns if c != "run_id"]
    missing = [c for c in declared if c not in have]
    extra = [c for c in have if c not in declared]
    if missing or extra:
        raise SchemaChangeError(
            f"table {spec.name}: rows do not match the declared columns "
            f"(missing {missing}, undeclared {extra}); declare them in sinks.TABLES"
        )
    kept = [F.col(f.name).cast(f.dataType).alias(f.name) for f in spec.schema.fields]
    return df.select(*(["run_id"] if "run_id" in df.columns else []), *kept)


NO_TABLE_CONDITIONS = {
    "PATH_NOT_FOUND",
    "DELTA_TABLE_NOT_FOUND",
    "DELTA_MISSING_DELTA_TABLE",
    "TABLE_OR_VIEW_NOT_FOUND",
}


def stored_schema(spark: SparkSession, target: TableLocation) -> T.StructType | None:
    """The schema of the Delta table at ``target``, or None when there is no table yet."""
    try:
        return read_table(spark, target).schema
    except AnalysisException as err:
        if err.getCondition() in NO_TABLE_CONDITIONS:
            return None
        raise


def evolution(stored: T.StructType, spec: TableSpec) -> list[str]:
    """Declared columns the stored table lacks; raises on any change that is not additive."""
    old = {f.name: f.dataType for f in stored.fields if f.name != "run_id"}
    new = {f.name: f.dataType for f in spec.schema.fields}
    dropped = sorted(set(old) - set(new))
    retyped = sorted(n for n in set(old) & set(new) if old[n] != new[n])
    added = [n for n in new if n not in old]
    if dropped or retyped:
        raise SchemaChangeError(
            f"table {spec.name}: columns {dropped} dropped, {retyped} retyped; "
            "migrate the table explicitly (new path or ALTER TABLE), then rerun"
        )
    if added and not spec.evolve:
        raise SchemaChangeError(
            f"table {spec.name}: new columns {added} but the spec does not allow evolution; "
            "set evolve=True in its TableSpec to merge them"
        )
    return added


def write_table(df: DataFrame, spec: TableSpec, target: TableLocation, run_id: str) -> None:
    """Replace ``run_id``'s rows of a declared table, evolving its schema only if declared."""
    rows = conform(df, spec)
    stored = stored_schema(df.sparkSession, target)
    added = evolution(stored, spec) if stored is not None else []
    write_run(rows, target, run_id, merge_schema=bool(added))


def read_table(spark: SparkSession, target: TableLocation) -> DataFrame:
    if not target.path:
        return spark.table(str(target.name))
    return spark.read.format("delta").load(target.path)
