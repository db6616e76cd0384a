"""The whole GPLR run, stage by stage: the one function jobs and notebooks call.

ingest -> graph -> sampling -> labeling -> affinity -> assign -> evidence -> segments -> sinks.
Each stage is timed,
named on the Spark UI (setJobDescription) and logged as one structured line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gplr_spark import affinity as affinity_stage
from gplr_spark import assign, evidence, graph, ingest, labeling, sampling, sinks
from gplr_spark.config import ConfigError, RunConfig
from gplr_spark.personas import Catalog

log = logging.getLogger("gplr_spark")

RUNS_SCHEMA = T.StructType(
    [
        T.StructField("started_at", T.TimestampType()),
        T.StructField("finished_at", T.TimestampType()),
        T.StructField("status", T.StringType()),
        T.StructField("config", T.StringType()),
        T.StructField("input_source", T.StringType()),
        T.StructField("catalog_version", T.StringType()),
        T.StructField("labeler_backend", T.StringType()),
        T.StructField("eps", T.DoubleType()),
        T.StructField("walk_length", T.IntegerType()),
        T.StructField("cleaning", T.MapType(T.StringType(), T.LongType())),
        T.StructField("counts", T.MapType(T.StringType(), T.LongType())),
        T.StructField("timings", T.MapType(T.StringType(), T.DoubleType())),
        T.StructField("affinity", T.StringType()),
        T.StructField("labeling", T.StringType()),
        T.StructField("assign", T.StringType()),
    ]
)

# Run metadata grows as the project adds fields: new columns are merged, nothing else.
RUNS_TABLE = sinks.TableSpec("persona_runs", RUNS_SCHEMA, evolve=True)


@dataclass
class RunResult:
    """Everything a run produced: its tables (as DataFrames) and its report."""

    run_id: str
    assignments: DataFrame
    affinity: DataFrame
    labels: DataFrame
    edges: DataFrame
    purchases: DataFrame
    catalog: Catalog
    cleaning: ingest.CleaningReport
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    affinity_report: affinity_stage.AffinityReport | None = None
    labeling_report: labeling.LabelingReport | None = None
    assign_report: assign.AssignReport | None = None
    tables: dict[str, str] = field(default_factory=dict)
    evidence: DataFrame | None = None
    segments: DataFrame | None = None

    def summary(self) -> str:
        lines = [f"run {self.run_id}"]
        lines += ["  " + line for line in self.cleaning.lines()]
        lines += [f"  {k}: {v:,}" for k, v in self.counts.items()]
        lines += [f"  {k}: {v:.1f} s" for k, v in self.timings.items()]
        if self.affinity_report:
            rep = self.affinity_report
            lines.append(
                f"  affinity: eps={rep.eps:g} max={rep.max_affinity:.3g} "
                f"median row max={rep.median_row_max:.3g}"
            )
            lines += [f"  WARNING {w}" for w in rep.warnings]
        if self.assign_report:
            lines += ["  " + line for line in self.assign_report.lines()]
        lines += [f"  table {name}: {path}" for name, path in self.tables.items()]
        return "\n".join(lines)


@contextmanager
def stage(spark: SparkSession, name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time a stage, name its Spark jobs, and log one structured line."""
    spark.sparkContext.setJobDescription(f"gplr: {name}")
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - started, 3)
        spark.sparkContext.setJobDescription(None)
        log.info(json.dumps({"stage": name, "seconds": timings[name]}))


def make_labeler(cfg: RunConfig) -> labeling.Labeler:
    """The configured backend; ``auto`` is openai when an API key is set, else offline."""
    lab = cfg.labeler
    backend = lab.backend
    if backend == "auto":
        backend = "openai" if os.environ.get(lab.api_key_env) else "offline"
    if backend == "offline":
        return labeling.OfflineLabeler(min_personas=lab.min_personas, max_personas=lab.max_personas)
    if backend == "recorded":
        return labeling.RecordedLabeler(
            cfg.resolve(lab.recorded_path), min_personas=lab.min_personas, max_personas=8
        )
    try:
        from gplr_spark.llm import OpenAILabeler
    except ImportError as err:  # pragma: no cover - the module ships with the package
        raise ConfigError(f"labeler.backend 'openai' is unavailable: {err}") from err
    return OpenAILabeler.from_config(lab, store_root=cfg.resolve(lab.store_path))


