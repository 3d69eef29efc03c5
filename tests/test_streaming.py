"""Shards are read and audited in batches: the same rows, keys and outputs as one whole read, with
memory that follows the batch rather than the shard."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import textwrap
import tracemalloc
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.errors import InputFileError
from audit.readers import SeenKeys, iter_shard, read_shard
from audit.runfolder import RunFolder
from audit.schemas import INGESTED_SCHEMA
from audit.shards import ShardSpec, discover_shards


def _spec(path: Path | str) -> ShardSpec:
    [spec] = discover_shards([str(path)])
    return spec


def _batches(
    spec: ShardSpec, batch_rows: int, clip_model: str | None = None
) -> tuple[list[pa.Table], object]:
    reader = iter_shard(spec, clip_model=clip_model, batch_rows=batch_rows)
    return list(reader.batches()), reader


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_same_rows(batches: list[pa.Table], whole: pa.Table) -> None:
    assert all(b.schema.equals(INGESTED_SCHEMA, check_metadata=True) for b in batches)
    joined = pa.concat_tables(batches)
    assert joined.num_rows == whole.num_rows
    for name in INGESTED_SCHEMA.names:
        assert joined.column(name).to_pylist() == whole.column(name).to_pylist(), name
    assert joined.column("row_index").to_pylist() == list(range(whole.num_rows))


# --- parquet ---------------------------------------------------------------------------------------


def test_parquet_batches_give_the_same_rows_keys_and_row_index_as_one_read(
    sample_dir: Path, tmp_path: Path
) -> None:
    src = pq.read_table(sample_dir / "parquet" / "00000.parquet")
    path = tmp_path / "multi.parquet"
    pq.write_table(src, path, row_group_size=5)
    assert pq.ParquetFile(path).metadata.num_row_groups > 3
    spec = _spec(path)
    whole = read_shard(spec)
    batches, reader = _batches(spec, batch_rows=3)
    assert len(batches) >= src.num_rows // 3 and max(b.num_rows for b in batches) <= 3
    _assert_same_rows(batches, whole.table)
    assert whole.table.column("key").to_pylist() == src.column("key").to_pylist()
    assert reader.sha256 == whole.sha256 == _sha256(path)
    assert reader.rows == src.num_rows


def test_fallback_keys_use_the_row_number_within_the_shard(tmp_path: Path) -> None:
    n = 11
    ids = [None if i % 4 == 1 else 100 + i for i in range(n)]
    pq.write_table(
        pa.table({"URL": [f"u{i}" for i in range(n)], "TEXT": ["t"] * n, "SAMPLE_ID": ids}),
        tmp_path / "s.parquet",
        row_group_size=4,
    )
    batches, _ = _batches(_spec(tmp_path / "s.parquet"), batch_rows=2)
    keys = pa.concat_tables(batches).column("key").to_pylist()
    assert keys == [f"s:{i}" if ids[i] is None else str(ids[i]) for i in range(n)]


def test_duplicate_keys_across_batch_boundaries_are_counted_whatever_the_batch_size(tmp_path: Path) -> None:
    keys = ["a", "b", "c", "a", "d", "b", "e", "c", "c", "f"]
    pq.write_table(
        pa.table({"key": keys, "url": ["u"] * len(keys), "caption": ["x"] * len(keys)}),
        tmp_path / "d.parquet",
        row_group_size=3,
    )
    spec = _spec(tmp_path / "d.parquet")
    for batch_rows in (1, 2, 3, 100):
        reader = iter_shard(spec, batch_rows=batch_rows)
        got = pa.concat_tables(list(reader.batches()))
        assert got.column("quarantine_reason").null_count == len(keys), batch_rows  # nothing dropped
        assert got.column("row_id").to_pylist() == [f"d:{i}" for i in range(len(keys))], batch_rows
        assert reader.keys_repeated == 4, batch_rows


def test_seen_keys_matches_a_set_over_many_batches() -> None:
    rng = np.random.default_rng(0)
    keys = [f"k{v}" for v in rng.integers(0, 3000, size=8000)]
    seen, oracle = SeenKeys(), set()
    got: list[bool] = []
    for i in range(0, len(keys), 37):
        got += seen.add(keys[i : i + 37]).tolist()
    expected = []
    for k in keys:
        expected.append(k in oracle)
        oracle.add(k)
    assert got == expected
    assert seen.nbytes <= 8 * 2 * len(oracle)  # 8 bytes a distinct key, runs merged as they grow


def test_a_broken_parquet_shard_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"PAR1" + b"\x00" * 64)
    spec = ShardSpec("x", str(tmp_path / "x.parquet"), "laion_metadata")
    with pytest.raises(InputFileError, match=r"x\.parquet: not a readable parquet file"):
        list(iter_shard(spec).batches())


# --- webdataset ------------------------------------------------------------------------------------


def test_webdataset_tar_streams_in_batches_tar_order_then_sidecar_only_rows(sample_dir: Path) -> None:
    tar_path = sample_dir / "webdataset" / "00002.tar"
    spec = _spec(tar_path)
    whole = read_shard(spec)
    batches, reader = _batches(spec, batch_rows=2)
    assert len(batches) > 2
    _assert_same_rows(batches, whole.table)
    with tarfile.open(tar_path) as tar:
        tar_keys = list(dict.fromkeys(m.name.split(".")[0] for m in tar.getmembers()))
    side_keys = pq.read_table(spec.sidecar).column("key").to_pylist()
    keys = whole.table.column("key").to_pylist()
    assert keys == tar_keys + [k for k in side_keys if k not in tar_keys]
    assert keys[-1] == "fetch-failed"  # a failed download lives in the sidecar only
    assert reader.sha256 == _sha256(tar_path)


def _write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for suffix, data in members.items():
                info = tarfile.TarInfo(key + suffix)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_webdataset_holds_one_batch_of_members_not_the_tar(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n, size = 60, 1 << 20
    _write_tar(
        tmp_path / "big.tar", [(f"k{i:03d}", {".jpg": rng.bytes(size), ".txt": b"c"}) for i in range(n)]
    )
    spec = _spec(tmp_path / "big.tar")
    tracemalloc.start()
    try:
        rows = 0
        reader = iter_shard(spec, batch_rows=4)
        for batch in reader.batches():
            rows += batch.num_rows
            del batch
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == n and reader.sha256 == _sha256(tmp_path / "big.tar")
    assert peak < 12 * size, f"peak {peak / 2**20:.0f} MiB of Python objects for a {n} MiB tar"


def test_webdataset_key_split_across_the_tar_is_two_rows_with_their_own_ids(tmp_path: Path) -> None:
    _write_tar(
        tmp_path / "w.tar",
        [(k, {".txt": b"caption", ".jpg": b"bytes"}) for k in ("a", "b", "a")],
    )
    reader = iter_shard(_spec(tmp_path / "w.tar"))
    table = pa.concat_tables(list(reader.batches()))
    assert table.column("key").to_pylist() == ["a", "b", "a"]
    assert table.column("row_id").to_pylist() == ["w:0", "w:1", "w:2"]
    assert table.column("quarantine_reason").null_count == 3 and reader.keys_repeated == 1


@pytest.mark.parametrize("cut", [0, 700], ids=["at-a-header", "inside-a-member"])
def test_a_tar_that_breaks_mid_stream_is_one_clear_error(tmp_path: Path, cut: int) -> None:
    _write_tar(tmp_path / "t.tar", [(f"k{i}", {".txt": b"x" * 2000}) for i in range(20)])
    data = (tmp_path / "t.tar").read_bytes()  # 2560 bytes a member
    (tmp_path / "t.tar").write_bytes(data[: 12 * 2560 + cut] + b"\xff" * 600)
    with pytest.raises(InputFileError, match=r"t\.tar: not a readable tar file"):
        list(iter_shard(_spec(tmp_path / "t.tar"), batch_rows=3).batches())


# --- precomputed embeddings ------------------------------------------------------------------------


def _clip_retrieval(fs: fsspec.AbstractFileSystem, root: str, rows: int, emb_rows: int) -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(size=(emb_rows, 8)).astype(np.float16)
    img[2] = 0  # all zeros: quarantined
    for sub, arr in (("img_emb/img_emb_0.npy", img), ("text_emb/text_emb_0.npy", img[::-1].copy() + 1)):
        fs.makedirs(f"{root}/{sub.split('/')[0]}", exist_ok=True)
        with fs.open(f"{root}/{sub}", "wb") as f:
            np.save(f, arr)
    fs.makedirs(f"{root}/metadata", exist_ok=True)
    with fs.open(f"{root}/metadata/metadata_0.parquet", "wb") as f:
        pq.write_table(pa.table({"caption": [f"c{i}" for i in range(rows)]}), f, row_group_size=3)


@pytest.mark.parametrize("where", ["local", "memory"])
def test_embedding_batches_are_slices_of_the_embedding_files(tmp_path: Path, where: str) -> None:
    if where == "local":
        fs, root = fsspec.filesystem("file"), str(tmp_path / "emb")
    else:  # a non-local fsspec filesystem: rows are read by seeking, the files are never loaded whole
        fs, root = fsspec.filesystem("memory"), f"memory://stream-{tmp_path.name}"
    _clip_retrieval(fs, root, rows=9, emb_rows=7)
    spec = _spec(root)
    whole = read_shard(spec)
    batches, reader = _batches(spec, batch_rows=2)
    _assert_same_rows(batches, whole.table)
    reasons = whole.table.column("quarantine_reason").to_pylist()
    assert reasons == [None, None, "embedding_invalid"] + [None] * 4 + ["embedding_missing"] * 2
    expected = np.load(fs.open(f"{root}/img_emb/img_emb_0.npy")).astype(np.float32)
    got = np.asarray(whole.table.column("image_embedding").to_pylist()[:7], np.float32)
    np.testing.assert_array_equal(got, expected)
    assert reader.notes == whole.notes and any(
        "7 embedding rows for 9 metadata rows" in n for n in reader.notes
    )


def test_datacomp_compressed_npz_is_read_in_batches(tmp_path: Path) -> None:
    rows = 7
    rng = np.random.default_rng(0)
    b32 = rng.normal(size=(rows, 16)).astype(np.float16)
    pq.write_table(
        pa.table({"uid": [f"u{i}" for i in range(rows)], "url": ["x"] * rows, "text": ["c"] * rows}),
        tmp_path / "0000.parquet",
    )
    np.savez_compressed(tmp_path / "0000.npz", b32_img=b32, b32_txt=b32 + 1, l14_img=b32, l14_txt=b32)
    spec = _spec(tmp_path / "0000.parquet")
    whole = read_shard(spec, clip_model="ViT-L-14")
    batches, reader = _batches(spec, batch_rows=3, clip_model="ViT-L-14")
    _assert_same_rows(batches, whole.table)
    assert reader.embedding_model == whole.embedding_model == "ViT-L-14"
    got = np.asarray(whole.table.column("text_embedding").to_pylist(), np.float32)
    np.testing.assert_array_equal(got, b32.astype(np.float32))


# --- the audit of one shard --------------------------------------------------------------------------


def _audit(spec: ShardSpec, cfg, run_dir: Path, batch_rows: int):
    from audit.shard_audit import audit_shard

    record = audit_shard(spec, cfg, str(run_dir), batch_rows=batch_rows)
    run = RunFolder(str(run_dir))
    outputs = {
        "scores": pq.read_table(run.scores(spec.shard_id)),
        "flags": pq.read_table(run.part("flags", spec.shard_id)),
        "quarantine": pq.read_table(run.part("quarantine", spec.shard_id)),
    }
    return record, outputs


def _close(x: object, y: object) -> bool:
    """Equal, except that floats may differ in rounding: the models see other batch shapes."""
    if isinstance(x, float) and isinstance(y, float):
        return bool(np.isclose(x, y, rtol=1e-4, atol=1e-5, equal_nan=True))
    if isinstance(x, list | tuple) and isinstance(y, list | tuple):
        return len(x) == len(y) and all(_close(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_close(x[k], y[k]) for k in x)
    return x == y


def _assert_tables_match(a: pa.Table, b: pa.Table, what: str) -> None:
    assert a.schema.equals(b.schema, check_metadata=True), what
    assert a.num_rows == b.num_rows, what
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        bad = [i for i, (u, v) in enumerate(zip(x, y, strict=True)) if not _close(u, v)]
        assert not bad, (what, name, [(x[i], y[i]) for i in bad[:3]])


@pytest.mark.slow
def test_scoring_in_small_batches_gives_the_same_outputs(
    sample_dir: Path, make_config, tmp_path: Path
) -> None:
    cfg = make_config(**{"images.known_bad_lists": [str(sample_dir / "known_bad.csv")]})
    specs = discover_shards([str(sample_dir / "parquet"), str(sample_dir / "webdataset")])
    for spec in specs:
        small, small_out = _audit(spec, cfg, tmp_path / "small", batch_rows=7)
        large, large_out = _audit(spec, cfg, tmp_path / "large", batch_rows=100_000)
        for kind in small_out:
            _assert_tables_match(small_out[kind], large_out[kind], f"{spec.shard_id} {kind}")
        same = ("rows_in", "rows_scored", "rows_quarantined", "rows_flagged", "sha256", "notes")
        assert {k: getattr(small, k) for k in same} == {k: getattr(large, k) for k in same}
        assert small.image_decoders == large.image_decoders
        if small.device == "cpu":
            assert set(small.image_decoders) == {"pil"}  # CPU audits keep PIL, and the record says so
        assert small.rows_in == small.rows_scored + small.rows_quarantined
        assert {"read", "score", "flag", "write"} <= set(small.seconds)
    assert not list(tmp_path.rglob("*.tmp-*"))
    flagged = pq.read_table(tmp_path / "small" / "parts" / "flags" / "00000.parquet")
    assert flagged.num_rows > 0  # the comparison covered real flags, not two empty files


@pytest.mark.slow
def test_a_shard_failing_mid_stream_leaves_no_outputs(make_config, tmp_path: Path) -> None:
    from audit.shard_audit import audit_shard

    _write_tar(tmp_path / "t.tar", [(f"k{i}", {".txt": f"caption {i}".encode()}) for i in range(40)])
    data = (tmp_path / "t.tar").read_bytes()
    (tmp_path / "t.tar").write_bytes(data[: len(data) * 3 // 4] + b"\xff" * 600)
    run_dir = tmp_path / "run"
    with pytest.raises(InputFileError, match="not a readable tar file"):
        audit_shard(_spec(tmp_path / "t.tar"), make_config(), str(run_dir), batch_rows=4)
    assert [p for p in run_dir.rglob("*") if p.is_file()] == []


# --- memory ----------------------------------------------------------------------------------------

READ_AND_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from audit.readers import iter_shard
    from audit.shards import discover_shards

    [spec] = discover_shards([sys.argv[1]])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reader = iter_shard(spec, batch_rows=int(sys.argv[2]))
    rows = sum(b.num_rows for b in reader.batches())
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "growth_mib": (after - before) / 1024, "sha256": reader.sha256}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "layout",
    [
        {"row_group_size": 50},  # many row groups
        {"row_group_size": 1 << 20, "write_batch_size": 16},  # one row group of small pages
    ],
    ids=["row-groups", "one-row-group"],
)
def test_reading_a_large_parquet_shard_holds_a_batch_not_the_shard(tmp_path: Path, layout: dict) -> None:
    rng = np.random.default_rng(0)
    n, size = 2000, 100_000  # 200 MB of incompressible image bytes
    table = pa.table(
        {
            "key": [f"k{i}" for i in range(n)],
            "url": ["u"] * n,
            "caption": [f"caption {i}" for i in range(n)],
            "jpg": pa.array([rng.bytes(size) for _ in range(n)], pa.binary()),
        }
    )
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, compression="none", **layout)
    del table
    out = subprocess.run(
        [sys.executable, "-c", READ_AND_MEASURE, str(path), "64"],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(out.stdout)
    assert got["rows"] == n and got["sha256"] == _sha256(path)
    shard_mib = path.stat().st_size / 2**20
    assert got["growth_mib"] < shard_mib / 4, f"{got['growth_mib']:.0f} MiB for a {shard_mib:.0f} MiB shard"


def test_embedding_checks_name_nan_inf_and_zero_rows_and_keep_huge_finite_ones() -> None:
    from audit.readers.embeddings import attach_embeddings

    x = np.ones((7, 4), np.float32)
    x[1, 2], x[2, 0], x[3], x[4, :2] = np.nan, np.inf, 0, (np.inf, -np.inf)
    x[5] = np.finfo(np.float32).max  # finite: its float32 sum would overflow, a float64 one does not
    x[6] = -np.finfo(np.float32).tiny  # tiny but not zero
    base = pa.table(
        {"quarantine_reason": pa.nulls(7, pa.string()), "quarantine_detail": pa.nulls(7, pa.string())}
    )
    t = attach_embeddings(base, {"image_embedding": (x, "a.npy")})
    bad = "image_embedding holds NaN or inf"
    assert t.column("quarantine_detail").to_pylist() == [
        None, bad, bad, "image_embedding is all zeros", bad, None, None
    ]  # fmt: skip
