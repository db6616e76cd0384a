from __future__ import annotations

from pathlib import Path

import pytest

from gplr_spark.labeling import (
    LabelRequest,
    OfflineLabeler,
    RecordedLabeler,
    label_customers,
    request_key,
    validate_personas,
)
from gplr_spark.personas import Catalog, CatalogError, Persona
from gplr_spark.session import REPO_ROOT

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
