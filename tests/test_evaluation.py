"""Evaluation metrics on hand-made cases, and the LightGCN gradient vs finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from gplr_spark.evaluation.inference import (
    Graph,
    Walk,
    affinity,
    du_scores,
    expected_f1_sets,
    item_votes,
    label_matrix,
    top_k_mask,
)
from gplr_spark.evaluation.metrics import (
    consistent_share,
    kmeans_silhouette,
    l2_normalize,
    mask_prf,
    pca,
    quantile_bins,
    ranking_metrics,
    set_prf,
    silhouette,
)
from gplr_spark.evaluation.recommender import LightGCN, TrainConfig, normalized_adjacency


def test_set_prf_hand_cases() -> None:
    pred = [{"a", "b"}, {"a"}, set(), {"x", "y", "z", "w"}]
    true = [{"a", "c", "d"}, {"a"}, {"a"}, {"x"}]
    p, r, f1 = set_prf(pred, true)
    # user 0: 1 hit of 2 predicted, 3 true -> P .5, R 1/3, F1 = 2*.5*(1/3)/(.5+1/3) = 0.4
    assert p.tolist() == [0.5, 1.0, 0.0, 0.25]
    assert r == pytest.approx([1 / 3, 1.0, 0.0, 1.0])
    assert f1 == pytest.approx([0.4, 1.0, 0.0, 0.4])


def test_mask_prf_matches_set_prf() -> None:
    rng = np.random.default_rng(3)
    pred = rng.random((30, 6)) < 0.4
    true = rng.random((30, 6)) < 0.4
    as_sets = [lambda m, i=i: {j for j in range(6) if m[i, j]} for i in range(30)]
    want = set_prf([s(pred) for s in as_sets], [s(true) for s in as_sets])
    for got, exp in zip(mask_prf(pred, true), want, strict=True):
        assert got == pytest.approx(exp)


def test_ranking_metrics_hand_case() -> None:
    top = np.array([[7, 3, 9, 1], [5, 6, 7, 8]])
    test = [{3, 1}, {0}]
    m = ranking_metrics(top, test, ks=(2, 4))
    # user 0: hit at rank 2 (K=2): DCG = 1/log2(3); IDCG(2 hits) = 1 + 1/log2(3)
    assert m["ndcg@2"][0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # K=4: hits at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5)
    assert m["ndcg@4"][0] == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    )
    assert m["precision@2"][0] == 0.5 and m["recall@2"][0] == 0.5 and m["f1@2"][0] == 0.5
    # K=4: P = 2/4, R = 2/2 -> F1 = 2/3
    assert m["f1@4"][0] == pytest.approx(2 / 3)
    assert m["ndcg@4"][1] == 0.0 and m["f1@4"][1] == 0.0


def test_ranking_metrics_perfect_ranking_is_one() -> None:
    top = np.array([[4, 2, 0, 1, 3]])
    m = ranking_metrics(top, [{4, 2}], ks=(1, 5))
    assert m["ndcg@1"][0] == pytest.approx(1.0) and m["ndcg@5"][0] == pytest.approx(1.0)


def test_quantile_bins_deciles_and_ties() -> None:
    assert quantile_bins(np.arange(20), 10).tolist() == [i // 2 for i in range(20)]
    assert quantile_bins(np.array([5.0, 1.0, 3.0, 2.0, 4.0]), 5).tolist() == [4, 0, 2, 1, 3]
    tied = quantile_bins(np.array([1, 1, 1, 1, 9]), 10)
    assert tied.tolist() == [0, 0, 0, 0, 8]  # equal values share a bin


def test_consistent_share() -> None:
    a = [(1, 2, 3), frozenset({"x", "y"}), (0, 0, 0), frozenset({"z"})]
    b = [(1, 2, 3), frozenset({"y", "x"}), (0, 0, 1), frozenset({"w"})]
    assert consistent_share(a, b) == 0.5


def test_silhouette_hand_case() -> None:
    x = np.array([[0.0], [1.0], [10.0], [12.0]])
    labels = np.array([0, 0, 1, 1])
    # point 0: a = 1, b = (10 + 12) / 2 = 11 -> 10/11; point 1: a=1, b=10 -> 9/10
    # point 2: a = 2, b = (10 + 9) / 2 = 9.5 -> 7.5/9.5; point 3: a=2, b=11.5 -> 9.5/11.5
    want = np.mean([10 / 11, 9 / 10, 7.5 / 9.5, 9.5 / 11.5])
    assert silhouette(x, labels) == pytest.approx(want)
    assert silhouette(x, np.array([0, 0, 0, 1])) < silhouette(x, labels)  # worse split


def test_kmeans_silhouette_wiring_finds_clear_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    x = np.concatenate([c + rng.normal(0, 0.1, (20, 2)) for c in centres])
    assert kmeans_silhouette(x, 3) > 0.95
    assert kmeans_silhouette(rng.normal(size=(60, 2)), 3) < 0.6


def test_pca_and_l2_normalize() -> None:
    x = np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0], [3.0, 3.0, 0.0]])
    z = pca(x, 1)
    assert np.abs(z.ravel()).tolist() == pytest.approx([math.sqrt(2), 0.0, math.sqrt(2)])
    n = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert n.tolist() == [[0.6, 0.8], [0.0, 0.0]]


def _tiny_graph() -> Graph:
    import pandas as pd

    edges = pd.DataFrame({"customer_id": ["u1", "u1", "u2", "u3"], "item_id": ["a", "b", "b", "c"]})
    return Graph.from_edges(edges)


def test_affinity_hand_computed() -> None:
    g = _tiny_graph()  # u1-{a,b}, u2-{b}, u3-{c}
    phi = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # u2 -> persona 0, u3 -> persona 1
    psi = affinity(Walk.of(g.adj), phi, beta=0.0)
    # u1: 1/2 to a (no labels) + 1/2 to b; b splits 1/2 to u1 and u2 -> persona 0: 1/2 * 1/2
    assert psi[0].tolist() == pytest.approx([0.25, 0.0])
    assert psi[1].tolist() == pytest.approx([0.5, 0.0]) and psi[2].tolist() == [0.0, 1.0]
    # de-bias: equal shares -> c = 1 for both labelled personas
    assert label_matrix(phi, 0.5).tolist() == phi.tolist()


def test_item_votes_and_topk() -> None:
    g = _tiny_graph()
    ip = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # a: p0; b: p0,p1; c: p1
    v = item_votes(g, ip)
    assert v[0].tolist() == pytest.approx([0.75, 0.25])  # (1 + 0.5, 0.5) / 2
    mask = top_k_mask(np.array([[0.3, 0.0, 0.5], [0.2, 0.2, 0.1]]), np.array([2, 1]))
    assert mask.tolist() == [[True, False, True], [True, False, False]]


def test_du_scores_hand_case() -> None:
    psi = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    s = du_scores(psi, np.array([0.5, 0.5]), delta=0.0 + 1e-16)
    assert s[0] == pytest.approx(math.log(2))  # KL 0 + entropy log 2
    assert s[1] == pytest.approx(0.5 * (math.log(0.5) - math.log(1e-16)) + 0.5 * math.log(0.5))
    assert np.isnan(s[2])


def test_expected_f1_sets_chooses_k() -> None:
    prob = np.array([[0.9, 0.85, 0.1, 0.05], [0.95, 0.05, 0.05, 0.05]])
    assert expected_f1_sets(prob, max_k=4).sum(axis=1).tolist() == [2, 1]


def test_normalized_adjacency() -> None:
    a = normalized_adjacency(3, np.array([0, 0]), np.array([1, 2])).toarray()
    # degrees 2, 1, 1 -> entry (0,1) = 1/sqrt(2*1)
    assert a[0, 1] == pytest.approx(1 / math.sqrt(2)) and a[1, 0] == a[0, 1]
    assert a[1, 2] == 0 and np.allclose(a, a.T)


def test_lightgcn_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 4, 5
    rows = np.array([0, 0, 1, 2, 3, 3])
    cols = n_users + np.array([0, 1, 2, 3, 4, 0])
    adj = normalized_adjacency(n_users + n_items, rows, cols, dtype=np.float64)
    model = LightGCN(adj, n_users, n_items, TrainConfig(dim=3, layers=2, reg=0.1), seed=1)
    e0 = rng.normal(size=model.e0.shape)
    u, i, j = np.array([0, 1, 3, 0]), np.array([0, 2, 4, 1]), np.array([3, 1, 2, 4])
    _, grad = model.loss_and_grad(e0, u, i, j)
    num = np.zeros_like(e0)
    h = 1e-6
    for idx in np.ndindex(e0.shape):
        plus, minus = e0.copy(), e0.copy()
        plus[idx] += h
        minus[idx] -= h
        num[idx] = (
            model.loss_and_grad(plus, u, i, j)[0] - model.loss_and_grad(minus, u, i, j)[0]
        ) / (2 * h)
    assert np.abs(grad - num).max() < 1e-7
    assert np.abs(grad).max() > 1e-3  # the check is not vacuous


def test_lightgcn_learns_a_toy_preference() -> None:
    """Two user groups buy two disjoint item groups: held-out items rank in the top 2."""
    from gplr_spark.evaluation.recommender import Interactions, evaluate

    n_users, n_items = 20, 10
    train = np.zeros((n_users, n_items))
    test = []
    for u in range(n_users):
        group = range(5) if u < 10 else range(5, 10)
        held = list(group)[u % 5]
        for i in group:
            if i != held:
                train[u, i] = 1
        test.append(np.array([held]))
    mat = sp.csr_matrix(train)
    coo = mat.tocoo()
    adj = normalized_adjacency(n_users + n_items, coo.row, n_users + coo.col)
    model = LightGCN(adj, n_users, n_items, TrainConfig(dim=8, lr=0.05, batch=64), seed=0)
    inter = Interactions(n_users, n_items, mat, test)
    for _ in range(30):
        model.epoch(inter)
    m = evaluate(model, mat, test, ks=(2,))
    assert m["recall@2"].mean() == 1.0
