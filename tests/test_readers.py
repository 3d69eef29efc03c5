from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.readers import iter_shard, read_shard
from audit.sample import build_rows
from audit.shards import discover_shards


def _read(path: Path):
    return read_shard(discover_shards([str(path)])[0])


def _by_key(table: pa.Table, column: str) -> dict[str, object]:
    return dict(zip(table.column("key").to_pylist(), table.column(column).to_pylist(), strict=True))


def test_sample_shards_keep_every_row_with_dataset_keys(sample_dir: Path) -> None:
    keys = []
    for spec in discover_shards([str(sample_dir / "parquet"), str(sample_dir / "webdataset")]):
        keys += read_shard(spec).table.column("key").to_pylist()
    assert sorted(keys) == sorted(r.key for r in build_rows())


def test_keys_fall_back_to_sample_id_then_shard_and_row(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"URL": ["u1", "u2"], "TEXT": ["a", "b"], "SAMPLE_ID": [7, None]}), tmp_path / "s.parquet"
    )
    assert _read(tmp_path / "s.parquet").table.column("key").to_pylist() == ["7", "s:1"]


def test_null_empty_and_non_utf8_captions_are_caption_problems_not_quarantine(tmp_path: Path) -> None:
    captions = pa.array([b"ok", None, b"caf\xe9", b"", b" \t "], pa.binary())
    table = pa.table({"url": ["u"] * 5, "text": captions})
    pq.write_table(table, tmp_path / "c.parquet")
    read = _read(tmp_path / "c.parquet").table
    assert _by_key(read, "caption_problem") == {
        "c:0": None,
        "c:1": "caption_missing",
        "c:2": "caption_not_utf8",
        "c:3": "caption_empty",
        "c:4": "caption_empty",
    }
    # the stages decide: a row with a usable image is audited image-only
    assert read.column("quarantine_reason").null_count == 5


def test_webdataset_latin1_caption_and_failed_download(sample_dir: Path) -> None:
    table = _read(sample_dir / "webdataset" / "00002.tar").table
    problems = _by_key(table, "caption_problem")
    status = _by_key(table, "fetch_status")
    assert problems["bad-latin1-caption"] == "caption_not_utf8"
    # a failed download is not bad data: it is audited text-only
    assert status["fetch-failed"] == "failed_to_download"
    assert _by_key(table, "image_problem")["fetch-failed"] is None


def test_rows_missing_image_bytes_despite_success_get_an_image_problem(tmp_path: Path) -> None:
    table = pa.table(
        {
            "key": ["a", "b", "c"],
            "url": ["u", "u", "u"],
            "caption": ["x", "y", "z"],
            "status": ["success", "success", "failed_to_download"],
            "jpg": pa.array([None, b"", None], pa.binary()),
        }
    )
    pq.write_table(table, tmp_path / "i.parquet")
    assert _by_key(_read(tmp_path / "i.parquet").table, "image_problem") == {
        "a": "image_missing",
        "b": "image_empty",
        "c": None,
    }


def test_duplicate_keys_in_a_shard_are_counted_and_rows_keep_their_own_row_ids(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"key": ["k", "k", "j"], "url": ["u"] * 3, "caption": ["a", "b", "c"]}),
        tmp_path / "d.parquet",
    )
    reader = iter_shard(discover_shards([str(tmp_path / "d.parquet")])[0])
    table = pa.concat_tables(list(reader.batches()))
    assert table.column("quarantine_reason").null_count == 3  # a repeated label drops no row
    assert table.column("row_id").to_pylist() == ["d:0", "d:1", "d:2"]
    assert reader.keys_repeated == 1 and len(reader.key_hashes()) == 2


def _clip_retrieval(root: Path, rows: int, emb_rows: int, nan_row: int | None = None) -> Path:
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    img = rng.normal(size=(emb_rows, 8)).astype(np.float16)
    if nan_row is not None:
        img[nan_row, 0] = np.nan
    np.save(root / "img_emb" / "img_emb_0.npy", img)
    np.save(root / "text_emb" / "text_emb_0.npy", rng.normal(size=(emb_rows, 8)).astype(np.float16))
    pq.write_table(
        pa.table({"caption": [f"c{i}" for i in range(rows)], "url": [f"u{i}" for i in range(rows)]}),
        root / "metadata" / "metadata_0.parquet",
    )
    return root


