"""sampling: choose the prototype customers whose labels the LLM is paid for.

Random selection is a seeded hash order, so the same seed picks the same customers on
any cluster size or partitioning. Diversity-Uncertainty sampling spends the budget over
rounds, each after the first taking the customers whose affinity distribution is most
uncertain and most unlike the labels bought so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

if TYPE_CHECKING:
    from gplr_spark.labeling import Labeler, LabelingReport
    from gplr_spark.personas import Catalog


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


# ---------------------------------------------------------------------------------------------
# Diversity-Uncertainty sampling (paper section 3; released code's scoring)
# ---------------------------------------------------------------------------------------------

KL_DELTA = 1e-16


def label_shares(labels: DataFrame) -> DataFrame:
    """Qhat: each persona's share among all labels given so far, DataFrame[persona, share]."""
    counts = labels.groupBy("persona").agg(F.count(F.lit(1)).alias("n"))
    return counts.select(
        "persona", (F.col("n") / F.sum("n").over(Window.partitionBy())).alias("share")
    )


def du_scores(affinity: DataFrame, labels: DataFrame, *, delta: float = KL_DELTA) -> DataFrame:
    """s(u) = KL(Qhat || Q_u) + H(Q_u) for every customer with an affinity row.

    Q_u(r) = Psi[u, r] / sum_r' Psi[u, r'];  Qhat as in ``label_shares``;
    KL(Qhat || Q_u) = sum_{r: Qhat(r) > 0} Qhat(r) log(Qhat(r) / (Q_u(r) + delta)) with the
    released code's delta = 1e-16 (a labeled persona the customer cannot reach adds
    Qhat(r) (log Qhat(r) + 36.8)). Only the sparse affinity rows are read: with
    C = sum_r Qhat log Qhat and the sum over personas with Qhat(r) > 0 and Q_u(r) > 0,
        KL = C - log(delta) - sum Qhat(r) (log(Q_u(r) + delta) - log(delta)).
    Customers no walk reaches have no Q_u and get no score. Returns
    DataFrame[customer_id, kl, entropy, score].
    """
    shares = label_shares(labels)
    const = shares.agg(F.sum(F.col("share") * F.log("share")).alias("_c"))
    log_delta = F.lit(math.log(delta))
    q = F.col("affinity") / F.sum("affinity").over(Window.partitionBy("customer_id"))
    rows = (
        affinity.where(F.col("affinity") > 0)
        .select("customer_id", "persona", q.alias("q"))
        .join(F.broadcast(shares), "persona", "left")
    )
    per_user = rows.groupBy("customer_id").agg(
        (-F.sum(F.col("q") * F.log("q"))).alias("entropy"),
        F.sum(
            F.coalesce(F.col("share") * (F.log(F.col("q") + F.lit(delta)) - log_delta), F.lit(0.0))
        ).alias("_m"),
    )
    kl = F.col("_c") - log_delta - F.col("_m")
    return per_user.crossJoin(F.broadcast(const)).select(
        "customer_id", kl.alias("kl"), "entropy", (kl + F.col("entropy")).alias("score")
    )


def top_scored(
    scores: DataFrame,
    n: int,
    *,
    seed: int = 191,
    pool: DataFrame | None = None,
    exclude: DataFrame | None = None,
) -> DataFrame:
    """The n highest-scoring customers (ties broken by a seeded hash), within ``pool`` and
    outside ``exclude``: DataFrame[customer_id, score]."""
    ranked = scores.select("customer_id", "score").where(F.col("score").isNotNull())
    if pool is not None:
        ranked = ranked.join(pool.select("customer_id").distinct(), "customer_id", "left_semi")
    if exclude is not None:
        ranked = ranked.join(exclude.select("customer_id"), "customer_id", "left_anti")
    tie = F.xxhash64(F.col("customer_id").cast("string"), F.lit(seed))
    return ranked.orderBy(F.desc("score"), tie, "customer_id").limit(n)


