"""sampling: choose the prototype customers whose labels the LLM is paid for.

Random selection is a seeded hash order, so the same seed picks the same customers on
any cluster size or partitioning.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def prototype_count(n_customers: int, *, rate: float | None = None, tau: int | None = None) -> int:
    """tau if given, else round(rate * customers), at least 1 and at most all customers."""
    if tau is None and rate is None:
        raise ValueError("give a sample rate or a budget tau")
    wanted = tau if tau is not None else round((rate or 0.0) * n_customers)
    return max(1, min(n_customers, int(wanted)))


def random_prototypes(
    customers: DataFrame, n: int, *, seed: int = 191, exclude: DataFrame | None = None
) -> DataFrame:
    """n customers chosen uniformly at random (seeded hash order), none from ``exclude``."""
    pool = customers.select("customer_id").distinct()
    if exclude is not None:
        pool = pool.join(exclude.select("customer_id"), "customer_id", "left_anti")
    ranked = pool.withColumn("_h", F.xxhash64(F.col("customer_id").cast("string"), F.lit(seed)))
    return ranked.orderBy("_h", "customer_id").limit(n).select("customer_id")
