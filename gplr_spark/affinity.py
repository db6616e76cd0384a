"""affinity: every customer's persona affinities Psi = Pi L, by a distributed reverse push.

Psi = (1/l) sum_{j=1..l} (P P')^j L is computed right to left as hop-synchronous RevAff
(Shi et al., Algorithm 2): residues live on (node, persona); one hop is one join with the
edges and one group-by-sum, dividing by the receiving node's degree. With eps > 0 every
residue below eps / (2l) is dropped before it is pushed, which bounds the error of every
entry by eps (a dropped residue r reaches any customer with walk probability <= 1, and
each of the 2l hops drops less than eps / (2l) per customer). eps = 0 is exact.
Lineage is cut after every hop: without it planning cost grows with the loop.

Two engines compute the same numbers:

- ``matrix`` (default): customers' adjacency lists live in Arrow batches, partitioned by
  customer; the item side (|V| x |R|, small) is reduced on the driver and broadcast, and each
  partition multiplies its sparse adjacency block with scipy. One pass per hop, no shuffle.
- ``long``: residues as (node, persona, value) rows; one join + group-by per hop. Needs no
  item-sized memory on the driver, so it is the fallback for catalogues too large to
  broadcast (millions of items times hundreds of personas).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

Lineage = Literal["local", "reliable"]
Engine = Literal["matrix", "long"]
ENGINES: tuple[str, ...] = ("matrix", "long")


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
    engine: str = "matrix"
    partitions: int = 0
    hops: list[HopStats] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
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


def _long_push(
    edges: DataFrame,
    init: DataFrame,
    *,
    walk_length: int,
    threshold: float,
    lineage: Lineage,
    rep: AffinityReport,
) -> DataFrame:
    """Residues as (node, persona, value) rows: one join + group-by-sum per hop."""
    hop_edges = edges.select(
        "customer_id",
        "item_id",
        (1.0 / F.col("customer_degree")).alias("inv_customer_degree"),
        (1.0 / F.col("item_degree")).alias("inv_item_degree"),
    )
    residues = _cut(init, lineage)
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
                direction=_direction(hop),
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
    return total.select(
        "customer_id", "persona", (F.col("value") / F.lit(walk_length)).alias("affinity")
    ).where(F.col("affinity") > 0)


def _direction(hop: int) -> str:
    return "customer->item" if hop % 2 == 1 else "item->customer"


# ---------------------------------------------------------------------------------------------
# matrix engine: per-partition scipy products against a broadcast item-side matrix
# ---------------------------------------------------------------------------------------------

_PARTIAL_SCHEMA = T.StructType(
    [
        T.StructField("idx", T.BinaryType()),
        T.StructField("val", T.BinaryType()),
        T.StructField("rows", T.LongType()),
        T.StructField("pushed", T.LongType()),
        T.StructField("dropped", T.DoubleType()),
    ]
)


def _state_schema(customer_type: T.DataType) -> T.StructType:
    return T.StructType(
        [
            T.StructField("customer_id", customer_type),
            T.StructField("items", T.ArrayType(T.IntegerType())),
            T.StructField("x", T.ArrayType(T.DoubleType())),
            T.StructField("acc", T.ArrayType(T.DoubleType())),
        ]
    )


def _wide_schema(customer_type: T.DataType) -> T.StructType:
    return T.StructType(
        [
            T.StructField("customer_id", customer_type),
            T.StructField("psi", T.ArrayType(T.DoubleType())),
        ]
    )


def _adjacency(batch: pa.RecordBatch, n_items: int) -> sp.csr_matrix:
    """The batch's customers x items 0/1 matrix from its ``items`` list column."""
    items = batch.column("items")
    lengths = items.value_lengths().to_numpy(zero_copy_only=False)
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = items.flatten().to_numpy(zero_copy_only=False)
    data = np.ones(len(indices))
    return sp.csr_matrix((data, indices, indptr), shape=(len(lengths), n_items))


def _dense(batch: pa.RecordBatch, name: str, width: int) -> np.ndarray:
    """A fixed-width list<double> column as an (n, width) array."""
    return batch.column(name).flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


def _list_column(matrix: np.ndarray) -> pa.ListArray:
    n, width = matrix.shape
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.ravel()))