def calibrated_assignments(
    cfg: RunConfig,
    edges: DataFrame,
    purchases: DataFrame,
    labels: DataFrame,
    aff: DataFrame,
    catalog: Catalog,
) -> tuple[DataFrame, assign.AssignReport]:
    """The calibrated assign stage: out-of-fold prototype affinities, optional item-label
    votes, the logistic pair model and expected-F1 sets (assign.calibrated)."""
    spark = edges.sparkSession
    a, af = cfg.assign, cfg.affinity
    report = assign.AssignReport("calibrated", max_k=a.max_k, folds=a.folds, seed=cfg.sampling.seed)
    t0 = time.perf_counter()
    folds = affinity_stage.prototype_folds(labels, a.folds, seed=cfg.sampling.seed)
    folds = folds.localCheckpoint(eager=True)
    oof = affinity_stage.out_of_fold_affinity(
        edges,
        labels,
        folds,
        eps=af.eps,
        walk_length=af.walk_length,
        beta=af.beta,
        engine=af.engine,
        partitions=af.partitions,
    )
    report.seconds["out_of_fold_affinity"] = round(time.perf_counter() - t0, 3)
    votes = None
    if a.item_labels:
        t0 = time.perf_counter()
        items = purchases.select("item_id", "item_name").distinct()
        item_personas, report.item_labels = assign.load_item_labels(
            spark, cfg.resolve(a.item_labels), catalog.names, items
        )
        votes = assign.item_votes(edges, item_personas).localCheckpoint(eager=True)
        report.seconds["item_votes"] = round(time.perf_counter() - t0, 3)
    model = assign.CalibrationReport(folds=a.folds)
    t0 = time.perf_counter()
    assignments = assign.calibrated(
        aff, labels, oof, edges, votes=votes, l2=a.l2, max_k=a.max_k, report=model
    )
    report.seconds["model"] = round(time.perf_counter() - t0, 3)
    report.model = model
    return assignments, report


def calibrated_counts(report: assign.AssignReport) -> dict[str, int]:
    """The calibrated stage's integer facts for persona_runs.counts."""
    out: dict[str, int] = {}
    if report.model is not None:
        out["calibration_train_rows"] = report.model.train_rows
        out["calibration_train_positives"] = report.model.train_positives
        out["calibration_iterations"] = report.model.iterations
    out.update({f"customers_with_{k}_personas": v for k, v in report.set_sizes.items()})
    lab = report.item_labels
    if lab is not None:
        out["item_labels_items_labeled"] = lab.items_labeled
        out["item_labels_items_unlabeled"] = lab.items_unlabeled
        out["item_labels_rows_unmatched"] = lab.label_rows_unmatched
        out["item_labels_unknown_persona_entries"] = lab.unknown_persona_entries
    return out


def default_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("run-%Y%m%dT%H%M%SZ")


