from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.errors import ColumnTypeError, InputFileError, MissingColumnError
from audit.shards import discover_shards, validate_shard


def _laion(path: Path, **cols: list) -> Path:
    base = {"URL": ["http://a.invalid/1.jpg", "http://a.invalid/2.jpg"], "TEXT": ["a dog", "a cat"]}
    base.update(cols)
    pq.write_table(pa.table(base), path)
    return path


def test_directory_pairs_tar_with_its_sidecar(sample_dir: Path) -> None:
    specs = discover_shards([str(sample_dir / "webdataset")])
    assert [(s.format, Path(s.path).name, Path(s.sidecar).name) for s in specs] == [
        ("webdataset", "00002.tar", "00002.parquet")
    ]


def test_formats_are_detected_from_columns(sample_dir: Path) -> None:
    specs = discover_shards([str(sample_dir / "parquet"), str(sample_dir / "laion_metadata")])
    assert [s.format for s in specs] == ["img2dataset_parquet", "img2dataset_parquet", "laion_metadata"]


def test_glob_and_file_inputs(sample_dir: Path) -> None:
    by_glob = discover_shards([str(sample_dir / "parquet" / "*.parquet")])
    by_file = discover_shards([str(sample_dir / "parquet" / "00000.parquet")])
    assert [s.shard_id for s in by_glob] == ["00000", "00001"]
    assert [s.shard_id for s in by_file] == ["00000"]


def test_colliding_stems_get_parent_folders_in_their_ids(tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        _laion(tmp_path / d / "part.parquet")
    ids = [s.shard_id for s in discover_shards([str(tmp_path / "a"), str(tmp_path / "b")])]
    assert ids == ["a__part", "b__part"]


def test_missing_input_fails_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nope\.parquet: no such file"):
        discover_shards([str(tmp_path / "nope.parquet")])


def test_glob_matching_nothing_fails(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="matches no files"):
        discover_shards([str(tmp_path / "*.parquet")])


def test_unreadable_parquet_fails_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(InputFileError, match=r"broken\.parquet: not a readable parquet file"):
        validate_shard(discover_shards([str(bad)])[0])


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "nourl.parquet"
    pq.write_table(pa.table({"TEXT": ["a dog"]}), path)
    with pytest.raises(MissingColumnError, match=r"nourl\.parquet: required column 'url' is missing"):
        validate_shard(discover_shards([str(path)])[0])


def test_wrong_column_type_names_file_column_and_type(tmp_path: Path) -> None:
    path = _laion(tmp_path / "typed.parquet", TEXT=[1, 2])
    with pytest.raises(
        ColumnTypeError, match=r"typed\.parquet: column 'TEXT' has type int64, expected string/binary"
    ):
        validate_shard(discover_shards([str(path)])[0])


def test_column_names_match_case_insensitively(tmp_path: Path) -> None:
    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.table({"Url": ["http://a.invalid/x"], "Text": ["a dog"], "PUNSAFE": [0.1]}), path)
    spec = discover_shards([str(path)])[0]
    validate_shard(spec)
    assert spec.format == "laion_metadata"


def test_clip_retrieval_folder_is_one_shard_per_metadata_file(tmp_path: Path) -> None:
    root = tmp_path / "emb"
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    for n in range(2):
        np.save(root / "img_emb" / f"img_emb_{n}.npy", np.ones((2, 4), np.float16))
        np.save(root / "text_emb" / f"text_emb_{n}.npy", np.ones((2, 4), np.float16))
        pq.write_table(
            pa.table({"caption": ["a", "b"], "url": ["u1", "u2"]}),
            root / "metadata" / f"metadata_{n}.parquet",
        )
    specs = discover_shards([str(root)])
    assert [(s.format, Path(s.image_embeddings).name) for s in specs] == [
        ("clip_retrieval", "img_emb_0.npy"),
        ("clip_retrieval", "img_emb_1.npy"),
    ]


def test_clip_retrieval_folder_missing_embeddings_fails(tmp_path: Path, sample_dir: Path) -> None:
    root = tmp_path / "emb"
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    shutil.copy(
        sample_dir / "laion_metadata" / "part-00000.parquet", root / "metadata" / "metadata_0.parquet"
    )
    with pytest.raises(InputFileError, match=r"img_emb_0\.npy: missing embedding file"):
        discover_shards([str(root)])
