"""assign: from affinities to each customer's personas, with score, rank and source.

Prototypes keep their LLM labels (source 'llm'); everyone else (source 'inferred') gets
either the paper's top-k personas of their affinity row (``top_k``, score = affinity) or a
calibrated set (``calibrated``, score = probability): a logistic model per (customer,
persona) fit on out-of-fold prototype affinities, then per customer the 1..max_k personas
maximizing plug-in expected F1. Customers no walk reaches get no invented rows: they are
counted instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.ml.feature import OneHotEncoder, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from gplr_spark.labeling import normalize_name

# Features of a (customer, persona) pair, as in evaluation.inference.pair_features.
AFFINITY_FEATURES: tuple[str, ...] = ("affinity_share", "log_affinity_share", "affinity_rank")
VOTE_FEATURES: tuple[str, ...] = ("vote_share", "log_vote_share", "vote_rank")
DEGREE_FEATURE = "log_degree"
RANK_CAP = 8


def _llm_rows(affinity: DataFrame, labels: DataFrame) -> DataFrame:
    """The prototypes' own labels, scored by their affinity (0 when none reached them)."""
    return (
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


def top_k(affinity: DataFrame, labels: DataFrame, k: int = 5) -> DataFrame:
    """DataFrame[customer_id, persona, score, rank, source]; ties break by persona name."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    prototypes = labels.select("customer_id").distinct()
    llm = _llm_rows(affinity, labels)
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


# ---------------------------------------------------------------------------------------------
# Item-label votes (optional features of the calibrated assignment)
# ---------------------------------------------------------------------------------------------


@dataclass
class ItemLabelReport:
    """How an item-label file met the graph: nothing is dropped without being counted.

    ``label_rows``: distinct item keys in the file; ``label_rows_unmatched``: keys naming
    no item of the graph; ``items``: items of the graph; ``items_labeled`` / ``items_unlabeled``:
    graph items with / without at least one catalog persona; ``unknown_persona_entries``:
    (item, persona) entries naming no catalog persona (left out), ``unknown_personas`` a
    sample of those names.
    """

    path: str
    match_on: str
    label_rows: int = 0
    label_rows_unmatched: int = 0
    items: int = 0
    items_labeled: int = 0
    items_unlabeled: int = 0
    unknown_persona_entries: int = 0
    unknown_personas: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def load_item_labels(
    spark: SparkSession,
    path: str,
    catalog_names: Sequence[str],
    items: DataFrame,
) -> tuple[DataFrame, ItemLabelReport]:
    """LLM item labels matched onto the graph's items: DataFrame[item_id, persona].

    The CSV has a ``personas`` column ('|'-separated catalog names) and one key column:
    ``item_id`` (matched to item_id), else ``item_name`` or ``Description`` (the paper's
    data/online_retail_gpt4_labels/item_labels.csv), matched to the canonical item_name.
    Keys are trimmed like ingest trims item_id/item_name; an item sold under several names
    gets the union of their labels. Persona names are matched to the catalog with the
    labelers' normalization (case, blanks, a leading 'The '); entries naming no catalog
    persona are left out and counted. ``items`` is DataFrame[item_id, item_name] (distinct
    pairs of the cleaned purchases, restricted to the graph).
    """
    if "://" not in path and not Path(path).is_file():
        raise FileNotFoundError(f"item labels file {path} does not exist")
    raw = spark.read.csv(path, header=True, escape='"', inferSchema=False)
    cols = set(raw.columns)
    key = next((c for c in ("item_id", "item_name", "Description") if c in cols), None)
    if key is None or "personas" not in cols:
        raise ValueError(
            f"item labels file {path}: needs a 'personas' column and one of 'item_id', "
            f"'item_name', 'Description'; it has {raw.columns}"
        )
    match_on = "item_id" if key == "item_id" else "item_name"
    rows = (
        raw.select(
            F.nullif(F.trim(F.col(f"`{key}`")), F.lit("")).alias("_key"),
            F.coalesce(F.col("personas"), F.lit("")).alias("_personas"),
        )
        .where(F.col("_key").isNotNull())
        .localCheckpoint(eager=True)
    )
    entries = rows.select(
        "_key", F.explode(F.transform(F.split("_personas", r"\|"), F.trim)).alias("_raw")
    ).where(F.col("_raw") != "")
    # Persona spellings are few: map them on the driver with the labelers' normalization.
    lookup = {normalize_name(n): n for n in catalog_names}
    spellings = {
        r["_raw"]: int(r["n"])
        for r in entries.groupBy("_raw").agg(F.count(F.lit(1)).alias("n")).collect()
    }
    known = {raw: lookup[normalize_name(raw)] for raw in spellings if normalize_name(raw) in lookup}
    unknown = sorted(set(spellings) - set(known))
    names = spark.createDataFrame(
        pd.DataFrame({"_raw": list(known), "persona": list(known.values())}),
        "_raw string, persona string",
    )
    graph_items = items.select("item_id", F.col(match_on).alias("_key")).distinct()
    item_personas = (
        entries.join(F.broadcast(names), "_raw")
        .join(graph_items, "_key")
        .select("item_id", "persona")
        .distinct()
        .localCheckpoint(eager=True)
    )
    keys = rows.select("_key").distinct()
    matched = graph_items.select("_key").distinct().withColumn("_hit", F.lit(1))
    key_stats = (
        keys.join(matched, "_key", "left")
        .agg(F.count(F.lit(1)).alias("rows"), F.count("_hit").alias("matched"))
        .first()
    )
    labeled = item_personas.select("item_id").distinct().withColumn("_lab", F.lit(1))
    item_stats = (
        items.select("item_id")
        .distinct()
        .join(labeled, "item_id", "left")
        .agg(F.count(F.lit(1)).alias("items"), F.count("_lab").alias("labeled"))
        .first()
    )
    rep = ItemLabelReport(
        path=path,
        match_on=match_on,
        label_rows=int(key_stats["rows"]),
        label_rows_unmatched=int(key_stats["rows"] - key_stats["matched"]),
        items=int(item_stats["items"]),
        items_labeled=int(item_stats["labeled"]),
        items_unlabeled=int(item_stats["items"] - item_stats["labeled"]),
        unknown_persona_entries=sum(spellings[raw] for raw in unknown),
        unknown_personas=unknown[:20],
    )
    return item_personas, rep


def item_votes(edges: DataFrame, item_personas: DataFrame) -> DataFrame:
    """Per customer, the share of their items' persona labels going to each persona.

    DataFrame[customer_id, persona, vote], each customer's votes summing to 1 (customers
    with no labelled item have no rows). An item with n labels gives each 1/n, so an item
    with many labels does not outvote the others (evaluation.inference.item_votes).
    """
    per_item = Window.partitionBy("item_id")
    weights = item_personas.select("item_id", "persona").distinct()
    weights = weights.withColumn("_w", 1.0 / F.count(F.lit(1)).over(per_item))
    votes = (
        edges.select("customer_id", "item_id")
        .join(F.broadcast(weights), "item_id")
        .groupBy("customer_id", "persona")
        .agg(F.sum("_w").alias("_v"))
    )
    total = F.sum("_v").over(Window.partitionBy("customer_id"))
    return votes.select("customer_id", "persona", (F.col("_v") / total).alias("vote"))


# ---------------------------------------------------------------------------------------------
# Calibrated assignment: logistic model on out-of-fold prototype scores + expected-F1 sets
# ---------------------------------------------------------------------------------------------


@dataclass
class CalibrationReport:
    """The fitted model: training size, optimizer iterations, weights per feature."""

    personas: int = 0
    features: list[str] = field(default_factory=list)
    use_votes: bool = False
    l2: float = 1.0
    max_k: int = 8
    folds: int = 0
    train_customers: int = 0
    train_rows: int = 0
    train_positives: int = 0
    iterations: int = 0
    objective: float = 0.0
    weights: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def persona_index(spark: SparkSession, personas: Sequence[str]) -> DataFrame:
    """DataFrame[persona, persona_idx]: the model's persona columns, in name order."""
    pdf = pd.DataFrame({"persona": list(personas), "persona_idx": range(len(personas))})
    return spark.createDataFrame(pdf, "persona string, persona_idx int")


