"""Notebook helpers: Databricks widgets (or a local stand-in) mapped onto config overrides.

The notebooks in notebooks/ call only these and the package. On Databricks ``dbutils`` is
the real one; elsewhere ``LocalDbutils`` keeps widget values in a dict (defaults, then
``GPLR_WIDGET_<NAME>`` environment variables, then explicit values). Widget values become
``section.key=value`` overrides, the same path as the jobs' ``--set``, so a bad value fails
with the same one-line ConfigError naming the key.

``run_notebook`` executes a Databricks source-format notebook locally, cell by cell.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gplr_spark.config import RunConfig, load_config

CELL_SEPARATOR = "# COMMAND ----------"
HEADER = "# Databricks notebook source"


# Widget name -> config key, shared by the notebooks so a widget means the same everywhere.
WIDGET_KEYS: dict[str, str] = {
    "input_source": "input.source",
    "output_path": "output.path",
    "output_catalog": "output.catalog",
    "output_schema": "output.schema",
    "run_id": "output.run_id",
    "labeler": "labeler.backend",
    "sample_rate": "sampling.sample_rate",
    "eps": "affinity.eps",
    "walk_length": "affinity.walk_length",
    "beta": "affinity.beta",
    "assign_method": "assign.method",
    "k": "assign.k",
    "evidence_top_n": "evidence.top_n",
    "customer_id": "report.customer_id",
    "report_path": "report.path",
}


class LocalWidgets:
    """The subset of ``dbutils.widgets`` the notebooks use, backed by a dict."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._given = dict(values or {})
        self._values: dict[str, str] = {}

    def _define(self, name: str, default: str) -> None:
        env = os.environ.get(f"GPLR_WIDGET_{name.upper()}")
        value = self._given.get(name, env if env is not None else default)
        self._values[name] = "" if value is None else str(value)

    def text(self, name: str, defaultValue: str = "", label: str | None = None) -> None:
        self._define(name, defaultValue)

    def dropdown(
        self,
        name: str,
        defaultValue: str,
        choices: list[str],
        label: str | None = None,
    ) -> None:
        self._define(name, defaultValue)
        if self._values[name] not in choices:
            raise ValueError(f"widget {name!r}: {self._values[name]!r} is not one of {choices}")

    combobox = text

    def get(self, name: str) -> str:
        if name not in self._values:
            raise KeyError(f"no widget named {name!r}; define it first")
        return self._values[name]

    getArgument = get

    def remove(self, name: str) -> None:
        self._values.pop(name, None)

    def removeAll(self) -> None:
        self._values.clear()


class LocalNotebookUtils:
    """``dbutils.notebook.exit``: records the value instead of stopping the notebook."""

    def __init__(self) -> None:
        self.exit_value: str | None = None

    def exit(self, value: str) -> None:
        self.exit_value = value


class LocalDbutils:
    """A minimal ``dbutils`` for running the notebooks outside Databricks."""

    def __init__(self, widgets: Mapping[str, str] | None = None) -> None:
        self.widgets = LocalWidgets(widgets)
        self.notebook = LocalNotebookUtils()


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def get_dbutils(namespace: Mapping[str, Any] | None = None, spark: Any = None) -> Any:
    """The notebook's ``dbutils``: the one already in scope, Databricks', or a LocalDbutils."""
    if namespace is not None and namespace.get("dbutils") is not None:
        return namespace["dbutils"]
    if on_databricks() and spark is not None:  # pragma: no cover - needs a Databricks runtime
        from pyspark.dbutils import DBUtils  # type: ignore[import-not-found]

        return DBUtils(spark)
    return LocalDbutils()


def display_html(html: str, namespace: Mapping[str, Any] | None = None) -> None:
    """Databricks' ``displayHTML`` when there is one, else a one-line note."""
    show = (namespace or {}).get("displayHTML")
    if callable(show):
        show(html)
    else:
        print(f"(HTML output, {len(html):,} characters: open the written file in a browser)")


def show(df: Any, namespace: Mapping[str, Any] | None = None, rows: int = 20) -> None:
    """Databricks' ``display`` when there is one, else ``DataFrame.show``."""
    display = (namespace or {}).get("display")
    if callable(display):
        display(df)
    else:
        df.show(rows, truncate=60)


def widget_overrides(dbutils: Any, keys: Mapping[str, str] | None = None) -> list[str]:
    """``config.key=value`` overrides from widgets {widget name: config key}; empty = unset.

    Values are passed as written (TOML syntax if they parse, numbers, booleans, quoted
    strings; bare text otherwise), exactly like ``--set``. Widgets the notebook did not
    define are skipped. ``keys`` defaults to WIDGET_KEYS.
    """
    out = []
    for widget, key in (WIDGET_KEYS if keys is None else keys).items():
        try:
            value = str(dbutils.widgets.get(widget)).strip()
        except Exception:  # undefined widget: Databricks raises its own error type
            continue
        if value:
            out.append(f"{key}={value}")
    return out


def config_from_widgets(
    dbutils: Any, keys: Mapping[str, str] | None = None, config_widget: str = "config"
) -> RunConfig:
    """Load the config named by the ``config`` widget, overridden by the other widgets."""
    from gplr_spark.session import REPO_ROOT

    path = Path(dbutils.widgets.get(config_widget).strip() or "conf/online_retail.toml")
    if not path.is_absolute():
        path = REPO_ROOT / path
    return load_config(path, widget_overrides(dbutils, keys))


def cells(path: str | Path) -> list[str]:
    """The code cells of a Databricks source-format notebook (markdown/magic cells skipped)."""
    text = Path(path).read_text()
    if not text.startswith(HEADER):
        raise ValueError(f"{path} is not a Databricks source notebook (no {HEADER!r} line)")
    body = text[len(HEADER) :]
    chunks = [c.strip("\n") for c in body.split(CELL_SEPARATOR)]
    return [c for c in chunks if c.strip() and not c.lstrip().startswith("# MAGIC")]


def run_notebook(path: str | Path, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute a notebook's code cells in order in one namespace (returned), like a cluster."""
    scope: dict[str, Any] = {"__name__": "__notebook__"} if namespace is None else namespace
    scope.setdefault("__name__", "__notebook__")
    for number, source in enumerate(cells(path), start=1):
        code = compile(source, f"{path}#cell{number}", "exec")
        exec(code, scope)
    return scope


def main(argv: list[str] | None = None) -> int:
    """``python -m gplr_spark.notebook NOTEBOOK [widget=value ...]``: run a notebook locally."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m gplr_spark.notebook NOTEBOOK [widget=value ...]", file=sys.stderr)
        return 2
    widgets = dict(a.split("=", 1) for a in args[1:])
    run_notebook(args[0], {"dbutils": LocalDbutils(widgets)})
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
