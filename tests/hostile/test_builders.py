"""The hostile-input builders make the files they claim to: a broken file is broken in exactly the
intended way, and a well-formed one is read by the real discovery code as its format."""

from __future__ import annotations

import io
import socket
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile_inputs import (
    MIB,
    Member,
    clip_retrieval_folder,
    corrupt_first_page,
    datacomp_shard,
    jpeg,
    mib_digits_bait,
    mib_email_bait,
    mmaudit,
    npy_bytes,
    one_error_line,
    png,
    png_header_claiming,
    table_with_duplicate_column,
    truncate,
    unit_rows,
    write_parquet,
    write_tar,
)
from PIL import Image

from audit.shards import discover_shards


def test_corrupt_first_page_keeps_the_footer_and_breaks_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    write_parquet(
        path, pa.table({"URL": [f"u{i}" for i in range(100)], "TEXT": [f"t{i}" for i in range(100)]})
    )
    corrupt_first_page(path, column=1)
    assert pq.read_schema(path).names == ["URL", "TEXT"]
    assert pq.read_metadata(path).num_rows == 100
    with pytest.raises((OSError, pa.ArrowInvalid)):
        pq.read_table(path)


def test_truncate_keeps_a_prefix(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    truncate(path, -3)
    assert path.read_bytes() == b"0123456"
    truncate(path, 2)
    assert path.read_bytes() == b"01"


def test_images_have_the_dimensions_they_claim() -> None:
    assert Image.open(io.BytesIO(jpeg(1))).size == (64, 48) and jpeg(1) != jpeg(2)
    strip = png(1, 20_000)
    assert Image.open(io.BytesIO(strip)).size == (1, 20_000) and len(strip) < 1000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(png_header_claiming(100_000, 100_000)))


def test_baits_are_one_mebibyte() -> None:
    assert len(mib_email_bait()) == MIB and mib_email_bait().endswith("a.a1")
    assert len(mib_digits_bait()) == MIB


def test_duplicate_column_table_has_two_columns_of_one_name(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    write_parquet(path, table_with_duplicate_column("TEXT"))
    assert pq.read_schema(path).names == ["URL", "TEXT", "TEXT"]


def test_write_tar_makes_files_links_and_folders(tmp_path: Path) -> None:
    path = tmp_path / "t.tar"
    write_tar(
        path,
        [
            Member("d/", kind="dir"),
            Member("d/a.jpg", b"bytes"),
            Member("b.jpg", kind="symlink", target="d/a.jpg"),
            Member("c.jpg", kind="hardlink", target="d/a.jpg"),
        ],
    )
    with tarfile.open(path) as tar:
        kinds = {m.name: (m.isdir(), m.isfile(), m.issym(), m.islnk(), m.linkname) for m in tar}
        assert tar.extractfile("d/a.jpg").read() == b"bytes"
    assert kinds == {
        "d": (True, False, False, False, ""),
        "d/a.jpg": (False, True, False, False, ""),
        "b.jpg": (False, False, True, False, "d/a.jpg"),
        "c.jpg": (False, False, False, True, "d/a.jpg"),
    }


def test_embedding_folders_are_discovered_as_their_formats(tmp_path: Path) -> None:
    meta = pa.table({"caption": ["a", "b"]})
    root = clip_retrieval_folder(tmp_path / "cr", meta, unit_rows(2, 8, 0), npy_bytes(unit_rows(2, 8, 1)))
    [spec] = discover_shards([str(root)])
    assert spec.format == "clip_retrieval" and np.load(spec.image_embeddings).shape == (2, 8)
    assert np.allclose(np.linalg.norm(np.load(spec.text_embeddings), axis=1), 1)
    dc = datacomp_shard(
        tmp_path / "dc", "0000", pa.table({"uid": ["u"], "text": ["a"]}), {"b32_img": np.ones((1, 4))}
    )
    [spec] = discover_shards([str(dc)])
    assert spec.format == "datacomp" and spec.image_embeddings == str(tmp_path / "dc" / "0000.npz")


def test_one_error_line_accepts_only_one_clean_error() -> None:
    def result(code: int, stderr: str) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess([], code, "", stderr)

    assert one_error_line(result(2, "progress\nerror: f.parquet: bad\n"), 2) == "error: f.parquet: bad"
    for bad in (
        result(1, "error: f.parquet: bad\n"),
        result(2, "error: one\nerror: two\n"),
        result(2, "Traceback (most recent call last):\nerror: x\n"),
        result(2, "nothing said\n"),
    ):
        with pytest.raises(AssertionError):
            one_error_line(bad, 2)


def test_mmaudit_past_its_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    # the dashboard serves until killed: the CLI and its Streamlit child must both be gone after
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(subprocess.TimeoutExpired):
        mmaudit("dashboard", "--run", str(tmp_path / "run"), "--port", str(port), timeout=15)
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