def round_sizes(tau: int, rounds: int) -> list[int]:
    """tau split over rounds as evenly as possible, earlier rounds taking the remainder."""
    if tau < 1 or rounds < 1:
        raise ValueError(f"tau and rounds must be >= 1, got tau={tau}, rounds={rounds}")
    base, extra = divmod(tau, rounds)
    return [base + (1 if t < extra else 0) for t in range(rounds) if base or t < extra]


@dataclass
class DURounds:
    """Labels bought over all rounds, which customers each round picked, per-round reports."""

    labels: DataFrame
    picks: DataFrame
    reports: list[LabelingReport] = field(default_factory=list)


PICKS_SCHEMA = T.StructType(
    [
        T.StructField("customer_id", T.StringType()),
        T.StructField("round", T.IntegerType()),
        T.StructField("score", T.DoubleType()),
    ]
)


def diversity_uncertainty_rounds(
    edges: DataFrame,
    purchases: DataFrame,
    catalog: Catalog,
    labeler: Labeler,
    *,
    tau: int,
    rounds: int,
    seed: int = 191,
    candidates: DataFrame | None = None,
    eps: float = 0.0,
    walk_length: int = 1,
    beta: float = 0.0,
    delta: float = KL_DELTA,
) -> DURounds:
    """Spend budget tau over T rounds: round 1 random, then the top s(u) each round.

    Between rounds the affinities of all labels so far are recomputed (``compute_affinity``
    with ``beta`` = 0 by default: the released code scores Psi without de-bias). Only
    customers of the graph that are in ``candidates`` (if given, e.g. those with consent) are
    picked, and no customer is picked twice, whatever its labeling outcome. A round with no
    labels to score from, or fewer scored customers than it needs, is filled at random.
    """
    from gplr_spark.affinity import compute_affinity
    from gplr_spark.labeling import LABEL_SCHEMA, label_customers

    spark = edges.sparkSession
    pool = edges.select("customer_id").distinct()
    if candidates is not None:
        pool = pool.join(candidates.select("customer_id").distinct(), "customer_id", "left_semi")
    pool = pool.localCheckpoint(eager=True)
    remaining = pool.count()
    labels = spark.createDataFrame([], LABEL_SCHEMA)
    picks = spark.createDataFrame([], PICKS_SCHEMA)
    reports: list[LabelingReport] = []
    n_labels = 0
    for t, wanted in enumerate(round_sizes(tau, rounds), start=1):
        size = min(wanted, remaining)
        if size <= 0:
            break
        chosen: DataFrame | None = None
        if t > 1 and n_labels > 0:
            aff = compute_affinity(edges, labels, eps=eps, walk_length=walk_length, beta=beta)
            scores = du_scores(aff, labels, delta=delta)
            chosen = top_scored(scores, size, seed=seed, pool=pool, exclude=picks)
            chosen = chosen.localCheckpoint(eager=True)
        have = chosen.count() if chosen is not None else 0
        if have < size:
            taken = picks.select("customer_id")
            if chosen is not None:
                taken = taken.unionByName(chosen.select("customer_id"))
            fill = random_prototypes(pool, size - have, seed=seed + t - 1, exclude=taken)
            fill = fill.select("customer_id", F.lit(None).cast("double").alias("score"))
            chosen = fill if chosen is None else chosen.unionByName(fill)
            chosen = chosen.localCheckpoint(eager=True)
        remaining -= size
        new_labels, report = label_customers(purchases, chosen, catalog, labeler)
        reports.append(report)
        n_labels += report.labels
        labels = labels.unionByName(new_labels).localCheckpoint(eager=True)
        picks = picks.unionByName(
            chosen.select("customer_id", F.lit(t).cast("int").alias("round"), "score")
        ).localCheckpoint(eager=True)
    return DURounds(labels=labels, picks=picks, reports=reports)
