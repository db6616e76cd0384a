"""assign: from affinities to each customer's personas, with score, rank and source.

Prototypes keep their LLM labels (source 'llm'); everyone else gets the top-k personas of
their affinity row (source 'inferred'). Customers no walk reaches get no invented rows:
they are counted instead.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def top_k(affinity: DataFrame, labels: DataFrame, k: int = 5) -> DataFrame:
    """DataFrame[customer_id, persona, score, rank, source]; ties break by persona name."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    prototypes = labels.select("customer_id").distinct()
    llm = (
        labels.select("customer_id", "persona")
        .distinct()
        .join(affinity, ["customer_id", "persona"], "left")
        .select(
            "customer_id",
            "persona",
            F.coalesce("affinity", F.lit(0.0)).alias("score"),
            F.lit("llm").alias("source"),
        )
    )
    inferred = (
        affinity.join(F.broadcast(prototypes), "customer_id", "left_anti")
        .where(F.col("affinity") > 0)
        .select(
            "customer_id",
            "persona",
            F.col("affinity").alias("score"),
            F.lit("inferred").alias("source"),
        )
    )
    order = Window.partitionBy("customer_id").orderBy(F.desc("score"), F.asc("persona"))
    ranked = llm.unionByName(inferred).withColumn("rank", F.row_number().over(order))
    keep = (F.col("source") == "llm") | (F.col("rank") <= k)
    return ranked.where(keep).select(
        "customer_id", "persona", "score", F.col("rank").cast("int"), "source"
    )


def unreached_customers(assignments: DataFrame, customers: DataFrame) -> DataFrame:
    """Customers of the graph that got no persona at all (no walk reaches a prototype)."""
    return (
        customers.select("customer_id")
        .distinct()
        .join(assignments.select("customer_id").distinct(), "customer_id", "left_anti")
    )


def persona_segments(
    assignments: DataFrame, purchases: DataFrame, evidence: DataFrame, *, top_items: int = 10
) -> DataFrame:
    """One row per persona for marketing: size, reach, revenue and signature items.

    Columns: persona, customers (holders of the persona, either source), share (customers /
    all customers with a purchase), revenue (the holders' total spend, quantity x
    unit_price), revenue_share (revenue / all customers' spend), top_items (item names
    ranked by summed evidence contribution over the segment). Segments overlap: a customer
    holds several personas, so shares add up to more than 1.
    """
    if top_items < 1:
        raise ValueError(f"top_items must be >= 1, got {top_items}")
    spend = purchases.groupBy("customer_id").agg(
        F.sum(F.col("quantity") * F.col("unit_price")).alias("revenue")
    )
    totals = spend.agg(
        F.count(F.lit(1)).alias("_all_customers"), F.sum("revenue").alias("_all_revenue")
    )
    sizes = (
        assignments.select("customer_id", "persona")
        .distinct()
        .join(spend, "customer_id", "left")
        .groupBy("persona")
        .agg(F.count(F.lit(1)).alias("customers"), F.sum("revenue").alias("revenue"))
    )
    weight = evidence.groupBy("persona", "item_id", "item_name").agg(
        F.sum("contribution").alias("_w")
    )
    best = Window.partitionBy("persona").orderBy(F.desc("_w"), F.asc("item_id"))
    signature = (
        weight.withColumn("_r", F.row_number().over(best))
        .where(F.col("_r") <= top_items)
        .groupBy("persona")
        .agg(F.sort_array(F.collect_list(F.struct("_r", "item_name"))).alias("_items"))
        .select("persona", F.col("_items.item_name").alias("top_items"))
    )
    return (
        sizes.crossJoin(F.broadcast(totals))
        .join(signature, "persona", "left")
        .select(
            "persona",
            F.col("customers").cast("long"),
            (F.col("customers") / F.col("_all_customers")).alias("share"),
            F.col("revenue").cast("double"),
            (F.col("revenue") / F.col("_all_revenue")).alias("revenue_share"),
            F.coalesce("top_items", F.array().cast("array<string>")).alias("top_items"),
        )
    )
