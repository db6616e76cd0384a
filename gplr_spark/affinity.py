"""affinity: every customer's persona affinities Psi = Pi L, by a distributed reverse push.

Psi = (1/l) sum_{j=1..l} (P P')^j L is computed right to left as hop-synchronous RevAff
(Shi et al., Algorithm 2): residues live on (node, persona); one hop is one join with the
edges and one group-by-sum, dividing by the receiving node's degree. With eps > 0 every
residue below eps / (2l) is dropped before it is pushed, which bounds the error of every
entry by eps (a dropped residue r reaches any customer with walk probability <= 1, and
each of the 2l hops drops less than eps / (2l) per customer). eps = 0 is exact.
Lineage is cut after every hop: without it planning cost grows with the loop.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

Lineage = Literal["local", "reliable"]


@dataclass
class HopStats:
    hop: int
    direction: str
    rows: int
    pushed: int
    dropped_mass: float
    seconds: float


@dataclass
class AffinityReport:
    """What the push did: the bound, per-hop sizes, dropped mass, and affinity scale."""

    eps: float
    walk_length: int
    beta: float
    threshold: float
    hops: list[HopStats] = field(default_factory=list)
    rows: int = 0
    max_affinity: float = 0.0
    median_row_max: float = 0.0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def debias_weights(labels: DataFrame, beta: float) -> DataFrame:
    """c_r = (min_r' Qhat(r') / Qhat(r))^beta over the labelled personas: DataFrame[persona, c]."""
    counts = labels.groupBy("persona").agg(F.count(F.lit(1)).alias("n"))
    least = F.min("n").over(Window.partitionBy())
    return counts.select("persona", F.pow(least / F.col("n"), F.lit(float(beta))).alias("c"))


def initial_residues(labels: DataFrame, beta: float) -> DataFrame:
    """L[u, r] = c_r * Phi[u, r] / sum_r' Phi[u, r'] of each prototype u.

    Columns: customer_id, persona, value."""
    distinct = labels.select("customer_id", "persona").distinct()
    per_user = Window.partitionBy("customer_id")
    weights = F.broadcast(debias_weights(distinct, beta))
    return (
        distinct.withColumn("_n", F.count(F.lit(1)).over(per_user))
        .join(weights, "persona")
        .select("customer_id", "persona", (F.col("c") / F.col("_n")).alias("value"))
    )


def _cut(df: DataFrame, lineage: Lineage) -> DataFrame:
    return df.localCheckpoint(eager=True) if lineage == "local" else df.checkpoint(eager=True)


def _hop(residues: DataFrame, edges: DataFrame, to_items: bool) -> DataFrame:
    """One push: every residue spreads to its neighbours, divided by the receiver's degree."""
    src, dst, inv = (
        ("customer_id", "item_id", "inv_item_degree")
        if to_items
        else ("item_id", "customer_id", "inv_customer_degree")
    )
    moved = residues.join(edges.select(src, dst, inv), src).select(
        F.col(dst).alias("node"), "persona", (F.col("value") * F.col(inv)).alias("value")
    )
    return (
        moved.groupBy("node", "persona")
        .agg(F.sum("value").alias("value"))
        .withColumnRenamed("node", dst)
    )


def compute_affinity(
    edges: DataFrame,
    labels: DataFrame,
    *,
    eps: float = 0.0,
    walk_length: int = 1,
    beta: float = 0.5,
    lineage: Lineage = "local",
    report: AffinityReport | None = None,
) -> DataFrame:
    """Persona affinities of every reachable customer: DataFrame[customer_id, persona, affinity].

    ``edges`` needs customer_id, item_id, customer_degree, item_degree (see graph.build_edges);
    ``labels`` is DataFrame[customer_id, persona], one row per prototype label. Each entry is
    within ``eps`` of the exact Psi; zero entries are left out.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if walk_length < 1:
        raise ValueError(f"walk_length must be >= 1, got {walk_length}")
    started = time.perf_counter()
    threshold = eps / (2 * walk_length)
    rep = report if report is not None else AffinityReport(eps, walk_length, beta, threshold)
    rep.eps, rep.walk_length, rep.beta, rep.threshold = eps, walk_length, beta, threshold
    hop_edges = edges.select(
        "customer_id",
        "item_id",
        (1.0 / F.col("customer_degree")).alias("inv_customer_degree"),
        (1.0 / F.col("item_degree")).alias("inv_item_degree"),
    )
    residues = _cut(initial_residues(labels, beta), lineage)
    estimates: list[DataFrame] = []
    for hop in range(1, 2 * walk_length + 1):
        t0 = time.perf_counter()
        to_items = hop % 2 == 1
        stats = residues.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(F.when(F.col("value") >= threshold, 1)).alias("pushed"),
            F.sum(F.when(F.col("value") < threshold, F.col("value"))).alias("dropped"),
        ).first()
        if threshold > 0:
            residues = residues.where(F.col("value") >= threshold)
        residues = _cut(_hop(residues, hop_edges, to_items), lineage)
        rep.hops.append(
            HopStats(
                hop=hop,
                direction="customer->item" if to_items else "item->customer",
                rows=int(stats["rows"]),
                pushed=int(stats["pushed"]),
                dropped_mass=float(stats["dropped"] or 0.0),
                seconds=time.perf_counter() - t0,
            )
        )
        if not to_items:
            estimates.append(residues)
    total = estimates[0]
    for part in estimates[1:]:
        total = total.unionByName(part)
    if len(estimates) > 1:
        total = total.groupBy("customer_id", "persona").agg(F.sum("value").alias("value"))
    result = _cut(
        total.select(
            "customer_id", "persona", (F.col("value") / F.lit(walk_length)).alias("affinity")
        ).where(F.col("affinity") > 0),
        lineage,
    )
    row_max = result.groupBy("customer_id").agg(F.max("affinity").alias("m"))
    scale = row_max.agg(
        F.count(F.lit(1)).alias("customers"),
        F.max("m").alias("max"),
        F.percentile_approx("m", 0.5).alias("median"),
    ).first()
    rep.rows = int(result.count())
    rep.max_affinity = float(scale["max"] or 0.0)
    rep.median_row_max = float(scale["median"] or 0.0)
    if eps > 0 and rep.median_row_max > 0 and eps > 0.1 * rep.median_row_max:
        rep.warnings.append(
            f"eps={eps:g} is {eps / rep.median_row_max:.1f}x the median row maximum "
            f"({rep.median_row_max:.3g}): top-k sets will be unreliable; use eps <= "
            f"{0.1 * rep.median_row_max:.2g}"
        )
    rep.seconds = time.perf_counter() - started
    return result
