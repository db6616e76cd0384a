"""The offline labeler's quality: its labels vs the recorded GPT-4 labels, per customer.

Labels every recorded (even-id) OnlineRetail customer with ``OfflineLabeler`` through the
project's own ingest and labeling stages, and scores the set against the GPT-4-Turbo set:
per-user precision, recall and F1 (mean over customers; Unrepresentable or failed answers
score 0), plus the popularity baseline (the 5 most frequent GPT-4 personas for everyone).
Writes bench/results/offline-labeler-<time>.json.

Run: ``python -m bench.offline_labeler_quality``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import numpy as np
import pandas as pd

from gplr_spark import ingest, labeling
from gplr_spark.personas import Catalog
from gplr_spark.session import REPO_ROOT, get_spark

RESULTS = REPO_ROOT / "bench" / "results"
LABELS = REPO_ROOT / "data" / "online_retail_gpt4_labels" / "user_labels_even_ids.csv"


def set_prf(pred: set[str], truth: set[str]) -> tuple[float, float, float]:
    """Precision, recall and F1 of one predicted set against the true one (0 when empty)."""
    hit = len(pred & truth)
    if not hit:
        return 0.0, 0.0, 0.0
    p, r = hit / len(pred), hit / len(truth)
    return p, r, 2 * p * r / (p + r)


def _means(rows: np.ndarray) -> dict[str, float]:
    return dict(
        zip(("precision", "recall", "f1"), rows.mean(axis=0).round(4).tolist(), strict=True)
    )


def main() -> dict:
    spark = get_spark("gplr-offline-quality")
    purchases, _ = ingest.load_purchases(
        spark,
        str(REPO_ROOT / "data" / "online_retail" / "online_retail.parquet"),
        REPO_ROOT / "conf" / "mappings" / "online_retail.toml",
    )
    catalog = Catalog.from_csv(REPO_ROOT / "data" / "catalogs" / "online_retail_paper.csv")
    raw = pd.read_csv(LABELS, dtype=str)
    raw = raw[raw.status == "labeled"].dropna(subset=["personas"])  # not Unrepresentable
    truth = {
        str(c).strip(): set(p.split("|")) for c, p in zip(raw.CustomerID, raw.personas, strict=True)
    }
    in_graph = {r["customer_id"] for r in purchases.select("customer_id").distinct().collect()}
    ids = sorted(c for c in truth if c in in_graph)
    customers = spark.createDataFrame([(c,) for c in ids], "customer_id string")
    labels, report = labeling.label_customers(
        purchases, customers, catalog, labeling.OfflineLabeler()
    )
    got: dict[str, set[str]] = {}
    for row in labels.collect():
        got.setdefault(row["customer_id"], set()).add(row["persona"])
    popular = {p for p, _ in Counter(p for s in truth.values() for p in s).most_common(5)}
    scores = np.array([set_prf(got.get(c, set()), truth[c]) for c in ids])
    base = np.array([set_prf(popular, truth[c]) for c in ids])
    doc = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "customers": len(ids),
        "labeling": report.as_dict(),
        "offline": _means(scores),
        "popularity_top5": _means(base),
        "mean_set_size": {
            "offline": float(np.mean([len(got.get(c, ())) for c in ids])),
            "gpt4": float(np.mean([len(truth[c]) for c in ids])),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"offline-labeler-{stamp}.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    spark.stop()
    return doc


if __name__ == "__main__":
    main()
