"""The push against a hand-computed graph and an independent scipy oracle."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from gplr_spark.affinity import ENGINES, AffinityReport, compute_affinity, debias_weights
from gplr_spark.graph import build_edges
from gplr_spark.sampling import random_prototypes

from .oracle import scipy_affinity

S = math.sqrt(0.5)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture()
def tiny(frame):
    """a - x - b - y - c; labels a: {R1, R2}, c: {R2} (so c_R1 = 1, c_R2 = sqrt(1/2))."""
    purchases = frame(
        {"customer_id": ["a", "b", "b", "c"], "item_id": ["x", "x", "y", "y"], "quantity": [1] * 4}
    )
    labels = frame({"customer_id": ["a", "a", "c"], "persona": ["R1", "R2", "R2"]})
    return build_edges(purchases), labels


def rows(df: DataFrame) -> dict[tuple[str, str], float]:
    return {(r.customer_id, r.persona): r.affinity for r in df.collect()}


def test_hand_computed_walk_length_1(tiny, engine) -> None:
    edges, labels = tiny
    got = rows(compute_affinity(edges, labels, walk_length=1, beta=0.5, engine=engine))
    expected = {
        ("a", "R1"): 0.25,
        ("a", "R2"): S / 4,
        ("b", "R1"): 0.125,
        ("b", "R2"): (S / 4 + S / 2) / 2,
        ("c", "R2"): S / 2,
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-15)


def test_hand_computed_walk_length_2(tiny, engine) -> None:
    edges, labels = tiny
    got = rows(compute_affinity(edges, labels, walk_length=2, beta=0.5, engine=engine))
    x1 = {"a": (0.25, S / 4), "b": (0.125, 3 * S / 8), "c": (0.0, S / 2)}
    yx = [(x1["a"][i] + x1["b"][i]) / 2 for i in range(2)]
    yy = [(x1["b"][i] + x1["c"][i]) / 2 for i in range(2)]
    x2 = {"a": yx, "b": [(yx[i] + yy[i]) / 2 for i in range(2)], "c": yy}
    for user in "abc":
        for i, persona in enumerate(("R1", "R2")):
            expected = (x1[user][i] + x2[user][i]) / 2
            assert got.get((user, persona), 0.0) == pytest.approx(expected, abs=1e-15)


def test_debias_weights(tiny) -> None:
    _, labels = tiny
    got = {r.persona: r.c for r in debias_weights(labels, 0.5).collect()}
    assert got == pytest.approx({"R1": 1.0, "R2": S})
    flat = {r.persona: r.c for r in debias_weights(labels, 0.0).collect()}
    assert flat == {"R1": 1.0, "R2": 1.0}


def test_isolated_nodes_and_unlabelled_personas(frame, engine) -> None:
    """An item no prototype bought, a customer far away, a prototype without items."""
    purchases = frame(
        {
            "customer_id": ["a", "b", "z"],
            "item_id": ["x", "x", "lonely"],
            "quantity": [1, 1, 1],
        }
    )
    labels = frame({"customer_id": ["a", "ghost"], "persona": ["R1", "R3"]})
    report = AffinityReport(0, 1, 0.5, 0)
    got = rows(compute_affinity(build_edges(purchases), labels, report=report, engine=engine))
    # 'ghost' has no items: its label reaches nobody; 'z' shares no item with a prototype.
    assert got.keys() == {("a", "R1"), ("b", "R1")}
    assert got[("a", "R1")] == pytest.approx(0.5)
    assert report.rows == 2 and len(report.hops) == 2
    assert report.engine == engine
    # Hop 1 pushes both labels (ghost's reaches no item); hop 2 pushes item x only.
    assert [h.rows for h in report.hops] == [2, 1]


def test_bad_arguments_are_named(tiny) -> None:
    edges, labels = tiny
    with pytest.raises(ValueError, match="eps"):
        compute_affinity(edges, labels, eps=-1)
    with pytest.raises(ValueError, match="walk_length"):
        compute_affinity(edges, labels, walk_length=0)
    with pytest.raises(ValueError, match="engine"):
        compute_affinity(edges, labels, engine="dense")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels is empty"):
        compute_affinity(edges, labels.limit(0))


def test_exact_equals_scipy_on_online_retail(spark: SparkSession, online_retail_edges) -> None:
    edges = online_retail_edges
    customers = edges.select("customer_id").distinct()
    prototypes = random_prototypes(customers, 800, seed=7)
    personas = spark.createDataFrame(
        pd.DataFrame({"persona": [f"P{i}" for i in range(20)], "w": range(20)})
    )
    # Skewed labels: every prototype gets the personas whose hash bucket matches.
    labels = (
        prototypes.crossJoin(personas)
        .where("pmod(xxhash64(customer_id, w), 5) = 0 or w = 0")
        .select("customer_id", "persona")
    )
    edges_pd = edges.select("customer_id", "item_id").toPandas()
    labels_pd = labels.toPandas()
    # The default engine at both walk lengths; the long engine at the default one.
    for walk_length, engine in ((1, "matrix"), (2, "matrix"), (1, "long")):
        got = compute_affinity(
            edges, labels, walk_length=walk_length, beta=0.5, engine=engine
        ).toPandas()
        want = scipy_affinity(edges_pd, labels_pd, walk_length=walk_length, beta=0.5)
        # Same (customer, persona) entries, every value within 1e-12 (78k rows: pandas, not
        # a row-by-row DataFrame comparison).
        joined = got.merge(want, on=["customer_id", "persona"], how="outer", indicator=True)
        assert (joined["_merge"] == "both").all(), joined[joined["_merge"] != "both"].head()
        assert (joined["affinity_x"] - joined["affinity_y"]).abs().max() <= 1e-12
