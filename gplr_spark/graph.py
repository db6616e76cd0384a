"""graph: the unweighted bipartite customer-item purchase graph, as DataFrames.

As in the paper, an edge is a unique (customer, item) pair: quantities do not weight the
walk (they only reach the LLM prompt). Degrees ride along on every edge, so each push hop
is one join plus one group-by with no extra lookups.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


@dataclass(frozen=True)
class GraphStats:
    customers: int
    items: int
    edges: int

    def as_dict(self) -> dict[str, int]:
        return {"customers": self.customers, "items": self.items, "edges": self.edges}


def build_edges(purchases: DataFrame) -> DataFrame:
    """Unique (customer_id, item_id) edges with summed quantity and both degrees.

    Columns: customer_id, item_id, quantity, customer_degree, item_degree.
    """
    pairs = purchases.groupBy("customer_id", "item_id").agg(
        F.sum(F.coalesce(F.col("quantity"), F.lit(1))).alias("quantity")
    )
    return pairs.withColumn(
        "customer_degree", F.count(F.lit(1)).over(Window.partitionBy("customer_id"))
    ).withColumn("item_degree", F.count(F.lit(1)).over(Window.partitionBy("item_id")))


def graph_stats(edges: DataFrame) -> GraphStats:
    """Customers, items and edges of an edge table, in one Spark job."""
    row = edges.agg(
        F.countDistinct("customer_id").alias("customers"),
        F.countDistinct("item_id").alias("items"),
        F.count(F.lit(1)).alias("edges"),
    ).first()
    assert row is not None
    return GraphStats(int(row["customers"]), int(row["items"]), int(row["edges"]))


def item_names(purchases: DataFrame) -> DataFrame:
    """One display name per item (the most frequent one), for prompts and evidence."""
    counts = purchases.groupBy("item_id", "item_name").count()
    best = Window.partitionBy("item_id").orderBy(F.desc("count"), F.asc("item_name"))
    return (
        counts.withColumn("_r", F.row_number().over(best))
        .where("_r = 1")
        .select("item_id", "item_name")
    )
