"""Diversity-Uncertainty sampling: scores match a hand computation, rounds never repeat a pick."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from pyspark.sql import DataFrame

from gplr_spark.affinity import compute_affinity
from gplr_spark.config import RunConfig, load_config
from gplr_spark.graph import build_edges
from gplr_spark.labeling import LabelRequest, LabelResult
from gplr_spark.personas import Catalog, Persona
from gplr_spark.pipeline import run_gplr
from gplr_spark.sampling import (
    KL_DELTA,
    diversity_uncertainty_rounds,
    du_scores,
    random_prototypes,
    round_sizes,
    top_scored,
)

CATALOG = Catalog((Persona("X", "likes x"), Persona("Y", "likes y")))

# The tiny graph: customers a..f, items 1..4.
#   a: 1, 2    b: 2, 3    c: 1    d: 3    e: 1, 3    f: 4
# d(a)=d(b)=d(e)=2, d(c)=d(d)=d(f)=1; d(1)=3 (a,c,e), d(2)=2 (a,b), d(3)=3 (b,d,e), d(4)=1.
EDGES = [
    ("a", "1"),
    ("a", "2"),
    ("b", "2"),
    ("b", "3"),
    ("c", "1"),
    ("d", "3"),
    ("e", "1"),
    ("e", "3"),
    ("f", "4"),
]


@pytest.fixture()
def purchases(frame) -> DataFrame:
    return frame(
        {
            "customer_id": [u for u, _ in EDGES],
            "item_id": [v for _, v in EDGES],
            "item_name": [f"ITEM {v}" for _, v in EDGES],
            "quantity": [1] * len(EDGES),
        },
        "customer_id string, item_id string, item_name string, quantity bigint",
    )


def hand_scores() -> dict[str, float]:
    """Labels a:{X}, b:{Y}, f:{X}; beta = 0, so L[u, r] = 1 / |labels(u)|.

    Item side, (P' L)[v] = mean of L over v's customers:
        1: (X 1/3, Y 0)   2: (X 1/2, Y 1/2)   3: (X 0, Y 1/3)   4: (X 1, Y 0)
    Customer side, Psi[u] = mean over u's items:
        c = (1/3, 0) -> Q_c = (1, 0);  d = (0, 1/3) -> Q_d = (0, 1);
        e = (1/6, 1/6) -> Q_e = (1/2, 1/2)
    Qhat = (X 2/3, Y 1/3). s(u) = sum_r Qhat(r) log(Qhat(r) / (Q_u(r) + 1e-16)) + H(Q_u):
        c: 2/3 log(2/3 / 1) + 1/3 log(1/3 / 1e-16) + 0            = 11.6439...
        d: 2/3 log(2/3 / 1e-16) + 1/3 log(1/3 / 1) + 0            = 23.9243...
        e: 2/3 log(2/3 / 1/2) + 1/3 log(1/3 / 1/2) + log 2        =  0.7497...
    """
    d = KL_DELTA
    return {
        "c": 2 / 3 * math.log((2 / 3) / (1 + d)) + 1 / 3 * math.log((1 / 3) / d),
        "d": 2 / 3 * math.log((2 / 3) / d) + 1 / 3 * math.log((1 / 3) / (1 + d)),
        "e": 2 / 3 * math.log((2 / 3) / (0.5 + d))
        + 1 / 3 * math.log((1 / 3) / (0.5 + d))
        + math.log(2),
    }


def test_du_scores_match_hand_computation(spark, frame, purchases) -> None:
    labels = frame({"customer_id": ["a", "b", "f"], "persona": ["X", "Y", "X"]})
    edges = build_edges(purchases)
    aff = compute_affinity(edges, labels, beta=0.0)
    scores = {r["customer_id"]: r["score"] for r in du_scores(aff, labels).collect()}
    expected = hand_scores()
    for user, value in expected.items():
        assert scores[user] == pytest.approx(value, rel=1e-12), user
    assert expected["d"] == pytest.approx(23.924393, abs=1e-6)
    assert expected["c"] == pytest.approx(11.643940, abs=1e-6)
    assert expected["e"] == pytest.approx(0.749780, abs=1e-6)
    picked = top_scored(
        du_scores(aff, labels), 2, exclude=labels.select("customer_id").distinct()
    ).collect()
    assert [r["customer_id"] for r in picked] == ["d", "c"]


class DictLabeler:
    """A deterministic labeler for the rounds driver: personas from a per-customer table."""

    name = "dict"

    def __init__(self, table: dict[str, tuple[str, ...]]) -> None:
        self.table = table
        self.seen: list[str] = []

    def label(self, requests: Sequence[LabelRequest], catalog: Catalog) -> list[LabelResult]:
        out = []
        for req in requests:
            self.seen.append(req.customer_id)
            personas = self.table.get(req.customer_id, ())
            out.append(LabelResult(req.key, personas, "labeled" if personas else "failed"))
        return out


def test_round_sizes_spend_tau() -> None:
    assert round_sizes(10, 3) == [4, 3, 3]
    assert round_sizes(2, 5) == [1, 1]
    assert sum(round_sizes(97, 10)) == 97


def test_rounds_never_pick_twice_and_follow_scores(spark, frame, purchases) -> None:
    table = {
        "a": ("X",),
        "b": ("Y",),
        "c": ("X",),
        "d": ("Y",),
        "e": ("X", "Y"),
        "f": ("X",),
    }
    labeler = DictLabeler(table)
    edges = build_edges(purchases)
    result = diversity_uncertainty_rounds(
        edges, purchases, CATALOG, labeler, tau=5, rounds=3, seed=7
    )
    picks = sorted(result.picks.collect(), key=lambda r: (r["round"], -(r["score"] or 0.0)))
    ids = [r["customer_id"] for r in picks]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert sorted(labeler.seen) == sorted(ids)  # each picked customer was labeled once
    assert [r["round"] for r in picks] == [1, 1, 2, 2, 3]
    first = {r["customer_id"] for r in picks if r["round"] == 1}
    expected_first = {
        r["customer_id"]
        for r in random_prototypes(edges.select("customer_id").distinct(), 2, seed=7).collect()
    }
    assert first == expected_first
    assert all(r["score"] is None for r in picks if r["round"] == 1)
    # round 2 took the two best-scored customers given the round-1 labels
    round1_labels = frame(
        {
            "customer_id": [u for u in sorted(first) for _ in table[u]],
            "persona": [p for u in sorted(first) for p in table[u]],
        }
    )
    aff = compute_affinity(edges, round1_labels, beta=0.0)
    best = top_scored(du_scores(aff, round1_labels), 2, seed=7, exclude=round1_labels).collect()
    assert [r["customer_id"] for r in picks if r["round"] == 2] == [r["customer_id"] for r in best]
    labels = result.labels.collect()
    assert {(r["customer_id"], r["persona"]) for r in labels} == {
        (u, p) for u in ids for p in table[u]
    }
    assert sum(rep.labeled for rep in result.reports) == 5


def test_rounds_respect_candidate_pool(spark, frame, purchases) -> None:
    labeler = DictLabeler({u: ("X",) for u in "abcdef"})
    pool = frame({"customer_id": ["b", "c", "e", "zz"]})  # zz is not in the graph
    result = diversity_uncertainty_rounds(
        build_edges(purchases), purchases, CATALOG, labeler, tau=4, rounds=2, candidates=pool
    )
    ids = [r["customer_id"] for r in result.picks.collect()]
    assert sorted(ids) == ["b", "c", "e"]  # the pool runs out: nobody twice, nobody outside


@pytest.fixture()
def tiny_cfg(tmp_path: Path) -> Callable[..., RunConfig]:
    """run_gplr's config over the tiny graph as an OnlineRetail-shaped CSV (catalog X, Y)."""
    rows = ["InvoiceNo,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"]
    rows += [
        f"1{i},ITEM {v},1,2011-01-01 10:00:00,1.0,{u},France" for i, (u, v) in enumerate(EDGES)
    ]
    (tmp_path / "tiny.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "catalog.csv").write_text("name,definition\nX,likes x\nY,likes y\n")

    def make(*overrides: str) -> RunConfig:
        return load_config(
            None,
            [
                f'input.source="{tmp_path / "tiny.csv"}"',
                f'catalog.path="{tmp_path / "catalog.csv"}"',
                "affinity.beta=0.0",
                "sampling.seed=7",
                'assign.method="top_k"',
                "assign.k=1",
                *overrides,
            ],
        )

    return make


def test_pipeline_wires_du_and_keeps_random_identical(
    spark, tiny_cfg, purchases, frame, tmp_path: Path
) -> None:
    table = {u: ("X",) if u in "acf" else ("Y",) for u in "abcdef"}
    edges = build_edges(purchases)
    # random: exactly the seeded hash sample, as before DU existed
    cfg = tiny_cfg("sampling.tau=3")
    assert cfg.sampling.strategy == "random"
    result = run_gplr(spark, cfg, labeler=DictLabeler(table), write=False)
    expected = random_prototypes(edges.select("customer_id").distinct(), 3, seed=7).collect()
    assert {r["customer_id"] for r in result.labels.collect()} == {
        r["customer_id"] for r in expected
    }
    assert "sampling_rounds" not in result.counts and "candidate_pool" not in result.counts
    # du with a consent pool: the same picks as the rounds driver, one labeling report
    (tmp_path / "consent.csv").write_text("CustomerID,consent\nb,y\nc,y\nd,y\ne,y\nzz,y\n")
    cfg = tiny_cfg(
        "sampling.tau=3",
        "sampling.rounds=2",
        'sampling.strategy="diversity_uncertainty"',
        f'sampling.candidate_pool="{tmp_path / "consent.csv"}"',
    )
    labeler = DictLabeler(table)
    result = run_gplr(spark, cfg, labeler=labeler, write=False)
    pool = frame({"customer_id": ["b", "c", "d", "e"]})
    direct = diversity_uncertainty_rounds(
        edges, purchases, CATALOG, DictLabeler(table), tau=3, rounds=2, seed=7, candidates=pool
    )
    picked = sorted(r["customer_id"] for r in direct.picks.collect())
    assert sorted(labeler.seen) == picked and len(set(picked)) == 3
    assert set(picked) <= {"b", "c", "d", "e"}
    assert result.counts["candidate_pool"] == 5  # zz is in the file, not in the graph
    assert result.counts["sampling_rounds"] == 2 and result.counts["prototypes_labeled"] == 3
    assert result.labeling_report is not None and result.labeling_report.extra["rounds"] == 2
