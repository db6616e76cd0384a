"""inference: how right are inferred personas? GPLR vs recorded LLM labels, plus tuning.

The graph and labels come from the project's Spark stages (ingest, graph); the sweeps run
on the driver over index arrays, because one exact affinity Psi = P (P' L) on OnlineRetail
is two sparse products (263k edges x 20 personas, milliseconds) and a sweep needs
thousands. ``spark_check`` confirms the numpy affinity equals ``affinity.compute_affinity``.

Protocol: only even CustomerIDs have recorded labels, so prototypes are drawn from them
(budget tau = rate x all customers, as in the paper), and every other even, labelled,
reachable-or-not customer is scored: per-user P/R/F1 of the predicted set vs the LLM's set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gplr_spark.evaluation.metrics import mask_prf

KL_DELTA = 1e-16


@dataclass
class Graph:
    """The bipartite purchase graph as index arrays: users x items CSR with edge weights."""

    users: pd.Index
    items: pd.Index
    adj: sp.csr_matrix  # users x items, 1 per edge (or a weight)
    quantity: sp.csr_matrix | None = None

    @classmethod
    def from_edges(cls, edges: pd.DataFrame) -> Graph:
        """From DataFrame[customer_id, item_id(, quantity)] (one row per unique pair)."""
        pairs = edges.drop_duplicates(["customer_id", "item_id"])
        users = pd.Index(sorted(pairs.customer_id.astype(str).unique()))
        items = pd.Index(sorted(pairs.item_id.astype(str).unique()))
        rows = users.get_indexer(pairs.customer_id.astype(str))
        cols = items.get_indexer(pairs.item_id.astype(str))
        shape = (len(users), len(items))
        adj = sp.csr_matrix((np.ones(len(pairs)), (rows, cols)), shape=shape)
        qty = None
        if "quantity" in pairs:
            q = pairs.quantity.fillna(1).clip(lower=1).to_numpy(float)
            qty = sp.csr_matrix((q, (rows, cols)), shape=shape)
        return cls(users, items, adj, qty)

    @property
    def degree(self) -> np.ndarray:
        return np.asarray(self.adj.sum(axis=1)).ravel()

    def weighted(self, scheme: str) -> sp.csr_matrix:
        """Edge weights: 'unit' (the paper) or 'log_quantity' (1 + log summed quantity)."""
        if scheme == "unit" or self.quantity is None:
            return self.adj
        if scheme == "log_quantity":
            w = self.quantity.copy()
            w.data = 1.0 + np.log(w.data)
            return w
        raise ValueError(f"unknown weight scheme {scheme!r}")


def _inv(x: np.ndarray) -> np.ndarray:
    return np.divide(1.0, x, out=np.zeros_like(x, dtype=float), where=x > 0)


@dataclass
class Walk:
    """P (user->item) and P' (item->user) of one weighting, reused across affinity calls."""

    p: sp.csr_matrix
    pt: sp.csr_matrix

    @classmethod
    def of(cls, w: sp.csr_matrix) -> Walk:
        du = np.asarray(w.sum(axis=1)).ravel()
        dv = np.asarray(w.sum(axis=0)).ravel()
        return cls(sp.diags(_inv(du)) @ w, (sp.diags(_inv(dv)) @ w.T).tocsr())


def label_matrix(phi: np.ndarray, beta: float) -> np.ndarray:
    """L = c_r Phi[u, r] / sum_r' Phi[u, r'] with c_r = (min share / share_r)^beta (0 if unseen)."""
    counts = phi.sum(axis=0)
    seen = counts > 0
    c = np.zeros(phi.shape[1])
    if seen.any():
        share = counts / counts.sum()
        c[seen] = (share[seen].min() / share[seen]) ** beta
    return phi / np.maximum(phi.sum(axis=1, keepdims=True), 1) * c


def affinity(walk: Walk, phi: np.ndarray, *, beta: float = 0.5, walk_length: int = 1) -> np.ndarray:
    """Exact Psi = (1/l) sum_{j<=l} (P P')^j L, right to left (users x personas, dense)."""
    x = label_matrix(phi, beta)
    psi = np.zeros_like(x)
    for _ in range(walk_length):
        x = walk.p @ (walk.pt @ x)
        psi += x
    return psi / walk_length