def pair_grid(
    customers: DataFrame,
    personas: DataFrame,
    affinity: DataFrame,
    degrees: DataFrame,
    votes: DataFrame | None = None,
) -> DataFrame:
    """Every (customer, persona) pair of ``customers`` x ``personas``, zeros filled in.

    Columns: customer_id, persona, persona_idx, affinity, customer_degree (and vote). The
    full grid, as the numpy model's dense users x personas matrices: a pair no walk reached
    still has a probability (its persona's intercept), which enters every customer's
    expected-F1 denominator and may even be chosen.
    """
    grid = (
        customers.select("customer_id")
        .distinct()
        .crossJoin(F.broadcast(personas))
        .join(
            affinity.select("customer_id", "persona", "affinity"),
            ["customer_id", "persona"],
            "left",
        )
        .join(degrees, "customer_id", "left")
        .select(
            "customer_id",
            "persona",
            "persona_idx",
            F.coalesce("affinity", F.lit(0.0)).alias("affinity"),
            F.coalesce("customer_degree", F.lit(0)).alias("customer_degree"),
        )
    )
    if votes is not None:
        grid = grid.join(
            votes.select("customer_id", "persona", "vote"), ["customer_id", "persona"], "left"
        ).withColumn("vote", F.coalesce("vote", F.lit(0.0)))
    return grid


