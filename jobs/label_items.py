"""Label products with 1-5 personas each (one call per product name), for recommender tests.

python jobs/label_items.py --config conf/online_retail.toml [--limit 500] \
    [--output output/item_personas.csv] [--set labeler.backend=openai]

The backend is labeler.backend: ``openai`` (any OpenAI-compatible endpoint; key in the
variable named by labeler.api_key_env), ``offline`` (no network), or ``auto`` (openai when
the key is set, else offline). LLM answers are validated and stored like customer labels, so
a rerun pays for nothing. Output: CSV item_name, personas ('|'-joined), status, detail.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from gplr_spark.config import ConfigError, load_config

DEFAULT_CONFIG = Path("conf/online_retail.toml")
DEFAULT_OUTPUT = "output/item_personas.csv"
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def fail(message: str) -> typer.Exit:
    """Print one line to stderr; the caller raises the returned Exit(1)."""
    typer.echo(f"error: {message}".splitlines()[0], err=True)
    return typer.Exit(1)


@app.command()
def main(
    config: Annotated[Path, typer.Option(help="TOML config file")] = DEFAULT_CONFIG,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override, e.g. --set labeler.backend=offline"),
    ] = None,
    output: Annotated[str, typer.Option(help="item labels CSV")] = DEFAULT_OUTPUT,
    limit: Annotated[
        int | None, typer.Option(min=1, help="only the N products with the most buyers")
    ] = None,
    verbose: Annotated[bool, typer.Option(help="log each LLM run")] = False,
) -> None:
    """Give every product (or the --limit most bought) 1..item_max_personas personas."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    from gplr_spark.pipeline import make_labeler

    try:
        cfg = load_config(config, list(set_ or []))
        if cfg.labeler.backend == "recorded":
            raise ConfigError(
                "labeler.backend 'recorded' replays customer labels only: label items with "
                "'openai' or 'offline'"
            )
        labeler = make_labeler(cfg)  # fails here, before Spark, when the key is missing
    except (ConfigError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    from gplr_spark.ingest import load_purchases
    from gplr_spark.labeling import run_item_labeling
    from gplr_spark.personas import Catalog
    from gplr_spark.session import get_spark

    try:
        catalog = Catalog.from_csv(cfg.resolve(cfg.catalog.path))
        spark = get_spark("gplr-label_items")
        purchases, _ = load_purchases(
            spark,
            cfg.source(),
            cfg.resolve(cfg.input.mapping),
            cfg.cleaning,
            cfg.input.format,
        )
        result = run_item_labeling(purchases, catalog, labeler, cfg.resolve(output), limit=limit)
    except Exception as err:  # one line for the scheduler's log, then non-zero
        raise fail(f"{type(err).__name__}: {err}") from None
    typer.echo(result.summary())
    if result.counts["failed"] and result.counts["failed"] == sum(result.counts.values()):
        raise fail(f"every product failed ({result.stats})")


if __name__ == "__main__":
    app()
