"""Block-int8 embedding files: exact round trip, size, schema checks, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.errors import ColumnTypeError, InputFileError
from audit.kernels.int8_cpu import paired_cosine_int8_cpu, quantize_int8_cpu
from audit.kernels.reference import paired_cosine_ref
from audit.kernels.storage import from_table, read_embeddings, to_table, write_embeddings
from audit.schemas.embedding_storage import (
    EMBEDDING_STORAGE_VERSION,
    embedding_storage_schema,
    parse_embedding_storage_schema,
)


def test_round_trip_is_exact_and_keeps_the_error_bound(
    pairs: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    a, b = pairs
    qa, qb = quantize_int8_cpu(a), quantize_int8_cpu(b)
    write_embeddings(str(tmp_path / "img.parquet"), qa)
    write_embeddings(str(tmp_path / "txt.parquet"), qb)
    ra, keys = read_embeddings(str(tmp_path / "img.parquet"))
    rb, _ = read_embeddings(str(tmp_path / "txt.parquet"))
    assert keys is None and ra.block_size == qa.block_size
    np.testing.assert_array_equal(ra.codes, qa.codes)
    np.testing.assert_array_equal(ra.scales, qa.scales)
    np.testing.assert_allclose(ra.norms, qa.norms, rtol=1e-6)  # recomputed on read
    err = np.abs(paired_cosine_int8_cpu(ra, rb) - paired_cosine_ref(a, b))
    assert np.percentile(err, 99.9) <= 0.003


def test_file_is_about_a_quarter_of_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 512)).astype(np.float32)
    written = write_embeddings(str(tmp_path / "e.parquet"), quantize_int8_cpu(x))
    assert written == (tmp_path / "e.parquet").stat().st_size
    assert 0.20 < written / x.nbytes <= 0.275


def test_keys_round_trip_and_must_match_rows(tmp_path: Path) -> None:
    q = quantize_int8_cpu(np.ones((3, 64), np.float32))
    write_embeddings(str(tmp_path / "k.parquet"), q, keys=["s:0", "s:1", "s:2"])
    _, keys = read_embeddings(str(tmp_path / "k.parquet"))
    assert keys == ["s:0", "s:1", "s:2"]
    with pytest.raises(ValueError, match="2 keys for 3"):
        to_table(q, keys=["a", "b"])


def test_stored_schema_is_versioned_and_describes_the_layout(tmp_path: Path) -> None:
    q = quantize_int8_cpu(np.ones((2, 768), np.float32), 128)
    write_embeddings(str(tmp_path / "s.parquet"), q)
    schema = pq.read_schema(tmp_path / "s.parquet")
    assert schema.metadata[b"mmaudit.version"] == EMBEDDING_STORAGE_VERSION.encode()
    assert schema.field("codes").type == pa.binary(768)
    assert schema.field("scales").type.list_size == 6
    assert parse_embedding_storage_schema(schema) == (768, 128, False)
    assert schema.equals(embedding_storage_schema(768, 128), check_metadata=True)


def test_sliced_tables_read_from_the_right_offset() -> None:
    x = np.arange(10 * 64, dtype=np.float32).reshape(10, 64) - 300
    q = quantize_int8_cpu(x)
    back, _ = from_table(to_table(q).slice(4, 3))
    np.testing.assert_array_equal(back.codes, q.codes[4:7])
    np.testing.assert_array_equal(back.scales, q.scales[4:7])


def test_other_versions_and_foreign_files_are_refused(tmp_path: Path) -> None:
    table = to_table(quantize_int8_cpu(np.ones((2, 64), np.float32)))
    meta = dict(table.schema.metadata)
    meta[b"mmaudit.version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "v99.parquet")
    with pytest.raises(ColumnTypeError, match=r"v99\.parquet: embedding file version 99"):
        read_embeddings(str(tmp_path / "v99.parquet"))
    pq.write_table(pa.table({"codes": [b"x"]}), tmp_path / "foreign.parquet")
    with pytest.raises(ColumnTypeError, match="not an mmaudit block-int8 embedding file"):
        read_embeddings(str(tmp_path / "foreign.parquet"))
    wrong = table.schema.set(1, pa.field("scales", pa.list_(pa.float16(), 1)))
    with pytest.raises(ValueError, match="column 'scales'"):
        parse_embedding_storage_schema(wrong)


def test_missing_and_unreadable_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        read_embeddings(str(tmp_path / "nope.parquet"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputFileError, match=r"bad\.parquet"):
        read_embeddings(str(tmp_path / "bad.parquet"))
