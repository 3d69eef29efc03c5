"""Hostile rows in every input format, audited by the real CLI in two runs shared by the module: every
row written is scored or quarantined (never lost, never twice), hostile strings come out verbatim,
and known-bad images are flagged whatever else is wrong with the row.

Run A (the tiny CLIP): img2dataset parquet (string and binary captions), a webdataset tar + sidecar,
LAION metadata (also given a second time through a symlink) and a clip-retrieval folder.
Run B: DataComp parquet + npz, whose `b32_*` arrays are ViT-B-32's, so it runs ViT-B-32 with random
weights (no image is encoded: the embeddings are precomputed).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile_inputs import (
    CONTROL,
    MARKDOWN_HTML,
    MIB,
    RTL,
    WITH_NUL,
    Member,
    audit_args,
    clip_retrieval_folder,
    datacomp_shard,
    jpeg,
    mib_digits_bait,
    mib_email_bait,
    mmaudit,
    png,
    png_header_claiming,
    sample_members,
    unit_rows,
    write_parquet,
    write_tar,
)

pytestmark = pytest.mark.slow

KNOWN_BAD = jpeg(seed=666)  # listed by SHA-256 in the run's hash list
KNOWN_BAD_UNDECODABLE = b"\xff\xd8\xff\xe0 listed bytes no decoder accepts"
MARKDOWN_URL = "[x](http://127.0.0.1:9/) ![y](http://127.0.0.1:9/y.png) <img src=//127.0.0.1:9/z>"
MIB_AT_BAIT = ("x@" * (MIB // 2))[:MIB]


@dataclass(frozen=True)
class Row:
    """One planted row: what the audit must make of it.

    ``expect``: scored | quarantined | accounted (either, exactly once: the issue leaves the choice).
    ``out``: output columns that must hold exactly these values (hostile strings come out verbatim).
    ``flag``: a reason the row must be flagged with. ``image_only``: counted in rows_image_only.
    """

    label: str
    expect: str
    fields: dict[str, object] = field(default_factory=dict)
    out: dict[str, object] = field(default_factory=dict)
    flag: str | None = None
    image_only: bool = False


def _img(i: int) -> bytes:
    return jpeg(seed=i)


# --- run A ----------------------------------------------------------------------------------------

IMG2DATASET_STRING = [
    Row("markdown-caption", "scored", {"caption": MARKDOWN_HTML, "jpg": _img(1)}, {"caption": MARKDOWN_HTML}),
    Row("rtl-caption", "scored", {"caption": RTL, "jpg": _img(2)}, {"caption": RTL}),
    Row("nul-caption", "scored", {"caption": WITH_NUL, "jpg": _img(3)}, {"caption": WITH_NUL}),
    Row("control-characters-caption", "scored", {"caption": CONTROL, "jpg": _img(4)}, {"caption": CONTROL}),
    Row(
        "mib-email-bait-caption",
        "scored",
        {"caption": mib_email_bait(), "jpg": _img(5)},
        {"caption": mib_email_bait()},
    ),
    Row("mib-digits-bait-caption", "scored", {"caption": mib_digits_bait(), "jpg": _img(6)}),
    Row(
        "markdown-key",
        "scored",
        {"key": MARKDOWN_HTML, "caption": "a key", "jpg": _img(7)},
        {"key": MARKDOWN_HTML},
    ),
    Row(
        "nul-rtl-key",
        "scored",
        {"key": "k\x00" + RTL, "caption": "a key", "jpg": _img(8)},
        {"key": "k\x00" + RTL},
    ),
    Row("mib-key", "scored", {"key": "k" * MIB, "caption": "a long key", "jpg": _img(9)}, {"key": "k" * MIB}),
    Row(
        "javascript-url",
        "scored",
        {"url": "javascript:alert(document.cookie)", "caption": "u", "jpg": _img(10)},
        {"url": "javascript:alert(document.cookie)"},
    ),
    Row(
        "mib-url",
        "scored",
        {"url": "http://x.invalid/" + "a" * MIB, "caption": "u", "jpg": _img(11)},
        {"url": "http://x.invalid/" + "a" * MIB},
    ),
    Row(
        "markdown-url",
        "scored",
        {"url": MARKDOWN_URL, "caption": "u", "jpg": _img(12)},
        {"url": MARKDOWN_URL},
    ),
    Row("null-everything", "quarantined", {"key": None, "url": None, "status": None}),
    Row(
        "empty-caption-good-image",
        "scored",
        {"caption": "", "jpg": _img(13)},
        {"caption_problem": "caption_empty"},
        image_only=True,
    ),
    Row(
        "known-bad-image-null-caption",
        "scored",
        {"caption": None, "jpg": KNOWN_BAD},
        {"caption_problem": "caption_missing", "known_bad_match": True},
        "known-bad-hash",
        True,
    ),
    Row(
        "known-bad-undecodable-null-caption",
        "quarantined",
        {"caption": None, "jpg": KNOWN_BAD_UNDECODABLE},
        {"known_bad_match": True},
        "known-bad-hash",
    ),
    Row(
        "known-bad-by-dataset-sha256-only",
        "scored",
        {
            "caption": "failed download of a listed image",
            "status": "failed_to_download",
            "sha256": hashlib.sha256(KNOWN_BAD).hexdigest(),
        },
        {"known_bad_match": True},
        "known-bad-hash",
    ),
    Row("extreme-aspect-image", "accounted", {"caption": "a one pixel wide line", "jpg": png(1, 20_000)}),
    Row(
        "decompression-bomb-header",
        "scored",
        {"caption": "a huge image", "jpg": png_header_claiming(10**5, 10**5)},
        {"image_problem": "image_too_large"},
    ),
    Row(
        "html-as-image",
        "scored",
        {"caption": "an error page", "jpg": b"<html><body>404</body></html>"},
        {"image_problem": "image_undecodable"},
    ),
    Row("truncated-image-null-caption", "quarantined", {"caption": None, "jpg": _img(14)[:300]}),
    Row(
        "repeated-key-first", "scored", {"key": "same", "caption": "first", "jpg": _img(15)}, {"key": "same"}
    ),
    Row(
        "repeated-key-second",
        "scored",
        {"key": "same", "caption": "second", "jpg": _img(16)},
        {"key": "same"},
    ),
    Row("key-in-two-shards-a", "scored", {"key": "in-two-shards", "caption": "a", "jpg": _img(17)}),
    Row(
        "failed-download-hostile-error",
        "scored",
        {"caption": "a photo", "status": "failed_to_download", "error_message": MARKDOWN_HTML},
        {"fetch_error": MARKDOWN_HTML, "image_status": "absent"},
    ),
    Row("absurd-dimensions", "scored", {"caption": "dims", "width": -1, "height": 2**62, "jpg": _img(18)}),
    Row("null-key", "scored", {"key": None, "caption": "no key", "jpg": _img(19)}),
]

IMG2DATASET_BINARY = [
    Row(
        "invalid-utf8-caption",
        "scored",
        {"caption": b"caf\xe9 \xff\xfe", "jpg": _img(20)},
        {"caption_problem": "caption_not_utf8"},
        image_only=True,
    ),
    Row(
        "overlong-utf8-caption",
        "scored",
        {"caption": b"\xc0\xaf\xc0\xae", "jpg": _img(21)},
        {"caption_problem": "caption_not_utf8"},
        image_only=True,
    ),
    Row(
        "surrogate-utf8-caption",
        "scored",
        {"caption": b"\xed\xa0\x80", "jpg": _img(22)},
        {"caption_problem": "caption_not_utf8"},
        image_only=True,
    ),
    Row("invalid-utf8-caption-no-image", "quarantined", {"caption": b"\xff", "jpg": None}),
    Row("whitespace-caption-empty-image", "quarantined", {"caption": b" \t\n", "jpg": b""}),
    Row(
        "bytes-caption",
        "scored",
        {"caption": b"plain caption", "jpg": _img(23)},
        {"caption": "plain caption"},
    ),
    Row("key-in-two-shards-b", "scored", {"key": "in-two-shards", "caption": "b", "jpg": _img(24)}),
]

LAION = [
    Row(
        "laion-markdown",
        "scored",
        {"TEXT": MARKDOWN_HTML, "URL": MARKDOWN_URL},
        {"caption": MARKDOWN_HTML, "url": MARKDOWN_URL, "image_status": "absent"},
    ),
    Row("laion-null-everything", "quarantined", {}),
    Row("laion-empty-caption", "quarantined", {"TEXT": "", "URL": "http://x.invalid/e.jpg"}),
    Row(
        "laion-odd-source-scores",
        "scored",
        {
            "TEXT": "odd scores",
            "URL": "u",
            "NSFW": "<b>NSFW</b>",
            "punsafe": float("nan"),
            "similarity": float("inf"),
            "pwatermark": -1e30,
        },
    ),
    Row("laion-null-sample-id", "scored", {"SAMPLE_ID": None, "TEXT": "no id", "URL": "u"}),
    Row("laion-mib-at-bait", "scored", {"TEXT": MIB_AT_BAIT, "URL": "u"}),
]


@dataclass(frozen=True)
class Sample:
    """One webdataset sample (its tar members), or a sidecar row with no member (a failed download)."""

    row: Row
    members: tuple[Member, ...]
    sidecar: dict[str, object] | None = None


W_IMG = _img(30)
WEBDATASET = [
    Sample(
        Row("wds-markdown", "scored", out={"caption": MARKDOWN_HTML, "url": MARKDOWN_URL}),
        tuple(
            sample_members(
                "w-markdown", MARKDOWN_HTML.encode(), W_IMG, json.dumps({"url": MARKDOWN_URL}).encode()
            )
        ),
        {"key": "w-markdown", "url": MARKDOWN_URL, "caption": MARKDOWN_HTML, "status": "success"},
    ),
    Sample(
        Row(
            "wds-invalid-utf8-caption", "scored", out={"caption_problem": "caption_not_utf8"}, image_only=True
        ),
        tuple(sample_members("w-utf8", b"\xff\xfe\xfd", _img(31))),
    ),
    Sample(
        Row("wds-image-only", "scored", out={"caption_problem": "caption_missing"}, image_only=True),
        tuple(sample_members("w-image-only", None, _img(32))),
    ),
    Sample(
        Row("wds-caption-only", "scored", out={"caption": "no image here", "image_status": "absent"}),
        tuple(sample_members("w-caption-only", b"no image here", None)),
    ),
    Sample(
        Row("wds-one-name-in-folder-x", "scored", out={"caption": "in x"}),
        (Member("x/", kind="dir"), *sample_members("x/dup", b"in x", _img(33))),
    ),
    Sample(
        Row("wds-one-name-in-folder-y", "scored", out={"caption": "in y"}),
        tuple(sample_members("y/dup", b"in y", _img(34))),
    ),
    Sample(
        Row("wds-symlinked-image", "accounted"),
        (
            Member("w-symlink.jpg", kind="symlink", target="w-markdown.jpg"),
            Member("w-symlink.txt", b"a link"),
        ),
    ),
    Sample(
        Row("wds-hardlinked-image", "accounted"),
        (
            Member("w-hardlink.jpg", kind="hardlink", target="w-markdown.jpg"),
            Member("w-hardlink.txt", b"a link"),
        ),
    ),
    Sample(
        Row("wds-json-not-json", "scored", out={"caption": "bad json"}),
        tuple(sample_members("w-bad-json", b"bad json", _img(35), b"{not json")),
    ),
    Sample(
        Row("wds-json-url-a-number", "scored", out={"url": None}),
        tuple(sample_members("w-url-number", b"url is 5", _img(36), b'{"url": 5}')),
    ),
    Sample(
        Row(
            "wds-known-bad-no-caption",
            "scored",
            out={"known_bad_match": True},
            flag="known-bad-hash",
            image_only=True,
        ),
        tuple(sample_members("w-known-bad", None, KNOWN_BAD)),
    ),
    Sample(
        Row("wds-empty-image", "scored", out={"image_problem": "image_empty"}),
        tuple(sample_members("w-empty-image", b"an empty jpg member", b"")),
    ),
    Sample(
        Row("wds-sidecar-only", "scored", out={"caption": "never fetched", "image_status": "absent"}),
        (),
        {
            "key": "w-sidecar-only",
            "caption": "never fetched",
            "status": "failed_to_download",
            "error_message": MARKDOWN_HTML,
        },
    ),
]

CR_DIM = 32  # the tiny CLIP's embedding size
CLIP_RETRIEVAL = [
    Row(
        "cr-markdown",
        "scored",
        {"caption": MARKDOWN_HTML, "url": MARKDOWN_URL},
        {"caption": MARKDOWN_HTML, "image_status": "precomputed"},
    ),
    Row(
        "cr-null-caption",
        "scored",
        {"caption": None},
        {"caption_problem": "caption_missing"},
        image_only=True,
    ),
    Row("cr-nan-image-embedding", "accounted", {"caption": "nan", "img": np.nan}),
    Row("cr-zero-text-embedding", "accounted", {"caption": "zero", "txt": 0.0}),
    Row("cr-inf-embeddings", "accounted", {"caption": "inf", "img": np.inf, "txt": -np.inf}),
    Row("cr-no-embedding-row", "quarantined", {"caption": "metadata past the embeddings", "missing": True}),
]

# --- run B ----------------------------------------------------------------------------------------

DATACOMP = [
    Row(
        "dc-markdown-uid",
        "scored",
        {"uid": MARKDOWN_HTML, "text": MARKDOWN_HTML},
        {"key": MARKDOWN_HTML, "caption": MARKDOWN_HTML, "image_status": "precomputed"},
    ),
    Row(
        "dc-null-text",
        "scored",
        {"uid": "u1", "text": None},
        {"caption_problem": "caption_missing"},
        image_only=True,
    ),
    Row("dc-nan-image-embedding", "accounted", {"uid": "u2", "text": "nan", "img": np.nan}),
    Row("dc-mib-text", "scored", {"uid": "u3", "text": mib_email_bait()}),
    Row("dc-null-uid", "scored", {"uid": None, "text": "no uid"}),
    Row("dc-repeated-uid", "scored", {"uid": MARKDOWN_HTML, "text": "same uid"}, {"key": MARKDOWN_HTML}),
    Row("dc-zero-embeddings-no-text", "quarantined", {"uid": None, "text": None, "img": 0.0, "txt": 0.0}),
    Row("dc-no-embedding-row", "quarantined", {"uid": "u7", "text": "past the embeddings", "missing": True}),
]

# shard id -> its rows in row order, per run
RUN_A: dict[str, list[Row]] = {
    "00000": IMG2DATASET_STRING,
    "00001": IMG2DATASET_BINARY,
    "00002": [s.row for s in WEBDATASET],
    "part-00000": LAION,
    "metadata_0": CLIP_RETRIEVAL,
}
RUN_B: dict[str, list[Row]] = {"0000": DATACOMP}
RUNS = {"run_a": RUN_A, "run_b": RUN_B}
PLANTED = [
    (run, sid, i, row)
    for run, shards in RUNS.items()
    for sid, rows in shards.items()
    for i, row in enumerate(rows)
]


# --- writers --------------------------------------------------------------------------------------

I2D_COLUMNS = {
    "key": pa.string(),
    "url": pa.string(),
    "status": pa.string(),
    "error_message": pa.string(),
    "width": pa.int64(),
    "height": pa.int64(),
    "sha256": pa.string(),
    "jpg": pa.binary(),
}


def _img2dataset(path: Path, rows: list[Row], caption_type: pa.DataType) -> None:
    defaults = {"status": "success"}
    cols: dict[str, list] = {name: [] for name in [*I2D_COLUMNS, "caption"]}
    for i, r in enumerate(rows):
        base = {"key": f"{path.stem}{i:05d}", "url": f"http://x.invalid/{path.stem}/{i}.jpg", **defaults}
        values = {**base, **r.fields}
        for name in cols:
            cols[name].append(values.get(name))
    types = {**I2D_COLUMNS, "caption": caption_type}
    write_parquet(path, pa.table({n: pa.array(v, types[n]) for n, v in cols.items()}))


def _laion(path: Path, rows: list[Row]) -> None:
    types = {
        "SAMPLE_ID": pa.int64(),
        "URL": pa.string(),
        "TEXT": pa.string(),
        "NSFW": pa.string(),
        "similarity": pa.float64(),
        "punsafe": pa.float32(),
        "pwatermark": pa.float32(),
    }
    cols: dict[str, list] = {n: [] for n in types}
    for i, r in enumerate(rows):
        values = {"SAMPLE_ID": 5000 + i} if "SAMPLE_ID" not in r.fields and r.fields else {}
        values.update(r.fields)
        for n in cols:
            cols[n].append(values.get(n))
    write_parquet(path, pa.table({n: pa.array(v, types[n]) for n, v in cols.items()}))


def _webdataset(path: Path, samples: list[Sample]) -> None:
    write_tar(path, [m for s in samples for m in s.members])
    side = [s.sidecar for s in samples if s.sidecar is not None]
    names = ("key", "url", "caption", "status", "error_message")
    write_parquet(
        path.with_suffix(".parquet"),
        pa.table({n: pa.array([r.get(n) for r in side], pa.string()) for n in names}),
    )


def _embeddings(rows: list[Row], dim: int) -> tuple[np.ndarray, np.ndarray]:
    kept = [r for r in rows if not r.fields.get("missing")]
    img, txt = unit_rows(len(kept), dim, seed=1), unit_rows(len(kept), dim, seed=2)
    for i, r in enumerate(kept):
        if "img" in r.fields:
            img[i] = r.fields["img"]
        if "txt" in r.fields:
            txt[i] = r.fields["txt"]
    return img.astype(np.float16), txt.astype(np.float16)


def _clip_retrieval(root: Path, rows: list[Row]) -> None:
    meta = pa.table(
        {
            "caption": pa.array([r.fields.get("caption") for r in rows], pa.string()),
            "url": pa.array([r.fields.get("url") for r in rows], pa.string()),
        }
    )
    img, txt = _embeddings(rows, CR_DIM)
    clip_retrieval_folder(root, meta, img, txt)


def _datacomp(folder: Path, rows: list[Row]) -> Path:
    meta = pa.table({n: pa.array([r.fields.get(n) for r in rows], pa.string()) for n in ("uid", "text")})
    img, txt = _embeddings(rows, 512)
    return datacomp_shard(folder, "0000", meta, {"b32_img": img, "b32_txt": txt})


def _hash_list(path: Path) -> Path:
    path.write_text(
        "algorithm,hash,label\n"
        f"sha256,{hashlib.sha256(KNOWN_BAD).hexdigest()},hostile-exact\n"
        f"sha256,{hashlib.sha256(KNOWN_BAD_UNDECODABLE).hexdigest()},hostile-undecodable\n"
    )
    return path


# --- the two runs ---------------------------------------------------------------------------------


@dataclass
class Run:
    out: Path
    stderr: str
    summary: dict
    rows: dict[str, tuple[str, dict]]  # row_id -> ("scored" | "quarantined", the output row)
    duplicates: list[str]  # row ids found more than once across scores/ and quarantine.parquet
    flags: dict[str, list[str]]  # row_id -> reasons
    flag_rows: dict[str, dict]


def _load(out: Path, stderr: str) -> Run:
    rows: dict[str, tuple[str, dict]] = {}
    duplicates = []
    tables = [("scored", pq.read_table(p)) for p in sorted((out / "scores").glob("*.parquet"))]
    tables.append(("quarantined", pq.read_table(out / "quarantine.parquet")))
    for kind, table in tables:
        for r in table.to_pylist():
            if r["row_id"] in rows:
                duplicates.append(r["row_id"])
            rows[r["row_id"]] = (kind, r)
    flag_rows = {r["row_id"]: r for r in pq.read_table(out / "flags.parquet").to_pylist()}
    summary = json.loads((out / "summary.json").read_text())
    return Run(
        out, stderr, summary, rows, duplicates, {k: v["reasons"] for k, v in flag_rows.items()}, flag_rows
    )


def _audit(out: Path, *args: str) -> Run:
    result = mmaudit(*args, timeout=480)  # under the suite's 600 s pytest timeout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
    return _load(out, result.stderr)


@pytest.fixture(scope="module")
def run_a(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Run:
    root = tmp_path_factory.mktemp("hostile-rows-a")
    _img2dataset(root / "in" / "i2d" / "00000.parquet", IMG2DATASET_STRING, pa.string())
    _img2dataset(root / "in" / "i2d" / "00001.parquet", IMG2DATASET_BINARY, pa.binary())
    _webdataset(root / "in" / "wds" / "00002.tar", WEBDATASET)
    _laion(root / "in" / "laion" / "part-00000.parquet", LAION)
    (root / "in" / "alias").mkdir()
    (root / "in" / "alias" / "part-00000.parquet").symlink_to(root / "in" / "laion" / "part-00000.parquet")
    _clip_retrieval(root / "in" / "clip-retrieval", CLIP_RETRIEVAL)
    shards = ["i2d", "wds", "laion", "alias/part-00000.parquet", "clip-retrieval"]
    out = root / "run"
    extra = [f"--set=images.known_bad_lists=[{_hash_list(root / 'known_bad.csv')}]"]
    for s in shards:
        extra += ["--shards", str(root / "in" / s)]
    return _audit(out, *audit_args(tiny_clip_dir, out, *extra))


@pytest.fixture(scope="module")
def report_a(run_a: Run) -> Path:
    """`mmaudit report` on run A: hostile strings and NaN/inf source scores go into every export."""
    result = mmaudit("report", "--run", str(run_a.out))
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
    return run_a.out / "report"


@pytest.fixture(scope="module")
def run_b(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Run:
    root = tmp_path_factory.mktemp("hostile-rows-b")
    shard = _datacomp(root / "in" / "datacomp", DATACOMP)
    out = root / "run"
    vit = [
        "clip.model=ViT-B-32",
        "clip.pretrained=null",
        "clip.allow_random_weights=true",
        "clip.concepts=null",
    ]
    extra = ["--shards", str(shard)]
    for s in vit:
        extra += ["--set", s]
    return _audit(out, *audit_args(tiny_clip_dir, out, *extra))


# --- per-row and per-run checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_name", "shard_id", "row_index", "row"), PLANTED, ids=[p[3].label for p in PLANTED]
)
def test_hostile_row_is_scored_or_quarantined_verbatim(
    request: pytest.FixtureRequest, run_name: str, shard_id: str, row_index: int, row: Row
) -> None:
    run: Run = request.getfixturevalue(run_name)
    row_id = f"{shard_id}:{row_index}"
    assert row_id in run.rows, f"{row.label}: row {row_id} is neither in scores/ nor in quarantine.parquet"
    kind, got = run.rows[row_id]
    if row.expect != "accounted":
        assert kind == row.expect, f"{row.label}: {kind} ({got.get('reason')}: {got.get('detail')})"
    for column, value in row.out.items():
        assert got[column] == value, f"{row.label}: {column} is {str(got[column])[:200]!r}"
    if row.flag:
        assert row.flag in run.flags.get(row_id, []), f"{row.label}: not flagged {row.flag}"
        assert run.flag_rows[row_id]["severity"] == "critical" and run.flag_rows[row_id]["render_blocked"]


@pytest.mark.parametrize("run_name", list(RUNS))
def test_every_row_written_is_accounted_for_exactly_once(
    request: pytest.FixtureRequest, run_name: str
) -> None:
    run: Run = request.getfixturevalue(run_name)
    written = {f"{sid}:{i}" for sid, rows in RUNS[run_name].items() for i in range(len(rows))}
    assert run.duplicates == []
    assert set(run.rows) == written
    s = run.summary
    assert s["status"] == "complete" and s["shards_failed"] == 0
    assert s["rows_in"] == len(written) == s["rows_scored"] + s["rows_quarantined"]
    assert s["rows_quarantined"] == sum(kind == "quarantined" for kind, _ in run.rows.values())
    image_only = sum(r.image_only for rows in RUNS[run_name].values() for r in rows)
    assert s["rows_image_only"] == image_only


def test_repeated_keys_are_counted_and_every_row_kept(run_a: Run) -> None:
    assert run_a.summary["keys_in_several_shards"] >= 1  # "in-two-shards" in 00000 and 00001
    assert run_a.summary["keys_repeated"] >= 2  # "same" twice in 00000, "in-two-shards" again in 00001
    same = [r for kind, r in run_a.rows.values() if r["key"] == "same"]
    assert sorted(r["caption"] for r in same) == ["first", "second"]


def test_a_shard_given_twice_through_a_symlink_is_read_once_and_said_so(run_a: Run) -> None:
    laion_rows = [rid for rid in run_a.rows if rid.startswith("part-00000:")]
    assert len(laion_rows) == len(LAION)
    assert run_a.summary["shards_done"] == len(RUN_A)
    assert "alias" in run_a.stderr and "part-00000.parquet" in run_a.stderr


def test_known_bad_rows_are_in_the_authority_report_whatever_else_is_wrong(
    run_a: Run, report_a: Path
) -> None:
    with open(report_a / "authority_report.csv", newline="") as f:
        listed = {r["row_id"] for r in csv.DictReader(f)}
    expected = {f"{sid}:{i}" for sid, rows in RUN_A.items() for i, r in enumerate(rows) if r.flag}
    assert expected <= listed and len(expected) == 4
    report = (report_a / "report.html").read_text()
    assert "<script>alert(1)</script>" not in report and '<img src="http://127.0.0.1:9' not in report
