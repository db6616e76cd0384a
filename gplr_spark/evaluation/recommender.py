"""recommender: LightGCN in numpy/scipy, on the user-item graph or with persona nodes.

E = (1/(K+1)) sum_{k=0..K} A^k E0 with A = D^-1/2 (adjacency) D^-1/2, sparse and symmetric,
built from index arrays. BPR loss on (user, bought item, random unbought item) triples,
L2 on the batch's ego embeddings. The propagation is linear, so dL/dE0 = mean_k A^k dL/dE
(A symmetric): analytic gradients, no autodiff. Adam, mini-batches, seeded.

Tripartite graph (the paper's LGCN3): persona nodes join the graph through user-persona
edges (the assignment) and item-persona edges (LLM item labels), all weight 1; BPR still
ranks items only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gplr_spark.evaluation.metrics import ranking_metrics

KS: tuple[int, ...] = (2, 5, 10, 20, 50, 100)


def normalized_adjacency(
    n_nodes: int, rows: np.ndarray, cols: np.ndarray, dtype: type = np.float32
) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 of the undirected graph with edges (rows[e], cols[e]), weight 1."""
    a = sp.coo_matrix(
        (np.ones(2 * len(rows), dtype=dtype), (np.r_[rows, cols], np.r_[cols, rows])),
        shape=(n_nodes, n_nodes),
    ).tocsr()
    a.data[:] = 1.0  # duplicate edges count once
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg, dtype=float), where=deg > 0)
    d = sp.diags(inv.astype(dtype))
    return (d @ a @ d).tocsr().astype(dtype)


@dataclass
class Interactions:
    """Users and items as indices; train pairs (CSR, for masking and negatives) and test sets."""

    n_users: int
    n_items: int
    train: sp.csr_matrix  # users x items 0/1
    test: list[np.ndarray]  # per user, held-out item indices (may be empty)

    @property
    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        coo = self.train.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64)


@dataclass
class TrainConfig:
    dim: int = 64
    layers: int = 3
    lr: float = 5e-3
    reg: float = 1e-4
    batch: int = 8192
    epochs: int = 60
    eval_every: int = 5
    patience: int = 3  # evaluations without validation gain before stopping (protocol B)
    init_std: float = 0.1