def item_votes(graph: Graph, item_personas: np.ndarray) -> np.ndarray:
    """Per user, the share of their items' persona labels going to each persona (rows sum 1).

    ``item_personas`` is items x personas 0/1 (LLM item labels); an item with k labels gives
    each 1/k, so an item with many labels does not outvote the others.
    """
    norm = item_personas / np.maximum(item_personas.sum(axis=1, keepdims=True), 1)
    votes = graph.adj @ norm
    return votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-300)


def top_k_mask(scores: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Boolean mask of each row's k best positive scores (k per row or one k); ties by index."""
    n, m = scores.shape
    ks = np.broadcast_to(np.asarray(k), (n,))
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(n)[:, None], order] = np.arange(m)[None, :]
    return (ranks < ks[:, None]) & (scores > 0)


def row_normalize(x: np.ndarray) -> np.ndarray:
    s = x.sum(axis=1, keepdims=True)
    return np.divide(x, s, out=np.zeros_like(x), where=s > 0)


# ---------------------------------------------------------------------------------------------
# Prototype selection (numpy mirrors of sampling.random_prototypes / DU rounds)
# ---------------------------------------------------------------------------------------------


def random_pick(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n user indices uniformly from ``pool`` (without replacement)."""
    return rng.choice(pool, size=min(n, len(pool)), replace=False)


def du_scores(psi: np.ndarray, qhat: np.ndarray, delta: float = KL_DELTA) -> np.ndarray:
    """s(u) = KL(Qhat || Q_u) + H(Q_u) (released code: delta in KL); NaN for all-zero rows."""
    total = psi.sum(axis=1, keepdims=True)
    q = np.divide(psi, total, out=np.zeros_like(psi), where=total > 0)
    pos = qhat > 0
    kl = (qhat[pos] * (np.log(qhat[pos]) - np.log(q[:, pos] + delta))).sum(axis=1)
    ent = -(np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0.0)).sum(axis=1)
    return np.where(total.ravel() > 0, kl + ent, np.nan)


def du_pick(
    walk: Walk,
    truth_phi: np.ndarray,
    pool: np.ndarray,
    tau: int,
    rng: np.random.Generator,
    *,
    rounds: int = 10,
    beta: float = 0.0,
) -> np.ndarray:
    """Diversity-Uncertainty: round 1 random, then each round the top s(u) of the pool.

    ``truth_phi`` holds the recorded labels (users x personas), read only for picked users.
    """
    base, extra = divmod(tau, rounds)
    sizes = [base + (1 if t < extra else 0) for t in range(rounds)]
    picked: list[int] = list(random_pick(pool, sizes[0], rng))
    for size in sizes[1:]:
        if size == 0:
            continue
        phi = np.zeros_like(truth_phi)
        phi[picked] = truth_phi[picked]
        counts = phi.sum(axis=0)
        left = np.setdiff1d(pool, picked)
        if counts.sum() == 0:
            picked += list(random_pick(left, size, rng))
            continue
        psi = affinity(walk, phi, beta=beta)
        s = du_scores(psi[left], counts / counts.sum())
        ok = ~np.isnan(s)
        order = left[ok][np.argsort(-s[ok], kind="stable")][:size]
        picked += list(order)
        if len(order) < size:
            picked += list(random_pick(np.setdiff1d(left, order), size - len(order), rng))
    return np.asarray(picked, dtype=int)


# ---------------------------------------------------------------------------------------------
# Predictors
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One way to turn prototype labels into personas (the paper's formula is the default)."""

    beta: float = 0.5
    walk_length: int = 1
    weights: str = "unit"
    vote_mix: float = 0.0  # share of the item-label vote in the score (needs item labels)
    k_rule: str = "fixed"  # fixed | degree (k from log degree, fit on prototypes)
    k: int = 5
    k_offset: float = 0.0

    def label(self) -> str:
        parts = [f"beta={self.beta:g}", f"l={self.walk_length}"]
        if self.weights != "unit":
            parts.append(f"w={self.weights}")
        if self.vote_mix:
            parts.append(f"vote={self.vote_mix:g}")
        if self.k_rule == "fixed":
            parts.append(f"k={self.k}")
        else:
            parts.append(f"k=deg{self.k_offset:+g}")
        return " ".join(parts)


def fit_k_model(degree: np.ndarray, n_labels: np.ndarray) -> tuple[float, float]:
    """Least squares n_labels ~ a + b log(degree) over prototypes: (a, b)."""
    x = np.log(np.maximum(degree, 1))
    design = np.column_stack([np.ones_like(x), x])
    (a, b), *_ = np.linalg.lstsq(design, n_labels.astype(float), rcond=None)
    return float(a), float(b)


def predict_k(
    setting: Setting, degree: np.ndarray, model: tuple[float, float] | None, max_k: int = 8
) -> np.ndarray:
    """Per-user k: the fixed k, or round(a + b log degree + offset) clipped to [1, max_k]."""
    if setting.k_rule == "fixed" or model is None:
        return np.full(len(degree), setting.k)
    a, b = model
    raw = a + b * np.log(np.maximum(degree, 1)) + setting.k_offset
    return np.clip(np.rint(raw), 1, max_k).astype(int)


@dataclass
class Context:
    """Everything a predictor needs that does not depend on the prototypes."""

    graph: Graph
    truth_phi: np.ndarray  # users x personas, recorded labels (0 rows where unknown)
    labelled: np.ndarray  # bool per user: has a usable recorded label set
    pool: np.ndarray  # user indices that may be prototypes (recorded customers in the graph)
    personas: list[str]
    votes: np.ndarray | None = None  # users x personas item-label vote shares
    walks: dict[str, Walk] = field(default_factory=dict)

    def walk(self, scheme: str) -> Walk:
        if scheme not in self.walks:
            self.walks[scheme] = Walk.of(self.graph.weighted(scheme))
        return self.walks[scheme]


def scores(ctx: Context, phi: np.ndarray, s: Setting) -> np.ndarray:
    """The per-user persona score of a setting: normalized Psi, optionally mixed with votes."""
    psi = affinity(ctx.walk(s.weights), phi, beta=s.beta, walk_length=s.walk_length)
    if not s.vote_mix:
        return psi
    if ctx.votes is None:
        raise ValueError("vote mixing needs item labels")
    return (1 - s.vote_mix) * row_normalize(psi) + s.vote_mix * ctx.votes


def predict(
    ctx: Context, protos: np.ndarray, s: Setting, *, k_model: tuple[float, float] | None = None
) -> np.ndarray:
    """Boolean users x personas predictions from the labels of ``protos``."""
    phi = np.zeros_like(ctx.truth_phi)
    phi[protos] = ctx.truth_phi[protos]
    if s.k_rule != "fixed" and k_model is None:
        k_model = fit_k_model(
            ctx.graph.degree[protos][phi[protos].sum(1) > 0],
            phi[protos].sum(1)[phi[protos].sum(1) > 0],
        )
    ks = predict_k(s, ctx.graph.degree, k_model)
    return top_k_mask(scores(ctx, phi, s), ks)


def eval_mask(ctx: Context, protos: np.ndarray) -> np.ndarray:
    """Users scored: labelled recorded customers that are not prototypes."""
    mask = ctx.labelled.copy()
    mask[protos] = False
    return mask


def f1_of(ctx: Context, pred: np.ndarray, users: np.ndarray) -> dict[str, float]:
    p, r, f1 = mask_prf(pred[users], ctx.truth_phi[users] > 0)
    return {"precision": float(p.mean()), "recall": float(r.mean()), "f1": float(f1.mean())}


def popularity(ctx: Context, protos: np.ndarray, k: int = 5) -> np.ndarray:
    """Baseline: everyone gets the k personas most often given to the prototypes."""
    counts = ctx.truth_phi[protos].sum(axis=0)
    row = top_k_mask(counts[None, :] + 1e-9 * (counts > 0), k)[0]
    return np.broadcast_to(row, ctx.truth_phi.shape).copy()


def vote_baseline(ctx: Context, k: int = 5) -> np.ndarray:
    """Baseline: the top-k personas of the user's item-label vote (needs item labels)."""
    assert ctx.votes is not None
    return top_k_mask(ctx.votes, k)


# ---------------------------------------------------------------------------------------------
# Tuning on prototypes only (k-fold cross-validation inside the prototype set)
# ---------------------------------------------------------------------------------------------


def cv_score(
    ctx: Context,
    protos: np.ndarray,
    settings: Sequence[Setting],
    *,
    folds: int = 5,
    seed: int = 0,
) -> dict[Setting, float]:
    """Mean F1 of each setting on held-out prototype folds (labels of the other folds only).

    A held-out prototype is scored exactly like a non-prototype: its own labels are not in
    L. The k model is refit on the training folds. Only prototype labels are read.
    """
    rng = np.random.default_rng(seed)
    usable = protos[ctx.truth_phi[protos].sum(axis=1) > 0]
    fold_of = rng.permutation(len(usable)) % folds
    totals: dict[Setting, list[float]] = {s: [] for s in settings}
    by_psi: dict[tuple, list[Setting]] = {}
    for s in settings:
        by_psi.setdefault((s.beta, s.walk_length, s.weights), []).append(s)
    for f in range(folds):
        train = np.concatenate([usable[fold_of != f], protos[ctx.truth_phi[protos].sum(1) == 0]])
        test = usable[fold_of == f]
        phi = np.zeros_like(ctx.truth_phi)
        phi[train] = ctx.truth_phi[train]
        n_lab = phi[usable[fold_of != f]].sum(axis=1)
        model = fit_k_model(ctx.graph.degree[usable[fold_of != f]], n_lab)
        truth = ctx.truth_phi[test] > 0
        for (beta, ell, weights), group in by_psi.items():
            psi = affinity(ctx.walk(weights), phi, beta=beta, walk_length=ell)[test]
            norm = row_normalize(psi)
            for s in group:
                sc = psi
                if s.vote_mix:
                    sc = (1 - s.vote_mix) * norm + s.vote_mix * ctx.votes[test]
                ks = predict_k(s, ctx.graph.degree[test], model)
                _, _, f1 = mask_prf(top_k_mask(sc, ks), truth)
                totals[s].extend(f1.tolist())
    return {s: float(np.mean(v)) for s, v in totals.items()}


# ---------------------------------------------------------------------------------------------
# Beyond the paper: a persona-calibrated model fit on out-of-fold prototype scores
# ---------------------------------------------------------------------------------------------


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(-x, axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(x.shape[0])[:, None], order] = np.arange(x.shape[1])[None, :]
    return ranks


def pair_features(psi: np.ndarray, votes: np.ndarray | None, degree: np.ndarray) -> np.ndarray:
    """Features of every (user, persona) pair, users x personas x f.

    Normalized affinity and its rank, the item-label vote share and its rank (if item labels
    are used), log degree, and a one-hot persona (a per-persona intercept: the LLM gives some
    personas to 68% of customers and others to 2%, which a shared threshold cannot express).
    """
    n, m = psi.shape
    norm = row_normalize(psi)
    cols = [norm * m, np.log(norm * m + 1e-3), np.minimum(_ranks(psi), 8) / 8.0]
    if votes is not None:
        cols += [votes * m, np.log(votes * m + 1e-3), np.minimum(_ranks(votes), 8) / 8.0]
    logdeg = np.broadcast_to(np.log(np.maximum(degree, 1))[:, None], (n, m))
    cols += [logdeg / 5.0]
    dense = np.stack(cols, axis=2)
    onehot = np.broadcast_to(np.eye(m)[None, :, :], (n, m, m))
    return np.concatenate([dense, onehot], axis=2)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """L2-regularized logistic regression (L-BFGS), weights only (the intercepts are in x)."""
    from scipy.optimize import minimize

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        p = 1 / (1 + np.exp(-z))
        ll = np.logaddexp(0, z) - y * z
        return float(ll.sum() + 0.5 * l2 * w @ w), x.T @ (p - y) + l2 * w

    res = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    return res.x


def expected_f1_sets(prob: np.ndarray, max_k: int = 8) -> np.ndarray:
    """Per row, the top-k set maximizing plug-in expected F1 ~ 2 sum_{i<=k} p_i / (k + sum p).

    (Jansche's approximation for independent labels; k >= 1.)
    """
    order = np.argsort(-prob, axis=1, kind="stable")
    sorted_p = np.take_along_axis(prob, order, axis=1)[:, :max_k]
    ks = np.arange(1, sorted_p.shape[1] + 1)
    ef1 = 2 * np.cumsum(sorted_p, axis=1) / (ks[None, :] + prob.sum(axis=1, keepdims=True))
    best_k = ef1.argmax(axis=1) + 1
    return top_k_mask(prob + 1e-12, best_k)


@dataclass(frozen=True)
class Calibrated:
    """The learned predictor: logistic per (user, persona) on out-of-fold prototype scores."""

    beta: float = 0.5
    walk_length: int = 2
    use_votes: bool = True
    l2: float = 1.0
    folds: int = 5

    def label(self) -> str:
        return (
            f"calibrated beta={self.beta:g} l={self.walk_length} "
            f"votes={'yes' if self.use_votes else 'no'} l2={self.l2:g}"
        )


def _oof_training(
    ctx: Context, protos: np.ndarray, m: Calibrated, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold features and labels of the labelled prototypes."""
    rng = np.random.default_rng(seed)
    usable = protos[ctx.truth_phi[protos].sum(axis=1) > 0]
    fold_of = rng.permutation(len(usable)) % m.folds
    xs, ys = [], []
    walk = ctx.walk("unit")
    for f in range(m.folds):
        test = usable[fold_of == f]
        phi = np.zeros_like(ctx.truth_phi)
        train = usable[fold_of != f]
        phi[train] = ctx.truth_phi[train]
        psi = affinity(walk, phi, beta=m.beta, walk_length=m.walk_length)[test]
        votes = ctx.votes[test] if m.use_votes and ctx.votes is not None else None
        feats = pair_features(psi, votes, ctx.graph.degree[test])
        xs.append(feats.reshape(-1, feats.shape[2]))
        ys.append((ctx.truth_phi[test] > 0).reshape(-1).astype(float))
    return np.concatenate(xs), np.concatenate(ys)


def predict_calibrated(
    ctx: Context, protos: np.ndarray, m: Calibrated, *, seed: int = 0
) -> np.ndarray:
    """Fit on prototypes (out of fold), then predict every user's set by expected F1."""
    x, y = _oof_training(ctx, protos, m, seed)
    w = fit_logistic(x, y, m.l2)
    phi = np.zeros_like(ctx.truth_phi)
    phi[protos] = ctx.truth_phi[protos]
    psi = affinity(ctx.walk("unit"), phi, beta=m.beta, walk_length=m.walk_length)
    votes = ctx.votes if m.use_votes else None
    feats = pair_features(psi, votes, ctx.graph.degree)
    prob = 1 / (1 + np.exp(-(feats @ w)))
    pred = expected_f1_sets(prob)
    return pred & (psi.sum(axis=1, keepdims=True) > 0 if votes is None else True)


def cv_calibrated(
    ctx: Context, protos: np.ndarray, models: Sequence[Calibrated], *, seed: int = 0
) -> dict[Calibrated, float]:
    """Mean F1 of calibrated models on held-out prototype folds (nested: fit inside folds)."""
    rng = np.random.default_rng(seed + 1)
    usable = protos[ctx.truth_phi[protos].sum(axis=1) > 0]
    fold_of = rng.permutation(len(usable)) % 5
    out: dict[Calibrated, list[float]] = {m: [] for m in models}
    for f in range(5):
        inner, test = usable[fold_of != f], usable[fold_of == f]
        for m in models:
            pred = predict_calibrated(ctx, inner, m, seed=seed)
            _, _, f1 = mask_prf(pred[test], ctx.truth_phi[test] > 0)
            out[m].extend(f1.tolist())
    return {m: float(np.mean(v)) for m, v in out.items()}


# ---------------------------------------------------------------------------------------------
# The experiment: curves over sample rate, random vs DU, baselines, tuned settings
# ---------------------------------------------------------------------------------------------

PAPER = Setting()  # beta 0.5, l = 1, top-5: the paper's formula

SIMPLE_GRID: tuple[Setting, ...] = tuple(
    Setting(beta=b, walk_length=ell, weights=w, k_rule=kr, k=k, k_offset=o)
    for b in (0.0, 0.5, 1.0)
    for ell in (1, 2)
    for w in ("unit", "log_quantity")
    for kr, k, o in [("fixed", 4, 0.0), ("fixed", 5, 0.0), ("fixed", 6, 0.0)]
    + [("degree", 5, o) for o in (-1.0, -0.5, 0.0, 0.5, 1.0)]
)
VOTE_GRID: tuple[Setting, ...] = tuple(
    Setting(
        beta=s.beta,
        walk_length=s.walk_length,
        weights=s.weights,
        k_rule=s.k_rule,
        k=s.k,
        k_offset=s.k_offset,
        vote_mix=v,
    )
    for s in SIMPLE_GRID
    for v in (0.5, 0.7)
)


def pick_prototypes(
    ctx: Context, strategy: str, tau: int, seed: int, rounds: int = 10
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return random_pick(ctx.pool, tau, rng)
    if strategy == "du":
        return du_pick(ctx.walk("unit"), ctx.truth_phi, ctx.pool, tau, rng, rounds=rounds)
    raise ValueError(f"unknown strategy {strategy!r}")


def run_curves(
    ctx: Context,
    rates: Sequence[float] = (0.01, 0.02, 0.05, 0.10, 0.20),
    strategies: Sequence[str] = ("random", "du"),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    calibrated: Sequence[Calibrated] = (
        Calibrated(walk_length=1, use_votes=False),
        Calibrated(walk_length=1, use_votes=True),
    ),
) -> pd.DataFrame:
    """One row per (rate, strategy, seed, method): P/R/F1 on even non-prototypes.

    Methods: the paper's formula; popularity and item-vote baselines; the CV-tuned simple
    setting without item labels ("tuned") and with them ("tuned+votes"); calibrated models.
    The tuned settings are chosen by cross-validation inside the prototypes only.
    """
    n = len(ctx.graph.users)
    rows = []
    for rate in rates:
        tau = max(1, round(rate * n))
        for strategy in strategies:
            for seed in seeds:
                protos = pick_prototypes(ctx, strategy, tau, seed)
                users = np.flatnonzero(eval_mask(ctx, protos))
                base = {
                    "rate": rate,
                    "strategy": strategy,
                    "seed": seed,
                    "prototypes": len(protos),
                    "evaluated": len(users),
                }

                def add(
                    method: str,
                    pred: np.ndarray,
                    setting: str = "",
                    *,
                    cv_f1: float | None = None,
                    _base: dict = base,
                    _users: np.ndarray = users,
                ) -> None:
                    row = {**_base, "method": method, "setting": setting, "cv_f1": cv_f1}
                    rows.append({**row, **f1_of(ctx, pred, _users)})

                add("paper formula", predict(ctx, protos, PAPER), PAPER.label())
                add("popularity top-5", popularity(ctx, protos))
                if ctx.votes is not None:
                    add("item-label vote top-5", vote_baseline(ctx))
                grids = [("tuned", SIMPLE_GRID)]
                if ctx.votes is not None:
                    grids.append(("tuned+votes", SIMPLE_GRID + VOTE_GRID))
                for name, grid in grids:
                    cv = cv_score(ctx, protos, grid, seed=seed)
                    best = max(grid, key=lambda s, cv=cv, grid=grid: (cv[s], -grid.index(s)))
                    add(name, predict(ctx, protos, best), best.label(), cv_f1=cv[best])
                for m in calibrated:
                    if m.use_votes and ctx.votes is None:
                        continue
                    name = "calibrated+votes" if m.use_votes else "calibrated"
                    add(name, predict_calibrated(ctx, protos, m, seed=seed), m.label())
    return pd.DataFrame(rows)


def build_context(
    edges: pd.DataFrame,
    user_labels: dict[str, frozenset],
    personas: list[str],
    item_labels: dict[str, frozenset] | None = None,
) -> Context:
    """Graph, recorded-label matrix, prototype pool and (optional) item votes."""
    graph = Graph.from_edges(edges)
    truth = np.zeros((len(graph.users), len(personas)))
    col = {p: j for j, p in enumerate(personas)}
    recorded = np.zeros(len(graph.users), dtype=bool)
    for i, cid in enumerate(graph.users):
        if cid in user_labels:
            recorded[i] = True
            for p in user_labels[cid]:
                truth[i, col[p]] = 1.0
    votes = None
    if item_labels is not None:
        ip = np.zeros((len(graph.items), len(personas)))
        for i, name in enumerate(graph.items):
            for p in item_labels.get(name, ()):
                ip[i, col[p]] = 1.0
        votes = item_votes(graph, ip)
    return Context(graph, truth, truth.sum(axis=1) > 0, np.flatnonzero(recorded), personas, votes)


def spark_check(ctx: Context, spark_edges: object, protos: np.ndarray) -> float:
    """Max |Psi_numpy - Psi_spark| for the paper's setting: the sweeps use the same numbers
    as the pipeline's ``affinity.compute_affinity``."""
    from gplr_spark.affinity import compute_affinity

    spark = spark_edges.sparkSession  # type: ignore[attr-defined]
    rows = [
        (str(ctx.graph.users[u]), ctx.personas[r])
        for u in protos
        for r in np.flatnonzero(ctx.truth_phi[u])
    ]
    labels = spark.createDataFrame(rows, "customer_id string, persona string")
    got = compute_affinity(spark_edges, labels, beta=PAPER.beta).toPandas()  # type: ignore[arg-type]
    phi = np.zeros_like(ctx.truth_phi)
    phi[protos] = ctx.truth_phi[protos]
    want = affinity(ctx.walk("unit"), phi, beta=PAPER.beta)
    mine = np.zeros_like(want)
    col = {p: j for j, p in enumerate(ctx.personas)}
    mine[ctx.graph.users.get_indexer(got.customer_id), got.persona.map(col).to_numpy()] = (
        got.affinity
    )
    return float(np.abs(mine - want).max())
