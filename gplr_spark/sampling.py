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

from pyspark.sql import DataFrame, SparkSession, Window
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
    ids_schema = T.StructType([T.StructField("customer_id", T.StringType())])
    labels = spark.createDataFrame([], LABEL_SCHEMA)
    # Picks live on the driver: tau customers are a few percent, and their histories are
    # collected for labeling anyway. This keeps each round to a handful of Spark jobs.
    picked: list[tuple[str, int, float | None]] = []
    reports: list[LabelingReport] = []
    n_labels = 0
    for t, wanted in enumerate(round_sizes(tau, rounds), start=1):
        size = min(wanted, remaining)
        if size <= 0:
            break
        taken = spark.createDataFrame([(c,) for c, _, _ in picked], ids_schema)
        chosen: list[tuple[str, float | None]] = []
        if t > 1 and n_labels > 0:
            aff = compute_affinity(edges, labels, eps=eps, walk_length=walk_length, beta=beta)
            scores = du_scores(aff, labels, delta=delta)
            top = top_scored(scores, size, seed=seed, pool=pool, exclude=taken).collect()
            chosen = [(r["customer_id"], float(r["score"])) for r in top]
        if len(chosen) < size:
            have = [(c,) for c, _ in chosen] + [(c,) for c, _, _ in picked]
            exclude = spark.createDataFrame(have, ids_schema)
            fill = random_prototypes(pool, size - len(chosen), seed=seed + t - 1, exclude=exclude)
            chosen += [(r["customer_id"], None) for r in fill.collect()]
        remaining -= len(chosen)
        frame = spark.createDataFrame([(c,) for c, _ in chosen], ids_schema)
        new_labels, report = label_customers(purchases, frame, catalog, labeler)
        reports.append(report)
        n_labels += report.labels
        labels = labels.unionByName(new_labels)  # local relations: no lineage to cut
        picked += [(c, t, score) for c, score in chosen]
    picks = spark.createDataFrame(picked, PICKS_SCHEMA)
    return DURounds(labels=labels, picks=picks, reports=reports)


def merge_reports(reports: list[LabelingReport], backend: str = "") -> LabelingReport:
    """One report for all rounds: counts and LLM numbers summed (flags: any round)."""
    from gplr_spark.labeling import LabelingReport

    out = LabelingReport(backend=backend or (reports[0].backend if reports else ""))
    for rep in reports:
        out.requested += rep.requested
        out.labeled += rep.labeled
        out.unrepresentable += rep.unrepresentable
        out.failed += rep.failed
        out.labels += rep.labels
        for key, value in rep.extra.items():
            if key in ("llm_budget_exhausted", "llm_structured_fallback"):
                out.extra[key] = max(out.extra.get(key, 0.0), value)
            else:
                out.extra[key] = out.extra.get(key, 0.0) + value
    out.extra["rounds"] = float(len(reports))
    return out


def candidate_pool(spark: SparkSession, spec: str, *, recorded_path: str) -> DataFrame:
    """The customers prototypes may come from: DataFrame[customer_id] (string, distinct).

    ``spec`` is ``"recorded"`` (customers of the recorded labels file at ``recorded_path``),
    or a CSV/Parquet/Delta path or table name with a ``customer_id`` (or ``CustomerID``)
    column. Ids are trimmed strings, as ingest makes them.
    """
    from gplr_spark.ingest import read_source

    if spec == "recorded":
        from gplr_spark.labeling import RecordedLabeler

        ids = RecordedLabeler(recorded_path).customer_ids()
        schema = T.StructType([T.StructField("customer_id", T.StringType())])
        return spark.createDataFrame([(i,) for i in ids], schema)
    raw = read_source(spark, spec)
    column = next((c for c in ("customer_id", "CustomerID") if c in raw.columns), None)
    if column is None:
        raise ValueError(
            f"sampling.candidate_pool {spec}: no customer_id or CustomerID column "
            f"(columns: {raw.columns})"
        )
    col = F.col(column)
    if dict(raw.dtypes)[column] in ("float", "double"):  # e.g. 12346.0, as ingest reads it
        col = col.cast(T.LongType())
    ids = F.trim(col.cast(T.StringType()))
    return raw.select(ids.alias("customer_id")).where(F.col("customer_id") != "").distinct()
