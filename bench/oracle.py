"""The exact affinity on one machine with scipy.sparse, and error metrics against it.

Psi = (1/l) sum_{j=1..l} (P P')^j L, computed right to left as in gplr.md section 4:
P[u, v] = 1/d(u), P'[v, u] = 1/d(v), L[u, r] = c_r / |labels of u| with
c_r = (min_r' n_r' / n_r)^beta over the distinct (customer, persona) labels (labels of
customers outside the graph count for c_r, as in ``gplr_spark.affinity.debias_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass
class Exact:
    """Dense exact affinities: rows follow ``customers`` (sorted), columns ``personas``."""

    customers: np.ndarray
    personas: list[str]
    psi: np.ndarray
    prototypes: np.ndarray  # bool per row: customer has at least one label

    def row_index(self, keys: np.ndarray) -> np.ndarray:
        """Row of each customer key; raises if a key is not a graph customer."""
        idx = np.searchsorted(self.customers, keys)
        idx = np.minimum(idx, len(self.customers) - 1)
        if len(keys) and not np.array_equal(self.customers[idx], keys):
            raise KeyError("result holds customers that are not in the graph")
        return idx


def exact_affinity(
    edge_customers: np.ndarray,
    edge_items: np.ndarray,
    label_customers: np.ndarray,
    label_personas: np.ndarray,
    *,
    beta: float = 0.5,
    walk_length: int = 1,
) -> Exact:
    """Exact Psi for unique (customer, item) edges and (customer, persona) labels."""
    customers, u = np.unique(edge_customers, return_inverse=True)
    _, v = np.unique(edge_items, return_inverse=True)
    n_u, n_v = len(customers), int(v.max()) + 1 if len(v) else 0
    deg_u = np.bincount(u, minlength=n_u).astype(np.float64)
    deg_v = np.bincount(v, minlength=n_v).astype(np.float64)
    p = sp.csr_matrix((1.0 / deg_u[u], (u, v)), shape=(n_u, n_v))
    pt = sp.csr_matrix((1.0 / deg_v[v], (v, u)), shape=(n_v, n_u))

    pairs = pd.DataFrame({"c": label_customers, "p": np.asarray(label_personas).astype(str)})
    pairs = pairs.drop_duplicates(ignore_index=True)
    personas, r = np.unique(pairs["p"].to_numpy(), return_inverse=True)
    n_r = np.bincount(r, minlength=len(personas)).astype(np.float64)
    c = (n_r.min() / n_r) ** beta if len(n_r) else n_r
    per_label = pairs.groupby("c")["p"].transform("size").to_numpy().astype(np.float64)
    keys = pairs["c"].to_numpy()
    rows = np.minimum(np.searchsorted(customers, keys), max(n_u - 1, 0))
    inside = customers[rows] == keys if n_u else np.zeros(len(keys), dtype=bool)
    big_l = np.zeros((n_u, len(personas)))
    np.add.at(big_l, (rows[inside], r[inside]), c[r[inside]] / per_label[inside])

    x = big_l
    total = np.zeros_like(big_l)
    for _ in range(walk_length):
        x = p @ (pt @ x)
        total += x
    prototypes = np.zeros(n_u, dtype=bool)
    prototypes[rows[inside]] = True
    return Exact(customers, [str(s) for s in personas], total / walk_length, prototypes)


def dense_result(
    exact: Exact,
    customers: np.ndarray,
    personas: np.ndarray | pd.Categorical,
    values: np.ndarray,
) -> np.ndarray:
    """A (customer, persona, affinity) result as a dense matrix shaped like ``exact.psi``.

    ``personas`` may be a Categorical (codes + names): 100M result rows then cost 4 bytes
    each instead of a Python string each."""
    col = {p: j for j, p in enumerate(exact.personas)}
    if isinstance(personas, pd.Categorical):
        uniq, inv = np.asarray(personas.categories, dtype=str), personas.codes
    else:
        uniq, inv = np.unique(personas.astype(str), return_inverse=True)
    missing = [p for p in uniq if p not in col]
    if missing:
        raise KeyError(f"result has personas the labels do not: {missing[:5]}")
    cols = np.array([col[p] for p in uniq], dtype=np.int64)[inv]
    out = np.zeros_like(exact.psi)
    out[exact.row_index(customers), cols] = values
    return out


def topk_agreement(exact: np.ndarray, approx: np.ndarray, k: int = 5) -> dict[str, float]:
    """Share of rows whose top-k persona set (positive entries only) matches the exact one.

    ``strict``: identical sets, ties broken by persona order on both sides. ``tie_aware``:
    same size and every chosen persona's exact value reaches the exact k-th value (within
    1e-9 relative), i.e. the approximate set is one of the exact top-k sets.
    """
    n, m = exact.shape
    if n == 0:
        return {"strict": float("nan"), "tie_aware": float("nan"), "rows": 0}
    k = min(k, m)
    rows = np.arange(n)[:, None]
    order_e = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    order_a = np.argsort(-approx, axis=1, kind="stable")[:, :k]
    pos_e = exact[rows, order_e] > 0
    pos_a = approx[rows, order_a] > 0
    set_e = np.sort(np.where(pos_e, order_e, -1), axis=1)
    set_a = np.sort(np.where(pos_a, order_a, -1), axis=1)
    strict = (set_e == set_a).all(axis=1)
    k_e, k_a = pos_e.sum(axis=1), pos_a.sum(axis=1)
    kth = exact[np.arange(n), order_e[np.arange(n), np.maximum(k_e - 1, 0)]]
    tol = 1e-9 * exact.max(axis=1)
    reach = (exact[rows, order_a] >= (kth - tol)[:, None]) | ~pos_a
    tie_aware = (k_e == k_a) & reach.all(axis=1)
    return {"strict": float(strict.mean()), "tie_aware": float(tie_aware.mean()), "rows": n}


def compare(exact: Exact, approx: np.ndarray, k: int = 5) -> dict[str, float]:
    """Mean/max abs error over every (customer, persona) entry; top-k agreement over the
    reached non-prototype customers (prototypes keep their labels in GPLR)."""
    diff = np.abs(approx - exact.psi)
    reached = (exact.psi > 0).any(axis=1) & ~exact.prototypes
    agree = topk_agreement(exact.psi[reached], approx[reached], k)
    row_max = exact.psi.max(axis=1) if exact.psi.size else np.zeros(0)
    return {
        "mean_abs_error": float(diff.mean()) if diff.size else 0.0,
        "max_abs_error": float(diff.max()) if diff.size else 0.0,
        "top5_strict": agree["strict"],
        "top5_tie_aware": agree["tie_aware"],
        "top5_rows": int(agree["rows"]),
        "exact_mean_affinity": float(exact.psi.mean()) if exact.psi.size else 0.0,
        "exact_median_row_max": float(np.median(row_max[row_max > 0])) if row_max.any() else 0.0,
    }
