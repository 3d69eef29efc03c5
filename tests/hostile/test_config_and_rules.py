"""Malformed config files, `--set` overrides and rules files: exit 2, one `error:` line naming the file
or key, no traceback, and no run folder left behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from hostile_inputs import CaseBuilder, Expect, audit_args, one_error_line, write_parquet

CASES: dict[str, CaseBuilder] = {}


def case(case_id: str) -> Callable[[CaseBuilder], CaseBuilder]:
    def register(build: CaseBuilder) -> CaseBuilder:
        CASES[case_id] = build
        return build

    return register


def _shard(folder: Path) -> str:
    path = folder / "in" / "00000.parquet"
    write_parquet(path, pa.table({"URL": ["http://x.invalid/a.jpg"], "TEXT": ["a dog on a beach"]}))
    return str(path)


def _with_config(folder: Path, body: str | bytes, names: tuple[str, ...] = (), name: str = "c.yaml"):
    path = folder / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    out = folder / "run"
    args = ["audit", "--config", str(path), "--shards", _shard(folder), "--out", str(out)]
    return args, Expect(2, (str(path), *names), out)


def _with_sets(folder: Path, clip: Path, sets: list[str], names: tuple[str, ...]):
    out = folder / "run"
    extra = ["--shards", _shard(folder)]
    for s in sets:
        extra += ["--set", s]
    return audit_args(clip, out, *extra), Expect(2, names, out)


def _with_rules(folder: Path, clip: Path, body: str | bytes | None, names: tuple[str, ...] = ()):
    path = folder / "rules.yaml"
    if isinstance(body, str | bytes):
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
    elif body is None:
        path.mkdir()  # a folder where the rules file should be
    return _with_sets(folder, clip, [f"rules={path}"], (str(path), *names))


# --- config files ---------------------------------------------------------------------------------


@case("config-missing")
def _(f: Path, clip: Path):
    out = f / "run"
    args = ["audit", "--config", str(f / "nope.yaml"), "--shards", _shard(f), "--out", str(out)]
    return args, Expect(2, (str(f / "nope.yaml"),), out)


@case("config-invalid-yaml")
def _(f: Path, clip: Path):
    return _with_config(f, "clip: [1,\n", ("YAML",))


@case("config-a-list")
def _(f: Path, clip: Path):
    return _with_config(f, "- clip\n- dask\n")


@case("config-a-number")
def _(f: Path, clip: Path):
    return _with_config(f, "42\n")


@case("config-not-utf8")
def _(f: Path, clip: Path):
    return _with_config(f, b"name: \xff\xfe caf\xe9\n")


@case("config-is-a-folder")
def _(f: Path, clip: Path):
    (f / "conf.yaml").mkdir()
    out = f / "run"
    args = ["audit", "--config", str(f / "conf.yaml"), "--shards", _shard(f), "--out", str(out)]
    return args, Expect(2, (str(f / "conf.yaml"),), out)


@case("config-unknown-key")
def _(f: Path, clip: Path):
    return _with_config(f, "dask:\n  workers: 3\n", ("dask.workers",))


@case("config-invalid-value")
def _(f: Path, clip: Path):
    return _with_config(f, "clip:\n  batch_size: 0\n", ("clip.batch_size",))


@case("config-section-is-a-scalar")
def _(f: Path, clip: Path):
    return _with_config(f, "dask: 3\n", ("dask",))


@case("config-unknown-scorer")
def _(f: Path, clip: Path):
    return _with_config(f, "text:\n  scorers: [profanity_check, nope]\n", ("text.scorers",))


@case("config-unknown-device")
def _(f: Path, clip: Path):
    return _with_config(f, "device: tpu\n", ("device",))


@case("config-name-with-markup")
def _(f: Path, clip: Path):
    # a file name that is Rich console markup must be printed as it is, not interpreted
    missing = f / "[bold]conf[/].yaml"
    out = f / "run"
    args = ["audit", "--config", str(missing), "--shards", _shard(f), "--out", str(out)]
    return args, Expect(2, (str(missing),), out)


# --- --set overrides ------------------------------------------------------------------------------


@case("set-without-equals")
def _(f: Path, clip: Path):
    return _with_sets(f, clip, ["clip.batch_size"], ("'clip.batch_size'",))


@case("set-invalid-yaml")
def _(f: Path, clip: Path):
    return _with_sets(f, clip, ["text.scorers=[lexicon, pii"], ("text.scorers",))


@case("set-yaml-reserved-character")
def _(f: Path, clip: Path):
    return _with_sets(f, clip, ["name=@run"], ("name",))


@case("set-empty-key")
def _(f: Path, clip: Path):
    return _with_sets(f, clip, ["=3"], ("'=3'",))


@case("set-unknown-key")
def _(f: Path, clip: Path):
    return _with_sets(f, clip, ["nosuch.key=1"], ("nosuch",))


@case("set-invalid-value")
def _(f: Path, clip: Path):
    return _with_sets(f, clip, ["dask.batch_rows=-5"], ("dask.batch_rows",))


@case("set-list-for-a-number")
def _(f: Path, clip: Path):
    return _with_sets(f, clip, ["dask.n_workers=[1, 2]"], ("dask.n_workers",))


@case("set-into-a-scalar")
def _(f: Path, clip: Path):
    return _with_sets(f, clip, ["dask=3", "dask.n_workers=2"], ("dask",))


@case("set-below-a-leaf")
def _(f: Path, clip: Path):
    return _with_sets(f, clip, ["clip.model.name=x"], ("clip.model",))


@case("set-key-with-markup")
def _(f: Path, clip: Path):
    return _with_sets(f, clip, ["[/]=1"], ("[/]",))


# --- rules files ----------------------------------------------------------------------------------

RULE = "  - {id: r1, reason: x, severity: low, all: [{score: pii_count, op: '>=', value: 1}]}\n"
HEAD = "version: 1\nname: hostile\nrules:\n"


@case("rules-missing")
def _(f: Path, clip: Path):
    return _with_sets(f, clip, [f"rules={f / 'absent.yaml'}"], (str(f / "absent.yaml"),))


@case("rules-invalid-yaml")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, "version: 1\nrules: [\n", ("YAML",))


@case("rules-a-list")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, "- id: a\n- id: b\n")


@case("rules-empty")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, "")


@case("rules-is-a-folder")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, None)


@case("rules-not-utf8")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, b"version: 1\nname: \xff\xfe\n")


@case("rules-rule-not-a-mapping")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, HEAD + "  - just-a-string\n", ("rule #0",))


@case("rules-missing-severity")
def _(f: Path, clip: Path):
    body = HEAD + "  - {id: r1, reason: x, all: [{score: pii_count, op: '>=', value: 1}]}\n"
    return _with_rules(f, clip, body, ("r1", "severity"))


@case("rules-unknown-severity")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, HEAD + RULE.replace("low", "apocalyptic"), ("r1", "severity"))


@case("rules-unknown-score")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, HEAD + RULE.replace("pii_count", "no_such_score"), ("r1", "no_such_score"))


@case("rules-no-conditions")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, HEAD + "  - {id: r1, reason: x, severity: low}\n", ("r1",))


@case("rules-duplicate-id")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, HEAD + RULE + RULE, ("r1",))


@case("rules-text-threshold")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, HEAD + RULE.replace("value: 1", "value: lots"), ("r1", "op"))


@case("rules-unknown-field")
def _(f: Path, clip: Path):
    return _with_rules(f, clip, HEAD + RULE.replace("reason: x", "reason: x, colour: red"), ("r1", "colour"))


# --- known-bad hash lists (read where the models load: the run folder must not be left running) ---


@case("hashlist-not-hexadecimal")
def _(f: Path, clip: Path):
    path = f / "known_bad.csv"
    path.write_text("algorithm,hash,label\nsha256,not-hex-at-all,x\n")
    return _with_sets(f, clip, [f"images.known_bad_lists=[{path}]"], (f"{path}:2",))


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_config_stops_with_one_error_line_naming_it(
    case: str, case_results: dict[str, tuple]
) -> None:
    result, expect = case_results[case]
    line = one_error_line(result, expect.exit_code)
    for name in expect.names:
        assert name in line, f"{case}: {name!r} not named in {line!r}"
    assert not expect.out.is_dir(), f"{case}: a run folder was left behind"
