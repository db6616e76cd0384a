"""persona_segments on a hand-made case: sizes, shares, revenue and signature items."""

from __future__ import annotations

import pytest

from gplr_spark.assign import persona_segments


def test_segments_count_customers_revenue_and_top_items(frame) -> None:
    # four customers spend 10, 20, 30 and 40; d holds no persona but counts in the totals
    purchases = frame(
        {
            "customer_id": ["a", "a", "b", "c", "d"],
            "item_id": ["x", "y", "x", "z", "x"],
            "quantity": [1, 2, 4, 3, 8],
            "unit_price": [2.0, 4.0, 5.0, 10.0, 5.0],
        }
    )
    assignments = frame(
        {
            "customer_id": ["a", "a", "b", "c", "c"],
            "persona": ["G", "K", "G", "G", "K"],
            "source": ["llm", "llm", "inferred", "inferred", "inferred"],
        }
    )
    evidence = frame(
        {
            "customer_id": ["a", "b", "c", "a", "c"],
            "persona": ["G", "G", "G", "K", "K"],
            "item_id": ["x", "x", "z", "y", "z"],
            "item_name": ["Spade", "Spade", "Candle", "Seeds", "Candle"],
            "contribution": [0.2, 0.3, 0.4, 0.1, 0.05],
        }
    )
    rows = {r.persona: r for r in persona_segments(assignments, purchases, evidence).collect()}
    assert set(rows) == {"G", "K"}
    g, k = rows["G"], rows["K"]
    assert (g.customers, k.customers) == (3, 2)
    assert (g.share, k.share) == pytest.approx((3 / 4, 2 / 4))
    assert (g.revenue, k.revenue) == pytest.approx((60.0, 40.0))
    assert (g.revenue_share, k.revenue_share) == pytest.approx((60 / 100, 40 / 100))
    # Spade carries 0.5 of G over the segment, Candle 0.4
    assert g.top_items == ["Spade", "Candle"]
    assert k.top_items == ["Seeds", "Candle"]
    one = {
        r.persona: r.top_items
        for r in persona_segments(assignments, purchases, evidence, top_items=1).collect()
    }
    assert one == {"G": ["Spade"], "K": ["Seeds"]}
