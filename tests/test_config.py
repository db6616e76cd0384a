from __future__ import annotations

from pathlib import Path

import pytest

from gplr_spark.config import ConfigError, RunConfig, load_config
from gplr_spark.session import REPO_ROOT


def test_bundled_config_loads_with_paper_defaults() -> None:
    cfg = load_config(REPO_ROOT / "conf" / "online_retail.toml")
    assert cfg.affinity.beta == 0.5
    assert cfg.affinity.walk_length == 1
    assert cfg.assign.k == 5
    assert cfg.input.mapping == "conf/mappings/online_retail.toml"


def test_overrides_are_typed() -> None:
    cfg = load_config(None, ["affinity.eps=1e-4", "sampling.sample_rate=0.2", "output.run_id=x"])
    assert cfg.affinity.eps == pytest.approx(1e-4)
    assert cfg.sampling.sample_rate == pytest.approx(0.2)
    assert cfg.output.run_id == "x"


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"affinity\.epsilon"):
        load_config(None, ["affinity.epsilon=0.1"])


def test_invalid_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"affinity\.eps"):
        load_config(None, ["affinity.eps=-1"])


def test_bad_override_syntax_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(None, ["affinity.eps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_table_source_is_not_made_a_path() -> None:
    cfg = RunConfig.model_validate({"input": {"source": "sales.purchases"}})
    assert cfg.source() == "sales.purchases"
    cfg = RunConfig()
    assert Path(cfg.source()).is_file()
