"""ingest on the real OnlineRetail file, checked against an independent pandas count."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from gplr_spark.config import CleaningConfig
from gplr_spark.ingest import CANONICAL_COLUMNS, ColumnMapping, InputError, load_purchases
from gplr_spark.session import REPO_ROOT

from .conftest import DATA, ONLINE_RETAIL

MAPPING = REPO_ROOT / "conf" / "mappings" / "online_retail.toml"


def pandas_oracle() -> dict[str, int]:
    """The same rules, applied in the same order, with pandas."""
    mapping = ColumnMapping.from_file(MAPPING)
    df = pd.read_parquet(ONLINE_RETAIL)
    df["Description"] = df["Description"].str.strip().replace("", None)
    counts: dict[str, int] = {}

    def drop(name: str, mask: pd.Series) -> None:
        nonlocal df
        counts[name] = int(mask.sum())
        df = df[~mask]

    drop("null_customer", df.CustomerID.isna())
    drop("null_item", df.Description.isna())
    drop("cancellation", df.InvoiceNo.str.startswith("C"))
    drop("non_positive_quantity", df.Quantity <= 0)
    drop("non_positive_price", df.UnitPrice <= 0)
    names = {n.lower() for n in mapping.non_product_names}
    pattern = df.Description.str.match(r"(?i)^(dotcomgiftshop gift voucher.*|ebay)$")
    drop("non_product", df.Description.str.lower().isin(names) | pattern)
    drop("excluded_country", df.Country.isin(mapping.excluded_countries))
    before = len(df)
    df = df.drop_duplicates(
        [
            "CustomerID",
            "Description",
            "Quantity",
            "UnitPrice",
            "InvoiceDate",
            "InvoiceNo",
            "Country",
        ]
    )
    counts["duplicate"] = before - len(df)
    counts["rows_kept"] = len(df)
    return counts


def test_cleaning_counts_match_pandas(online_retail) -> None:
    purchases, report = online_retail
    assert report.rows_read == 541_909
    expected = pandas_oracle()
    kept = expected.pop("rows_kept")
    assert report.removed == expected
    assert report.rows_kept == kept == purchases.count()
    assert report.rows_read == kept + sum(report.removed.values())


def test_canonical_schema(online_retail) -> None:
    purchases, _ = online_retail
    assert tuple(purchases.columns) == CANONICAL_COLUMNS
    types = dict(purchases.dtypes)
    assert types["customer_id"] == "string" and types["ts"] == "timestamp"
    row = purchases.where("customer_id = '12347'").orderBy("ts").first()
    assert row is not None and row["ts"].year == 2010 and row["item_name"] == row["item_id"]


def test_each_rule_can_be_switched_off(spark: SparkSession) -> None:
    cleaning = CleaningConfig(drop_excluded_countries=False, drop_non_product=False)
    _, report = load_purchases(spark, str(ONLINE_RETAIL), MAPPING, cleaning)
    assert "excluded_country" not in report.removed and "non_product" not in report.removed
    assert report.rows_kept > 381_000


def test_another_dataset_needs_only_a_mapping(spark: SparkSession) -> None:
    source = DATA / "completejourney" / "transactions_sample.csv.gz"
    purchases, report = load_purchases(
        spark, str(source), REPO_ROOT / "conf" / "mappings" / "completejourney.toml"
    )
    assert report.rows_read == 75_000
    assert purchases.select("customer_id").distinct().count() > 1000


def test_missing_column_names_column_and_file(spark: SparkSession, tmp_path: Path) -> None:
    csv = tmp_path / "sales.csv"
    csv.write_text("CustomerID,Description\n1,MUG\n")
    with pytest.raises(InputError, match=r"sales\.csv.*'InvoiceNo'"):
        load_purchases(spark, str(csv), MAPPING)


def test_empty_input_is_an_error(spark: SparkSession, tmp_path: Path) -> None:
    csv = tmp_path / "empty.csv"
    csv.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    )
    with pytest.raises(InputError, match=r"empty\.csv has 0 rows"):
        load_purchases(spark, str(csv), MAPPING)


def test_everything_cleaned_away_is_an_error(spark: SparkSession, tmp_path: Path) -> None:
    csv = tmp_path / "cancelled.csv"
    csv.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "C1,1,MUG,-1,2011-01-01 10:00:00,1.0,5,United Kingdom\n"
    )
    with pytest.raises(InputError, match=r"all 1 rows were removed"):
        load_purchases(spark, str(csv), MAPPING)


def test_missing_path_is_an_error(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.parquet does not exist"):
        load_purchases(spark, str(tmp_path / "nowhere.parquet"), MAPPING)
