"""report: one self-contained HTML page (PNG plots inlined as base64) for one run.

Plots are matplotlib Figure objects rendered by the Agg canvas: no pyplot state, no display.
Reads only the run's Delta tables (plus, optionally, the purchases for one customer's
history). Spark does the aggregation; only persona-level aggregates, histogram bins and one
customer's rows reach the driver, so the report costs the same for 4k or 40M customers.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from gplr_spark import sinks

TABLE_NAMES = (
    "customer_personas",
    "persona_catalog",
    "persona_segments",
    "persona_evidence",
    "persona_runs",
)
SOURCE_COLORS = {"llm": "#d95f02", "inferred": "#1b9e77"}


class ReportError(ValueError):
    """The tables do not hold the requested run (or customer)."""


@dataclass
class RunTables:
    """One run's rows of the five tables, as DataFrames (run_id already filtered)."""

    run_id: str
    tables: dict[str, DataFrame]

    def __getitem__(self, name: str) -> DataFrame:
        return self.tables[name]


@dataclass
class Report:
    """The rendered page and what it shows."""

    run_id: str
    customer_id: str | None
    html: str
    plots: list[str] = field(default_factory=list)
    path: str | None = None

    def summary(self) -> str:
        where = self.path or "(not written)"
        return (
            f"report for run {self.run_id}: {len(self.plots)} plots "
            f"({', '.join(self.plots)}), customer {self.customer_id}, {where}"
        )


def load_run(
    spark: SparkSession,
    base_path: str,
    run_id: str | None = None,
    *,
    catalog: str | None = None,
    schema: str | None = None,
) -> RunTables:
    """The run's rows of every table under ``base_path``; no run_id = the latest finished."""
    frames = {
        name: sinks.read_table(spark, sinks.location(base_path, name, catalog, schema))
        for name in TABLE_NAMES
    }
    runs = frames["persona_runs"]
    runs_at = sinks.location(base_path, "persona_runs", catalog, schema).ref
    if run_id is None:
        latest = runs.orderBy(F.desc("finished_at"), F.desc("run_id")).select("run_id").first()
        if latest is None:
            raise ReportError(f"no runs in {runs_at}")
        run_id = str(latest["run_id"])
    elif runs.where(F.col("run_id") == run_id).limit(1).count() == 0:
        known = [r["run_id"] for r in runs.select("run_id").distinct().limit(20).collect()]
        raise ReportError(f"run {run_id!r} is not in {runs_at} (have {known})")
    return RunTables(run_id, {n: df.where(F.col("run_id") == run_id) for n, df in frames.items()})


# ---------------------------------------------------------------------------------------------
# Plots: each takes small, already aggregated Python data and returns a Figure
# ---------------------------------------------------------------------------------------------


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_distribution(counts: dict[str, dict[str, int]]) -> Figure:
    """Customers per persona, stacked by source (LLM-labelled prototypes vs inferred)."""
    personas = sorted(counts, key=lambda p: sum(counts[p].values()))
    fig = Figure(figsize=(8, 0.32 * len(personas) + 1.2))
    ax = fig.subplots()
    left = np.zeros(len(personas))
    for source in ("llm", "inferred"):
        values = np.array([counts[p].get(source, 0) for p in personas], dtype=float)
        ax.barh(personas, values, left=left, color=SOURCE_COLORS[source], label=source)
        left += values
    ax.set_xlabel("customers holding the persona")
    ax.set_title("Persona distribution: LLM labels vs inferred")
    ax.legend(loc="lower right")
    return fig


def plot_score_histograms(bins: dict[str, list[tuple[float, int]]]) -> Figure:
    """Histograms of log10 score, rank 1 vs ranks 2..k of inferred customers.

    The score is the affinity under ``assign.method = top_k`` and the calibrated
    probability of the persona under ``calibrated``."""
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    width = 0.1
    for label, rows in bins.items():
        if rows:
            xs, ys = zip(*rows, strict=True)
            ax.bar(np.array(xs) + width / 2, ys, width=width, alpha=0.6, label=label)
    ax.set_xlabel("log10 score (top_k: affinity; calibrated: probability)")
    ax.set_ylabel("customer-persona rows")
    ax.set_title("Scores of inferred personas")
    ax.legend()
    return fig


