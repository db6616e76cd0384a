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
