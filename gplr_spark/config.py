"""The typed run configuration: one pydantic model, loaded from TOML, overridable per key.

Invalid configuration fails here, before Spark starts, with the offending key named.
Secrets (API keys) never live in this object or in files: they come from the environment.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gplr_spark.session import REPO_ROOT


class ConfigError(ValueError):
    """A configuration problem, with the key that caused it in the message."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputConfig(_Strict):
    """Where purchases come from and how their columns map onto the canonical schema."""

    source: str = "data/online_retail/online_retail.parquet"
    format: Literal["auto", "parquet", "csv", "delta", "table"] = "auto"
    mapping: str = "conf/mappings/online_retail.toml"


class CleaningConfig(_Strict):
    """Each rule can be switched off; every rule's removed-row count is reported."""

    drop_null_customer: bool = True
    drop_null_item: bool = True
    drop_cancellations: bool = True
    drop_non_positive_quantity: bool = True
    drop_non_positive_price: bool = True
    drop_non_product: bool = True
    drop_excluded_countries: bool = True
    drop_duplicates: bool = True


class CatalogGenerationConfig(_Strict):
    """LLM catalog generation (paper, Appendix B): proposals -> merges -> final set."""

    proposals: int = Field(40, ge=1)
    customers_per_proposal: int = Field(100, ge=1)
    personas_per_proposal: int = Field(20, ge=1)
    merges: int = Field(8, ge=1)
    sets_per_merge: int = Field(5, ge=1)
    final_size: int = Field(20, ge=1)
    items_per_customer: int = Field(30, ge=1)
    seed: int = 191
    output: str = "output/catalogs/generated.csv"

    @model_validator(mode="after")
    def _merge_fits(self) -> CatalogGenerationConfig:
        if self.sets_per_merge > self.proposals:
            raise ValueError(
                f"sets_per_merge ({self.sets_per_merge}) exceeds proposals ({self.proposals})"
            )
        return self


class CatalogConfig(_Strict):
    path: str = "data/catalogs/online_retail_paper.csv"
    generation: CatalogGenerationConfig = CatalogGenerationConfig()


class ModelPrice(_Strict):
    """List price of one model in USD per million tokens."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


# List prices (USD per 1M tokens) when this was written: check your contract and override
# with [labeler.prices."model-name"]. A budget needs the configured model in this table.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60),
    "gpt-4o": ModelPrice(input_per_mtok=2.50, output_per_mtok=10.00),
    "gpt-4-turbo": ModelPrice(input_per_mtok=10.00, output_per_mtok=30.00),
    "gpt-4.1": ModelPrice(input_per_mtok=2.00, output_per_mtok=8.00),
    "gpt-4.1-mini": ModelPrice(input_per_mtok=0.40, output_per_mtok=1.60),
    "gpt-4.1-nano": ModelPrice(input_per_mtok=0.10, output_per_mtok=0.40),
}


class LabelerConfig(_Strict):
    """Which backend labels prototypes. ``auto`` = openai if an API key is set, else offline.

    The openai backend's knobs: bounded ``concurrency``, client-side ``rpm``/``tpm`` limits,
    per-request ``timeout_s``, ``max_retries`` on 408/409/429/5xx/timeouts (exponential
    backoff with jitter from ``backoff_initial_s``, Retry-After honoured), up to
    ``max_invalid_retries`` re-asks of a rejected answer, a hard ``budget_usd`` priced by
    ``prices``, histories cut to ``max_prompt_tokens`` (estimated at ``chars_per_token``).
    """

    backend: Literal["auto", "offline", "recorded", "openai"] = "auto"
    max_personas: int = Field(5, ge=1, le=20)
    min_personas: int = Field(1, ge=1)
    recorded_path: str = "data/online_retail_gpt4_labels/user_labels_even_ids.csv"
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(8, ge=1, le=256)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0)
    budget_usd: float | None = Field(None, ge=0)
    store_path: str = "output/label_store"
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    max_prompt_tokens: int = Field(8000, ge=100)
    max_output_tokens: int = Field(300, ge=16)
    chars_per_token: float = Field(3.0, gt=0)
    max_invalid_retries: int = Field(2, ge=0)
    backoff_initial_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    structured_output: Literal["auto", "json_schema", "text"] = "auto"
    temperature: float | None = Field(None, ge=0, le=2)
    item_max_personas: int = Field(5, ge=1, le=20)
    progress: bool = True

    @field_validator("prices")
    @classmethod
    def _keep_default_prices(cls, value: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        """Configured prices add to (and override) the defaults instead of replacing them."""
        return {**DEFAULT_PRICES, **value}


class SamplingConfig(_Strict):
    """Prototype selection: ``sample_rate`` of customers (or ``tau`` of them) over ``rounds``.

    ``strategy = "du"`` (alias ``"diversity_uncertainty"``) spends the budget over ``rounds``
    rounds: the first random, each later one the top s(u) = KL(Qhat || Q_u) + H(Q_u), scored
    on affinities recomputed with de-bias ``du_beta``. ``candidate_pool``, when set, limits
    the choice (either strategy) to the customer_id column of a CSV/Parquet/Delta path or
    table, or to the customers of the recorded labels file with ``"recorded"``.
    """

    strategy: Literal["random", "du", "diversity_uncertainty"] = "random"
    sample_rate: float = Field(0.05, gt=0, le=1)
    tau: int | None = Field(None, ge=1)
    rounds: int = Field(1, ge=1)
    seed: int = 191
    candidate_pool: str | None = None
    du_beta: float = Field(0.0, ge=0)

    @field_validator("strategy")
    @classmethod
    def _short_name(cls, value: str) -> str:
        """One spelling downstream: "diversity_uncertainty" is stored as "du"."""
        return "du" if value == "diversity_uncertainty" else value


class AffinityConfig(_Strict):
    """RevAff: eps = 0 is exact; walk_length l; de-bias strength beta."""

    eps: float = Field(0.0, ge=0)
    walk_length: int = Field(1, ge=1, le=10)
    beta: float = Field(0.5, ge=0)
    engine: Literal["matrix", "long"] = "matrix"
    partitions: int | None = Field(None, ge=1)


class AssignConfig(_Strict):
    """How affinities become each customer's personas (prototypes keep their labels).

    ``method = "calibrated"`` (default): a logistic model per (customer, persona), fit on
    out-of-fold prototype affinities (``folds`` folds, L2 strength ``l2``), then per
    customer the set of 1..``max_k`` personas maximizing plug-in expected F1. With
    ``item_labels`` (a CSV of LLM item labels) the item-label vote shares are features too.
    ``method = "top_k"``: the paper's fixed ``k`` largest affinities.
    """

    method: Literal["calibrated", "top_k"] = "calibrated"
    k: int = Field(5, ge=1, le=50)
    folds: int = Field(5, ge=2, le=50)
    l2: float = Field(1.0, gt=0)
    max_k: int = Field(8, ge=1, le=50)
    item_labels: str | None = None

    @field_validator("item_labels")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        """``--set assign.item_labels=""`` switches item labels off."""
        return value or None


class EvidenceConfig(_Strict):
    """persona_evidence keeps the ``top_n`` items that carried each assigned persona."""

    top_n: int = Field(5, ge=1, le=100)


class SegmentsConfig(_Strict):
    """persona_segments lists each segment's ``top_items`` strongest evidence items."""

    top_items: int = Field(10, ge=1, le=100)