def plot_cooccurrence(personas: list[str], matrix: np.ndarray) -> Figure:
    """Jaccard overlap of persona segments (customers holding both / either)."""
    fig = Figure(figsize=(8.5, 7.5))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="viridis", vmin=0)
    ax.set_xticks(range(len(personas)), personas, rotation=90, fontsize=7)
    ax.set_yticks(range(len(personas)), personas, fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.7, label="Jaccard overlap")
    ax.set_title("Persona co-occurrence")
    return fig


def plot_segments(rows: list[dict[str, Any]]) -> Figure:
    """Segment size against segment revenue, one labelled point per persona."""
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    xs = [r["customers"] for r in rows]
    ys = [r["revenue"] or 0.0 for r in rows]
    ax.scatter(xs, ys, color="#7570b3")
    if xs and min(xs) > 0 and min(ys) > 0:  # sizes span orders of magnitude
        ax.set_xscale("log")
        ax.set_yscale("log")
    for r, x, y in zip(rows, xs, ys, strict=True):
        ax.annotate(r["persona"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("customers in segment")
    ax.set_ylabel("revenue of segment customers")
    ax.set_title("Segment size vs revenue")
    ax.grid(alpha=0.3)
    return fig


def plot_evidence(customer_id: str, rows: list[dict[str, Any]]) -> Figure:
    """One customer's evidence: each persona's items and their contributions."""
    labels = [f"{r['persona']}  <-  {r['item_name']}"[:90] for r in rows]
    personas = sorted({r["persona"] for r in rows})
    palette = matplotlib.colormaps["tab10"]
    colors = [palette(personas.index(r["persona"]) % 10) for r in rows]
    fig = Figure(figsize=(9, 0.28 * len(rows) + 1.2))
    ax = fig.subplots()
    ax.barh(range(len(rows)), [r["contribution"] for r in rows], color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("contribution to the persona's affinity")
    ax.set_title(f"Why customer {customer_id} holds each persona")
    return fig


STAGE_ORDER = (
    "ingest",
    "graph",
    "sampling",
    "labeling",
    "affinity",
    "assign",
    "evidence",
    "segments",
    "sinks",
)


def plot_timings(timings: dict[str, float]) -> Figure:
    """Seconds per pipeline stage, in pipeline order."""
    known = [s for s in STAGE_ORDER if s in timings]
    stages = known + sorted(set(timings) - set(known))
    fig = Figure(figsize=(8, 0.3 * len(stages) + 1.2))
    ax = fig.subplots()
    ax.barh(stages, [timings[s] for s in stages], color="#66a61e")
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("Run timings per stage")
    return fig


# ---------------------------------------------------------------------------------------------
# Aggregation (Spark) and page assembly
# ---------------------------------------------------------------------------------------------


def persona_counts(personas: DataFrame) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in personas.groupBy("persona", "source").count().collect():
        out.setdefault(r["persona"], {})[r["source"]] = int(r["count"])
    return out


def score_bins(personas: DataFrame) -> dict[str, list[tuple[float, int]]]:
    """Histogram bins (0.1 wide in log10) computed in Spark."""
    rows = (
        personas.where("source = 'inferred' AND score > 0")
        .select(
            F.when(F.col("rank") == 1, "rank 1").otherwise("ranks 2..k").alias("group"),
            (F.floor(F.log10("score") * 10) / 10).alias("bin"),
        )
        .groupBy("group", "bin")
        .count()
        .orderBy("group", "bin")
        .collect()
    )
    bins: dict[str, list[tuple[float, int]]] = {"rank 1": [], "ranks 2..k": []}
    for r in rows:
        bins[r["group"]].append((float(r["bin"]), int(r["count"])))
    return bins


def cooccurrence(personas: DataFrame) -> tuple[list[str], np.ndarray]:
    """Persona x persona Jaccard overlap of their customer sets, diagonal 1."""
    pairs = personas.select("customer_id", "persona").distinct()
    both = (
        pairs.alias("a")
        .join(pairs.alias("b"), "customer_id")
        .groupBy(F.col("a.persona").alias("p"), F.col("b.persona").alias("q"))
        .count()
        .collect()
    )
    names = sorted({r["p"] for r in both})
    index = {n: i for i, n in enumerate(names)}
    inter = np.zeros((len(names), len(names)))
    for r in both:
        inter[index[r["p"]], index[r["q"]]] = r["count"]
    size = np.diag(inter)
    union = size[:, None] + size[None, :] - inter
    return names, np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def pick_customer(tables: RunTables) -> str | None:
    """The inferred customer with the most evidence rows (ties: smallest id)."""
    inferred = tables["customer_personas"].where("source = 'inferred'").select("customer_id")
    row = (
        tables["persona_evidence"]
        .join(inferred.distinct(), "customer_id")
        .groupBy("customer_id")
        .count()
        .orderBy(F.desc("count"), "customer_id")
        .first()
    )
    return None if row is None else str(row["customer_id"])


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list):
            return html.escape(", ".join(map(str, v)))
        return html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(name: str, fig: Figure, alt: str) -> str:
    return (
        f'<figure id="{name}"><img alt="{html.escape(alt)}" '
        f'src="data:image/png;base64,{_png(fig)}"/></figure>'
    )


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
figure{margin:.5em 0} img{max-width:100%} .note{color:#666;font-size:.85em}
"""


def build_report(
    tables: RunTables,
    *,
    customer_id: str | None = None,
    purchases: DataFrame | None = None,
    history_items: int = 25,
) -> Report:
    """Render the page for ``tables``; ``purchases`` (optional) lists the customer's items."""
    personas = tables["customer_personas"]
    run = tables["persona_runs"].first()
    if run is None:
        raise ReportError(f"run {tables.run_id} has no persona_runs row")
    sections: list[str] = []
    plots: list[str] = []

    def add_plot(name: str, title: str, fig: Figure, note: str = "") -> None:
        plots.append(name)
        sections.append(f"<h2>{html.escape(title)}</h2>")
        if note:
            sections.append(f'<p class="note">{html.escape(note)}</p>')
        sections.append(_figure(name, fig, title))

    counts = persona_counts(personas)
    add_plot(
        "distribution",
        "Persona distribution (inferred vs LLM)",
        plot_distribution(counts),
        "Prototype customers keep their LLM labels; all others get the personas that "
        "assign.method chooses from their affinity row (calibrated: the expected-F1 set; "
        "top_k: the k largest).",
    )
    add_plot("scores", "Affinity score histograms", plot_score_histograms(score_bins(personas)))
    names, jaccard = cooccurrence(personas)
    add_plot("cooccurrence", "Persona co-occurrence", plot_cooccurrence(names, jaccard))

    seg_rows = [
        r.asDict() for r in tables["persona_segments"].orderBy(F.desc("customers")).collect()
    ]
    add_plot("segments", "Segment size vs revenue", plot_segments(seg_rows))
    sections.append(
        _table(seg_rows, ["persona", "customers", "share", "revenue", "revenue_share", "top_items"])
    )

    chosen = customer_id or pick_customer(tables)
    if chosen is not None:
        mine = personas.where(F.col("customer_id") == chosen).orderBy("rank")
        held = [r.asDict() for r in mine.collect()]
        if not held:
            raise ReportError(f"customer {chosen!r} has no personas in run {tables.run_id}")
        order = {r["persona"]: r["rank"] for r in held}
        ev = [
            r.asDict()
            for r in tables["persona_evidence"].where(F.col("customer_id") == chosen).collect()
        ]
        ev.sort(key=lambda r: (order.get(r["persona"], 99), -r["contribution"]))
        title = f"Customer {chosen}: personas and evidence"
        if ev:
            add_plot("customer", title, plot_evidence(chosen, ev))
        else:
            sections.append(f"<h2>{html.escape(title)}</h2><p>No evidence rows.</p>")
        sections.append(_table(held, ["rank", "persona", "score", "source"]))
        sections.append(_table(ev, ["persona", "item_name", "contribution"]))
        if purchases is not None:
            items = (
                purchases.where(F.col("customer_id") == chosen)
                .groupBy("item_name")
                .agg(F.sum("quantity").alias("quantity"))
                .orderBy(F.desc("quantity"), "item_name")
                .limit(history_items)
                .collect()
            )
            sections.append(f"<p>Top {len(items)} items bought (by quantity):</p>")
            sections.append(_table([r.asDict() for r in items], ["item_name", "quantity"]))

    timings = dict(run["timings"] or {})
    if timings:
        add_plot("timings", "Run costs and timings", plot_timings(timings))
    labeling = json.loads(run["labeling"] or "{}")
    affinity = json.loads(run["affinity"] or "{}")
    cost_rows = [
        {"what": "labeler backend", "value": run["labeler_backend"]},
        {"what": "eps (error bound per affinity)", "value": run["eps"]},
        {"what": "walk length", "value": run["walk_length"]},
        {
            "what": "affinity max / median row max",
            "value": "{:.3g} / {:.3g}".format(
                affinity.get("max_affinity", 0.0), affinity.get("median_row_max", 0.0)
            ),
        },
        {"what": "LLM HTTP calls", "value": labeling.get("llm_http_calls", 0)},
        {"what": "LLM prompt tokens", "value": labeling.get("llm_prompt_tokens", 0)},
        {"what": "LLM completion tokens", "value": labeling.get("llm_completion_tokens", 0)},
        {"what": "LLM cost (USD)", "value": labeling.get("llm_cost_usd", 0.0)},
        *(
            {"what": f"labeling {k}", "value": v}
            for k, v in sorted(labeling.items())
            if k != "backend" and not k.startswith("llm_")
        ),
        *({"what": k, "value": v} for k, v in sorted(dict(run["counts"] or {}).items())),
        {"what": "total seconds", "value": round(sum(timings.values()), 1)},
    ]
    sections.append(_table(cost_rows, ["what", "value"]))

    started, finished = run["started_at"], run["finished_at"]
    header = (
        f"<h1>GPLR personas: run {html.escape(tables.run_id)}</h1>"
        f'<p class="note">started {started}, finished {finished}, catalog '
        f"{html.escape(str(run['catalog_version']))}, input "
        f"{html.escape(str(run['input_source']))}; generated "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC</p>"
    )
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>GPLR report {html.escape(tables.run_id)}</title><style>{STYLE}</style></head>"
        f"<body>{header}{''.join(sections)}</body></html>"
    )
    return Report(tables.run_id, chosen, page, plots)


def write_report(report: Report, path: str | Path) -> Report:
    """Write the page (one file, nothing else needed to open it)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.html, encoding="utf-8")
    report.path = str(out)
    return report


def report_for_config(spark: SparkSession, cfg: Any) -> Report:
    """The job's body: the run of ``cfg.output.run_id`` (or the latest) to ``cfg.report.path``."""
    out = cfg.output
    tables = load_run(spark, cfg.output_base(), out.run_id, catalog=out.catalog, schema=out.schema_)
    chosen = cfg.report.customer_id or pick_customer(tables)
    purchases = None
    if cfg.report.history and chosen is not None:
        purchases = customer_history(cfg, tables["customer_personas"].sparkSession, chosen)
    report = build_report(tables, customer_id=chosen, purchases=purchases)
    return write_report(report, cfg.resolve(cfg.report.path))


def customer_history(cfg: Any, spark: SparkSession, customer_id: str) -> DataFrame:
    """One customer's cleaned purchase lines, read from the run's configured input.

    Cleaning is row-wise (plus exact duplicates), so filtering first gives the same rows.
    """
    from gplr_spark import ingest

    mapping = ingest.ColumnMapping.from_file(cfg.resolve(cfg.input.mapping))
    raw = ingest.read_source(spark, cfg.source(), cfg.input.format)
    lines = ingest.to_canonical(raw, mapping, cfg.source()).where(
        F.col("customer_id") == customer_id
    )
    return ingest.clean(lines, mapping, cfg.cleaning)[0]
