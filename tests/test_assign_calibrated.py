"""The calibrated assignment on Spark against hand computations and the numpy evaluation.

Oracles: expected-F1 sets worked out by hand, ``evaluation.inference.fit_logistic`` (scipy
L-BFGS) for the Spark ML fit, and the numpy calibrated model of the evaluation
(``affinity``, ``item_votes``, ``pair_features``, ``fit_logistic``, ``expected_f1_sets``)
recomputed on the same real OnlineRetail slice, prototypes and folds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from gplr_spark.affinity import compute_affinity, out_of_fold_affinity, prototype_folds
from gplr_spark.assign import (
    CalibrationReport,
    calibrated,
    expected_f1_sets,
    feature_names,
    fit_pair_model,
    item_votes,
    load_item_labels,
    pair_features,
    pair_grid,
    persona_index,
)
from gplr_spark.config import ConfigError, load_config
from gplr_spark.evaluation import inference as inf
from gplr_spark.evaluation.data import LABELS_DIR, load_catalog, load_user_labels
from gplr_spark.graph import build_edges


def test_expected_f1_sets_hand_computed(frame) -> None:
    probs = frame(
        {
            "customer_id": ["a"] * 3 + ["b"] * 3 + ["c"] * 2 + ["d"] * 4,
            "persona": ["A", "B", "C", "A", "B", "C", "B", "A", "A", "B", "C", "D"],
            "p": [0.9, 0.8, 0.1, 0.9, 0.05, 0.05, 0.5, 0.5, 0.9, 0.9, 0.9, 0.9],
        }
    )
    got = {
        (r.customer_id, r.persona): (r.score, r["rank"])
        for r in expected_f1_sets(probs, max_k=3).collect()
    }
    assert got == {
        # a: sum p = 1.8; ef1 = 2*.9/2.8 = .643, 2*1.7/3.8 = .895, 2*1.8/4.8 = .75 -> k = 2
        ("a", "A"): (0.9, 1),
        ("a", "B"): (0.8, 2),
        # b: sum p = 1.0; ef1 = 1.8/2 = .9, 1.9/3 = .633 -> k = 1
        ("b", "A"): (0.9, 1),
        # c: a tie, broken by persona name; ef1 = 1/2, 2/3 -> k = 2
        ("c", "A"): (0.5, 1),
        ("c", "B"): (0.5, 2),
        # d: sum p = 3.6; ef1 = 1.8/4.6, 3.6/5.6, 5.4/6.6 rising, cut at max_k = 3
        ("d", "A"): (0.9, 1),
        ("d", "B"): (0.9, 2),
        ("d", "C"): (0.9, 3),
    }
    numpy_sizes = inf.expected_f1_sets(np.array([[0.9, 0.8, 0.1], [0.9, 0.05, 0.05]]), 3)
    assert numpy_sizes.sum(axis=1).tolist() == [2, 1]


def test_spark_logistic_fit_equals_scipy_oracle(frame) -> None:
    rng = np.random.default_rng(7)
    users, m = 120, 5
    dense = rng.normal(size=(users * m, 3))
    persona = np.tile(np.arange(m), users)
    z = dense @ np.array([1.2, -0.7, 0.4]) + np.linspace(-1.5, 1.0, m)[persona]
    y = (rng.random(users * m) < 1 / (1 + np.exp(-z))).astype(float)
    train = frame(
        {
            "f0": dense[:, 0],
            "f1": dense[:, 1],
            "f2": dense[:, 2],
            "persona_idx": persona,
            "label": y,
        }
    )
    x = np.hstack([dense, np.eye(m)[persona]])
    l2 = 3.0
    _, lr, n = fit_pair_model(train, ["f0", "f1", "f2"], m, l2=l2)
    assert n == users * m and lr.getRegParam() == pytest.approx(l2 / n)
    want = inf.fit_logistic(x, y, l2)
    assert np.abs(lr.coefficients.toArray() - want).max() < 1e-4
    with pytest.raises(ValueError, match="l2"):
        fit_pair_model(train, ["f0"], m, l2=0.0)


def test_bad_calibrated_config_values_fail() -> None:
    cfg = load_config(None, [])
    assert (cfg.assign.method, cfg.assign.folds, cfg.assign.l2, cfg.assign.max_k) == (
        "calibrated",
        5,
        1.0,
        8,
    )
    for override, key in [
        ("assign.folds=1", "assign.folds"),
        ("assign.l2=0", "assign.l2"),
        ("assign.l2=-1.5", "assign.l2"),
        ("assign.max_k=0", "assign.max_k"),
        ('assign.method="top_5"', "assign.method"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(None, [override])
    assert load_config(None, ['assign.item_labels=""']).assign.item_labels is None


def test_item_labels_are_matched_and_counted(spark: SparkSession, frame, tmp_dir: Path) -> None:
    csv = tmp_dir / "items.csv"
    csv.write_text(
        "Description,stock_codes,n_users,personas\n"
        '"  RED MUG ",1,2,Busy Parent|the gardening lover\n'  # blanks, case, leading 'The'
        '"LETTER ""M"" RING",2,1,Busy Parent|Space Tourist\n'  # a doubled quote, unknown name
        "GREEN BOWL,3,1,\n"  # no label
        "NOT SOLD HERE,4,1,Busy Parent\n"
    )
    items = frame(
        {
            "item_id": ["i1", "i2", "i3", "i4"],
            "item_name": ["RED MUG", 'LETTER "M" RING', "GREEN BOWL", "BLUE CUP"],
        }
    )
    catalog = ["Busy Parent", "Gardening Lover", "Home Cook"]
    item_personas, rep = load_item_labels(spark, str(csv), catalog, items)
    got = sorted((r.item_id, r.persona) for r in item_personas.collect())
    assert got == [("i1", "Busy Parent"), ("i1", "Gardening Lover"), ("i2", "Busy Parent")]
    assert (rep.match_on, rep.label_rows, rep.label_rows_unmatched) == ("item_name", 4, 1)
    assert (rep.items, rep.items_labeled, rep.items_unlabeled) == (4, 2, 2)
    assert (rep.unknown_persona_entries, rep.unknown_personas) == (1, ["Space Tourist"])

    # votes: an item with n labels gives each 1/n; a customer's votes sum to 1
    edges = frame({"customer_id": ["u", "u", "w"], "item_id": ["i1", "i2", "i3"]})
    votes = {(r.customer_id, r.persona): r.vote for r in item_votes(edges, item_personas).collect()}
    assert votes == {("u", "Busy Parent"): pytest.approx(0.75), ("u", "Gardening Lover"): 0.25}


# ---------------------------------------------------------------------------------------------
# The whole stage on a real slice vs the numpy model of the evaluation
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slice_run(spark: SparkSession, online_retail):
    """Every 10th OnlineRetail customer (~430), 20% of them prototypes with GPT-4 labels."""
    purchases = online_retail[0].where(F.col("customer_id").cast("long") % 10 == 0)
    edges = build_edges(purchases).localCheckpoint(eager=True)
    edges_pd = edges.select("customer_id", "item_id").toPandas()
    catalog = load_catalog()
    recorded = load_user_labels(catalog)
    users = sorted(edges_pd.customer_id.unique())
    pool = [u for u in users if recorded.get(u)]
    rng = np.random.default_rng(3)
    protos = sorted(rng.choice(pool, size=len(users) // 5, replace=False).tolist())
    rows = [(u, p) for u in protos for p in sorted(recorded[u])]
    labels = spark.createDataFrame(
        pd.DataFrame(rows, columns=["customer_id", "persona"])
    ).localCheckpoint(eager=True)
    folds = prototype_folds(labels, 3, seed=11).localCheckpoint(eager=True)  # 3: test time
    aff = compute_affinity(edges, labels, beta=0.5)
    oof = out_of_fold_affinity(edges, labels, folds, beta=0.5)
    items = purchases.select("item_id", "item_name").distinct()
    item_personas, item_rep = load_item_labels(
        spark, str(LABELS_DIR / "item_labels.csv"), catalog.names, items
    )
    votes = item_votes(edges, item_personas).localCheckpoint(eager=True)
    report = CalibrationReport()
    got = calibrated(aff, labels, oof, edges, votes=votes, l2=1.0, max_k=8, report=report)
    return {
        "edges": edges,
        "edges_pd": edges_pd,
        "labels": labels,
        "folds": folds.toPandas(),
        "oof": oof,
        "votes": votes,
        "item_personas": item_personas.toPandas(),
        "item_report": item_rep,
        "catalog": catalog,
        "result": got.toPandas(),
        "report": report,
        "rows": rows,
    }


@pytest.fixture(scope="module")
def numpy_model(slice_run):
    """The evaluation's calibrated model on the same graph, prototypes and folds."""
    graph = inf.Graph.from_edges(slice_run["edges_pd"])
    personas = sorted({p for _, p in slice_run["rows"]})  # the affinity's persona set
    col = {p: j for j, p in enumerate(personas)}
    phi = np.zeros((len(graph.users), len(personas)))
    for u, p in slice_run["rows"]:
        phi[graph.users.get_loc(u), col[p]] = 1.0
    catalog = slice_run["catalog"].names
    ip = np.zeros((len(graph.items), len(catalog)))
    for item, persona in slice_run["item_personas"].itertuples(index=False):
        ip[graph.items.get_loc(item), catalog.index(persona)] = 1.0
    votes = inf.item_votes(graph, ip)[:, [catalog.index(p) for p in personas]]
    walk = inf.Walk.of(graph.adj)
    folds = slice_run["folds"]
    fold_of = pd.Series(folds.fold.to_numpy(), index=graph.users.get_indexer(folds.customer_id))
    xs, ys, order, oof = [], [], [], {}
    for f in sorted(fold_of.unique()):
        test = fold_of.index[fold_of == f].to_numpy()
        train_phi = np.zeros_like(phi)
        train = fold_of.index[fold_of != f].to_numpy()
        train_phi[train] = phi[train]
        psi = inf.affinity(walk, train_phi, beta=0.5)[test]
        oof.update(
            {
                (graph.users[u], p): psi[i, j]
                for i, u in enumerate(test)
                for j, p in enumerate(personas)
            }
        )
        feats = inf.pair_features(psi, votes[test], graph.degree[test])
        xs.append(feats.reshape(-1, feats.shape[2]))
        ys.append(phi[test].reshape(-1))
        order += [(graph.users[u], p) for u in test for p in personas]
    x, y = np.concatenate(xs), np.concatenate(ys)
    w = inf.fit_logistic(x, y, 1.0)
    psi = inf.affinity(walk, phi, beta=0.5)
    prob = 1 / (1 + np.exp(-(inf.pair_features(psi, votes, graph.degree) @ w)))
    pred = inf.expected_f1_sets(prob, max_k=8)
    protos = fold_of.index.to_numpy()
    scored = np.flatnonzero(psi.sum(axis=1) > 0)
    scored = scored[~np.isin(scored, protos)]  # reached non-prototypes
    sets = {graph.users[u]: frozenset(np.array(personas)[pred[u]]) for u in scored}
    return {
        "x": x,
        "y": y,
        "order": order,
        "oof": oof,
        "w": w,
        "sets": sets,
        "prob": prob,
        "graph": graph,
    }


