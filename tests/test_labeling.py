from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gplr_spark.labeling import (
    LabelRequest,
    OfflineLabeler,
    RecordedLabeler,
    item_key,
    label_customers,
    request_key,
    validate_personas,
)
from gplr_spark.personas import Catalog, CatalogError, Persona
from gplr_spark.session import REPO_ROOT
from tests.openai_server import Answer, FakeOpenAI, Status, persona_set_answer

CATALOG = Catalog.from_csv(REPO_ROOT / "data" / "catalogs" / "online_retail_paper.csv")
RECORDED = REPO_ROOT / "data" / "online_retail_gpt4_labels" / "user_labels_even_ids.csv"


def test_catalog_version_tracks_names_and_definitions_only() -> None:
    assert len(CATALOG) == 20 and len(CATALOG.version) == 12
    changed = Catalog((Persona("X", "d"), *CATALOG.personas[1:]), source="memory")
    assert changed.version != CATALOG.version
    rekeyed = Catalog(tuple(Persona(p.name, p.definition) for p in CATALOG))
    assert rekeyed.version == CATALOG.version


def test_catalog_rejects_duplicates_and_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="duplicate"):
        Catalog((Persona("A", "x"), Persona("A", "y")))
    bad = tmp_path / "c.csv"
    bad.write_text("title,definition\nA,x\n")
    with pytest.raises(CatalogError, match=r"c\.csv.*\['name'\]"):
        Catalog.from_csv(bad)


def test_validation_normalizes_near_misses_and_rejects_the_rest() -> None:
    ok, _ = validate_personas(["the gardening lover ", "TEA AND COFFEE LOVER"], CATALOG)
    assert ok == ("Gardening Lover", "Tea and Coffee Lover")
    assert validate_personas(["Unrepresentable"], CATALOG) == ((), "")
    assert validate_personas(["Gardening Lovers"], CATALOG) == (None, "unknown_persona")
    assert validate_personas(CATALOG.names[:6], CATALOG) == (None, "too_many_personas")
    assert validate_personas([], CATALOG) == (None, "too_few_personas")


def test_offline_labeler_is_deterministic_and_ignores_ids() -> None:
    items = (
        ("SET OF 3 CAKE TINS PANTRY DESIGN", 4),
        ("JUMBO BAG RED RETROSPOT", 10),
        ("REGENCY CAKESTAND 3 TIER", 2),
        ("PAPER CHAIN KIT 50'S CHRISTMAS", 12),
    )
    labeler = OfflineLabeler()
    first = labeler.label([LabelRequest("k1", "12347", items)], CATALOG)[0]
    again = OfflineLabeler().label([LabelRequest("other", "99999", items)], CATALOG)[0]
    assert first.status == "labeled" and first.personas == again.personas
    assert 1 <= len(first.personas) <= 5
    assert set(first.personas) <= set(CATALOG.names)
    assert "Baking and Confectionery Fans" in first.personas
    empty = labeler.label([LabelRequest("k", "1", (("ZZZ QQQ", 1),))], CATALOG)[0]
    assert empty.status == "unrepresentable"


def test_recorded_labeler_replays_and_validates() -> None:
    labeler = RecordedLabeler(RECORDED)
    assert len(labeler) == 2150
    out = labeler.label(
        [
            LabelRequest("a", "12352", ()),
            LabelRequest("b", "12350", ()),
            LabelRequest("c", "12347", ()),
        ],
        CATALOG,
    )
    assert out[0].status == "labeled" and "Vintage and Retro Enthusiast" in out[0].personas
    assert out[1].status == "unrepresentable"
    assert (out[2].status, out[2].detail) == ("failed", "not_recorded")


def test_request_keys_are_opaque_and_stable() -> None:
    assert request_key("12347") == request_key("12347")
    assert "12347" not in request_key("12347")


def test_label_customers_end_to_end(spark, online_retail) -> None:
    purchases, _ = online_retail
    chosen = spark.createDataFrame([("12352",), ("12350",), ("12347",)], "customer_id string")
    labels, report = label_customers(purchases, chosen, CATALOG, RecordedLabeler(RECORDED))
    assert (report.labeled, report.unrepresentable, report.failed) == (1, 1, 1)
    assert {r.customer_id for r in labels.collect()} == {"12352"}
    assert report.labels == labels.count() == 7


# ---------------------------------------------------------------------------------------------
# The LLM jobs, in-process (they reuse the test's SparkSession) against the loopback server
# ---------------------------------------------------------------------------------------------

TINY_PRODUCTS = [
    "WHITE HANGING HEART T-LIGHT HOLDER",
    "RED TEAPOT",
    "GARDEN GNOME",
    "JUMBO BAG RED RETROSPOT",
    "REGENCY CAKESTAND 3 TIER",
    "PAPER CHAIN KIT 50'S CHRISTMAS",
]


