"""The jobs' shared command line: --config, repeated --set overrides, --run-id.

Configuration is validated before Spark starts; any failure prints one line and exits 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from gplr_spark.config import ConfigError, RunConfig, load_config

DEFAULT_CONFIG = Path("conf/online_retail.toml")


def job_app(name: str, body: Callable[..., Any], help_text: str) -> typer.Typer:
    """A one-command Typer app that loads config, starts Spark and runs ``body(spark, cfg)``."""
    app = typer.Typer(add_completion=False, help=help_text, pretty_exceptions_enable=False)

    @app.command(name=name, help=help_text)
    def main(
        config: Annotated[Path, typer.Option(help="TOML config file")] = DEFAULT_CONFIG,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help="override, e.g. --set affinity.eps=1e-4 (repeatable)"),
        ] = None,
        run_id: Annotated[str | None, typer.Option(help="run id; reruns replace it")] = None,
        verbose: Annotated[bool, typer.Option(help="log each stage")] = False,
    ) -> None:
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING, format="%(message)s"
        )
        overrides = list(set_ or [])
        if run_id:
            overrides.append(f"output.run_id={run_id!r}".replace("'", '"'))
        try:
            cfg: RunConfig = load_config(config, overrides)
        except ConfigError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        from gplr_spark.session import get_spark

        try:
            spark = get_spark(f"gplr-{name}")
            result = body(spark, cfg)
        except Exception as err:  # one line for the scheduler's log, then non-zero
            typer.echo(f"error: {type(err).__name__}: {err}".splitlines()[0], err=True)
            raise typer.Exit(1) from None
        summary = getattr(result, "summary", None)
        typer.echo(summary() if callable(summary) else str(result))

    return app


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run a job from jobs/")
