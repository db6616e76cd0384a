"""Generate a persona catalog with an LLM: the paper's three steps (propose, merge, final).

python jobs/generate_catalog.py --config conf/online_retail.toml \
    [--set catalog.generation.proposals=40] [--output output/catalogs/generated.csv]

Needs an OpenAI-compatible endpoint (labeler.base_url, labeler.model) and its key in the
environment variable named by labeler.api_key_env (OPENAI_API_KEY by default); without a
key it stops with one line before Spark starts. Every answer goes through the label store,
so a rerun with the same seed and data pays for nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from gplr_spark.config import ConfigError, load_config

DEFAULT_CONFIG = Path("conf/online_retail.toml")
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
        typer.Option("--set", help="override, e.g. --set catalog.generation.proposals=10"),
    ] = None,
    output: Annotated[
        str | None, typer.Option(help="catalog CSV (default catalog.generation.output)")
    ] = None,
    verbose: Annotated[bool, typer.Option(help="log each LLM run")] = False,
) -> None:
    """Generate a persona catalog (name, definition, provenance) from sampled customers."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    try:
        cfg = load_config(config, list(set_ or []))
    except ConfigError as err:
        raise fail(str(err)) from None
    lab = cfg.labeler
    if not os.environ.get(lab.api_key_env):
        raise fail(
            f"catalog generation needs an LLM: set the environment variable {lab.api_key_env} "
            f"(named by labeler.api_key_env) to the key of {lab.base_url or 'api.openai.com'}"
        )
    from gplr_spark.ingest import load_purchases
    from gplr_spark.labeling import run_catalog_generation
    from gplr_spark.llm import LLMClient
    from gplr_spark.session import get_spark

    try:
        client = LLMClient.from_config(lab, store_root=cfg.resolve(lab.store_path))
        spark = get_spark("gplr-generate_catalog")
        purchases, _ = load_purchases(
            spark,
            cfg.source(),
            cfg.resolve(cfg.input.mapping),
            cfg.cleaning,
            cfg.input.format,
        )
        path = cfg.resolve(output or cfg.catalog.generation.output)
        result = run_catalog_generation(purchases, client, cfg.catalog.generation, path)
    except Exception as err:  # one line for the scheduler's log, then non-zero
        raise fail(f"{type(err).__name__}: {err}") from None
    typer.echo(result.summary())


if __name__ == "__main__":
    app()
