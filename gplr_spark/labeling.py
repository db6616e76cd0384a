"""labeling: give prototype customers personas from the catalog, through one interface.

Backends: ``offline`` (deterministic TF-IDF over product names and persona texts, no
network, no customer id), ``recorded`` (labels bought earlier, from a survey or a CRM), and
``openai`` (any OpenAI-compatible endpoint, see ``gplr_spark.llm``). Every answer is
validated against the catalog before it becomes a label.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gplr_spark.personas import UNREPRESENTABLE, Catalog

if TYPE_CHECKING:
    from gplr_spark.config import CatalogGenerationConfig
    from gplr_spark.llm import LLMClient

Status = Literal["labeled", "unrepresentable", "failed"]
LABEL_SCHEMA = T.StructType(
    [T.StructField("customer_id", T.StringType()), T.StructField("persona", T.StringType())]
)


@dataclass(frozen=True)
class LabelRequest:
    """One customer's history. ``key`` is opaque; only ``recorded`` may use customer_id."""

    key: str
    customer_id: str
    items: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class LabelResult:
    key: str
    personas: tuple[str, ...]
    status: Status
    detail: str = ""


class Labeler(Protocol):
    """Anything that turns histories into validated persona sets."""

    name: str

    def label(self, requests: Sequence[LabelRequest], catalog: Catalog) -> list[LabelResult]: ...


@dataclass
class LabelingReport:
    requested: int = 0
    labeled: int = 0
    unrepresentable: int = 0
    failed: int = 0
    labels: int = 0
    backend: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "backend": self.backend,
            "requested": self.requested,
            "labeled": self.labeled,
            "unrepresentable": self.unrepresentable,
            "failed": self.failed,
            "labels": self.labels,
            **self.extra,
        }


def request_key(customer_id: str, salt: str = "gplr") -> str:
    """An opaque, stable per-customer key: the LLM never sees the real id."""
    return "c" + hashlib.sha256(f"{salt}:{customer_id}".encode()).hexdigest()[:10]


def item_key(item_name: str) -> str:
    """An opaque, stable key for a product name in item-labeling prompts."""
    return "p" + hashlib.sha256(item_name.encode()).hexdigest()[:10]


def normalize_name(name: str) -> str:
    """The documented normalization for near-miss names: case, blanks, a leading 'The '."""
    text = re.sub(r"\s+", " ", name).strip().strip("\"'.").strip()
    text = re.sub(r"^the\s+", "", text, flags=re.IGNORECASE)
    return text.casefold()


def validate_personas(
    names: Sequence[str], catalog: Catalog, *, min_personas: int = 1, max_personas: int = 5
) -> tuple[tuple[str, ...] | None, str]:
    """Map an answer's names onto the catalog, or reject it with a reason.

    Returns (personas, "") when accepted, ((), "") for Unrepresentable, and (None, reason)
    when rejected: unknown name, too many or too few personas.
    """
    if len(names) == 1 and normalize_name(names[0]) == UNREPRESENTABLE.casefold():
        return (), ""
    lookup = {normalize_name(n): n for n in catalog.names}
    chosen: list[str] = []
    for raw in names:
        if not isinstance(raw, str):
            return None, "not_a_name"
        hit = lookup.get(normalize_name(raw))
        if hit is None:
            return None, "unknown_persona"
        if hit not in chosen:
            chosen.append(hit)
    if len(chosen) > max_personas:
        return None, "too_many_personas"
    if len(chosen) < min_personas:
        return None, "too_few_personas"
    return tuple(chosen), ""


_STOP = frozenset(
    """a an and the of for with to in on or by from as at is are their this that those who
    its it into more both items item individuals persons persona people love seen such
    including showing show shown showcasing related evident across ranging spanning
    reflects reflect focus encompasses interest interested keen strong enjoy set sets""".split()
)


def tokens(text: str) -> list[str]:
    """Lower-case word stems: letters only, stop words out, a plural 's' cut."""
    out = []
    for word in re.findall(r"[a-z]+", text.lower()):
        if len(word) < 3 or word in _STOP:
            continue
        if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