def _prune(values: np.ndarray, threshold: float) -> tuple[int, int, float]:
    """Zero entries below the threshold in place: (non-zero rows, pushed, dropped mass)."""
    nonzero = values > 0
    small = nonzero & (values < threshold)
    dropped = float(values[small].sum())
    values[small] = 0.0
    return int(nonzero.sum()), int(nonzero.sum() - small.sum()), dropped


def _partition_count(spark_parallelism: int, n_edges: int, requested: int | None) -> int:
    """Sized to the data: about 2M edges per partition, a multiple of the cores, >= cores."""
    if requested:
        return requested
    per_core = max(1, math.ceil(n_edges / 2_000_000 / spark_parallelism))
    return spark_parallelism * per_core


def _matrix_push(
    edges: DataFrame,
    init: DataFrame,
    personas: list[str],
    *,
    walk_length: int,
    threshold: float,
    lineage: Lineage,
    partitions: int | None,
    rep: AffinityReport,
) -> DataFrame:
    """Customers' adjacency in Arrow batches x a broadcast dense item-side matrix, per hop."""
    spark = edges.sparkSession
    sc = spark.sparkContext
    t_start = time.perf_counter()
    customer_type = edges.schema["customer_id"].dataType
    out_schema, state_schema = _wide_schema(customer_type), _state_schema(customer_type)
    # Index the item side on the driver (item-sized: |V| ids and degrees).
    items_pdf = edges.groupBy("item_id").agg(F.max("item_degree").alias("item_degree")).toPandas()
    items_pdf = items_pdf.sort_values("item_id", kind="stable").reset_index(drop=True)
    n_items = len(items_pdf)
    inv_item_degree = 1.0 / items_pdf["item_degree"].to_numpy(dtype=np.float64)
    items_pdf["item_idx"] = np.arange(n_items, dtype=np.int32)
    item_index = spark.createDataFrame(items_pdf[["item_id", "item_idx"]])
    width = len(personas)
    persona_idx = (F.array_position(F.array(*map(F.lit, personas)), F.col("persona")) - 1).cast(
        "int"
    )

    rep.phases["item_index"] = time.perf_counter() - t_start
    indexed = edges.select("customer_id", "item_id").join(F.broadcast(item_index), "item_id")
    n_edges = int(items_pdf["item_degree"].sum())
    n_parts = _partition_count(sc.defaultParallelism, n_edges, partitions)
    rep.partitions = n_parts
    adjacency = _cut(
        indexed.groupBy("customer_id")
        .agg(F.collect_list("item_idx").alias("items"))
        .repartition(n_parts, "customer_id"),
        lineage,
    )

    rep.phases["adjacency"] = time.perf_counter() - t_start - rep.phases["item_index"]
    # Hop 1 pushes the prototypes' labels (few rows) with a join: L is too sparse to densify.
    t0 = time.perf_counter()
    residues = init.select("customer_id", persona_idx.alias("p"), "value")
    stats = residues.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(F.when(F.col("value") >= threshold, 1)).alias("pushed"),
        F.sum(F.when(F.col("value") < threshold, F.col("value"))).alias("dropped"),
    ).first()
    item_sums = (
        residues.where(F.col("value") >= threshold)
        .join(indexed.select("customer_id", "item_idx"), "customer_id")
        .groupBy("item_idx", "p")
        .agg(F.sum("value").alias("value"))
        .toPandas()
    )
    y = np.zeros((n_items, width))
    y[item_sums["item_idx"].to_numpy(), item_sums["p"].to_numpy()] = item_sums["value"].to_numpy()
    rep.hops.append(
        HopStats(
            1,
            _direction(1),
            int(stats["rows"]),
            int(stats["pushed"]),
            float(stats["dropped"] or 0.0),
            time.perf_counter() - t0,
        )
    )

    state = adjacency
    for step in range(1, walk_length + 1):
        # Even hop 2*step: items -> customers through the broadcast item-side matrix.
        t0 = time.perf_counter()
        y *= inv_item_degree[:, None]
        rows, pushed, dropped = _prune(y, threshold)
        y_bc = sc.broadcast(y)
        last = step == walk_length
        first = step == 1
        scale = 1.0 / walk_length

        def to_customers(
            batches: Iterator[pa.RecordBatch],
            y_bc=y_bc,
            last: bool = last,
            first: bool = first,
            scale: float = scale,
        ) -> Iterator[pa.RecordBatch]:
            item_side = y_bc.value
            for batch in batches:
                adj = _adjacency(batch, item_side.shape[0])
                degree = np.asarray(adj.sum(axis=1)).ravel()
                x = np.asarray(adj @ item_side) / degree[:, None]
                acc = x if first else _dense(batch, "acc", width) + x
                if last:  # one wide row per customer: |R| doubles, not |R| rows
                    yield pa.RecordBatch.from_arrays(
                        [batch.column("customer_id"), _list_column(acc * scale)],
                        names=["customer_id", "psi"],
                    )
                else:
                    yield pa.RecordBatch.from_arrays(
                        [
                            batch.column("customer_id"),
                            batch.column("items"),
                            _list_column(x),
                            _list_column(acc),
                        ],
                        names=["customer_id", "items", "x", "acc"],
                    )

        state = state.mapInArrow(to_customers, out_schema if last else state_schema)
        if not last:  # the last pass is materialized once, by the caller's cut
            state = _cut(state, lineage)
        y_bc.unpersist()
        rep.hops.append(
            HopStats(
                2 * step, _direction(2 * step), rows, pushed, dropped, time.perf_counter() - t0
            )
        )
        if last:
            break

        # Odd hop 2*step+1: customers -> items, partial item sums per partition, summed here.
        t0 = time.perf_counter()

        def to_items(
            batches: Iterator[pa.RecordBatch], threshold: float = threshold
        ) -> Iterator[pa.RecordBatch]:
            total: np.ndarray | None = None
            rows = pushed = 0
            dropped = 0.0
            for batch in batches:
                adj = _adjacency(batch, n_items)
                x = _dense(batch, "x", width).copy()
                n, p, d = _prune(x, threshold)
                rows, pushed, dropped = rows + n, pushed + p, dropped + d
                part = np.asarray((adj.T @ sp.csr_matrix(x)).todense())
                total = part if total is None else total + part
            flat = np.flatnonzero(total) if total is not None else np.zeros(0, dtype=np.int64)
            values = total.ravel()[flat] if total is not None else np.zeros(0)
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array([flat.astype(np.int64).tobytes()], pa.binary()),
                    pa.array([values.tobytes()], pa.binary()),
                    pa.array([rows], pa.int64()),
                    pa.array([pushed], pa.int64()),
                    pa.array([dropped], pa.float64()),
                ],
                names=["idx", "val", "rows", "pushed", "dropped"],
            )

        partials = state.mapInArrow(to_items, _PARTIAL_SCHEMA).collect()
        flat_y = np.zeros(n_items * width)
        for part in partials:
            idx = np.frombuffer(part["idx"], dtype=np.int64)
            flat_y += np.bincount(idx, np.frombuffer(part["val"]), minlength=n_items * width)
        y = flat_y.reshape(n_items, width)
        rep.hops.append(
            HopStats(
                2 * step + 1,
                _direction(2 * step + 1),
                sum(int(p["rows"]) for p in partials),
                sum(int(p["pushed"]) for p in partials),
                sum(float(p["dropped"]) for p in partials),
                time.perf_counter() - t0,
            )
        )
    return state