def test_out_of_fold_affinities_equal_numpy(slice_run, numpy_model) -> None:
    sizes = slice_run["folds"].fold.value_counts()
    assert sorted(sizes.index) == [0, 1, 2] and sizes.max() - sizes.min() <= 1
    got = slice_run["oof"].toPandas()
    want = numpy_model["oof"]
    assert got.affinity.gt(0).all() and len(got) == sum(v > 0 for v in want.values())
    err = max(abs(a - want[(u, p)]) for u, p, a in got.itertuples(index=False))
    assert err < 1e-15  # exact (eps = 0), on the prototypes' edges only (walk length 1)


def _objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1.0) -> float:
    """fit_logistic's objective: sum log-loss + 0.5 * l2 * ||w||^2."""
    z = x @ w
    return float((np.logaddexp(0, z) - y * z).sum() + 0.5 * l2 * w @ w)


def test_training_features_equal_numpy_pair_features(slice_run, numpy_model, spark) -> None:
    personas = sorted({p for _, p in slice_run["rows"]})
    index = persona_index(spark, personas)
    degrees = (
        slice_run["edges"]
        .groupBy("customer_id")
        .agg(F.max("customer_degree").alias("customer_degree"))
    )
    protos = slice_run["labels"].select("customer_id").distinct()
    grid = pair_grid(protos, index, slice_run["oof"], degrees, slice_run["votes"])
    feats = pair_features(grid, len(personas), use_votes=True).toPandas()
    feats = feats.set_index(["customer_id", "persona"]).loc[numpy_model["order"]]
    dense = feats[feature_names(True)].to_numpy()
    onehot = np.eye(len(personas))[feats.persona_idx.to_numpy()]
    assert np.abs(np.hstack([dense, onehot]) - numpy_model["x"]).max() < 1e-9


