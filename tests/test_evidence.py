"""persona_evidence: item contributions add up to the affinity, on a hand-computed graph.

Graph (customers a..e, items x, y, z):  a-x a-y a-z | b-x b-y | c-y | d-z | e-x e-z.
Labels: b {G}, c {G, K}, d {K}, e {G}. Qhat: G 3, K 2, so c_G = sqrt(2/3) =: s, c_K = 1.
L: b,G = s; c,G = s/2; c,K = 1/2; d,K = 1; e,G = s.  All item degrees are 3.
Y[x,G] = 2s/3, Y[y,G] = s/2, Y[z,G] = s/3; Y[y,K] = 1/6, Y[z,K] = 1/3.
Customer a (degree 3): contributions to G are 2s/9 (x), s/6 (y), s/9 (z), sum s/2;
to K: 1/18 (y), 1/9 (z), sum 1/6.
"""

from __future__ import annotations

import math

import pytest
from pyspark.sql import functions as F

from gplr_spark.affinity import compute_affinity
from gplr_spark.evidence import item_contributions, item_persona_mass, persona_evidence
from gplr_spark.graph import build_edges

S = math.sqrt(2 / 3)


@pytest.fixture()
def graph(frame):
    pairs = ["ax", "ay", "az", "bx", "by", "cy", "dz", "ex", "ez"]
    purchases = frame(
        {
            "customer_id": [p[0] for p in pairs],
            "item_id": [p[1] for p in pairs],
            "quantity": [1] * len(pairs),
        }
    )
    labels = frame({"customer_id": ["b", "c", "c", "d", "e"], "persona": ["G", "G", "K", "K", "G"]})
    names = frame({"item_id": ["x", "y", "z"], "item_name": ["Spade", "Seeds", "Candle"]})
    return build_edges(purchases), labels, names


def _sums(parts):
    return {
        (r.customer_id, r.persona): r.total
        for r in parts.groupBy("customer_id", "persona")
        .agg(F.sum("contribution").alias("total"))
        .collect()
    }


def test_item_mass_and_contributions_match_the_hand_computation(graph, frame) -> None:
    edges, labels, _ = graph
    mass = {(r.item_id, r.persona): r.mass for r in item_persona_mass(edges, labels).collect()}
    assert mass == pytest.approx(
        {
            ("x", "G"): 2 * S / 3,
            ("y", "G"): S / 2,
            ("z", "G"): S / 3,
            ("y", "K"): 1 / 6,
            ("z", "K"): 1 / 3,
        }
    )
    pairs = frame({"customer_id": ["a", "a"], "persona": ["G", "K"]})
    got = {
        (r.persona, r.item_id): r.contribution
        for r in item_contributions(edges, item_persona_mass(edges, labels), pairs).collect()
    }
    assert got == pytest.approx(
        {
            ("G", "x"): 2 * S / 9,
            ("G", "y"): S / 6,
            ("G", "z"): S / 9,
            ("K", "y"): 1 / 18,
            ("K", "z"): 1 / 9,
        }
    )


def _psi(aff) -> dict[tuple[str, str], float]:
    return {(r.customer_id, r.persona): r.affinity for r in aff.collect()}


def test_all_contributions_add_up_to_the_affinity(graph) -> None:
    edges, labels, _ = graph
    mass = item_persona_mass(edges, labels)
    exact = compute_affinity(edges, labels, eps=0.0, walk_length=1, beta=0.5)
    sums = _sums(item_contributions(edges, mass, exact))
    psi = _psi(exact)
    assert psi[("a", "G")] == pytest.approx(S / 2, rel=1e-12)
    assert len(sums) == len(psi) >= 9
    for key, value in psi.items():
        assert sums[key] == pytest.approx(value, rel=1e-12)
    # RevAff with eps > 0 drops residues: the (exact) evidence stays within eps of it
    eps = 0.4  # threshold eps/2 = 0.2 drops Y[y, K] = 1/6 before the last hop
    approx = _psi(compute_affinity(edges, labels, eps=eps, walk_length=1, beta=0.5))
    assert approx != psi
    assert all(abs(sums[key] - approx.get(key, 0.0)) <= eps for key in psi)


def test_contributions_through_the_last_hop_add_up_for_longer_walks(graph) -> None:
    edges, labels, _ = graph
    exact = compute_affinity(edges, labels, eps=0.0, walk_length=2, beta=0.5)
    sums = _sums(item_contributions(edges, item_persona_mass(edges, labels, walk_length=2), exact))
    psi = _psi(exact)
    assert len(sums) == len(psi) >= 9
    for key, value in psi.items():
        assert sums[key] == pytest.approx(value, rel=1e-12)


def test_persona_evidence_keeps_the_top_items_with_names(graph, frame) -> None:
    edges, labels, names = graph
    assignments = frame({"customer_id": ["a", "a"], "persona": ["G", "K"]})
    rows = persona_evidence(edges, labels, assignments, names, top_n=2).collect()
    got = sorted((r.persona, r.item_name, round(r.contribution, 12)) for r in rows)
    assert got == [
        ("G", "Seeds", round(S / 6, 12)),
        ("G", "Spade", round(2 * S / 9, 12)),
        ("K", "Candle", round(1 / 9, 12)),
        ("K", "Seeds", round(1 / 18, 12)),
    ]
    with pytest.raises(ValueError, match="top_n"):
        persona_evidence(edges, labels, assignments, names, top_n=0)
