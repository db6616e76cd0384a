from __future__ import annotations

from gplr_spark.assign import top_k, unreached_customers


def test_top_k_keeps_llm_labels_and_ranks_the_rest(frame) -> None:
    affinity = frame(
        {
            "customer_id": ["p", "p", "u", "u", "u", "v"],
            "persona": ["A", "B", "A", "B", "C", "C"],
            "affinity": [0.5, 0.1, 0.2, 0.3, 0.3, 0.4],
        }
    )
    labels = frame({"customer_id": ["p", "p"], "persona": ["B", "D"]})
    got = {
        (r.customer_id, r.persona): (r.score, r["rank"], r.source)
        for r in top_k(affinity, labels, k=2).collect()
    }
    assert got == {
        # the prototype keeps exactly its LLM labels, even one with no affinity (D)
        ("p", "B"): (0.1, 1, "llm"),
        ("p", "D"): (0.0, 2, "llm"),
        # ties break by persona name; k = 2 cuts A
        ("u", "B"): (0.3, 1, "inferred"),
        ("u", "C"): (0.3, 2, "inferred"),
        ("v", "C"): (0.4, 1, "inferred"),
    }


def test_unreached_customers_are_counted_not_invented(frame) -> None:
    assignments = frame({"customer_id": ["a"], "persona": ["A"]})
    customers = frame({"customer_id": ["a", "b", "c"]})
    assert sorted(r.customer_id for r in unreached_customers(assignments, customers).collect()) == [
        "b",
        "c",
    ]