def test_calibrated_stage_matches_the_numpy_model(slice_run, numpy_model) -> None:
    got, rep = slice_run["result"], slice_run["report"]
    personas = sorted({p for _, p in slice_run["rows"]})
    # the fitted model: same training rows and weights as scipy's (to its tolerance)
    assert rep.train_rows == len(numpy_model["y"]) and rep.train_positives == len(slice_run["rows"])
    weights = np.array(list(rep.weights.values()))
    assert list(rep.weights)[: len(feature_names(True))] == feature_names(True)
    # Same objective (sum log-loss + l2/2 |w|^2): Spark's optimum is at least as low as
    # scipy's, which stops at its default tolerance, ~2e-3 from the optimum on these rows.
    x, y, w = numpy_model["x"], numpy_model["y"], numpy_model["w"]
    assert rep.objective == pytest.approx(_objective(x, y, weights), rel=1e-9)
    assert _objective(x, y, weights) <= _objective(x, y, w) + 1e-9
    assert np.abs(weights - w).max() < 5e-3
    assert rep.personas == len(personas) and rep.iterations > 0
    # prototypes keep exactly their labels
    llm = got[got.source == "llm"]
    assert sorted(zip(llm.customer_id, llm.persona, strict=True)) == sorted(slice_run["rows"])
    # inferred: a set of 1..max_k personas for every reached non-prototype, ranks 1..k
    inferred = got[got.source == "inferred"]
    sets = inferred.groupby("customer_id").persona.agg(frozenset).to_dict()
    assert set(sets) == set(numpy_model["sets"])
    sizes = inferred.groupby("customer_id").size()
    assert sizes.between(1, 8).all() and sizes.nunique() > 1
    ranks = inferred.groupby("customer_id")["rank"].agg(
        lambda r: sorted(r) == list(range(1, len(r) + 1))
    )
    assert ranks.all()
    same = np.mean([sets[u] == numpy_model["sets"][u] for u in sets])
    # Tolerance: scipy stops at its default gradient tolerance (weights ~1e-4 from the optimum
    # Spark reaches), which can flip a near-tie of two set sizes' expected F1.
    assert same >= 0.98, same
    graph = numpy_model["graph"]
    rows = graph.users.get_indexer(inferred.customer_id)
    cols = [personas.index(p) for p in inferred.persona]
    assert np.abs(inferred.score.to_numpy() - numpy_model["prob"][rows, cols]).max() < 1e-3
    print(f"calibrated sets equal to numpy's for {same:.4f} of {len(sets)} customers")
