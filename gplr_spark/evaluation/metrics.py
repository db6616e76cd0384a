"""metrics: the numbers every evaluation reports, in plain numpy (tested on hand-made cases).

Set metrics (persona inference), ranking metrics (recommendation), clustering metrics and
RFM binning (segmentation). Nothing here knows about Spark.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.cluster.vq import kmeans2


def set_prf(
    predicted: Sequence[set[str] | frozenset[str]], truth: Sequence[set[str] | frozenset[str]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user precision, recall and F1 of predicted vs true sets (empty prediction = 0)."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} users")
    p = np.zeros(len(truth))
    r = np.zeros(len(truth))
    for i, (pred, true) in enumerate(zip(predicted, truth, strict=True)):
        hit = len(pred & true)
        p[i] = hit / len(pred) if pred else 0.0
        r[i] = hit / len(true) if true else 0.0
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    return p, r, f1


def mask_prf(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """set_prf for boolean user x persona matrices (fast path for sweeps)."""
    hit = (pred & truth).sum(axis=1).astype(float)
    npred = pred.sum(axis=1)
    ntrue = truth.sum(axis=1)
    p = np.divide(hit, npred, out=np.zeros_like(hit), where=npred > 0)
    r = np.divide(hit, ntrue, out=np.zeros_like(hit), where=ntrue > 0)
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    return p, r, f1


def ranking_metrics(
    top: np.ndarray, test: Sequence[set[int] | np.ndarray], ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-user NDCG@K, precision@K, recall@K and F1@K from ranked item lists.

    ``top`` is users x max(ks) item ids, best first; ``test`` the held-out items per user.
    NDCG uses binary gains: DCG = sum_{hits at rank i (1-based)} 1/log2(i+1), IDCG = the DCG
    of min(K, |test|) hits at the top. F1@K = 2PR/(P+R) per user, as in the paper's code.
    """
    kmax = max(ks)
    if top.shape[1] < kmax:
        raise ValueError(f"need {kmax} ranked items per user, got {top.shape[1]}")
    n = len(test)
    hits = np.zeros((n, kmax), dtype=bool)
    sizes = np.zeros(n)
    for u, items in enumerate(test):
        items = np.asarray(list(items) if isinstance(items, set) else items)
        sizes[u] = len(items)
        hits[u] = np.isin(top[u, :kmax], items)
    discount = 1.0 / np.log2(np.arange(2, kmax + 2))
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = hits[:, :k]
        dcg = (h * discount[:k]).sum(axis=1)
        ideal_n = np.minimum(sizes, k).astype(int)
        idcg = np.concatenate([[0.0], np.cumsum(discount[:k])])[ideal_n]
        ndcg = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
        nhit = h.sum(axis=1).astype(float)
        prec = nhit / k
        rec = np.divide(nhit, sizes, out=np.zeros_like(nhit), where=sizes > 0)
        f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(prec), where=(prec + rec) > 0)
        out[f"ndcg@{k}"], out[f"precision@{k}"] = ndcg, prec
        out[f"recall@{k}"], out[f"f1@{k}"] = rec, f1
    return out


def quantile_bins(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Bin index 0..bins-1 by empirical quantiles (rank-based, so ties share a bin).

    A value's bin is floor(bins * (rank of the value among all, as a fraction below it)):
    the lowest tenth gets 0, the highest tenth bins-1; equal values always share a bin.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return np.zeros(0, dtype=int)
    below = np.searchsorted(np.sort(x), x, side="left")  # how many values are strictly less
    return np.minimum((bins * below) // x.size, bins - 1).astype(int)


def consistent_share(first: Sequence[object], second: Sequence[object]) -> float:
    """Share of customers whose representation is identical in both periods."""
    if len(first) != len(second):
        raise ValueError("both periods need the same customers")
    if not first:
        return 0.0
    return float(np.mean([a == b for a, b in zip(first, second, strict=True)]))


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x, dtype=float), where=norms > 0)


def pca(x: np.ndarray, dims: int) -> np.ndarray:
    """Projection of the centred rows on the top ``dims`` principal axes (via SVD)."""
    centred = np.asarray(x, dtype=float) - np.mean(x, axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:dims].T


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette (a = mean intra-cluster distance, b = nearest other cluster's mean).

    Euclidean distances; a point alone in its cluster scores 0 (the usual convention).
    Needs at least 2 clusters.
    """
    x = np.asarray(x, dtype=float)
    labels = np.asarray(labels)
    ids = np.unique(labels)
    if len(ids) < 2:
        raise ValueError("silhouette needs at least 2 clusters")
    sq = (x * x).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0))
    member = labels[:, None] == ids[None, :]
    sums = dist @ member  # n x clusters: total distance to each cluster
    sizes = member.sum(axis=0)
    own = member.argmax(axis=1)
    own_size = sizes[own]
    a = np.divide(
        sums[np.arange(len(x)), own], own_size - 1, out=np.zeros(len(x)), where=own_size > 1
    )
    mean_other = sums / sizes
    mean_other[np.arange(len(x)), own] = np.inf
    b = mean_other.min(axis=1)
    s = np.where(own_size > 1, (b - a) / np.maximum(a, b), 0.0)
    return float(np.mean(s))


def kmeans_silhouette(x: np.ndarray, k: int, *, seed: int = 0, restarts: int = 5) -> float:
    """Silhouette of the best-inertia k-means (k-means++ init, a few seeded restarts)."""
    x = np.asarray(x, dtype=float)
    best: tuple[float, np.ndarray] | None = None
    for r in range(restarts):
        rng = np.random.default_rng(seed + r)
        centres, labels = kmeans2(x, k, minit="++", seed=rng, iter=50)
        inertia = float(((x - centres[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels)
    assert best is not None
    labels = best[1]
    if len(np.unique(labels)) < 2:
        return 0.0
    return silhouette(x, labels)