def test_embedding_row_count_mismatch_quarantines_rows_without_embeddings(tmp_path: Path) -> None:
    data = _read(_clip_retrieval(tmp_path / "emb", rows=5, emb_rows=3))
    assert data.table.column("quarantine_reason").to_pylist() == [None] * 3 + ["embedding_missing"] * 2
    assert any("3 embedding rows for 5 metadata rows" in n for n in data.notes)


def test_nan_embeddings_are_quarantined(tmp_path: Path) -> None:
    data = _read(_clip_retrieval(tmp_path / "emb", rows=3, emb_rows=3, nan_row=1))
    assert data.table.column("quarantine_reason").to_pylist() == [None, "embedding_invalid", None]
    assert data.table.column("image_embedding")[0].as_py() is not None


def _datacomp(folder: Path, keys: dict[str, np.ndarray], rows: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "uid": [f"u{i}" for i in range(rows)],
                "url": ["x"] * rows,
                "text": [f"c{i}" for i in range(rows)],
            }
        ),
        folder / "0000.parquet",
    )
    np.savez(folder / "0000.npz", **keys)
    return folder / "0000.parquet"


def test_datacomp_npz_gives_the_configured_models_embeddings(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _datacomp(
        tmp_path,
        {
            "b32_img": rng.normal(size=(3, 512)).astype(np.float16),
            "b32_txt": rng.normal(size=(3, 512)).astype(np.float16),
            "l14_img": np.zeros((3, 768), np.float16),
            "l14_txt": rng.normal(size=(3, 768)).astype(np.float16),
        },
    )
    [spec] = discover_shards([str(tmp_path)])
    assert spec.format == "datacomp" and spec.image_embeddings.endswith("0000.npz")
    b32 = read_shard(spec, clip_model="ViT-B-32")
    assert b32.embedding_model == "ViT-B-32" and len(b32.table.column("image_embedding")[0].as_py()) == 512
    assert b32.table.column("key").to_pylist() == ["u0", "u1", "u2"]
    l14 = read_shard(spec, clip_model="ViT-L-14")
    # all-zero image vectors cannot be normalised: quarantined, not silently scored
    assert l14.table.column("quarantine_reason").to_pylist() == ["embedding_invalid"] * 3


def test_datacomp_npz_without_model_arrays_is_a_run_error(tmp_path: Path) -> None:
    from audit.errors import InputFileError

    path = _datacomp(tmp_path, {"something": np.ones((3, 4))})
    with pytest.raises(InputFileError, match=r"0000\.npz: no <model>_img/<model>_txt arrays"):
        read_shard(discover_shards([str(path)])[0])


# --- webdataset tars: every sample is a row or a quarantine row (issue 11) ------------------------


def _member(name: str, data: bytes = b"", kind: bytes = b"0", link: str = "") -> tuple:
    return name, data, kind, link


def _write_tar(path: Path, members: list[tuple]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def _rows(table: pa.Table) -> list[tuple]:
    return list(
        zip(
            table.column("key").to_pylist(),
            table.column("caption").to_pylist(),
            table.column("quarantine_reason").to_pylist(),
            strict=True,
        )
    )


def test_samples_with_one_basename_in_two_folders_are_two_rows(tmp_path: Path) -> None:
    jpg = build_rows()[0].image
    path = _write_tar(
        tmp_path / "d.tar",
        [
            _member("x/dup.jpg", jpg),
            _member("x/dup.txt", b"first"),
            _member("y/dup.jpg", jpg),
            _member("y/dup.txt", b"second"),
        ],
    )
    data = _read(path)
    assert _rows(data.table) == [("x/dup", "first", None), ("y/dup", "second", None)]
    assert [i for i in data.table.column("image").to_pylist()] == [jpg, jpg]


def test_a_symlinked_or_hardlinked_member_makes_a_quarantine_row(tmp_path: Path) -> None:
    import tarfile

    path = _write_tar(
        tmp_path / "l.tar",
        [
            _member("a.jpg", b"\xff\xd8 bytes"),
            _member("a.txt", b"kept"),
            _member("b.jpg", kind=tarfile.SYMTYPE, link="a.jpg"),
            _member("b.txt", b"linked image"),
            _member("c.jpg", kind=tarfile.LNKTYPE, link="a.jpg"),
            _member("d.txt", kind=tarfile.FIFOTYPE),
        ],
    )
    table = _read(path).table
    assert table.num_rows == 4
    assert [r[0] for r in _rows(table)] == ["a", "b", "c", "d"]
    reasons = _by_key(table, "quarantine_reason")
    assert reasons["b"] == reasons["c"] == reasons["d"] == "member_not_regular"
    details = _by_key(table, "quarantine_detail")
    assert details["b"] == "b.jpg is a symbolic link to 'a.jpg'"
    assert details["c"] == "c.jpg is a hard link to 'a.jpg'"
    assert details["d"] == "d.txt is a fifo"
    assert _by_key(table, "caption")["b"] == "linked image"


def test_a_suffix_repeated_within_a_sample_starts_a_new_row(tmp_path: Path) -> None:
    path = _write_tar(
        tmp_path / "r.tar",
        [_member("k.txt", b"one"), _member("k.txt", b"two"), _member("k.jpg", b"\xff\xd8")],
    )
    assert [(k, c) for k, c, _ in _rows(_read(path).table)] == [("k", "one"), ("k", "two")]


def test_members_without_a_sample_name_are_noted(tmp_path: Path) -> None:
    path = _write_tar(
        tmp_path / "n.tar",
        [_member("README", b"hello"), _member("x/.jpg", b"\xff"), _member("k.txt", b"a caption")],
    )
    data = _read(path)
    assert _rows(data.table) == [("k", "a caption", None)]
    [note] = [n for n in data.notes if "no KEY.EXT name" in n]
    assert note.startswith(f"{path}: 2 tar members") and "'README'" in note


def test_tar_samples_keep_sidecar_rows_by_full_key(tmp_path: Path) -> None:
    path = _write_tar(tmp_path / "s.tar", [_member("k1.txt", b"a"), _member("sub/k1.txt", b"b")])
    pq.write_table(
        pa.table({"key": ["k1", "k2"], "url": ["u1", "u2"], "caption": ["a", "never fetched"]}),
        tmp_path / "s.parquet",
    )
    table = _read(path).table
    assert table.column("key").to_pylist() == ["k1", "sub/k1", "k2"]
    assert table.column("url").to_pylist() == ["u1", None, "u2"]


def test_string_captions_are_empty_exactly_when_python_strip_empties_them() -> None:
    """The Arrow check (audit.readers.normalize.caption_columns) against str.strip() on every
    whitespace character Python knows, alone, doubled and around text."""
    from audit.readers.normalize import PY_WHITESPACE, caption_columns, decode_captions

    blanks = [*PY_WHITESPACE, PY_WHITESPACE, " \u200b ", "\u200b", "\ufeff"]  # zero-width: not space
    texts = [*blanks, *(f"{c}x{c}" for c in PY_WHITESPACE), "a photo", "", None]
    col = pa.chunked_array([pa.array(texts, pa.string())])
    captions, problems = caption_columns(col, len(texts))
    ref_captions, ref_problems = decode_captions(col, len(texts))
    assert captions.to_pylist() == ref_captions
    assert problems.to_pylist() == ref_problems


def test_seen_keys_match_a_set_over_many_batches() -> None:
    """Key-repeat counting against a Python set, over enough batches that runs are merged."""
    from audit.readers import SeenKeys

    rng = np.random.default_rng(0)
    keys = [f"k{v}" for v in rng.integers(0, 30_000, 40_000)]
    seen, reference = SeenKeys(), set()
    expected = []
    for k in keys:
        expected.append(k in reference)
        reference.add(k)
    got = np.concatenate([seen.add(keys[i : i + 997]) for i in range(0, len(keys), 997)])
    assert got.tolist() == expected
    assert seen.repeated == sum(expected)
    assert seen.sorted_unique().size == len(reference)
    assert len(seen._runs) <= 16  # merged as a binary counter, not one run per batch
