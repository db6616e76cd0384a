"""ingest: raw purchase lines -> the canonical purchase schema, cleaned and counted.

Canonical schema: customer_id, item_id, item_name (strings), quantity (bigint), unit_price
(double), ts (timestamp), order_id, country (strings). A mapping file names, for each
canonical column, the source column; another dataset needs only another mapping.
Every cleaning rule counts the rows it removed; nothing is dropped silently.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gplr_spark.config import CleaningConfig

CANONICAL_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "item_id",
    "item_name",
    "quantity",
    "unit_price",
    "ts",
    "order_id",
    "country",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("customer_id", "item_id")


class InputError(ValueError):
    """Bad input data: the message names the source, the column and the row count."""


@dataclass(frozen=True)
class ColumnMapping:
    """How one dataset's columns map onto the canonical schema, plus its cleaning lists."""

    columns: dict[str, str]
    source_name: str = ""
    ts_format: str | None = None
    cancellation_prefixes: tuple[str, ...] = ()
    non_product_names: tuple[str, ...] = ()
    non_product_pattern: str | None = None
    excluded_countries: tuple[str, ...] = ()

    @classmethod
    def from_file(cls, path: str | Path) -> ColumnMapping:
        file = Path(path)
        if not file.is_file():
            raise InputError(f"mapping file {file} does not exist")
        tree = tomllib.loads(file.read_text())
        columns = tree.get("columns", {})
        unknown = sorted(set(columns) - set(CANONICAL_COLUMNS))
        if unknown:
            raise InputError(
                f"mapping file {file}: unknown canonical column(s) {unknown}; "
                f"allowed: {list(CANONICAL_COLUMNS)}"
            )
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise InputError(f"mapping file {file}: no source column given for {missing}")
        rules = tree.get("rules", {})
        return cls(
            columns=dict(columns),
            source_name=tree.get("source_name", ""),
            ts_format=tree.get("parse", {}).get("ts_format"),
            cancellation_prefixes=tuple(rules.get("cancellation_prefixes", ())),
            non_product_names=tuple(rules.get("non_product_names", ())),
            non_product_pattern=rules.get("non_product_pattern"),
            excluded_countries=tuple(rules.get("excluded_countries", ())),
        )


@dataclass
class CleaningReport:
    """Rows read, rows removed per rule (in rule order) and rows kept."""

    rows_read: int
    removed: dict[str, int] = field(default_factory=dict)
    rows_kept: int = 0

    def lines(self) -> list[str]:
        out = [f"rows read: {self.rows_read:,}"]
        out += [f"  removed by {rule}: {n:,}" for rule, n in self.removed.items()]
        out.append(f"rows kept: {self.rows_kept:,}")
        return out


def read_source(spark: SparkSession, source: str, fmt: str = "auto") -> DataFrame:
    """Read CSV, Parquet, Delta or a table name; a missing path is a one-line error."""
    is_path = "://" in source or "/" in source or Path(source).exists()
    if fmt == "auto":
        lower = source.lower().rstrip("/")
        if not is_path:
            fmt = "table"
        elif lower.endswith((".csv", ".csv.gz")):
            fmt = "csv"
        elif Path(source, "_delta_log").is_dir():
            fmt = "delta"
        else:
            fmt = "parquet"
    if fmt != "table" and "://" not in source and not Path(source).exists():
        raise InputError(f"input {source} does not exist")
    try:
        if fmt == "table":
            return spark.table(source)
        if fmt == "csv":
            return spark.read.csv(source, header=True, inferSchema=True)
        return spark.read.format(fmt).load(source)
    except AnalysisException as err:
        raise InputError(f"input {source} cannot be read as {fmt}: {err.getMessage()}") from None


def to_canonical(raw: DataFrame, mapping: ColumnMapping, source: str = "") -> DataFrame:
    """Rename and cast the mapped columns; unmapped optional columns become nulls."""
    where = source or mapping.source_name or "input"
    missing = [src for src in mapping.columns.values() if src not in raw.columns]
    if missing:
        raise InputError(
            f"{where}: column(s) {missing} named in the mapping are missing; "
            f"the input has {raw.columns}"
        )
    dtypes = dict(raw.dtypes)

    def id_column(canonical: str) -> Column:
        src = mapping.columns[canonical]
        col = F.col(f"`{src}`")
        if dtypes[src] in ("float", "double"):  # e.g. CustomerID stored as 12346.0
            col = col.cast(T.LongType())
        return F.nullif(F.trim(col.cast(T.StringType())), F.lit(""))

    def optional(canonical: str, dtype: T.DataType) -> Column:
        src = mapping.columns.get(canonical)
        return F.col(f"`{src}`").cast(dtype) if src else F.lit(None).cast(dtype)

    ts_src = mapping.columns.get("ts")
    if ts_src is None:
        ts = F.lit(None).cast(T.TimestampType())
    elif mapping.ts_format and dtypes[ts_src] == "string":
        ts = F.to_timestamp(F.col(f"`{ts_src}`"), mapping.ts_format)
    else:
        ts = F.col(f"`{ts_src}`").cast(T.TimestampType())
    name = id_column("item_name") if "item_name" in mapping.columns else id_column("item_id")
    return raw.select(
        id_column("customer_id").alias("customer_id"),
        id_column("item_id").alias("item_id"),
        name.alias("item_name"),
        optional("quantity", T.LongType()).alias("quantity"),
        optional("unit_price", T.DoubleType()).alias("unit_price"),
        ts.alias("ts"),
        optional("order_id", T.StringType()).alias("order_id"),
        optional("country", T.StringType()).alias("country"),
    )


