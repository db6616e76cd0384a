"""Seeded synthetic bipartite purchase graphs with power-law degrees, written as Parquet.

Shape of a graph (every draw comes from numpy, seeded, so a spec always gives the same
files):
- customer basket sizes (degrees) are lognormal, rescaled so they sum to the edge target
  and capped at a share of the catalogue;
- item popularity is Zipf-like in the rank FRACTION, w(i) ~ ((rank + 0.5) / items + c)^-a,
  so item degrees keep the same shape at every scale (edges / items is constant across the
  named sizes);
- every customer and every item has a home segment (one per persona, skewed popularity);
  a share of a customer's purchases is drawn from their home segment, the rest from all
  items, so labels carry signal and top-5 sets are meaningful;
- edges are unique (customer, item) pairs: each customer draws without replacement;
- 10% of the customers are prototypes with 1-8 labels: their home persona (most of the
  time) plus personas drawn without replacement by popularity.

Files: <out>/<size>/edges.parquet (customer_id int64, item_id int64, sorted by customer),
labels.parquet (customer_id int64, persona string) and meta.json (spec and counts). A size
whose files exist with the same spec is skipped.

Run: ``python -m bench.generate --sizes smoke,instacart-0.1x``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "graphs"
EDGE_SCHEMA = pa.schema([("customer_id", pa.int64()), ("item_id", pa.int64())])
LABEL_SCHEMA = pa.schema([("customer_id", pa.int64()), ("persona", pa.string())])
ROW_GROUP = 1_000_000


@dataclass(frozen=True)
class GraphSpec:
    """Everything that determines a synthetic graph; equal specs give identical files."""

    name: str
    customers: int
    items: int
    edges: int
    personas: int = 51
    prototype_share: float = 0.10
    min_labels: int = 1
    max_labels: int = 8
    item_exponent: float = 1.0
    item_offset: float = 5e-4
    basket_sigma: float = 1.0
    max_basket_share: float = 0.2
    persona_exponent: float = 1.0
    home_share: float = 0.5
    label_home_share: float = 0.9
    seed: int = 20250417
    chunk_edges: int = 4_000_000

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


INSTACART_FULL = GraphSpec("instacart-full", customers=206_209, items=49_677, edges=13_300_000)


def scaled(spec: GraphSpec, factor: float, name: str) -> GraphSpec:
    """The same graph shape with customers, items and edges multiplied by ``factor``."""
    return dataclasses.replace(
        spec,
        name=name,
        customers=round(spec.customers * factor),
        items=round(spec.items * factor),
        edges=round(spec.edges * factor),
    )


SIZES: dict[str, GraphSpec] = {
    "smoke": GraphSpec("smoke", customers=2_000, items=600, edges=40_000, chunk_edges=15_000),
    "instacart-0.1x": scaled(INSTACART_FULL, 0.1, "instacart-0.1x"),
    "instacart-full": INSTACART_FULL,
    "instacart-10x": scaled(INSTACART_FULL, 10.0, "instacart-10x"),
}


def persona_names(n: int) -> list[str]:
    """Stable persona names: persona_00, persona_01, ... (00 is the most popular)."""
    return [f"persona_{r:02d}" for r in range(n)]


def persona_popularity(spec: GraphSpec) -> np.ndarray:
    """Skewed persona popularity, p_r ~ (r + 1)^-persona_exponent."""
    w = np.arange(1, spec.personas + 1, dtype=np.float64) ** -spec.persona_exponent
    return w / w.sum()


def customer_degrees(spec: GraphSpec, rng: np.random.Generator) -> np.ndarray:
    """Lognormal basket sizes >= 1, capped, rescaled so they sum to about ``spec.edges``."""
    cap = max(1, min(spec.items, round(spec.max_basket_share * spec.items)))
    raw = rng.lognormal(0.0, spec.basket_sigma, spec.customers)
    target = spec.edges
    deg = np.ones(spec.customers, dtype=np.int64)
    scale = target / raw.sum()
    for _ in range(8):
        deg = np.clip(np.rint(raw * scale), 1, cap).astype(np.int64)
        total = int(deg.sum())
        if abs(total - target) <= 1e-4 * target:
            break
        free = raw[(deg > 1) & (deg < cap)].sum() * scale
        if free <= 0:
            break
        scale *= 1 + (target - total) / free
    return deg


@dataclass(frozen=True)
class ItemModel:
    """Items ordered by segment with cumulative popularity: a draw is one searchsorted."""

    order: np.ndarray  # position in the segment-sorted list -> item id
    cum: np.ndarray  # cumulative weight over that list
    seg_lo: np.ndarray  # cumulative weight before each segment
    seg_hi: np.ndarray  # cumulative weight at the end of each segment

    def draw(self, x: np.ndarray, segment: np.ndarray | None) -> np.ndarray:
        """Item ids for uniforms ``x`` in [0, 1): within ``segment`` where given (>= 0)."""
        total = self.cum[-1]
        if segment is None:
            lo, hi = np.zeros_like(x), np.full_like(x, total)
        else:
            home = segment >= 0
            seg = np.where(home, segment, 0)
            lo = np.where(home, self.seg_lo[seg], 0.0)
            hi = np.where(home, self.seg_hi[seg], total)
        pos = np.searchsorted(self.cum, lo + x * (hi - lo), side="right")
        return self.order[np.minimum(pos, len(self.order) - 1)]


def item_model(spec: GraphSpec, rng: np.random.Generator) -> ItemModel:
    """Zipf-like weights over a random popularity ranking, items grouped by home segment."""
    rank = rng.permutation(spec.items)
    weight = ((rank + 0.5) / spec.items + spec.item_offset) ** -spec.item_exponent
    segment = rng.choice(spec.personas, size=spec.items, p=persona_popularity(spec))
    order = np.argsort(segment, kind="stable")
    cum = np.cumsum(weight[order])
    ends = np.searchsorted(segment[order], np.arange(spec.personas), side="right")
    starts = np.searchsorted(segment[order], np.arange(spec.personas), side="left")
    padded = np.concatenate([[0.0], cum])
    return ItemModel(order=order, cum=cum, seg_lo=padded[starts], seg_hi=padded[ends])


def chunk_bounds(degrees: np.ndarray, chunk_edges: int) -> list[tuple[int, int]]:
    """Consecutive customer ranges holding about ``chunk_edges`` edges each."""
    cum = np.cumsum(degrees)
    cuts = np.searchsorted(cum, np.arange(chunk_edges, int(cum[-1]), chunk_edges), side="left")
    edges = np.unique(np.concatenate([[0], cuts + 1, [len(degrees)]]))
    edges = edges[edges <= len(degrees)]
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def sample_chunk(
    spec: GraphSpec,
    model: ItemModel,
    degrees: np.ndarray,
    home: np.ndarray,
    first: int,
    rng: np.random.Generator,
    max_rounds: int = 16,
) -> np.ndarray:
    """Unique edge keys customer * items + item for customers first..first+len(degrees)-1.

    Each customer draws until they hold ``degree`` distinct items (first distinct draws
    win: weighted sampling without replacement); home-segment draws stop after a few
    rounds so customers of tiny segments still fill up from all items.
    """
    n_items = np.int64(spec.items)
    local = np.arange(len(degrees))
    kept = np.empty(0, dtype=np.int64)
    remaining = degrees.copy()
    for rnd in range(max_rounds):
        active = remaining > 0
        if not active.any():
            break
        factor = 1.15 if rnd == 0 else 2.0
        n_draw = np.ceil(remaining[active] * factor).astype(np.int64) + (rnd > 0)
        who = np.repeat(local[active], n_draw)
        use_home = rng.random(len(who)) < (spec.home_share if rnd < max_rounds // 2 else 0.0)
        items = model.draw(rng.random(len(who)), np.where(use_home, home[who], -1))
        draws = np.concatenate([kept, (who + first) * n_items + items])
        _, first_seen = np.unique(draws, return_index=True)
        distinct = draws[np.sort(first_seen)]
        owner = distinct // n_items - first
        by_owner = np.argsort(owner, kind="stable")
        starts = np.searchsorted(owner[by_owner], local)
        rank = np.empty(len(distinct), dtype=np.int64)
        rank[by_owner] = np.arange(len(distinct)) - starts[owner[by_owner]]
        keep = rank < degrees[owner]
        kept = distinct[keep]
        remaining = degrees - np.bincount(owner[keep], minlength=len(degrees))
    return np.sort(kept)


def iter_edge_chunks(spec: GraphSpec) -> Iterator[pa.Table]:
    """The graph's edges as Arrow tables, customer range by customer range."""
    degrees = customer_degrees(spec, np.random.default_rng([spec.seed, 0]))
    model = item_model(spec, np.random.default_rng([spec.seed, 1]))
    home = home_segments(spec)
    for idx, (a, b) in enumerate(chunk_bounds(degrees, spec.chunk_edges)):
        rng = np.random.default_rng([spec.seed, 2, idx])
        keys = sample_chunk(spec, model, degrees[a:b], home[a:b], a, rng)
        yield pa.table(
            {"customer_id": keys // spec.items, "item_id": keys % spec.items}, schema=EDGE_SCHEMA
        )


def home_segments(spec: GraphSpec) -> np.ndarray:
    """Each customer's home segment (= persona index), by persona popularity."""
    rng = np.random.default_rng([spec.seed, 3])
    return rng.choice(spec.personas, size=spec.customers, p=persona_popularity(spec))


def make_labels(spec: GraphSpec) -> pa.Table:
    """Prototype labels: ``prototype_share`` of customers, min..max distinct personas each."""
    rng = np.random.default_rng([spec.seed, 4])
    n_proto = round(spec.prototype_share * spec.customers)
    protos = np.sort(rng.choice(spec.customers, size=n_proto, replace=False))
    k = rng.integers(spec.min_labels, spec.max_labels + 1, size=n_proto)
    k = np.minimum(k, spec.personas)
    score = np.log(persona_popularity(spec))[None, :] + rng.gumbel(size=(n_proto, spec.personas))
    with_home = rng.random(n_proto) < spec.label_home_share
    rows = np.flatnonzero(with_home)
    score[rows, home_segments(spec)[protos[rows]]] = np.inf
    order = np.argsort(-score, axis=1, kind="stable")
    take = np.arange(spec.personas)[None, :] < k[:, None]
    names = np.array(persona_names(spec.personas), dtype=object)
    return pa.table(
        {"customer_id": np.repeat(protos, k).astype(np.int64), "persona": names[order[take]]},
        schema=LABEL_SCHEMA,
    )


def graph_dir(size: str, out: Path = DEFAULT_OUT) -> Path:
    return Path(out) / size


def is_current(spec: GraphSpec, folder: Path) -> bool:
    """True when the folder holds complete files generated from this exact spec."""
    meta = folder / "meta.json"
    if not (meta.is_file() and (folder / "edges.parquet").is_file()):
        return False
    if not (folder / "labels.parquet").is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("spec") == spec.as_dict()
    except json.JSONDecodeError:
        return False


def generate(spec: GraphSpec, out: Path = DEFAULT_OUT, *, force: bool = False) -> Path:
    """Write ``spec``'s graph under out/<name>/ (skipped when current); returns the folder."""
    folder = graph_dir(spec.name, out)
    if not force and is_current(spec, folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = folder / "edges.parquet.tmp"
    n_edges, deg_max = 0, 0
    item_deg = np.zeros(spec.items, dtype=np.int64)
    with pq.ParquetWriter(tmp, EDGE_SCHEMA, compression="snappy") as writer:
        for table in iter_edge_chunks(spec):
            writer.write_table(table, row_group_size=ROW_GROUP)
            n_edges += table.num_rows
            cust = table.column("customer_id").to_numpy()
            if len(cust):
                deg_max = max(deg_max, int(np.bincount(cust - cust[0]).max()))
            item_deg += np.bincount(table.column("item_id").to_numpy(), minlength=spec.items)
    tmp.replace(folder / "edges.parquet")
    labels = make_labels(spec)
    pq.write_table(labels, folder / "labels.parquet.tmp")
    (folder / "labels.parquet.tmp").replace(folder / "labels.parquet")
    top = np.sort(item_deg)[::-1]
    top1 = max(1, math.ceil(0.01 * spec.items))
    meta = {
        "spec": spec.as_dict(),
        "edges": n_edges,
        "items_with_edges": int((item_deg > 0).sum()),
        "max_customer_degree": deg_max,
        "max_item_degree": int(top[0]) if len(top) else 0,
        "top1pct_item_edge_share": float(top[:top1].sum() / max(1, n_edges)),
        "prototypes": len(np.unique(labels.column("customer_id").to_numpy())),
        "labels": labels.num_rows,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="smoke", help=f"comma-separated, from {list(SIZES)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=None, help="override the spec's seed")
    parser.add_argument("--force", action="store_true", help="regenerate even if current")
    args = parser.parse_args(argv)
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        spec = SIZES[size]
        if args.seed is not None:
            spec = dataclasses.replace(spec, seed=args.seed)
        folder = generate(spec, args.out, force=args.force)
        print(json.dumps({"size": size, "folder": str(folder), **_meta(folder)}))


def _meta(folder: Path) -> dict[str, object]:
    meta = json.loads((folder / "meta.json").read_text())
    meta.pop("spec", None)
    return meta


if __name__ == "__main__":
    main()