class OfflineLabeler:
    """Deterministic TF-IDF labeler: products and persona texts as bags of word stems.

    Each product scores every persona by the cosine of their TF-IDF vectors (persona text =
    name + definition + optional keywords). A customer's persona score is the mean over
    their distinct products; the personas scoring at least ``relative_cut`` of the best are
    chosen (at most ``max_personas``). No score at all means Unrepresentable.
    """

    name = "offline"

    def __init__(
        self, *, min_personas: int = 1, max_personas: int = 5, relative_cut: float = 0.5
    ) -> None:
        self.min_personas = min_personas
        self.max_personas = max_personas
        self.relative_cut = relative_cut
        self._fitted_version: str | None = None
        self._cache: dict[str, np.ndarray] = {}

    def _fit(self, catalog: Catalog) -> None:
        if self._fitted_version == catalog.version:
            return
        docs = [
            Counter(tokens(f"{p.name} {p.name} {p.definition} {p.keywords} {p.keywords}"))
            for p in catalog
        ]
        df = Counter(w for d in docs for w in d)
        self._vocab = {w: i for i, w in enumerate(sorted(df))}
        n = len(docs)
        self._idf = np.array([math.log((1 + n) / (1 + df[w])) + 1 for w in sorted(df)])
        mat = np.zeros((n, len(self._vocab)))
        for r, doc in enumerate(docs):
            for w, c in doc.items():
                mat[r, self._vocab[w]] = (1 + math.log(c)) * self._idf[self._vocab[w]]
        norms = np.linalg.norm(mat, axis=1, keepdims=True)
        self._personas = mat / np.where(norms == 0, 1, norms)
        self._fitted_version = catalog.version
        self._cache = {}

    def item_scores(self, item_name: str) -> np.ndarray:
        """Cosine of one product name with every persona (catalog order)."""
        hit = self._cache.get(item_name)
        if hit is None:
            vec = np.zeros(len(self._vocab))
            for w in tokens(item_name):
                j = self._vocab.get(w)
                if j is not None:
                    vec[j] = self._idf[j]
            norm = np.linalg.norm(vec)
            hit = self._personas @ (vec / norm) if norm else np.zeros(len(self._personas))
            self._cache[item_name] = hit
        return hit

    def label(self, requests: Sequence[LabelRequest], catalog: Catalog) -> list[LabelResult]:
        self._fit(catalog)
        names = catalog.names
        results = []
        for req in requests:
            if not req.items:
                results.append(LabelResult(req.key, (), "unrepresentable", "no items"))
                continue
            score = np.mean([self.item_scores(name) for name, _ in req.items], axis=0)
            best = float(score.max())
            if best <= 0:
                results.append(LabelResult(req.key, (), "unrepresentable", "no matching words"))
                continue
            order = np.argsort(-score, kind="stable")
            keep = [int(i) for i in order if score[i] >= self.relative_cut * best]
            keep = keep[: self.max_personas]
            if len(keep) < self.min_personas:
                keep = [int(i) for i in order[: self.min_personas]]
            results.append(LabelResult(req.key, tuple(names[i] for i in keep), "labeled"))
        return results


class RecordedLabeler:
    """Replays labels bought earlier (or from a survey or CRM), validated against the catalog.

    The file has columns CustomerID (or customer_id) and personas ('|'-joined); customers
    absent from it come back as ``failed`` with detail ``not_recorded``.
    """

    name = "recorded"

    def __init__(self, path: str | Path, *, min_personas: int = 1, max_personas: int = 8) -> None:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"recorded labels file {file} does not exist")
        self.path = file
        self.min_personas = min_personas
        self.max_personas = max_personas
        self._labels: dict[str, list[str]] = {}
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = set(reader.fieldnames or [])
            id_col = "customer_id" if "customer_id" in fields else "CustomerID"
            for column in (id_col, "personas"):
                if column not in fields:
                    raise ValueError(f"recorded labels file {file}: missing column {column!r}")
            for row in reader:
                raw = (row["personas"] or "").strip()
                self._labels[str(row[id_col]).strip()] = [p for p in raw.split("|") if p]

    def __len__(self) -> int:
        return len(self._labels)

    def customer_ids(self) -> list[str]:
        return list(self._labels)

    def label(self, requests: Sequence[LabelRequest], catalog: Catalog) -> list[LabelResult]:
        results = []
        for req in requests:
            names = self._labels.get(req.customer_id)
            if names is None:
                results.append(LabelResult(req.key, (), "failed", "not_recorded"))
                continue
            personas, reason = validate_personas(
                names, catalog, min_personas=self.min_personas, max_personas=self.max_personas
            )
            if personas is None:
                results.append(LabelResult(req.key, (), "failed", reason))
            elif not personas:
                results.append(LabelResult(req.key, (), "unrepresentable"))
            else:
                results.append(LabelResult(req.key, personas, "labeled"))
        return results


