"""evidence: the items through which each assigned persona reached a customer.

Every walk of Pi ends with an item -> customer hop, so an affinity splits exactly over the
customer's own items. With X_0 = L, Y_j = P' X_{j-1} (items) and X_j = P Y_j (customers):

    Psi[u, r] = (1/l) sum_j X_j[u, r] = sum_{v in N(u)} Ybar[v, r] / d(u),
    Ybar[v, r] = (1/l) sum_{j=1..l} Y_j[v, r].

The contribution of item v to Psi[u, r] is Ybar[v, r] / d(u), and the contributions of all
of u's items add up to Psi[u, r]. For l = 1, Ybar[v, r] = (1/d(v)) sum_{w in N(v)} L[w, r]:
the labelled persona mass of v's buyers, so v "explains" r when prototypes labelled r
bought it too. For l > 1 the contribution is what reached u through v on the LAST hop
(walks that went further afield are credited to the item they came back through).

The contributions are exact (no eps), so they add up to the exact affinity, which is within
eps of the RevAff estimate in customer_personas. Everything stays in DataFrames: the
item-side Ybar is items x personas, the pairs side one join with the edges.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from gplr_spark.affinity import initial_residues


def item_persona_mass(
    edges: DataFrame, labels: DataFrame, *, walk_length: int = 1, beta: float = 0.5
) -> DataFrame:
    """Ybar: DataFrame[item_id, persona, mass], the mean over j of the item-side mass Y_j."""
    if walk_length < 1:
        raise ValueError(f"walk_length must be >= 1, got {walk_length}")
    hop = edges.select(
        "customer_id",
        "item_id",
        (1.0 / F.col("customer_degree")).alias("inv_customer_degree"),
        (1.0 / F.col("item_degree")).alias("inv_item_degree"),
    )
    x = initial_residues(labels, beta)  # customer_id, persona, value: X_0 = L
    parts: list[DataFrame] = []
    for j in range(1, walk_length + 1):
        y = (
            x.join(hop, "customer_id")
            .groupBy("item_id", "persona")
            .agg(F.sum(F.col("value") * F.col("inv_item_degree")).alias("value"))
            .localCheckpoint(eager=True)
        )
        parts.append(y)
        if j < walk_length:
            x = (
                y.join(hop, "item_id")
                .groupBy("customer_id", "persona")
                .agg(F.sum(F.col("value") * F.col("inv_customer_degree")).alias("value"))
                .localCheckpoint(eager=True)
            )
    total = parts[0]
    for part in parts[1:]:
        total = total.unionByName(part)
    return total.groupBy("item_id", "persona").agg(
        (F.sum("value") / F.lit(float(walk_length))).alias("mass")
    )


def item_contributions(edges: DataFrame, mass: DataFrame, pairs: DataFrame) -> DataFrame:
    """Every item's part of Psi[u, r] for the (customer_id, persona) ``pairs``.

    Columns: customer_id, persona, item_id, contribution (> 0). Per pair they sum to Psi.
    """
    return (
        pairs.select("customer_id", "persona")
        .distinct()
        .join(edges.select("customer_id", "item_id", "customer_degree"), "customer_id")
        .join(mass, ["item_id", "persona"])
        .select(
            "customer_id",
            "persona",
            "item_id",
            (F.col("mass") / F.col("customer_degree")).alias("contribution"),
        )
        .where(F.col("contribution") > 0)
    )


def persona_evidence(
    edges: DataFrame,
    labels: DataFrame,
    assignments: DataFrame,
    names: DataFrame,
    *,
    walk_length: int = 1,
    beta: float = 0.5,
    top_n: int = 5,
) -> DataFrame:
    """The ``top_n`` items behind each assigned (customer, persona), strongest first.

    Columns: customer_id, persona, item_id, item_name, contribution. ``labels`` and ``beta``
    must be the ones the affinity was computed with; ``names`` is DataFrame[item_id,
    item_name] (graph.item_names). Ties break by item_id.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    mass = item_persona_mass(edges, labels, walk_length=walk_length, beta=beta)
    parts = item_contributions(edges, mass, assignments)
    order = Window.partitionBy("customer_id", "persona").orderBy(
        F.desc("contribution"), F.asc("item_id")
    )
    top = parts.withColumn("_rank", F.row_number().over(order)).where(F.col("_rank") <= top_n)
    return top.join(names, "item_id", "left").select(
        "customer_id",
        "persona",
        "item_id",
        F.coalesce("item_name", "item_id").alias("item_name"),
        "contribution",
    )
