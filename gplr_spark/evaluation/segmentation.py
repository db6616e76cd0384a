"""segmentation: are personas steadier segments than RFM? (paper section 7.4)

Customers with more than ``min_orders`` orders in the year, active in both halves. Per half:
RFM as 10 quantile bins per dimension, and the top-3 personas of a GPLR run on that half's
purchases only (prototypes labeled by the offline labeler from that half's history, the
rest inferred). "Consistent" = identical representation in both halves. Cluster quality:
RFM bins (3 dims) and persona multi-hot -> PCA-3, both L2-normalized, k-means, silhouette.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gplr_spark.evaluation.inference import Graph, Walk, affinity
from gplr_spark.evaluation.metrics import (
    consistent_share,
    kmeans_silhouette,
    l2_normalize,
    pca,
    quantile_bins,
)
from gplr_spark.labeling import Labeler, LabelRequest, request_key
from gplr_spark.personas import Catalog

PAPER_CONSISTENT = {"RFM": 0.013, "personas": 0.18}
PAPER_SILHOUETTE = {
    "RFM": {5: 0.366, 15: 0.404, 25: 0.431, 35: 0.445},
    "personas": {5: 0.451, 15: 0.671, 25: 0.771, 35: 0.788},
}


def split_halves(lines: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """The purchase period cut at its midpoint in time: (first, second, cut)."""
    start, end = lines.ts.min(), lines.ts.max()
    cut = start + (end - start) / 2
    return lines[lines.ts < cut], lines[lines.ts >= cut], cut


def eligible_customers(
    lines: pd.DataFrame, halves: Sequence[pd.DataFrame], min_orders: int
) -> pd.Index:
    """Customers with more than ``min_orders`` distinct orders who bought in every half."""
    orders = lines.groupby("customer_id").order_id.nunique()
    keep = set(orders[orders > min_orders].index)
    for half in halves:
        keep &= set(half.customer_id.unique())
    return pd.Index(sorted(keep))


def rfm_table(half: pd.DataFrame, customers: pd.Index, bins: int = 10) -> pd.DataFrame:
    """Recency (days before the half's end), frequency (orders), monetary (spend) and their
    quantile bins among ``customers``; higher bin = more recent, more frequent, more spend."""
    sub = half[half.customer_id.isin(customers)].assign(spend=lambda d: d.quantity * d.unit_price)
    end = half.ts.max()
    g = sub.groupby("customer_id")
    table = pd.DataFrame(
        {
            "recency": (end - g.ts.max()).dt.total_seconds() / 86400.0,
            "frequency": g.order_id.nunique(),
            "monetary": g.spend.sum(),
        }
    ).reindex(customers)
    table["r_bin"] = quantile_bins(-table.recency.to_numpy(), bins)
    table["f_bin"] = quantile_bins(table.frequency.to_numpy(), bins)
    table["m_bin"] = quantile_bins(table.monetary.to_numpy(), bins)
    return table


def half_personas(
    half: pd.DataFrame,
    catalog: Catalog,
    labeler: Labeler,
    *,
    rate: float = 0.05,
    seed: int = 0,
    beta: float = 0.5,
    top: int = 3,
) -> dict[str, tuple[str, ...]]:
    """GPLR on one half: random prototypes labeled by ``labeler``, Psi, top personas each.

    Every customer of the half gets the ``top`` personas of their affinity row (ordered,
    ties by catalog order); customers no walk reaches get an empty tuple.
    """
    edges = half.groupby(["customer_id", "item_id"], as_index=False).quantity.sum()
    graph = Graph.from_edges(edges)
    rng = np.random.default_rng(seed)
    n_protos = max(1, round(rate * len(graph.users)))
    protos = np.sort(rng.choice(len(graph.users), n_protos, replace=False))
    requests = []
    for i in protos:
        cid = graph.users[i]
        mine = edges[edges.customer_id == cid].sort_values("quantity", ascending=False)
        items = tuple((str(n), int(q)) for n, q in zip(mine.item_id, mine.quantity, strict=True))
        requests.append(LabelRequest(request_key(cid), cid, items))
    results = {r.key: r for r in labeler.label(requests, catalog)}
    names = catalog.names
    col = {p: j for j, p in enumerate(names)}
    phi = np.zeros((len(graph.users), len(names)))
    for i, req in zip(protos, requests, strict=True):
        res = results.get(req.key)
        if res is not None and res.status == "labeled":
            for p in res.personas:
                phi[i, col[p]] = 1.0
    psi = affinity(Walk.of(graph.adj), phi, beta=beta)
    order = np.argsort(-psi, axis=1, kind="stable")[:, :top]
    out = {}
    for i, cid in enumerate(graph.users):
        out[cid] = tuple(names[j] for j in order[i] if psi[i, j] > 0)
    return out


def multi_hot(sets: Sequence[Sequence[str]], names: Sequence[str]) -> np.ndarray:
    col = {p: j for j, p in enumerate(names)}
    x = np.zeros((len(sets), len(names)))
    for i, chosen in enumerate(sets):
        for p in chosen:
            x[i, col[p]] = 1.0
    return x


@dataclass
class SegmentationResult:
    customers: int
    cut: pd.Timestamp
    consistent: pd.DataFrame  # representation, share, (and for a 300-customer sample)
    silhouette: pd.DataFrame  # representation, half, clusters, silhouette


def run_segmentation(
    lines: pd.DataFrame,
    catalog: Catalog,
    labeler: Labeler,
    *,
    min_orders: int = 10,
    bins: int = 10,
    rate: float = 0.05,
    clusters: Sequence[int] = (5, 15, 25, 35),
    sample: int = 300,
    seed: int = 0,
) -> SegmentationResult:
    """Consistent share and k-means silhouette of RFM vs top-3 personas over two halves."""
    first, second, cut = split_halves(lines)
    customers = eligible_customers(lines, (first, second), min_orders)
    rfm = [rfm_table(h, customers, bins) for h in (first, second)]
    per = [half_personas(h, catalog, labeler, rate=rate, seed=seed) for h in (first, second)]
    rfm_rep = [list(zip(t.r_bin, t.f_bin, t.m_bin, strict=True)) for t in rfm]
    persona_sets = [[frozenset(p.get(c, ())) for c in customers] for p in per]
    persona_top1 = [[p.get(c, ("",))[:1] for c in customers] for p in per]
    rng = np.random.default_rng(seed)
    draws = [
        rng.choice(len(customers), min(sample, len(customers)), replace=False) for _ in range(20)
    ]

    def shares(a: list, b: list) -> tuple[float, float]:
        full = consistent_share(a, b)
        sub = np.mean([consistent_share([a[i] for i in d], [b[i] for i in d]) for d in draws])
        return full, float(sub)

    rows = []
    for name, (a, b) in {
        "RFM (R,F,M bins)": rfm_rep,
        "personas (top-3 set)": persona_sets,
        "personas (top-1)": persona_top1,
    }.items():
        full, sub = shares(a, b)
        rows.append(
            {"representation": name, "consistent_all": full, f"consistent_sample{sample}": sub}
        )
    for dim in ("r_bin", "f_bin", "m_bin"):
        full, sub = shares(list(rfm[0][dim]), list(rfm[1][dim]))
        rows.append(
            {
                "representation": f"RFM {dim[0].upper()} only",
                "consistent_all": full,
                f"consistent_sample{sample}": sub,
            }
        )
    sil_rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k-means on duplicated points warns on empty clusters
        for h in range(2):
            rfm_x = l2_normalize(rfm[h][["r_bin", "f_bin", "m_bin"]].to_numpy(float) + 1)
            per_x = l2_normalize(pca(multi_hot(persona_sets[h], catalog.names), 3))
            for k in clusters:
                for rep, x in (("RFM", rfm_x), ("personas", per_x)):
                    sil_rows.append(
                        {
                            "representation": rep,
                            "half": h + 1,
                            "clusters": k,
                            "silhouette": kmeans_silhouette(x, k, seed=seed),
                        }
                    )
    return SegmentationResult(len(customers), cut, pd.DataFrame(rows), pd.DataFrame(sil_rows))