def _share_features(value: str, prefix: str, m: int, *, normalize: bool) -> list[Column]:
    """share * m, log(share * m + 1e-3) and min(rank0, 8) / 8 of one score column.

    share = value / the customer's row sum when ``normalize``, else the value itself.
    """
    per = Window.partitionBy("customer_id")
    share = F.col(value)
    if normalize:
        total = F.sum(value).over(per)
        share = F.when(total > 0, share / total).otherwise(F.lit(0.0))
    share = share * F.lit(float(m))
    rank0 = F.row_number().over(per.orderBy(F.desc(value), F.asc("persona"))) - 1
    return [
        share.alias(f"{prefix}_share"),
        F.log(share + F.lit(1e-3)).alias(f"log_{prefix}_share"),
        (F.least(rank0, F.lit(RANK_CAP)) / F.lit(float(RANK_CAP))).alias(f"{prefix}_rank"),
    ]


def pair_features(grid: DataFrame, m: int, *, use_votes: bool) -> DataFrame:
    """The dense features of evaluation.inference.pair_features, as DataFrame columns.

    With m personas: share * m, log(share * m + 1e-3), min(rank0, 8) / 8 (rank0 = 0-based
    rank by value desc, ties by persona name) for the affinity share (affinity / the
    customer's row sum) and, with ``use_votes``, the item-label vote share (``item_votes``,
    a share over all catalog personas, as in the numpy model); then log(max(degree, 1)) / 5.
    The per-persona intercept is the one-hot of persona_idx, added by the model.
    """
    cols = _share_features("affinity", "affinity", m, normalize=True)
    if use_votes:
        cols += _share_features("vote", "vote", m, normalize=False)
    cols.append(
        (F.log(F.greatest(F.col("customer_degree"), F.lit(1)).cast("double")) / 5.0).alias(
            DEGREE_FEATURE
        )
    )
    keep = [c for c in grid.columns if c not in ("affinity", "vote", "customer_degree")]
    return grid.select(*keep, *cols)


def feature_names(use_votes: bool) -> list[str]:
    """The dense feature columns in model order (the one-hot persona columns follow)."""
    return [*AFFINITY_FEATURES, *(VOTE_FEATURES if use_votes else ()), DEGREE_FEATURE]


def fit_pair_model(
    train: DataFrame,
    dense: Sequence[str],
    m: int,
    *,
    l2: float = 1.0,
    max_iter: int = 500,
    tol: float = 1e-10,
    n: int | None = None,
) -> tuple[PipelineModel, LogisticRegressionModel, int]:
    """Spark ML logistic regression minimizing sum log-loss + 0.5 * l2 * ||w||^2.

    ``train`` has the ``dense`` columns, persona_idx and a 0/1 ``label``. Spark minimizes
    (1/n) sum log-loss + regParam/2 ||w||^2, so regParam = l2 / n; no separate intercept
    (the full one-hot of the m personas is the per-persona intercept), no standardization
    (the penalty is on the raw weights), pure L2: evaluation.inference.fit_logistic's
    objective. ``tol`` is tight: at Spark's default 1e-6 the weights stop ~1e-3 short of
    the optimum. ``n`` (the row count) is counted when not given. Returns the fitted
    pipeline model, its LogisticRegressionModel and n.
    """
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0, got {l2}")
    n = train.count() if n is None else n
    if n == 0:
        raise ValueError("no training rows: no labelled prototype")
    stages = [
        OneHotEncoder(
            inputCols=["persona_idx"], outputCols=["persona_onehot"], dropLast=False
        ).setHandleInvalid("error"),
        VectorAssembler(inputCols=[*dense, "persona_onehot"], outputCol="features"),
        LogisticRegression(
            featuresCol="features",
            labelCol="label",
            family="binomial",
            regParam=l2 / n,
            elasticNetParam=0.0,
            standardization=False,
            fitIntercept=False,
            maxIter=max_iter,
            tol=tol,
        ),
    ]
    model = Pipeline(stages=stages).fit(train)
    lr = model.stages[-1]
    assert isinstance(lr, LogisticRegressionModel)
    if lr.numFeatures != len(dense) + m:
        raise ValueError(f"model has {lr.numFeatures} features, expected {len(dense) + m}")
    return model, lr, n