def load_job(name: str) -> Any:
    """A job module from jobs/ (a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "jobs" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def tiny_config(tmp_path: Path) -> Path:
    """A run config over a 6-customer OnlineRetail-shaped CSV, all output under tmp_path."""
    lines = ["InvoiceNo,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"]
    for c in range(6):
        for j in range(3):
            product = TINY_PRODUCTS[(c + j) % len(TINY_PRODUCTS)]
            lines.append(f"5{c}{j},{product},{j + 1},2011-01-0{j + 1} 10:00:00,1.5,1234{c},France")
    (tmp_path / "tiny.csv").write_text("\n".join(lines) + "\n")
    config = tmp_path / "tiny.toml"
    config.write_text(
        f"""
[input]
source = "{tmp_path / "tiny.csv"}"
mapping = "conf/mappings/online_retail.toml"
[labeler]
api_key_env = "GPLR_JOB_TEST_KEY"
store_path = "{tmp_path / "store"}"
progress = false
[catalog.generation]
proposals = 3
customers_per_proposal = 4
personas_per_proposal = 5
merges = 2
sets_per_merge = 2
final_size = 4
output = "{tmp_path / "catalog.csv"}"
"""
    )
    return config


def test_generate_catalog_job(
    spark, tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load_job("generate_catalog")
    runner = CliRunner()
    monkeypatch.delenv("GPLR_JOB_TEST_KEY", raising=False)
    offline = runner.invoke(job.app, ["--config", str(tiny_config)])
    assert offline.exit_code == 1
    assert "GPLR_JOB_TEST_KEY" in offline.stderr and len(offline.stderr.splitlines()) == 1
    monkeypatch.setenv("GPLR_JOB_TEST_KEY", "sk-job-test")
    with FakeOpenAI(handler=persona_set_answer) as srv:
        args = ["--config", str(tiny_config), "--set", f"labeler.base_url={srv.url!r}"]
        done = runner.invoke(job.app, args)
        assert done.exit_code == 0, done.output
        assert len(srv.calls) == 3 + 2 + 1
        assert all("1234" not in json.dumps(c.body) for c in srv.calls)  # no customer ids
        catalog = Catalog.from_csv(tmp_path / "catalog.csv")
        assert len(catalog) == 4 and catalog.names[0].startswith("final persona")
        assert catalog.provenance["model"] == "gpt-4o-mini"
        assert f"catalog {catalog.version}: 4 personas from 6 sampled customers" in done.output
        srv.reset_calls()
        assert runner.invoke(job.app, args).exit_code == 0 and srv.calls == []  # rerun: free
    with FakeOpenAI(handler=lambda call: Status(403)) as srv:
        bad = [*args[:2], "--set", f"labeler.base_url={srv.url!r}", "--set", "labeler.model=x"]
        refused = runner.invoke(job.app, bad)
    assert refused.exit_code == 1 and "HTTP 403" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1


def test_label_items_job(
    spark, tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load_job("label_items")
    runner = CliRunner()
    out = tmp_path / "items.csv"
    monkeypatch.delenv("GPLR_JOB_TEST_KEY", raising=False)
    base = ["--config", str(tiny_config), "--output", str(out)]
    no_key = runner.invoke(job.app, [*base, "--set", "labeler.backend=openai"])
    assert no_key.exit_code == 1 and "GPLR_JOB_TEST_KEY" in no_key.stderr
    assert len(no_key.stderr.splitlines()) == 1
    offline = runner.invoke(job.app, [*base, "--limit", "4"])  # auto without a key: offline
    assert offline.exit_code == 0, offline.output
    assert "item labels (offline): 4 products" in offline.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {r["item_name"] for r in rows} <= set(TINY_PRODUCTS)
    monkeypatch.setenv("GPLR_JOB_TEST_KEY", "sk-job-test")
    with FakeOpenAI(personas=["the home decor aficionado"]) as srv:
        srv.script(item_key("RED TEAPOT"), *[Answer(content="no idea")] * 3)
        args = [*base, "--set", f"labeler.base_url={srv.url!r}"]
        done = runner.invoke(job.app, args)
        assert done.exit_code == 0, done.output
        assert len(srv.calls) == len(TINY_PRODUCTS) + 2  # the teapot was re-asked twice
        assert "item labels (openai): 6 products, 5 labeled, 0 unrepresentable, 1 failed" in (
            done.output
        )
        rows = {r["item_name"]: r for r in csv.DictReader(out.open())}
        assert rows["GARDEN GNOME"]["personas"] == "Home Decor Aficionado"
        assert (rows["RED TEAPOT"]["status"], rows["RED TEAPOT"]["detail"]) == (
            "failed",
            "rejected:not_json",
        )
        srv.reset_calls()
        again = runner.invoke(job.app, args)
        assert again.exit_code == 0 and "5 from the store" in again.output
        assert [c.key for c in srv.calls] == [item_key("RED TEAPOT")]  # only the failure
        assert "6 labeled" in again.output