def histories(purchases: DataFrame, customers: DataFrame) -> DataFrame:
    """Per chosen customer, their products as (item_name, summed quantity), largest first."""
    lines = purchases.join(F.broadcast(customers.select("customer_id")), "customer_id")
    per_item = lines.groupBy("customer_id", "item_name").agg(
        F.sum(F.coalesce("quantity", F.lit(1))).alias("quantity")
    )
    return per_item.groupBy("customer_id").agg(
        F.sort_array(
            F.collect_list(F.struct(F.col("quantity"), F.col("item_name"))), asc=False
        ).alias("items")
    )


def build_requests(history_rows: Sequence) -> list[LabelRequest]:
    """LabelRequests from collected history rows, in customer order for determinism."""
    requests = []
    for row in sorted(history_rows, key=lambda r: r["customer_id"]):
        items = tuple((it["item_name"], int(it["quantity"])) for it in row["items"])
        requests.append(LabelRequest(request_key(row["customer_id"]), row["customer_id"], items))
    return requests


def label_customers(
    purchases: DataFrame,
    customers: DataFrame,
    catalog: Catalog,
    labeler: Labeler,
) -> tuple[DataFrame, LabelingReport]:
    """Label the given customers; returns labels DataFrame[customer_id, persona] and counts.

    Only the chosen customers' histories reach the driver (tau of them, a few percent).
    """
    rows = histories(purchases, customers).collect()
    requests = build_requests(rows)
    results = labeler.label(requests, catalog)
    by_key = {r.key: r for r in results}
    report = LabelingReport(requested=len(requests), backend=labeler.name)
    records: list[tuple[str, str]] = []
    for req in requests:
        result = by_key.get(req.key)
        if result is None or result.status == "failed":
            report.failed += 1
        elif result.status == "unrepresentable":
            report.unrepresentable += 1
        else:
            report.labeled += 1
            records.extend((req.customer_id, p) for p in result.personas)
    report.labels = len(records)
    stats = getattr(labeler, "last_stats", None)  # LLM backends: calls, tokens, cost, rejections
    if stats is not None and callable(getattr(stats, "as_dict", None)):
        report.extra.update({f"llm_{k}": v for k, v in stats.as_dict().items()})
    spark = purchases.sparkSession
    frame = pd.DataFrame(records, columns=["customer_id", "persona"], dtype="object")
    labels = spark.createDataFrame(frame, schema=LABEL_SCHEMA)
    return labels, report


def label_items(item_names: Sequence[str], catalog: Catalog, labeler: Labeler) -> list[LabelResult]:
    """Personas per product name (for the recommender's item-persona edges), same validation.

    Backends with an item prompt (``label_items``, the LLM) use it; the others label each
    product as a one-product history keyed by ``item_key``.
    """
    method = getattr(labeler, "label_items", None)
    if callable(method):
        return list(method(item_names, catalog))
    requests = [LabelRequest(item_key(name), "", ((name, 1),)) for name in item_names]
    return labeler.label(requests, catalog)


# ---------------------------------------------------------------------------------------------
# The LLM jobs' bodies: catalog generation and item labeling (jobs/ are thin shells over these)
# ---------------------------------------------------------------------------------------------


