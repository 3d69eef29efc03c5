from __future__ import annotations

from pathlib import Path

import pytest

from audit.config import AuditConfig, load_config, parse_override
from audit.errors import ConfigError


def test_unknown_key_names_key_and_allowed_values(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("clip:\n  modle: ViT-B-32\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    message = str(err.value)
    assert "clip.modle" in message and "allowed here: model, pretrained" in message
    assert "\n" not in message


def test_invalid_value_names_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'device'"):
        load_config(None, {"device": "tpu"})


def test_overrides_are_yaml_typed_and_dotted() -> None:
    key, value = parse_override("clip.batch_size=8")
    cfg = load_config(None, {key: value, "dask.scheduler": "tcp://127.0.0.1:8786"})
    assert cfg.clip.batch_size == 8
    assert cfg.dask.scheduler == "tcp://127.0.0.1:8786"


def test_override_without_equals_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        parse_override("clip.batch_size")


def test_scoring_hash_ignores_where_outputs_go_but_not_what_is_scored() -> None:
    a = AuditConfig(out="runs/a", shards=("x.parquet",))
    b = AuditConfig(out="runs/b", shards=("y.parquet",))
    c = AuditConfig(out="runs/a", clip={"batch_size": 3})
    assert a.scoring_hash() == b.scoring_hash()
    # batch size changes no score, but the hash is conservative: any scoring key counts
    assert a.scoring_hash() != c.scoring_hash()


def test_missing_config_file_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"config file not found: nope\.yaml"):
        load_config("nope.yaml")