def _rules(mapping: ColumnMapping, cleaning: CleaningConfig) -> list[tuple[str, Column]]:
    """(rule name, condition that marks a row for removal), in the order they apply."""
    rules: list[tuple[str, Column]] = []
    if cleaning.drop_null_customer:
        rules.append(("null_customer", F.col("customer_id").isNull()))
    if cleaning.drop_null_item:
        rules.append(("null_item", F.col("item_id").isNull()))
    if cleaning.drop_cancellations and mapping.cancellation_prefixes:
        cond = F.lit(False)
        for prefix in mapping.cancellation_prefixes:
            cond = cond | F.coalesce(F.col("order_id").startswith(prefix), F.lit(False))
        rules.append(("cancellation", cond))
    if cleaning.drop_non_positive_quantity and "quantity" in mapping.columns:
        rules.append(("non_positive_quantity", F.coalesce(F.col("quantity") <= 0, F.lit(True))))
    if cleaning.drop_non_positive_price and "unit_price" in mapping.columns:
        rules.append(("non_positive_price", F.coalesce(F.col("unit_price") <= 0, F.lit(True))))
    if cleaning.drop_non_product and (mapping.non_product_names or mapping.non_product_pattern):
        lowered = [n.strip().lower() for n in mapping.non_product_names]
        cond = F.lower(F.col("item_name")).isin(lowered)
        if mapping.non_product_pattern:
            cond = cond | F.col("item_name").rlike(mapping.non_product_pattern)
        rules.append(("non_product", F.coalesce(cond, F.lit(False))))
    if cleaning.drop_excluded_countries and mapping.excluded_countries:
        cond = F.coalesce(F.col("country").isin(list(mapping.excluded_countries)), F.lit(False))
        rules.append(("excluded_country", cond))
    return rules


def clean(
    purchases: DataFrame, mapping: ColumnMapping, cleaning: CleaningConfig
) -> tuple[DataFrame, CleaningReport]:
    """Apply the cleaning rules in order; count each rule's removals in one pass."""
    rules = _rules(mapping, cleaning)
    # A row is charged to the first rule that removes it, so the counts add up.
    charged = F.lit(None).cast(T.StringType())
    for name, cond in reversed(rules):
        charged = F.when(cond, F.lit(name)).otherwise(charged)
    flagged = purchases.withColumn("_removed_by", charged)
    counts = {
        r["_removed_by"]: r["n"]
        for r in flagged.groupBy("_removed_by").agg(F.count(F.lit(1)).alias("n")).collect()
    }
    report = CleaningReport(rows_read=sum(counts.values()))
    for name, _ in rules:
        report.removed[name] = int(counts.get(name, 0))
    kept = flagged.where(F.col("_removed_by").isNull()).drop("_removed_by")
    kept_rows = int(counts.get(None, 0))
    if cleaning.drop_duplicates:
        deduped = kept.dropDuplicates(list(CANONICAL_COLUMNS))
        deduped_rows = deduped.count()
        report.removed["duplicate"] = kept_rows - deduped_rows
        kept, kept_rows = deduped, deduped_rows
    report.rows_kept = kept_rows
    return kept, report


def load_purchases(
    spark: SparkSession,
    source: str,
    mapping: ColumnMapping | str | Path,
    cleaning: CleaningConfig | None = None,
    fmt: str = "auto",
) -> tuple[DataFrame, CleaningReport]:
    """Read, map and clean purchase lines; fail with a clear message on empty results."""
    if not isinstance(mapping, ColumnMapping):
        mapping = ColumnMapping.from_file(mapping)
    raw = read_source(spark, source, fmt)
    canonical = to_canonical(raw, mapping, source)
    purchases, report = clean(canonical, mapping, cleaning or CleaningConfig())
    if report.rows_read == 0:
        raise InputError(f"input {source} has 0 rows")
    if report.rows_kept == 0:
        raise InputError(
            f"input {source}: all {report.rows_read:,} rows were removed by cleaning "
            f"({report.removed})"
        )
    return purchases, report
