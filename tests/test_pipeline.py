"""The whole run on the bundled OnlineRetail data, written to real Delta tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from gplr_spark.config import load_config
from gplr_spark.pipeline import run_gplr
from gplr_spark.session import REPO_ROOT
from tests.tiny_run import RUN_ID, tiny_run


@pytest.fixture(scope="module")
def first_run(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("delta")
    cfg = load_config(
        REPO_ROOT / "conf" / "online_retail.toml",
        [
            f'output.path="{out}"',
            'output.run_id="t1"',
            'labeler.backend="offline"',
            'assign.method="top_k"',  # the paper's fixed k; calibrated: the tiny run below
        ],
    )
    return cfg, run_gplr(spark, cfg), out


def test_customer_personas_table(spark: SparkSession, first_run) -> None:
    _, result, out = first_run
    table = spark.read.format("delta").load(str(out / "customer_personas"))
    per_customer = table.where("run_id = 't1'").groupBy("customer_id", "source").count()
    inferred = per_customer.where("source = 'inferred'")
    # >= 4,000 customers get exactly k = 5 personas; the few whose walks reach fewer
    # personas get only those (never a zero-score filler), and the run counts them
    assert inferred.where("count = 5").count() >= 4000
    short = inferred.where("count < 5")
    assert short.count() == result.counts["customers_fewer_than_k"]
    nonzero = result.affinity.groupBy("customer_id").count().withColumnRenamed("count", "n")
    assert short.join(nonzero, "customer_id").where("n != count").count() == 0
    ranks = table.where("source = 'inferred'").agg(F.min("rank"), F.max("rank")).first()
    assert tuple(ranks) == (1, 5)
    llm = per_customer.where("source = 'llm'")
    assert llm.count() == result.counts["prototypes_labeled"] > 150
    assert llm.where("count < 1 or count > 5").count() == 0
    # no customer is both; the unreached are reported, not invented
    assert per_customer.groupBy("customer_id").count().where("count > 1").count() == 0
    reached = result.counts["customers_llm"] + result.counts["customers_inferred"]
    assert reached + result.counts["customers_unreached"] == result.counts["customers"]


def test_runs_table_reports_every_cleaning_count(spark: SparkSession, first_run) -> None:
    _, result, out = first_run
    run = spark.read.format("delta").load(str(out / "persona_runs")).where("run_id = 't1'")
    row = run.first()
    assert run.count() == 1 and row is not None
    assert row.cleaning["rows_read"] == 541_909
    for rule in ("null_customer", "cancellation", "non_product", "excluded_country", "duplicate"):
        assert row.cleaning[rule] == result.cleaning.removed[rule]
    assert row.counts["edges"] == result.counts["edges"] > 250_000
    assert set(row.timings) >= {"ingest", "graph", "labeling", "affinity", "assign"}


TABLES = (
    "customer_personas",
    "persona_catalog",
    "persona_segments",
    "persona_evidence",
    "persona_runs",
)


def test_evidence_and_segments_tables(spark: SparkSession, first_run) -> None:
    cfg, _, out = first_run
    evidence = spark.read.format("delta").load(str(out / "persona_evidence"))
    personas = spark.read.format("delta").load(str(out / "customer_personas"))
    per_pair = evidence.groupBy("customer_id", "persona").agg(
        F.count(F.lit(1)).alias("n"), F.sum("contribution").alias("total")
    )
    joined = per_pair.join(personas, ["customer_id", "persona"])
    # every evidence row explains an assigned persona, at most top_n items each, and the
    # kept items never explain more than the (exact, eps = 0) score
    assert joined.count() == per_pair.count() > 15_000
    assert joined.agg(F.max("n")).first()[0] == cfg.evidence.top_n
    assert joined.where(F.col("total") > F.col("score") * (1 + 1e-9)).count() == 0
    segments = spark.read.format("delta").load(str(out / "persona_segments"))
    assert segments.count() == personas.select("persona").distinct().count()
    row = segments.agg(F.max("share"), F.max("revenue_share"), F.min("customers")).first()
    assert 0 < row[0] <= 1 and 0 < row[1] <= 1 and row[2] >= 1
    assert segments.where(F.size("top_items") == 0).count() == 0


@pytest.mark.slow
def test_rerun_replaces_the_run(spark: SparkSession, first_run) -> None:
    """The full OnlineRetail rerun (30 s): slow. The default suite checks the same
    replaceWhere rerun on the tiny run (test_notebooks::test_assign_personas_rerun_...)."""
    cfg, _, out = first_run

    def snapshot() -> dict[str, tuple[int, int]]:
        state = {}
        for table in TABLES:
            path = str(out / table)
            history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`")
            state[table] = (
                spark.read.format("delta").load(path).count(),
                history.agg(F.max("version")).first()[0],
            )
        return state

    before = snapshot()
    run_gplr(spark, cfg)
    after = snapshot()
    for table in TABLES:
        rows, version = before[table]
        # same rows, and exactly one new commit (replaceWhere on run_id) per table
        assert after[table] == (rows, version + 1), table
    assert after["persona_runs"][0] == 1
    last = spark.sql(f"DESCRIBE HISTORY delta.`{out / 'customer_personas'}` LIMIT 1").first()
    assert last["operation"] == "WRITE"
    assert "run_id = 't1'" in last["operationParameters"]["predicate"]


def test_job_rejects_a_bad_key_in_one_line() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "assign_personas.py"),
            "--set",
            "affinity.epsilon=0.1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: config key 'affinity.epsilon': Extra inputs are not permitted (got 0.1)"
    ]


def test_job_reports_a_missing_input(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "assign_personas.py"),
            "--set",
            f'input.source="{tmp_path}/none.parquet"',
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: InputError: input {tmp_path}/none.parquet does not exist"
    )


def test_calibrated_default_assigns_a_variable_number_of_personas(spark: SparkSession) -> None:
    """The bundled config's default: calibrated sets of 1..max_k personas, with item labels."""
    tiny = tiny_run(spark)
    result, cfg = tiny.scope["result"], tiny.scope["cfg"]
    assert cfg.assign.method == "calibrated" and cfg.assign.item_labels
    table = spark.read.format("delta").load(str(tiny.delta / "customer_personas"))
    inferred = table.where(f"run_id = '{RUN_ID}' AND source = 'inferred'")
    sizes = inferred.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("n"), F.min("rank").alias("lo"), F.max("rank").alias("hi")
    )
    row = sizes.agg(F.min("n"), F.max("n"), F.countDistinct("n"), F.max("lo")).first()
    assert row[0] >= 1 and row[1] <= cfg.assign.max_k and row[2] > 1 and row[3] == 1
    assert sizes.where("hi != n").count() == 0  # ranks 1..k
    assert inferred.where("score <= 0 OR score >= 1").count() == 0  # probabilities
    assert sizes.count() == result.counts["customers_inferred"] > 300
    run = spark.read.format("delta").load(str(tiny.delta / "persona_runs"))
    report = json.loads(run.where(f"run_id = '{RUN_ID}'").first()["assign"])
    assert report["method"] == "calibrated" and report["folds"] == cfg.assign.folds
    model = report["model"]
    assert model["use_votes"] and model["iterations"] > 0 and model["train_positives"] > 0
    assert model["train_rows"] == model["train_customers"] * model["personas"]
    assert set(model["weights"]) >= {"affinity_share", "vote_share", "log_degree"}
    items = report["item_labels"]
    assert items["items_labeled"] + items["items_unlabeled"] == items["items"] > 1000
    assert result.counts["item_labels_items_unlabeled"] == items["items_unlabeled"]
    assert "method=calibrated" in result.summary()
