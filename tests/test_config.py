from __future__ import annotations

import re
from pathlib import Path

import pytest

from audit.config import (
    AuditConfig,
    EvaluationSettings,
    RemovalSettings,
    load_config,
    parse_override,
    resolve_section,
)
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


@pytest.mark.parametrize("text", ["foo", "=3", "clip..batch_size=3", " =3"])
def test_malformed_override_names_it(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_override(text)
    assert f"override '{text}'" in str(err.value) and "\n" not in str(err.value)


def test_override_with_invalid_yaml_value_names_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_override("clip.batch_size=[1,")
    message = str(err.value)
    assert "override 'clip.batch_size=[1,'" in message and "not valid YAML" in message
    assert "\n" not in message


@pytest.mark.parametrize("body", ["- a\n- b\n", "42\n", "just words\n"], ids=["list", "number", "string"])
def test_non_mapping_config_file_names_the_file(tmp_path: Path, body: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(body)
    with pytest.raises(ConfigError, match=rf"^{cfg}: the config must be a mapping of keys"):
        load_config(cfg)


def test_invalid_yaml_config_file_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("clip: [1,\n")
    with pytest.raises(ConfigError, match=rf"^{cfg}: not valid YAML"):
        load_config(cfg)


def test_unreadable_config_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'folder'}: cannot read the config"):
        load_config(tmp_path / "folder")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match=rf"^{binary}: cannot read the config .*UTF-8"):
        load_config(binary)


def test_dask_listens_on_loopback_unless_configured() -> None:
    cfg = AuditConfig()
    assert (cfg.dask.host, cfg.dask.dashboard_address) == ("127.0.0.1", "127.0.0.1:0")
    off = load_config(None, {"dask.dashboard_address": None, "dask.host": "10.0.0.5"})
    assert (off.dask.host, off.dask.dashboard_address) == ("10.0.0.5", None)
    # placement only: where Dask listens changes no score
    assert off.scoring_hash() == cfg.scoring_hash()


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:http", "127.0.0.1:70000"])
def test_dask_dashboard_address_needs_host_and_port(address: str) -> None:
    with pytest.raises(ConfigError, match=r"'dask\.dashboard_address': .*HOST:PORT"):
        load_config(None, {"dask.dashboard_address": address})


def test_a_runs_section_resolves_from_manifest_then_config_file_then_overrides(tmp_path) -> None:
    manifest = {"removal": {"min_severity": "high"}, "evaluation": {"seed": 4}}
    got = resolve_section(manifest, "removal", RemovalSettings, None, {}, usage="u")
    assert got.min_severity == "high" and got.confirmed is True
    assert resolve_section({}, "removal", RemovalSettings, None, None, usage="u") == RemovalSettings()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("removal:\n  min_severity: low\nevaluation:\n  seed: 9\n", encoding="utf-8")
    from_file = resolve_section(
        manifest, "removal", RemovalSettings, str(cfg), {"removal.confirmed": False}, usage="u"
    )
    assert (from_file.min_severity, from_file.confirmed) == ("low", False)
    nested = resolve_section(
        manifest, "evaluation", EvaluationSettings, None, {"evaluation.categories.slur": "hate"}, usage="u"
    )
    assert nested.seed == 4 and nested.categories["slur"] == "hate"
    cases = [
        ("removal", RemovalSettings, {"clip.batch_size": 2}, False, "override 'clip.batch_size': usage here"),
        ("removal", RemovalSettings, {"removal.a.b": 1}, False, "override 'removal.a.b': usage here"),
        (
            "removal",
            RemovalSettings,
            {"removal.minseverity": "x"},
            False,
            "unknown config key 'removal.minseverity'",
        ),
        (
            "removal",
            RemovalSettings,
            {"removal.min_severity": "huge"},
            False,
            "invalid value for 'removal.min_severity'",
        ),
        ("evaluation", EvaluationSettings, {"evaluation.seed.x": 1}, True, "'seed' is not a section"),
    ]
    for name, model, overrides, nested_ok, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            resolve_section(manifest, name, model, None, overrides, usage="usage here", nested=nested_ok)