def expected_f1_sets(probabilities: DataFrame, max_k: int = 8) -> DataFrame:
    """Per customer, the top-k personas maximizing plug-in expected F1.

    ``probabilities`` is DataFrame[customer_id, persona, p] (every candidate persona of the
    customer). Sorted by p desc (ties by persona name), ef1(k) = 2 sum_{i<=k} p_i / (k +
    sum of all the customer's p), k = 1..max_k; the first k of largest ef1 wins (Jansche's
    approximation for independent labels, evaluation.inference.expected_f1_sets).
    Result: DataFrame[customer_id, persona, score (= p), rank (1..k)].
    """
    if max_k < 1:
        raise ValueError(f"max_k must be >= 1, got {max_k}")
    per = Window.partitionBy("customer_id")
    order = per.orderBy(F.desc("p"), F.asc("persona"))
    running = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    ranked = probabilities.select(
        "customer_id",
        "persona",
        "p",
        F.row_number().over(order).alias("rank"),
        F.sum("p").over(running).alias("_cum"),
        F.sum("p").over(per).alias("_total"),
    ).where(F.col("rank") <= max_k)
    scored = ranked.withColumn("_ef1", 2 * F.col("_cum") / (F.col("rank") + F.col("_total")))
    best = scored.withColumn("_best", F.max("_ef1").over(per)).withColumn(
        "_k", F.min(F.when(F.col("_ef1") == F.col("_best"), F.col("rank"))).over(per)
    )
    return best.where(F.col("rank") <= F.col("_k")).select(
        "customer_id", "persona", F.col("p").alias("score"), F.col("rank").cast("int")
    )


