"""LLM labeling throughput against the loopback OpenAI-compatible server (no network).

For each concurrency, label ``per_worker x concurrency`` customers through the real
``openai`` client at a fixed server latency (default 300 ms, a typical chat completion),
into a fresh label store; then rerun the same requests on that store, which must make zero
calls. Reports labeled customers/s, HTTP calls, and the rerun's calls and time. Results go to
bench/results/llm-throughput-<timestamp>.json.

Run: ``python -m bench.llm_throughput [--latency 0.3] [--concurrency 1,4,16] [--per-worker 20]``
(about 3 x per_worker x latency seconds per concurrency level: ~20 s with the defaults).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gplr_spark.labeling import LabelRequest, request_key
from gplr_spark.llm import LabelStore, LLMClient, OpenAILabeler
from gplr_spark.personas import Catalog
from gplr_spark.session import REPO_ROOT
from tests.openai_server import FakeOpenAI

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CATALOG_CSV = REPO_ROOT / "data" / "catalogs" / "online_retail_paper.csv"
HISTORY = (
    ("WHITE HANGING HEART T-LIGHT HOLDER", 12),
    ("REGENCY CAKESTAND 3 TIER", 4),
    ("JUMBO BAG RED RETROSPOT", 10),
    ("PAPER CHAIN KIT 50'S CHRISTMAS", 6),
    ("SET OF 3 CAKE TINS PANTRY DESIGN", 2),
)


def requests(n: int) -> list[LabelRequest]:
    """n customers with a short, realistic history (distinct keys, so distinct prompts)."""
    return [LabelRequest(request_key(f"bench-{i}"), f"bench-{i}", HISTORY) for i in range(n)]


def measure(url: str, store: Path, concurrency: int, n: int, catalog: Catalog) -> dict[str, Any]:
    """One concurrency level: a paid run into an empty store, then a rerun on it."""
    out: dict[str, Any] = {"concurrency": concurrency, "customers": n}
    reqs = requests(n)
    for phase in ("first", "rerun"):
        client = LLMClient(
            model="bench-model",
            api_key="sk-bench",
            base_url=url,
            store=LabelStore(store),
            concurrency=concurrency,
            timeout_s=10.0,
            progress=False,
        )
        started = time.perf_counter()
        results = OpenAILabeler(client).label(reqs, catalog)
        seconds = time.perf_counter() - started
        stats = client.last_stats
        labeled = sum(r.status == "labeled" for r in results)
        out[phase] = {
            "seconds": round(seconds, 3),
            "labeled": labeled,
            "labeled_per_s": round(labeled / seconds, 2) if seconds else None,
            "http_calls": stats.http_calls,
            "from_store": stats.from_store,
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.3, help="server latency, seconds")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    parser.add_argument("--per-worker", type=int, default=20, help="customers per worker")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    catalog = Catalog.from_csv(CATALOG_CSV)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    runs = []
    with FakeOpenAI(latency=args.latency, personas=[catalog.names[1]]) as server:
        for c in levels:
            with tempfile.TemporaryDirectory(prefix="llm-bench-") as tmp:
                run = measure(server.url, Path(tmp), c, args.per_worker * c, catalog)
            runs.append(run)
            first, rerun = run["first"], run["rerun"]
            print(
                f"concurrency {c:3d}: {first['labeled']} customers in {first['seconds']:.2f} s "
                f"= {first['labeled_per_s']:.1f}/s ({first['http_calls']} calls); rerun "
                f"{rerun['http_calls']} calls, {rerun['seconds']:.3f} s"
            )
    doc = {
        "benchmark": "llm_throughput",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "latency_s": args.latency,
        "runs": runs,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.results_dir / f"llm-throughput-{stamp}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"results: {path}")
    return doc


if __name__ == "__main__":
    main()
