from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.readers import read_shard
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


def test_null_and_non_utf8_captions_are_quarantined(tmp_path: Path) -> None:
    table = pa.table({"url": ["u1", "u2", "u3"], "text": pa.array([b"ok", None, b"caf\xe9"], pa.binary())})
    pq.write_table(table, tmp_path / "c.parquet")
    got = _by_key(_read(tmp_path / "c.parquet").table, "quarantine_reason")
    assert got == {"c:0": None, "c:1": "caption_missing", "c:2": "caption_not_utf8"}


def test_webdataset_latin1_caption_and_failed_download(sample_dir: Path) -> None:
    table = _read(sample_dir / "webdataset" / "00002.tar").table
    reasons = _by_key(table, "quarantine_reason")
    status = _by_key(table, "fetch_status")
    assert reasons["bad-latin1-caption"] == "caption_not_utf8"
    # a failed download is not bad data: it is audited text-only
    assert status["fetch-failed"] == "failed_to_download" and reasons["fetch-failed"] is None


def test_rows_missing_image_bytes_despite_success_are_quarantined(tmp_path: Path) -> None:
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
    assert _by_key(_read(tmp_path / "i.parquet").table, "quarantine_reason") == {
        "a": "image_missing",
        "b": "image_empty",
        "c": None,
    }


def test_duplicate_keys_in_a_shard_are_quarantined_after_the_first(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"key": ["k", "k"], "url": ["u", "u"], "caption": ["a", "b"]}), tmp_path / "d.parquet"
    )
    assert _read(tmp_path / "d.parquet").table.column("quarantine_reason").to_pylist() == [
        None,
        "duplicate_key",
    ]


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
