"""RevAff's guarantee on random graphs: every entry within eps of an independent scipy Psi."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession

from gplr_spark.affinity import ENGINES, AffinityReport, compute_affinity
from gplr_spark.graph import build_edges

from .oracle import scipy_affinity

PERSONAS = ["R0", "R1", "R2", "R3"]


@st.composite
def graphs(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A random bipartite purchase graph and random prototype labels (1-3 per prototype)."""
    n_users = draw(st.integers(2, 10))
    n_items = draw(st.integers(1, 6))
    pairs = draw(
        st.sets(
            st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
            min_size=1,
            max_size=n_users * n_items,
        )
    )
    users = sorted({u for u, _ in pairs})
    prototypes = draw(
        st.lists(st.sampled_from(users), min_size=1, max_size=len(users), unique=True)
    )
    labels = [
        (f"u{u}", persona)
        for u in prototypes
        for persona in draw(st.sets(st.sampled_from(PERSONAS), min_size=1, max_size=3))
    ]
    edges = pd.DataFrame(
        {
            "customer_id": [f"u{u}" for u, _ in sorted(pairs)],
            "item_id": [f"i{v}" for _, v in sorted(pairs)],
            "quantity": 1,
        }
    )
    return edges, pd.DataFrame(labels, columns=["customer_id", "persona"])


def max_error(got: pd.DataFrame, want: pd.DataFrame) -> float:
    """Largest |got - want| over the union of entries (a missing entry is 0)."""
    joined = got.merge(want, on=["customer_id", "persona"], how="outer", suffixes=("_got", ""))
    joined = joined.fillna(0.0)
    return float((joined["affinity_got"] - joined["affinity"]).abs().max())


SETTINGS = settings(
    max_examples=4,  # each example is several Spark jobs per engine: keep the suite < 5 min
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(
    case=graphs(),
    eps=st.sampled_from([1e-3, 0.02, 0.1, 0.3]),
    walk_length=st.sampled_from([1, 2]),
    beta=st.sampled_from([0.0, 0.5]),
)
def test_every_entry_within_eps(
    spark: SparkSession, case: tuple[pd.DataFrame, pd.DataFrame], eps, walk_length, beta
) -> None:
    edges_pd, labels_pd = case
    want = scipy_affinity(edges_pd, labels_pd, walk_length=walk_length, beta=beta)
    edges = build_edges(spark.createDataFrame(edges_pd))
    labels = spark.createDataFrame(labels_pd)
    for engine in ENGINES:
        report = AffinityReport(0, 1, 0, 0)
        got = compute_affinity(
            edges,
            labels,
            eps=eps,
            walk_length=walk_length,
            beta=beta,
            engine=engine,
            report=report,
        ).toPandas()
        assert max_error(got, want) <= eps, engine
        assert report.threshold == pytest.approx(eps / (2 * walk_length))
        assert len(report.hops) == 2 * walk_length
        # Dropped mass is what pruning removed; nothing is pushed below the threshold.
        assert all(h.pushed <= h.rows and h.dropped_mass >= 0 for h in report.hops)


@SETTINGS
@given(case=graphs(), walk_length=st.sampled_from([1, 2]), beta=st.sampled_from([0.0, 0.5]))
def test_eps_zero_is_exact(
    spark: SparkSession, case: tuple[pd.DataFrame, pd.DataFrame], walk_length, beta
) -> None:
    edges_pd, labels_pd = case
    want = scipy_affinity(edges_pd, labels_pd, walk_length=walk_length, beta=beta)
    edges = build_edges(spark.createDataFrame(edges_pd))
    labels = spark.createDataFrame(labels_pd)
    for engine in ENGINES:
        got = compute_affinity(
            edges, labels, eps=0.0, walk_length=walk_length, beta=beta, engine=engine
        ).toPandas()
        assert len(got) == len(want), engine
        assert max_error(got, want) <= 1e-12, engine


def test_pruning_drops_mass_and_reports_it(spark: SparkSession) -> None:
    """A star: one prototype, many items; eps above every item residue prunes the last hop."""
    edges_pd = pd.DataFrame(
        {"customer_id": ["p"] * 4 + ["q"] * 4, "item_id": list("abcd") * 2, "quantity": 1}
    )
    labels_pd = pd.DataFrame({"customer_id": ["p"], "persona": ["R0"]})
    edges = build_edges(spark.createDataFrame(edges_pd))
    labels = spark.createDataFrame(labels_pd)
    for engine in ENGINES:
        report = AffinityReport(0, 1, 0, 0)
        # Item residues are 1/2 each (label 1, item degree 2); threshold 0.3 / 2 keeps them.
        kept = compute_affinity(edges, labels, eps=0.3, engine=engine, report=report).toPandas()
        assert sorted(kept["affinity"]) == pytest.approx([0.5, 0.5])
        assert [h.dropped_mass for h in report.hops] == [0.0, 0.0]
        # Threshold 1.2 / 2 = 0.6 drops all four item residues (mass 4 x 0.5) at hop 2.
        report = AffinityReport(0, 1, 0, 0)
        gone = compute_affinity(edges, labels, eps=1.2, engine=engine, report=report)
        assert gone.count() == 0
        assert report.hops[1].dropped_mass == pytest.approx(2.0)
        assert report.hops[1].pushed == 0 and report.hops[1].rows == 4