class ReportConfig(_Strict):
    """The HTML report: where it goes, which customer it explains (default: a busy one)."""

    path: str = "output/report.html"
    customer_id: str | None = None
    history: bool = True


class OutputConfig(_Strict):
    """Delta tables go under ``path``; with ``schema`` set they are also registered by name."""

    path: str = "output/delta"
    catalog: str | None = None
    schema_: str | None = Field(None, alias="schema")
    run_id: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RunConfig(_Strict):
    """Everything a GPLR run needs, with the paper's defaults."""

    input: InputConfig = InputConfig()
    cleaning: CleaningConfig = CleaningConfig()
    catalog: CatalogConfig = CatalogConfig()
    labeler: LabelerConfig = LabelerConfig()
    sampling: SamplingConfig = SamplingConfig()
    affinity: AffinityConfig = AffinityConfig()
    assign: AssignConfig = AssignConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    segments: SegmentsConfig = SegmentsConfig()
    output: OutputConfig = OutputConfig()
    report: ReportConfig = ReportConfig()

    @field_validator("input")
    @classmethod
    def _source_given(cls, value: InputConfig) -> InputConfig:
        if not value.source:
            raise ValueError("input.source must name a file, folder or table")
        return value

    def resolve(self, path: str) -> str:
        """A repo-relative path made absolute; absolute paths and URIs pass through."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str(REPO_ROOT / path)

    def source(self) -> str:
        """The input as Spark should see it: a table name stays a name, a path gets resolved."""
        src = self.input.source
        if self.input.format == "table":
            return src
        resolved = self.resolve(src)
        looks_like_table = "/" not in src and not Path(resolved).exists()
        return src if self.input.format == "auto" and looks_like_table else resolved

    def output_base(self) -> str:
        """Where the tables go: a resolved folder, or "" for managed tables (output.schema)."""
        return self.resolve(self.output.path) if self.output.path else ""

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)


def _parse_value(raw: str) -> Any:
    """A CLI override value: TOML syntax if it parses (numbers, booleans, lists), else text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key {dotted!r}: {part!r} is not a section")
    node[leaf] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a TOML config and apply ``key.sub=value`` overrides, failing on unknown keys."""
    tree: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist")
        try:
            tree = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {file} is not valid TOML: {err}") from err
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        _set_dotted(tree, key.strip(), _parse_value(raw.strip()))
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"config key {key!r}: {first['msg']} (got {first.get('input')!r})"
        ) from None
