"""data: the evaluation's inputs, read once: purchases and edges through the project's Spark
stages, recorded LLM labels, item labels and the paper's train/test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from gplr_spark.config import RunConfig
from gplr_spark.labeling import validate_personas
from gplr_spark.personas import Catalog
from gplr_spark.session import REPO_ROOT

LABELS_DIR = REPO_ROOT / "data" / "online_retail_gpt4_labels"


@dataclass
class Purchases:
    """Cleaned purchase lines (pandas, driver-side) and unique edges with summed quantity."""

    lines: pd.DataFrame  # customer_id, item_id, quantity, unit_price, ts, order_id
    edges: pd.DataFrame  # customer_id, item_id, quantity
    spark_edges: DataFrame | None = None  # graph.build_edges output, for the Spark check


def load_purchases_pd(spark: SparkSession, cfg: RunConfig) -> Purchases:
    """Ingest and graph stages on Spark, then collect (~400k lines fit the driver easily)."""
    from gplr_spark.graph import build_edges
    from gplr_spark.ingest import load_purchases

    purchases, _ = load_purchases(
        spark, cfg.source(), cfg.resolve(cfg.input.mapping), cfg.cleaning, cfg.input.format
    )
    purchases = purchases.localCheckpoint(eager=True)
    spark_edges = build_edges(purchases).localCheckpoint(eager=True)
    edges = spark_edges.select("customer_id", "item_id", "quantity").toPandas()
    lines = purchases.select(
        "customer_id", "item_id", "quantity", "unit_price", F.col("ts"), "order_id"
    ).toPandas()
    return Purchases(lines=lines, edges=edges, spark_edges=spark_edges)


def load_catalog(path: str | Path | None = None) -> Catalog:
    return Catalog.from_csv(path or REPO_ROOT / "data" / "catalogs" / "online_retail_paper.csv")


def load_user_labels(catalog: Catalog, path: str | Path | None = None) -> dict[str, frozenset]:
    """Recorded labels per customer, validated against the catalog (up to 8 personas).

    Unrepresentable customers map to an empty set; rejected rows are left out.
    """
    table = pd.read_csv(path or LABELS_DIR / "user_labels_even_ids.csv", dtype={"CustomerID": str})
    out: dict[str, frozenset] = {}
    for cid, raw in zip(table.CustomerID, table.personas.fillna(""), strict=True):
        names = [p for p in str(raw).split("|") if p]
        personas, _ = validate_personas(names, catalog, max_personas=8)
        if personas is not None:
            out[cid] = frozenset(personas)
    return out


def load_item_labels(catalog: Catalog, path: str | Path | None = None) -> dict[str, frozenset]:
    """LLM item labels per product name (Description, stripped); empty for non-products."""
    table = pd.read_csv(path or LABELS_DIR / "item_labels.csv", keep_default_na=False)
    out: dict[str, frozenset] = {}
    for name, raw in zip(table.Description, table.personas, strict=True):
        names = [p for p in str(raw).split("|") if p]
        personas, _ = validate_personas(names, catalog, min_personas=0, max_personas=8)
        out[str(name).strip()] = frozenset(personas or ())
    return out


def load_split(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's per-customer 80/20 split: customer_id, item_id, split, quantity."""
    table = pd.read_csv(
        path or LABELS_DIR / "split.csv.gz", dtype={"CustomerID": str}, keep_default_na=False
    )
    return table.rename(
        columns={"CustomerID": "customer_id", "Description": "item_id", "quantity_sum": "quantity"}
    )


def persona_matrix(keys: pd.Index, labels: dict[str, frozenset], personas: list[str]) -> np.ndarray:
    """keys x personas 0/1 matrix from a label dict (missing keys: zero rows)."""
    col = {p: j for j, p in enumerate(personas)}
    out = np.zeros((len(keys), len(personas)))
    for i, key in enumerate(keys):
        for p in labels.get(key, ()):
            out[i, col[p]] = 1.0
    return out