def calibrated(
    affinity: DataFrame,
    labels: DataFrame,
    oof_affinity: DataFrame,
    edges: DataFrame,
    *,
    votes: DataFrame | None = None,
    l2: float = 1.0,
    max_k: int = 8,
    max_iter: int = 500,
    tol: float = 1e-10,
    report: CalibrationReport | None = None,
) -> DataFrame:
    """DataFrame[customer_id, persona, score, rank, source], like ``top_k``.

    Prototypes keep their labels (source 'llm', score = affinity, as in top_k). The model
    is a logistic regression per (customer, persona) pair (``pair_features`` + a one-hot
    persona intercept) fit on the labelled prototypes' out-of-fold affinities
    ``oof_affinity`` (affinity.out_of_fold_affinity): label 1 when the prototype's own
    label set holds the persona, over the full prototype x persona grid, so a label the
    held-out walk never reached is still a positive row. Every reached non-prototype is
    then scored over its full persona grid and gets the expected-F1 set of 1..``max_k``
    personas (source 'inferred', score = probability, rank 1..k). ``votes``
    (``item_votes``) adds the item-label vote features. Customers with no affinity row get
    nothing: they are counted by ``unreached_customers``. The personas are the labels'
    (the affinity's persona set), m of them.

    Differences from evaluation.inference.predict_calibrated, by design: its columns are
    all catalog personas (here: the m the prototypes hold, so a persona no prototype has is
    never scored and adds nothing to the expected-F1 denominator), and with votes it also
    predicts customers no walk reaches (here they stay unassigned, as with top_k). Pairs
    of zero affinity are kept in both grids: dropping them is not equivalent, since a
    common persona's intercept can outrank a rare persona's small affinity, and every
    pair's probability enters the customer's expected-F1 denominator. The grid is
    reached customers x m rows, the size of a dense affinity row per customer.
    """
    if max_k < 1:
        raise ValueError(f"max_k must be >= 1, got {max_k}")
    rep = report if report is not None else CalibrationReport()
    spark = affinity.sparkSession
    t0 = time.perf_counter()
    pairs = labels.select("customer_id", "persona").distinct()
    personas = sorted(r["persona"] for r in pairs.select("persona").distinct().collect())
    if not personas:
        raise ValueError("labels is empty: no prototype persona to calibrate on")
    m = len(personas)
    index = persona_index(spark, personas)
    use_votes = votes is not None
    dense = feature_names(use_votes)
    degrees = edges.groupBy("customer_id").agg(F.max("customer_degree").alias("customer_degree"))
    prototypes = pairs.select("customer_id").distinct()

    train_grid = pair_grid(prototypes, index, oof_affinity, degrees, votes)
    positive = pairs.withColumn("label", F.lit(1.0))
    train = (
        pair_features(train_grid, m, use_votes=use_votes)
        .join(positive, ["customer_id", "persona"], "left")
        .withColumn("label", F.coalesce("label", F.lit(0.0)))
        .localCheckpoint(eager=True)
    )
    rep.seconds["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    size = train.agg(F.count(F.lit(1)).alias("n"), F.sum("label").alias("pos")).first()
    n = int(size["n"])
    model, lr, n = fit_pair_model(train, dense, m, l2=l2, max_iter=max_iter, tol=tol, n=n)
    summary = lr.summary
    rep.personas, rep.features, rep.use_votes = m, dense, use_votes
    rep.l2, rep.max_k = l2, max_k
    rep.train_rows, rep.train_positives = n, int(size["pos"] or 0)
    rep.train_customers = n // m  # the full prototype x persona grid
    rep.iterations = int(summary.totalIterations)
    history = summary.objectiveHistory
    rep.objective = float(history[-1] * n) if history else 0.0  # Spark reports loss / n
    names = dense + [f"persona={p}" for p in personas]
    rep.weights = {name: float(w) for name, w in zip(names, lr.coefficients.toArray(), strict=True)}
    rep.seconds["fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    reached = affinity.select("customer_id").distinct().join(prototypes, "customer_id", "left_anti")
    grid = pair_features(
        pair_grid(reached, index, affinity, degrees, votes), m, use_votes=use_votes
    )
    probabilities = model.transform(grid).select(
        "customer_id", "persona", vector_to_array("probability")[1].alias("p")
    )
    inferred = expected_f1_sets(probabilities, max_k).withColumn("source", F.lit("inferred"))
    llm_order = Window.partitionBy("customer_id").orderBy(F.desc("score"), F.asc("persona"))
    llm = _llm_rows(affinity, labels).withColumn("rank", F.row_number().over(llm_order))
    out = llm.unionByName(inferred.select("customer_id", "persona", "score", "source", "rank"))
    result = out.select(
        "customer_id", "persona", "score", F.col("rank").cast("int"), "source"
    ).localCheckpoint(eager=True)
    rep.seconds["predict"] = time.perf_counter() - t0
    return result


@dataclass
class AssignReport:
    """What the assign stage did, for persona_runs: the method, its knobs and its model."""

    method: str
    k: int | None = None
    max_k: int | None = None
    folds: int | None = None
    seed: int | None = None
    model: CalibrationReport | None = None
    item_labels: ItemLabelReport | None = None
    set_sizes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """The run summary's lines about assignment."""
        if self.method == "top_k":
            return [f"assign: method=top_k k={self.k}"]
        model = self.model or CalibrationReport()
        votes = "yes" if model.use_votes else "no"
        out = [
            f"assign: method=calibrated folds={self.folds} l2={model.l2:g} "
            f"max_k={self.max_k} item-label votes={votes}",
            f"  model: {model.train_rows:,} prototype x persona rows "
            f"({model.train_positives:,} positive, {model.train_customers:,} prototypes), "
            f"{model.iterations} iterations",
        ]
        if self.set_sizes:
            sizes = " ".join(
                f"{k}:{v:,}" for k, v in sorted(self.set_sizes.items(), key=lambda kv: int(kv[0]))
            )
            out.append(f"  inferred set sizes (personas:customers) {sizes}")
        lab = self.item_labels
        if lab is not None:
            out.append(
                f"  item labels ({lab.match_on} match): {lab.items_labeled:,} of {lab.items:,} "
                f"graph items labeled, {lab.items_unlabeled:,} without a label; "
                f"{lab.label_rows_unmatched:,} of {lab.label_rows:,} label rows match no "
                f"item; {lab.unknown_persona_entries:,} entries name no catalog persona"
            )
        return out