def run_gplr(
    spark: SparkSession,
    cfg: RunConfig,
    *,
    labeler: labeling.Labeler | None = None,
    write: bool = True,
) -> RunResult:
    """Run GPLR end to end and (by default) write the Delta tables."""
    started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    run_id = cfg.output.run_id or default_run_id()
    timings: dict[str, float] = {}
    counts: dict[str, int] = {}
    source = cfg.source()
    labels_file = cfg.resolve(cfg.assign.item_labels or "")
    uses_labels = cfg.assign.method == "calibrated" and cfg.assign.item_labels
    if uses_labels and "://" not in labels_file and not os.path.isfile(labels_file):
        raise ConfigError(f"config key 'assign.item_labels': file {labels_file} does not exist")

    with stage(spark, "ingest", timings):
        purchases, cleaning = ingest.load_purchases(
            spark,
            source,
            cfg.resolve(cfg.input.mapping),
            cfg.cleaning,
            cfg.input.format,
        )
        purchases = purchases.localCheckpoint(eager=True)

    with stage(spark, "graph", timings):
        edges = graph.build_edges(purchases).localCheckpoint(eager=True)
        stats = graph.graph_stats(edges)
        counts.update(stats.as_dict())

    catalog = Catalog.from_csv(cfg.resolve(cfg.catalog.path))
    smp = cfg.sampling
    with stage(spark, "sampling", timings):
        customers = edges.select("customer_id").distinct()
        n = sampling.prototype_count(stats.customers, rate=smp.sample_rate, tau=smp.tau)
        pool = None
        if smp.candidate_pool:
            spec = smp.candidate_pool
            if spec != "recorded" and ("/" in spec or os.path.exists(cfg.resolve(spec))):
                spec = cfg.resolve(spec)
            pool = sampling.candidate_pool(
                spark, spec, recorded_path=cfg.resolve(cfg.labeler.recorded_path)
            ).localCheckpoint(eager=True)
            counts["candidate_pool"] = pool.count()
        if smp.strategy == "random":  # DU samples round by round inside the labeling stage
            eligible = (
                customers if pool is None else customers.join(pool, "customer_id", "left_semi")
            )
            prototypes = sampling.random_prototypes(eligible, n, seed=smp.seed)
            prototypes = prototypes.localCheckpoint(eager=True)
        counts["prototypes_requested"] = n

    chosen = labeler or make_labeler(cfg)
    with stage(spark, "labeling", timings):
        if smp.strategy == "random":
            labels, lab_report = labeling.label_customers(purchases, prototypes, catalog, chosen)
        else:
            rounds = sampling.diversity_uncertainty_rounds(
                edges,
                purchases,
                catalog,
                chosen,
                tau=n,
                rounds=smp.rounds,
                seed=smp.seed,
                candidates=pool,
                eps=cfg.affinity.eps,
                walk_length=cfg.affinity.walk_length,
                beta=smp.du_beta,
            )
            labels = rounds.labels
            lab_report = sampling.merge_reports(rounds.reports, chosen.name)
            counts["sampling_rounds"] = len(rounds.reports)
        labels = labels.localCheckpoint(eager=True)
        counts["prototypes_labeled"] = lab_report.labeled
        counts["labels"] = lab_report.labels
    if lab_report.labels == 0:
        raise RuntimeError(
            f"labeler {chosen.name!r} gave no labels for {lab_report.requested} prototypes "
            f"({lab_report.as_dict()}): nothing to propagate"
        )

    rep = affinity_stage.AffinityReport(
        cfg.affinity.eps, cfg.affinity.walk_length, cfg.affinity.beta, 0.0
    )
    with stage(spark, "affinity", timings):
        aff = affinity_stage.compute_affinity(
            edges,
            labels,
            eps=cfg.affinity.eps,
            walk_length=cfg.affinity.walk_length,
            beta=cfg.affinity.beta,
            engine=cfg.affinity.engine,
            partitions=cfg.affinity.partitions,
            report=rep,
        )

    with stage(spark, "assign", timings):
        if cfg.assign.method == "top_k":
            assign_report = assign.AssignReport("top_k", k=cfg.assign.k)
            assignments = assign.top_k(aff, labels, k=cfg.assign.k).localCheckpoint(eager=True)
        else:
            assignments, assign_report = calibrated_assignments(
                cfg, edges, purchases, labels, aff, catalog
            )
        per_source = {
            r["source"]: r["n"]
            for r in assignments.groupBy("source")
            .agg(F.countDistinct("customer_id").alias("n"))
            .collect()
        }
        counts["customers_llm"] = int(per_source.get("llm", 0))
        counts["customers_inferred"] = int(per_source.get("inferred", 0))
        counts["customers_unreached"] = assign.unreached_customers(assignments, customers).count()
        sizes = {
            int(r["count"]): int(r["n"])
            for r in assignments.where("source = 'inferred'")
            .groupBy("customer_id")
            .count()
            .groupBy("count")
            .agg(F.count(F.lit(1)).alias("n"))
            .collect()
        }
        assign_report.set_sizes = {str(k): v for k, v in sorted(sizes.items())}
        if cfg.assign.method == "top_k":
            counts["customers_fewer_than_k"] = sum(v for k, v in sizes.items() if k < cfg.assign.k)
        else:
            counts.update(calibrated_counts(assign_report))
        counts["assignment_rows"] = assignments.count()

    with stage(spark, "evidence", timings):
        why = evidence.persona_evidence(
            edges,
            labels,
            assignments,
            graph.item_names(purchases),
            walk_length=cfg.affinity.walk_length,
            beta=cfg.affinity.beta,
            top_n=cfg.evidence.top_n,
        ).localCheckpoint(eager=True)
        counts["evidence_rows"] = why.count()

    with stage(spark, "segments", timings):
        segments = assign.persona_segments(
            assignments, purchases, why, top_items=cfg.segments.top_items
        ).localCheckpoint(eager=True)
        counts["segments"] = segments.count()

    result = RunResult(
        run_id=run_id,
        assignments=assignments,
        affinity=aff,
        labels=labels,
        edges=edges,
        purchases=purchases,
        catalog=catalog,
        cleaning=cleaning,
        counts=counts,
        timings=timings,
        affinity_report=rep,
        labeling_report=lab_report,
        assign_report=assign_report,
        evidence=why,
        segments=segments,
    )
    if write:
        with stage(spark, "sinks", timings):
            write_tables(spark, cfg, result, started_at)
    return result