class LightGCN:
    """Embeddings of every node, trained by BPR on user-item pairs through ``adj``."""

    def __init__(
        self, adj: sp.csr_matrix, n_users: int, n_items: int, cfg: TrainConfig, seed: int = 0
    ) -> None:
        self.adj = adj
        self.n_users, self.n_items = n_users, n_items
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        dtype = adj.dtype
        self.e0 = (self.rng.standard_normal((adj.shape[0], cfg.dim)) * cfg.init_std).astype(dtype)
        self.m = np.zeros_like(self.e0)
        self.v = np.zeros_like(self.e0)
        self.t = 0

    def propagate(self, x: np.ndarray) -> np.ndarray:
        """mean_{k=0..K} A^k x (also the backward map, A being symmetric)."""
        out = x.copy()
        cur = x
        for _ in range(self.cfg.layers):
            cur = self.adj @ cur
            out += cur
        return out / (self.cfg.layers + 1)

    def loss_and_grad(
        self, e0: np.ndarray, u: np.ndarray, i: np.ndarray, j: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """BPR + L2 loss of one batch and its exact gradient with respect to e0."""
        e = self.propagate(e0)
        iu, ii, ij = u, self.n_users + i, self.n_users + j
        eu, ei, ej = e[iu], e[ii], e[ij]
        x = (eu * (ei - ej)).sum(axis=1)
        b = len(u)
        reg = self.cfg.reg
        ego = (e0[iu] ** 2).sum() + (e0[ii] ** 2).sum() + (e0[ij] ** 2).sum()
        loss = float(np.logaddexp(0, -x).mean() + 0.5 * reg * ego / b)
        g = (-1.0 / (1.0 + np.exp(x)) / b).astype(e0.dtype)[:, None]  # d softplus(-x)/dx / b
        idx = np.concatenate([iu, ii, ij])
        scatter = sp.csr_matrix(
            (np.ones(3 * b, dtype=e0.dtype), (idx, np.arange(3 * b))), shape=(len(e0), 3 * b)
        )  # sums rows that share a node, like np.add.at but far faster
        grad = self.propagate(scatter @ np.concatenate([g * (ei - ej), g * eu, -g * eu]))
        grad += scatter @ (np.asarray(reg / b, dtype=e0.dtype) * e0[idx])
        return loss, grad

    def adam(self, grad: np.ndarray, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        mhat = self.m / (1 - b1**self.t)
        vhat = self.v / (1 - b2**self.t)
        self.e0 -= (self.cfg.lr * mhat / (np.sqrt(vhat) + eps)).astype(self.e0.dtype)

    def sample(self, data: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One epoch of triples: every train pair once (shuffled), a random unbought item each."""
        users, items = data.train_pairs
        order = self.rng.permutation(len(users))
        u, i = users[order], items[order]
        j = self.rng.integers(0, data.n_items, len(u))
        bad = np.asarray(data.train[u, j]).ravel() > 0
        while bad.any():
            j[bad] = self.rng.integers(0, data.n_items, int(bad.sum()))
            bad[bad] = np.asarray(data.train[u[bad], j[bad]]).ravel() > 0
        return u, i, j

    def epoch(self, data: Interactions) -> float:
        u, i, j = self.sample(data)
        losses = []
        for start in range(0, len(u), self.cfg.batch):
            sl = slice(start, start + self.cfg.batch)
            loss, grad = self.loss_and_grad(self.e0, u[sl], i[sl], j[sl])
            self.adam(grad)
            losses.append(loss)
        return float(np.mean(losses))

    def rank(self, users: np.ndarray, mask: sp.csr_matrix, top: int = 100) -> np.ndarray:
        """Each user's ``top`` best items, known (masked) items excluded, best first."""
        e = self.propagate(self.e0)
        eu = e[users]
        ei = e[self.n_users : self.n_users + self.n_items]
        out = np.empty((len(users), top), dtype=np.int64)
        for s in range(0, len(users), 1024):
            scores = eu[s : s + 1024] @ ei.T
            known = mask[users[s : s + 1024]].tocoo()
            scores[known.row, known.col] = -np.inf
            part = np.argpartition(-scores, top, axis=1)[:, :top]
            ps = np.take_along_axis(scores, part, axis=1)
            out[s : s + 1024] = np.take_along_axis(part, np.argsort(-ps, axis=1), axis=1)
        return out


def evaluate(
    model: LightGCN, mask: sp.csr_matrix, held_out: list[np.ndarray], ks: Sequence[int] = KS
) -> dict[str, np.ndarray]:
    """Per-user ranking metrics over users with at least one held-out item."""
    users = np.array([u for u, t in enumerate(held_out) if len(t)], dtype=np.int64)
    top = model.rank(users, mask, max(ks))
    return ranking_metrics(top, [held_out[u] for u in users], ks) | {"users": users}


# ---------------------------------------------------------------------------------------------
# Data: the paper's split, persona edges, and the two protocols
# ---------------------------------------------------------------------------------------------


@dataclass
class RecData:
    users: pd.Index
    items: pd.Index
    train: sp.csr_matrix
    test: list[np.ndarray]

    @classmethod
    def from_split(cls, split: pd.DataFrame) -> RecData:
        users = pd.Index(sorted(split.customer_id.unique()))
        items = pd.Index(sorted(split.item_id.unique()))
        tr = split[split.split == "train"]
        te = split[split.split == "test"]
        train = sp.csr_matrix(
            (np.ones(len(tr)), (users.get_indexer(tr.customer_id), items.get_indexer(tr.item_id))),
            shape=(len(users), len(items)),
        )
        test: list[list[int]] = [[] for _ in users]
        for u, i in zip(
            users.get_indexer(te.customer_id), items.get_indexer(te.item_id), strict=True
        ):
            test[u].append(i)
        return cls(users, items, train, [np.asarray(t, dtype=np.int64) for t in test])

    def validation_split(self, share: float = 0.1, seed: int = 0) -> tuple[sp.csr_matrix, list]:
        """Protocol B: per user, ``share`` of train items (users with >= 3) held out for
        early stopping; returns (fit matrix, validation sets)."""
        rng = np.random.default_rng(seed)
        coo = self.train.tocsr()
        keep_r, keep_c, val = [], [], []
        for u in range(coo.shape[0]):
            items = coo.indices[coo.indptr[u] : coo.indptr[u + 1]]
            n_val = round(share * len(items)) if len(items) >= 3 else 0
            n_val = max(n_val, 1) if len(items) >= 3 else 0
            perm = rng.permutation(items)
            val.append(np.sort(perm[:n_val]).astype(np.int64))
            keep_r.append(np.full(len(items) - n_val, u))
            keep_c.append(perm[n_val:])
        fit = sp.csr_matrix(
            (np.ones(sum(map(len, keep_c))), (np.concatenate(keep_r), np.concatenate(keep_c))),
            shape=coo.shape,
        )
        return fit, val


def graph_adjacency(
    n_users: int,
    n_items: int,
    train: sp.csr_matrix,
    user_personas: sp.csr_matrix | None = None,
    item_personas: sp.csr_matrix | None = None,
) -> sp.csr_matrix:
    """Normalized adjacency: users, then items, then (if given) persona nodes."""
    coo = train.tocoo()
    rows, cols = [coo.row], [n_users + coo.col]
    n = n_users + n_items
    if user_personas is not None and item_personas is not None:
        up, ip = user_personas.tocoo(), item_personas.tocoo()
        rows += [up.row, n_users + ip.row]
        cols += [n + up.col, n + ip.col]
        n += user_personas.shape[1]
    return normalized_adjacency(n, np.concatenate(rows), np.concatenate(cols))


@dataclass
class RunLog:
    name: str
    seed: int
    protocol: str
    curve: list[dict] = field(default_factory=list)  # per evaluation: epoch + mean metrics
    final: dict[str, float] = field(default_factory=dict)
    per_user_ndcg20: np.ndarray | None = None
    test_users: np.ndarray | None = None
    seconds_per_epoch: float = 0.0
    best_epoch: int = 0


def _means(m: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(v.mean()) for k, v in m.items() if k != "users"}


def train_protocol_a(
    data: RecData, adj: sp.csr_matrix, cfg: TrainConfig, seed: int, name: str
) -> RunLog:
    """The paper's protocol: train on train, evaluate test every few epochs, best per metric."""
    inter = Interactions(len(data.users), len(data.items), data.train, data.test)
    model = LightGCN(adj, inter.n_users, inter.n_items, cfg, seed)
    log = RunLog(name, seed, "A")
    spent = 0.0
    for ep in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        loss = model.epoch(inter)
        spent += time.perf_counter() - t0
        if ep % cfg.eval_every == 0 or ep == cfg.epochs:
            log.curve.append(
                {"epoch": ep, "loss": loss, **_means(evaluate(model, data.train, data.test))}
            )
    log.seconds_per_epoch = spent / cfg.epochs
    metrics = [k for k in log.curve[0] if "@" in k]
    log.final = {k: max(c[k] for c in log.curve) for k in metrics}  # best epoch per metric
    log.best_epoch = max(log.curve, key=lambda c: c["ndcg@20"])["epoch"]
    return log


def train_protocol_b(data: RecData, adj_fn, cfg: TrainConfig, seed: int, name: str) -> RunLog:
    """Clean protocol: early stopping on a validation split of train, test touched once.

    ``adj_fn(fit_matrix)`` builds the adjacency from the fit part of train (the validation
    pairs must not be edges).
    """
    fit, val = data.validation_split(seed=seed)
    inter = Interactions(len(data.users), len(data.items), fit, val)
    model = LightGCN(adj_fn(fit), inter.n_users, inter.n_items, cfg, seed)
    log = RunLog(name, seed, "B")
    best, best_e0, waited, spent = -1.0, model.e0.copy(), 0, 0.0
    for ep in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        loss = model.epoch(inter)
        spent += time.perf_counter() - t0
        if ep % cfg.eval_every == 0 or ep == cfg.epochs:
            score = float(evaluate(model, fit, val, (20,))["ndcg@20"].mean())
            log.curve.append({"epoch": ep, "loss": loss, "val_ndcg@20": score})
            if score > best:
                best, best_e0, waited, log.best_epoch = score, model.e0.copy(), 0, ep
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
    log.seconds_per_epoch = spent / ep
    model.e0 = best_e0
    result = evaluate(model, data.train, data.test)
    log.final = _means(result)
    log.per_user_ndcg20 = result["ndcg@20"]
    log.test_users = result["users"]
    return log


# ---------------------------------------------------------------------------------------------
# The experiment: bipartite vs tripartite, protocols A and B, paired test
# ---------------------------------------------------------------------------------------------

PAPER_TABLE3 = {  # NDCG@20, F1@20 on OnlineRetail (paper Tables 3 and 7)
    "MF": (0.2221, 0.1239),
    "LightGCN": (0.2575, 0.1398),
    "LGCN3": (0.2577, 0.1406),
    "A-LGCN3": (0.2617, 0.1415),
    "LGCN3, GPLR 20% labels": (0.2604, 0.1412),
}


def persona_matrices(
    data: RecData,
    user_sets: dict[str, frozenset],
    item_sets: dict[str, frozenset],
    personas: Sequence[str],
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """User-persona and item-persona 0/1 matrices (users/items of ``data``, catalog order)."""
    col = {p: j for j, p in enumerate(personas)}

    def build(keys: pd.Index, sets: dict[str, frozenset]) -> sp.csr_matrix:
        r = [i for i, k in enumerate(keys) for _ in sets.get(k, ())]
        c = [col[p] for k in keys for p in sets.get(k, ())]
        return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(keys), len(personas)))

    return build(data.users, user_sets), build(data.items, item_sets)


def run_recommender(
    data: RecData,
    variants: dict[str, tuple[sp.csr_matrix, sp.csr_matrix] | None],
    cfg: TrainConfig,
    seeds: Sequence[int] = (0, 1, 2),
    protocols: Sequence[str] = ("A", "B"),
    progress: bool = True,
) -> tuple[pd.DataFrame, list[RunLog]]:
    """Train every variant (None = bipartite) under each protocol and seed.

    Returns one row per (variant, protocol, seed) with NDCG/F1@K and seconds per epoch,
    and the run logs (curves, per-user NDCG@20 for the paired test).
    """
    n_u, n_i = len(data.users), len(data.items)
    rows, logs = [], []
    for name, extra in variants.items():
        up, ip = extra if extra is not None else (None, None)

        def adj_of(train: sp.csr_matrix, up=up, ip=ip) -> sp.csr_matrix:
            return graph_adjacency(n_u, n_i, train, up, ip)

        for protocol in protocols:
            for seed in seeds:
                t0 = time.perf_counter()
                if protocol == "A":
                    log = train_protocol_a(data, adj_of(data.train), cfg, seed, name)
                else:
                    log = train_protocol_b(data, adj_of, cfg, seed, name)
                logs.append(log)
                rows.append(
                    {
                        "variant": name,
                        "protocol": protocol,
                        "seed": seed,
                        "best_epoch": log.best_epoch,
                        "seconds_per_epoch": log.seconds_per_epoch,
                        **log.final,
                    }
                )
                if progress:
                    print(
                        f"  recommender {name} protocol {protocol} seed {seed}: "
                        f"ndcg@20={log.final.get('ndcg@20', float('nan')):.4f} "
                        f"({time.perf_counter() - t0:.0f} s)",
                        flush=True,
                    )
    return pd.DataFrame(rows), logs


def paired_tests(logs: Sequence[RunLog], baseline: str) -> pd.DataFrame:
    """Protocol B: per-user NDCG@20 (mean over seeds), each variant vs ``baseline``.

    Paired t-test and Wilcoxon signed-rank over the same test users.
    """
    from scipy import stats

    per: dict[str, list[np.ndarray]] = {}
    for log in logs:
        if log.protocol == "B" and log.per_user_ndcg20 is not None:
            per.setdefault(log.name, []).append(log.per_user_ndcg20)
    if baseline not in per:
        return pd.DataFrame()
    base = np.mean(per[baseline], axis=0)
    rows = []
    for name, runs in per.items():
        if name == baseline:
            continue
        mine = np.mean(runs, axis=0)
        diff = mine - base
        t = stats.ttest_rel(mine, base)
        w = stats.wilcoxon(mine, base) if np.any(diff != 0) else None
        rows.append(
            {
                "variant": name,
                "vs": baseline,
                "users": len(diff),
                "mean_diff": float(diff.mean()),
                "rel_gain": float(diff.mean() / base.mean()),
                "t_p": float(t.pvalue),
                "wilcoxon_p": float(w.pvalue) if w else 1.0,
            }
        )
    return pd.DataFrame(rows)
