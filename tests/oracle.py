"""An independent scipy computation of Psi = (1/l) sum_j (P P')^j L, for the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def scipy_affinity(
    edges: pd.DataFrame, labels: pd.DataFrame, *, walk_length: int = 1, beta: float = 0.5
) -> pd.DataFrame:
    """Long (customer_id, persona, affinity) rows of the exact Psi, zeros left out."""
    pairs = edges[["customer_id", "item_id"]].drop_duplicates()
    users = pd.Index(sorted(set(pairs.customer_id) | set(labels.customer_id)))
    items = pd.Index(sorted(set(pairs.item_id)))
    personas = pd.Index(sorted(set(labels.persona)))
    rows, cols = users.get_indexer(pairs.customer_id), items.get_indexer(pairs.item_id)
    adj = sp.csr_matrix((np.ones(len(pairs)), (rows, cols)), shape=(len(users), len(items)))
    du = np.asarray(adj.sum(axis=1)).ravel()
    dv = np.asarray(adj.sum(axis=0)).ravel()
    p = sp.diags(np.divide(1.0, du, out=np.zeros_like(du), where=du > 0)) @ adj
    pt = sp.diags(np.divide(1.0, dv, out=np.zeros_like(dv), where=dv > 0)) @ adj.T.tocsr()
    lab = labels[["customer_id", "persona"]].drop_duplicates()
    phi = np.zeros((len(users), len(personas)))
    phi[users.get_indexer(lab.customer_id), personas.get_indexer(lab.persona)] = 1.0
    share = phi.sum(axis=0) / phi.sum()
    c = (share.min() / share) ** beta
    ell = phi / np.maximum(phi.sum(axis=1, keepdims=True), 1) * c
    x, psi = ell, np.zeros_like(ell)
    for _ in range(walk_length):
        x = p @ (pt @ x)
        psi += x
    psi /= walk_length
    u, r = np.nonzero(psi)
    return pd.DataFrame({"customer_id": users[u], "persona": personas[r], "affinity": psi[u, r]})