def write_tables(
    spark: SparkSession, cfg: RunConfig, result: RunResult, started_at: dt.datetime
) -> None:
    """The five tables, each replaced per run_id (declared schemas: sinks.TABLES)."""
    out = cfg.output
    base = cfg.output_base()

    def target(table: str) -> sinks.TableLocation:
        return sinks.location(base, table, out.catalog, out.schema_)

    runs_t = target("persona_runs")
    frames = {
        "customer_personas": result.assignments,
        "persona_catalog": result.catalog.to_dataframe(spark),
        "persona_segments": result.segments,
        "persona_evidence": result.evidence,
    }
    missing = [name for name, frame in frames.items() if frame is None]
    if missing:
        raise ValueError(f"run {result.run_id}: no rows computed for tables {missing}")
    # Independent tables, written from threads: Delta's per-commit driver work overlaps.
    # persona_runs goes last, so its row means every other table holds the run.
    with ThreadPoolExecutor(max_workers=len(frames)) as pool:
        futures = [
            pool.submit(sinks.write_table, frame, sinks.TABLES[name], target(name), result.run_id)
            for name, frame in frames.items()
        ]
        for future in futures:
            future.result()
    result.tables.update({name: target(name).path or target(name).ref for name in frames})
    result.tables["persona_runs"] = runs_t.path or runs_t.ref
    row: dict[str, Any] = {
        "started_at": started_at,
        "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        "status": "succeeded",
        "config": cfg.to_json(),
        "input_source": cfg.input.source,
        "catalog_version": result.catalog.version,
        "labeler_backend": result.labeling_report.backend if result.labeling_report else "",
        "eps": cfg.affinity.eps,
        "walk_length": cfg.affinity.walk_length,
        "cleaning": {
            "rows_read": result.cleaning.rows_read,
            **result.cleaning.removed,
            "rows_kept": result.cleaning.rows_kept,
        },
        "counts": result.counts,
        "timings": result.timings,
        "affinity": json.dumps(result.affinity_report.as_dict() if result.affinity_report else {}),
        "labeling": json.dumps(result.labeling_report.as_dict() if result.labeling_report else {}),
        "assign": json.dumps(result.assign_report.as_dict() if result.assign_report else {}),
    }
    runs = spark.createDataFrame([row], schema=RUNS_SCHEMA)
    sinks.write_table(runs, RUNS_TABLE, runs_t, result.run_id)
