"""match_known_bad per kind of row, in one batch: bytes (their own digest, whatever the dataset
claims), no bytes but a listed dataset sha256, neither (nulls: unknown, never False), and the same
batch without any list."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pyarrow as pa
from PIL import Image

from audit.hashlists import KnownBadLists
from audit.stages.known_bad import match_known_bad

LISTED = hashlib.sha256(b"the listed image").hexdigest()


def _jpeg(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, "JPEG")
    return buf.getvalue()


def _batch() -> tuple[pa.Table, bytes, bytes]:
    bad, good = _jpeg("red"), _jpeg("blue")
    table = pa.table(
        {
            "image": pa.array([None, bad, good, b"", None, good], pa.binary()),
            # row 2 claims the listed digest for bytes that are not the listed image; row 5 claims
            # nothing; row 4 has neither bytes nor a digest; row 3 has empty bytes
            "sha256": pa.array([LISTED, None, LISTED, None, None, ""], pa.string()),
        }
    )
    return table, bad, good


def test_each_kind_of_row_is_matched_by_what_it_carries(tmp_path: Path) -> None:
    table, bad, good = _batch()
    path = tmp_path / "list.csv"
    path.write_text(f"algorithm,hash,label\nsha256,{LISTED},x\nsha256,{hashlib.sha256(bad).hexdigest()},y\n")
    out = match_known_bad(table, lists=KnownBadLists([str(path)]), images={})
    assert out.column("known_bad_match").to_pylist() == [True, True, True, None, None, False]
    assert out.column("known_bad_distance").to_pylist() == [0, 0, 0, None, None, None]
    assert out.column("known_bad_list").to_pylist()[:3] == [
        "list.csv:sha256:x", "list.csv:sha256:y", "list.csv:sha256:x",
    ]  # fmt: skip
    digest = hashlib.sha256(good).hexdigest()
    # rows with bytes record the bytes' own digest; the others keep the dataset's value
    assert out.column("sha256").to_pylist() == [
        LISTED,
        hashlib.sha256(bad).hexdigest(),
        digest,
        None,
        None,
        digest,
    ]
    assert out.column("image_phash").to_pylist()[0] is None  # no bytes: no perceptual hash


def test_without_lists_rows_with_bytes_are_unmatched_and_the_rest_unknown() -> None:
    table, bad, good = _batch()
    out = match_known_bad(table, lists=KnownBadLists([]), images={})
    assert out.column("known_bad_match").to_pylist() == [None, False, False, None, None, False]
    assert out.column("sha256").to_pylist()[:3] == [
        LISTED,
        hashlib.sha256(bad).hexdigest(),
        hashlib.sha256(good).hexdigest(),
    ]
    assert out.num_rows == 6 and out.column("known_bad_list").null_count == 6