def sample_histories(
    purchases: DataFrame, n: int, *, seed: int = 191, items_per_customer: int = 30
) -> list[list[tuple[str, int]]]:
    """n random customers' histories (top ``items_per_customer`` products), without ids.

    Only these n short histories reach the driver; the order is the seeded sample's.
    """
    from gplr_spark.sampling import random_prototypes

    pool = random_prototypes(purchases.select("customer_id"), n, seed=seed)
    rows = (
        histories(purchases, pool)
        .select("customer_id", F.slice("items", 1, items_per_customer).alias("items"))
        .collect()
    )
    return [
        [(it["item_name"], int(it["quantity"])) for it in row["items"]]
        for row in sorted(rows, key=lambda r: r["customer_id"])
    ]


def item_names(purchases: DataFrame, limit: int | None = None) -> list[str]:
    """Distinct product names, most buyers first (ties by name); the first ``limit`` of them."""
    ranked = (
        purchases.groupBy("item_name")
        .agg(F.countDistinct("customer_id").alias("n_users"))
        .orderBy(F.desc("n_users"), "item_name")
    )
    if limit is not None:
        ranked = ranked.limit(limit)
    return [r["item_name"] for r in ranked.collect()]


@dataclass
class ItemLabelingResult:
    """What the item labeling job did: counts per status, where the CSV went, LLM stats."""

    path: str
    backend: str
    counts: Counter[str]
    stats: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        line = (
            f"item labels ({self.backend}): {sum(self.counts.values()):,} products, "
            f"{self.counts['labeled']:,} labeled, {self.counts['unrepresentable']:,} "
            f"unrepresentable, {self.counts['failed']:,} failed -> {self.path}"
        )
        if self.stats:
            s = self.stats
            line += (
                f"\n  llm: {int(s.get('http_calls', 0)):,} calls, "
                f"{int(s.get('from_store', 0)):,} from the store, "
                f"${s.get('cost_usd', 0.0):.4f}"
            )
        return line


def write_item_labels(
    names: Sequence[str], results: Sequence[LabelResult], path: str | Path
) -> None:
    """CSV item_name, personas ('|'-joined), status, detail: the item_labels.csv layout."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_name", "personas", "status", "detail"])
        for name, res in zip(names, results, strict=True):
            writer.writerow([name, "|".join(res.personas), res.status, res.detail])


def run_item_labeling(
    purchases: DataFrame,
    catalog: Catalog,
    labeler: Labeler,
    path: str | Path,
    *,
    limit: int | None = None,
) -> ItemLabelingResult:
    """Label the (most bought) products of ``purchases`` and write them to a CSV."""
    names = item_names(purchases, limit)
    results = label_items(names, catalog, labeler)
    write_item_labels(names, results, path)
    stats = getattr(labeler, "last_stats", None)
    return ItemLabelingResult(
        path=str(path),
        backend=labeler.name,
        counts=Counter(r.status for r in results),
        stats=stats.as_dict() if stats is not None else {},
    )


@dataclass
class CatalogGenerationResult:
    """A generated catalog, where it was written, from how many customers, at what cost."""

    catalog: Catalog
    path: str
    customers: int
    stats: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        prov = self.catalog.provenance
        lines = [
            f"catalog {self.catalog.version}: {len(self.catalog)} personas from "
            f"{self.customers:,} sampled customers -> {self.path}",
            f"  model {prov.get('model', '?')}, prompts {prov.get('prompts_hash', '?')}: "
            f"{prov.get('counts', '')}",
        ]
        lines += [f"  {p.name}: {p.definition}" for p in self.catalog]
        return "\n".join(lines)


def run_catalog_generation(
    purchases: DataFrame, client: LLMClient, gen: CatalogGenerationConfig, path: str | Path
) -> CatalogGenerationResult:
    """Sample customers, run the paper's three generation steps, write the catalog CSV.

    The pool is ``proposals x customers_per_proposal`` customers (at most all of them);
    each proposal samples ``customers_per_proposal`` from it.
    """
    from gplr_spark.personas import generate_catalog

    n = gen.proposals * gen.customers_per_proposal
    sampled = sample_histories(
        purchases, n, seed=gen.seed, items_per_customer=gen.items_per_customer
    )
    before = client.spent_usd
    catalog = generate_catalog(sampled, client, gen)
    catalog.to_csv(path)
    stats = {"cost_usd": client.spent_usd - before}
    return CatalogGenerationResult(catalog, str(path), len(sampled), stats)