def compute_affinity(
    edges: DataFrame,
    labels: DataFrame,
    *,
    eps: float = 0.0,
    walk_length: int = 1,
    beta: float = 0.5,
    engine: Engine = "matrix",
    partitions: int | None = None,
    lineage: Lineage = "local",
    report: AffinityReport | None = None,
) -> DataFrame:
    """Persona affinities of every reachable customer: DataFrame[customer_id, persona, affinity].

    ``edges`` needs customer_id, item_id, customer_degree, item_degree (see graph.build_edges);
    ``labels`` is DataFrame[customer_id, persona], one row per prototype label. Each entry is
    within ``eps`` of the exact Psi; zero entries are left out. ``engine`` picks the
    representation (same numbers, see the module docstring); ``partitions`` overrides the
    matrix engine's data-sized partition count.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if walk_length < 1:
        raise ValueError(f"walk_length must be >= 1, got {walk_length}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    started = time.perf_counter()
    threshold = eps / (2 * walk_length)
    rep = report if report is not None else AffinityReport(eps, walk_length, beta, threshold)
    rep.eps, rep.walk_length, rep.beta, rep.threshold = eps, walk_length, beta, threshold
    rep.engine = engine
    rep.hops.clear()
    rep.warnings.clear()
    init = _cut(initial_residues(labels, beta), lineage)
    personas = sorted(r["persona"] for r in init.select("persona").distinct().collect())
    rep.phases = {"labels": time.perf_counter() - started}
    if not personas:
        raise ValueError("labels is empty: no prototype persona to propagate")
    if engine == "matrix":
        raw = _matrix_push(
            edges,
            init,
            personas,
            walk_length=walk_length,
            threshold=threshold,
            lineage=lineage,
            partitions=partitions,
            rep=rep,
        )
    else:
        raw = _long_push(
            edges, init, walk_length=walk_length, threshold=threshold, lineage=lineage, rep=rep
        )
    t0 = time.perf_counter()
    if engine == "matrix":
        # Materialize one array row per customer (|U| rows, not |U| x |R|) and hand out the
        # long view as a narrow explode over it: 10x less memory for the cut result.
        wide = _cut(raw, lineage)
        rep.phases["result"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _summarize(_wide_row_stats(wide), rep)
        result = _explode(wide, personas)
    else:
        result = _cut(raw, lineage)
        rep.phases["result"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _summarize(
            result.groupBy("customer_id").agg(
                F.max("affinity").alias("m"), F.count(F.lit(1)).alias("n")
            ),
            rep,
        )
    rep.phases["summary"] = time.perf_counter() - t0
    rep.seconds = time.perf_counter() - started
    return result


def _explode(wide: DataFrame, personas: list[str]) -> DataFrame:
    """The long view DataFrame[customer_id, persona, affinity] of wide rows, zeros left out."""
    names = F.array(*map(F.lit, personas))
    return (
        wide.select("customer_id", F.posexplode("psi").alias("p", "affinity"))
        .where(F.col("affinity") > 0)
        .select("customer_id", F.element_at(names, F.col("p") + 1).alias("persona"), "affinity")
    )


def _wide_row_stats(wide: DataFrame) -> DataFrame:
    """Per reached customer: the row maximum m and the number n of non-zero entries."""
    return wide.select(
        F.array_max("psi").alias("m"), F.size(F.filter("psi", lambda x: x > 0)).alias("n")
    ).where(F.col("n") > 0)


def _summarize(row_max: DataFrame, rep: AffinityReport) -> None:
    """Affinity scale (largest value, median row maximum) and the eps warning, into ``rep``.

    ``row_max`` has one row per reached customer: m (row maximum) and n (non-zero entries).
    """
    scale = row_max.agg(
        F.sum("n").alias("rows"),
        F.max("m").alias("max"),
        F.percentile_approx("m", 0.5).alias("median"),
    ).first()
    rep.rows = int(scale["rows"] or 0)
    rep.max_affinity = float(scale["max"] or 0.0)
    rep.median_row_max = float(scale["median"] or 0.0)
    eps = rep.eps
    if eps > 0 and rep.median_row_max > 0 and eps > 0.1 * rep.median_row_max:
        rep.warnings.append(
            f"eps={eps:g} is {eps / rep.median_row_max:.1f}x the median row maximum "
            f"({rep.median_row_max:.3g}): top-k sets will be unreliable; use eps <= "
            f"{0.1 * rep.median_row_max:.2g}"
        )


# ---------------------------------------------------------------------------------------------
# Out-of-fold prototype affinities (training data of the calibrated assignment)
# ---------------------------------------------------------------------------------------------


_FOLD_SEP = "\x1f"  # joins a fold id and a persona name into one pseudo-persona


def prototype_folds(labels: DataFrame, folds: int, seed: int = 0) -> DataFrame:
    """DataFrame[customer_id, fold]: the labelled prototypes dealt into ``folds`` folds.

    Prototypes are ordered by a seeded hash of customer_id (ties by id) and dealt round
    robin, so fold sizes differ by at most one (like numpy's permutation % folds). One
    global window: it sorts the prototypes only (the LLM budget), never all customers.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    order = Window.orderBy(
        F.xxhash64(F.col("customer_id").cast("string"), F.lit(int(seed))), F.col("customer_id")
    )
    return (
        labels.select("customer_id")
        .distinct()
        .withColumn("fold", ((F.row_number().over(order) - 1) % folds).cast("int"))
    )


def out_of_fold_affinity(
    edges: DataFrame,
    labels: DataFrame,
    folds: DataFrame,
    *,
    eps: float = 0.0,
    walk_length: int = 1,
    beta: float = 0.5,
    engine: Engine = "matrix",
    partitions: int | None = None,
    lineage: Lineage = "local",
) -> DataFrame:
    """Each prototype's affinities computed without its own fold's labels.

    ``folds`` is DataFrame[customer_id, fold] (``prototype_folds``). A prototype of fold f
    gets ``compute_affinity(edges, labels of the other folds)``: it is scored exactly like
    a customer the LLM never saw, which is what a model trained on these rows is then
    applied to. Result: DataFrame[customer_id, persona, affinity], zero entries left out.

    All folds go through ONE push: every label of fold g is copied to the personas
    "f|persona" of each other fold f, so column "f|r" holds fold f's training labels. That
    differs from fold f's own run only by constants (the label split over F - 1 copies,
    and de-bias weights scaled by fold f's least count over the global least count), which
    are multiplied back; eps is tightened by the largest such factor, so every entry stays
    within eps of fold f's exact affinity.

    With walk_length = 1 only the prototypes' own edges are pushed: the walk goes
    prototype -> item -> prototype, and degrees ride on every edge row (a customer keeps
    all its edges), so the numbers are exactly those of the full graph, at a fraction of
    the cost. Longer walks pass through other customers and use the whole graph.
    """
    labelled = (
        labels.select("customer_id", "persona").distinct().join(F.broadcast(folds), "customer_id")
    )
    counts = labelled.groupBy("fold", "persona").agg(F.count(F.lit(1)).alias("n")).collect()
    fold_ids = sorted({int(r["fold"]) for r in counts})
    empty = T.StructType(
        [
            T.StructField("customer_id", edges.schema["customer_id"].dataType),
            T.StructField("persona", T.StringType()),
            T.StructField("affinity", T.DoubleType()),
        ]
    )
    if len(fold_ids) < 2:  # the other folds hold no label: nothing to push
        return edges.sparkSession.createDataFrame([], empty)
    # n[f][r]: labels of persona r that fold f trains on (every fold but f).
    per_fold: dict[int, dict[str, int]] = {f: {} for f in fold_ids}
    for r in counts:
        for f in fold_ids:
            if f != r["fold"]:
                per_fold[f][r["persona"]] = per_fold[f].get(r["persona"], 0) + int(r["n"])
    least = min(min(n.values()) for n in per_fold.values())
    factor = {
        f: (len(fold_ids) - 1) * (min(n.values()) / least) ** beta for f, n in per_fold.items()
    }
    spark = edges.sparkSession
    fold_frame = spark.createDataFrame(
        [(f, factor[f]) for f in fold_ids], "train_fold int, factor double"
    )
    tagged = labelled.join(F.broadcast(fold_frame), F.col("fold") != F.col("train_fold")).select(
        "customer_id", F.concat_ws(_FOLD_SEP, "train_fold", "persona").alias("persona")
    )
    graph = edges
    if walk_length == 1:
        graph = _cut(edges.join(F.broadcast(folds.select("customer_id")), "customer_id"), lineage)
    psi = compute_affinity(
        graph,
        tagged,
        eps=eps / max(factor.values()),
        walk_length=walk_length,
        beta=beta,
        engine=engine,
        partitions=partitions,
        lineage=lineage,
    )
    parts = F.split("persona", _FOLD_SEP, 2)
    own = (
        psi.select(
            "customer_id",
            parts[0].cast("int").alias("train_fold"),
            parts[1].alias("persona"),
            "affinity",
        )
        .join(F.broadcast(folds), "customer_id")
        .where(F.col("fold") == F.col("train_fold"))
        .join(F.broadcast(fold_frame), "train_fold")
    )
    return _cut(
        own.select(
            "customer_id", "persona", (F.col("affinity") * F.col("factor")).alias("affinity")
        ),
        lineage,
    )
