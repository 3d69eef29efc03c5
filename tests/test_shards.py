from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.errors import ColumnTypeError, DuplicateColumnError, InputFileError, MissingColumnError
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


# --- hostile input files (issue 11) -------------------------------------------------------------


def _raw_parquet(path: Path, names: list[str]) -> Path:
    pq.write_table(pa.table([pa.array([f"v{i}"]) for i in range(len(names))], names=names), path)
    return path


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["URL", "TEXT", "text"], r"columns 'TEXT' and 'text' both match the caption column"),
        (["URL", "text", "text"], r"column 'text' appears 2 times"),
        (["url", "URL", "TEXT"], r"columns 'url' and 'URL' both match the url column"),
    ],
)
def test_columns_equal_case_insensitively_are_refused_naming_file_and_columns(
    tmp_path: Path, names: list[str], expected: str
) -> None:
    path = _raw_parquet(tmp_path / "dup.parquet", names)
    with pytest.raises(DuplicateColumnError, match=rf"dup\.parquet: {expected}"):
        validate_shard(discover_shards([str(path)])[0])


def test_a_sidecar_with_duplicate_columns_is_refused(tmp_path: Path) -> None:
    _tar(tmp_path / "s.tar", [("k.txt", b"a caption")])
    _raw_parquet(tmp_path / "s.parquet", ["key", "Key", "url"])
    with pytest.raises(DuplicateColumnError, match=r"s\.parquet: columns 'key' and 'Key'"):
        validate_shard(discover_shards([str(tmp_path / "s.tar")])[0])


def test_case_twins_of_a_lower_priority_alias_are_not_ambiguous(tmp_path: Path) -> None:
    # what `mmaudit fetch` writes: img2dataset's width beside LAION's WIDTH, and original_width,
    # which the width field reads first
    table = pa.table(
        {
            "key": ["k"],
            "url": ["u"],
            "caption": ["c"],
            "width": [256],
            "WIDTH": [640],
            "original_width": [640],
        }
    )
    pq.write_table(table, tmp_path / "f.parquet")
    validate_shard(discover_shards([str(tmp_path / "f.parquet")])[0])


def test_a_symlinked_file_is_one_shard_and_said_so(tmp_path: Path, caplog) -> None:
    real = _laion(tmp_path / "real.parquet")
    (tmp_path / "alias.parquet").symlink_to(real)
    with caplog.at_level("WARNING", logger="audit.shards"):
        specs = discover_shards([str(real), str(tmp_path / "alias.parquet")])
    assert [s.path for s in specs] == [str(real)]
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "alias.parquet" in warning and "real.parquet" in warning and "read once" in warning


def test_a_folder_given_twice_through_a_symlinked_folder_is_read_once(tmp_path: Path, caplog) -> None:
    (tmp_path / "data").mkdir()
    for n in ("a", "b"):
        _laion(tmp_path / "data" / f"{n}.parquet")
    (tmp_path / "link").symlink_to(tmp_path / "data", target_is_directory=True)
    (tmp_path / "data" / "hardlinked.parquet").hardlink_to(tmp_path / "data" / "a.parquet")
    with caplog.at_level("WARNING", logger="audit.shards"):
        specs = discover_shards([str(tmp_path / "data"), str(tmp_path / "link")])
    assert [Path(s.path).name for s in specs] == ["a.parquet", "b.parquet"]
    assert [s.shard_id for s in specs] == ["a", "b"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    # data/hardlinked.parquet and the three files again through link/
    assert len(warnings) == 1 and warnings[0].startswith("4 paths to shard files already given")


def test_the_same_path_given_twice_is_one_shard(tmp_path: Path) -> None:
    path = _laion(tmp_path / "a.parquet")
    assert len(discover_shards([str(path), str(path)])) == 1


def test_a_symlink_loop_in_a_folder_does_not_hang(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    _laion(tmp_path / "d" / "a.parquet")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d", target_is_directory=True)
    assert [Path(s.path).name for s in discover_shards([str(tmp_path / "d")])] == ["a.parquet"]


def _fake_run_folder(root: Path) -> Path:
    """What a run leaves: manifest.json, shards/, scores/ and top-level parquet tables."""
    (root / "scores").mkdir(parents=True)
    (root / "shards").mkdir()
    (root / "manifest.json").write_text('{"config_hash": "0123456789abcdef", "shards": []}')
    _laion(root / "flags.parquet")
    _laion(root / "scores" / "a.parquet")
    return root


def test_run_folders_inside_an_input_folder_are_not_shards(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _laion(tmp_path / "in" / "a.parquet")
    _fake_run_folder(tmp_path / "in" / "runs" / "old")
    assert [s.path for s in discover_shards([str(tmp_path / "in")])] == [str(tmp_path / "in" / "a.parquet")]
    globbed = discover_shards([str(tmp_path / "in" / "**" / "*.parquet")])
    assert [s.path for s in globbed] == [str(tmp_path / "in" / "a.parquet")]


def test_a_run_folder_given_as_input_is_refused(tmp_path: Path) -> None:
    run = _fake_run_folder(tmp_path / "run")
    with pytest.raises(InputFileError, match=r"run: an mmaudit run folder \(it has manifest\.json\)"):
        discover_shards([str(run)])


@pytest.mark.parametrize("out", [".", "runs/x", "sub/../runs"])
def test_out_equal_to_or_inside_an_input_folder_is_refused(tmp_path: Path, out: str) -> None:
    (tmp_path / "in").mkdir()
    _laion(tmp_path / "in" / "a.parquet")
    with pytest.raises(
        InputFileError, match=r"--out .* (is|is inside) the input folder .*in: the run's outputs"
    ):
        discover_shards([str(tmp_path / "in")], out=str(tmp_path / "in" / out))


def test_out_inside_a_globs_folder_is_refused_and_beside_it_is_fine(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _laion(tmp_path / "in" / "a.parquet")
    glob = str(tmp_path / "in" / "*.parquet")
    with pytest.raises(InputFileError, match=r"is inside the input folder"):
        discover_shards([glob], out=str(tmp_path / "in" / "run"))
    assert len(discover_shards([glob], out=str(tmp_path / "run"))) == 1


def test_out_through_a_symlink_into_an_input_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _laion(tmp_path / "in" / "a.parquet")
    (tmp_path / "alias").symlink_to(tmp_path / "in", target_is_directory=True)
    with pytest.raises(InputFileError, match=r"is inside the input folder"):
        discover_shards([str(tmp_path / "in")], out=str(tmp_path / "alias" / "run"))


# --- the folder `mmaudit fetch` writes ------------------------------------------------------------


def _img2dataset(path: Path, keys: list[str]) -> None:
    pq.write_table(
        pa.table(
            {
                "key": keys,
                "url": [f"http://a.invalid/{k}.jpg" for k in keys],
                "caption": [f"a photo {k}" for k in keys],
                "status": ["failed_to_download"] * len(keys),
                "jpg": pa.nulls(len(keys), pa.binary()),
            }
        ),
        path,
    )


def _fetch_layout(out: Path) -> Path:
    """OUT/fetch.json and OUT/<shard>/00000.parquet + 00000_stats.json, as audit/fetch.py writes it;
    plus img2dataset's _tmp folder that an interrupted fetch leaves."""
    for n, shard in enumerate(("part-00000", "part-00001")):
        (out / shard / "_tmp").mkdir(parents=True)
        _img2dataset(out / shard / "00000.parquet", [f"{n}{i:08d}" for i in range(3)])
        (out / shard / "00000_stats.json").write_text('{"count": 3, "successes": 0}')
        (out / shard / "_tmp" / "0.feather").write_bytes(b"not a shard")
    (out / "fetch.json").write_text('{"out": "x", "shards": []}')
    return out


def test_the_fetch_output_folder_is_a_shard_set_as_it_is(tmp_path: Path) -> None:
    out = _fetch_layout(tmp_path / "fetched")
    specs = discover_shards([str(out)])
    assert [(s.shard_id, s.format) for s in specs] == [
        ("part-00000__00000", "img2dataset_parquet"),
        ("part-00001__00000", "img2dataset_parquet"),
    ]
    for spec in specs:
        validate_shard(spec)


@pytest.mark.parametrize("pattern", ["*/", "*", "*/*"])
def test_globs_over_the_fetch_folder_skip_fetch_json_and_stats(tmp_path: Path, pattern: str) -> None:
    out = _fetch_layout(tmp_path / "fetched")
    specs = discover_shards([str(out) + "/" + pattern])
    assert [s.shard_id for s in specs] == ["part-00000__00000", "part-00001__00000"]


def test_a_glob_of_only_non_shard_files_fails(tmp_path: Path) -> None:
    out = _fetch_layout(tmp_path / "fetched")
    with pytest.raises(InputFileError, match=r"\*\.json: the glob matches no shard files"):
        discover_shards([str(out / "*.json")])


def test_folders_are_searched_below_for_shards(tmp_path: Path) -> None:
    _laion(tmp_path / "a.parquet")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    _laion(tmp_path / "deep" / "er" / "b.parquet")
    (tmp_path / ".hidden").mkdir()
    _laion(tmp_path / ".hidden" / "c.parquet")
    _laion(tmp_path / "_metadata.parquet")
    assert [s.shard_id for s in discover_shards([str(tmp_path)])] == ["a", "b"]


def test_an_explicit_file_with_an_unknown_suffix_still_fails(tmp_path: Path) -> None:
    (tmp_path / "fetch.json").write_text("{}")
    with pytest.raises(InputFileError, match=r"fetch\.json: unknown shard type"):
        discover_shards([str(tmp_path / "fetch.json")])


# --- corrupt files detected up front ------------------------------------------------------------


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _validate(path: Path) -> None:
    for spec in discover_shards([str(path)]):
        validate_shard(spec)


def test_a_tar_with_a_corrupt_first_header_is_refused(tmp_path: Path) -> None:
    path = _tar(tmp_path / "c.tar", [("k.txt", b"a caption"), ("k.jpg", b"x" * 600)])
    data = bytearray(path.read_bytes())
    data[0:8] = b"garbage!"  # the name field: the header checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match=r"c\.tar: not a readable tar file \(first member header"):
        _validate(path)


def test_a_truncated_tar_is_refused(tmp_path: Path) -> None:
    path = _tar(tmp_path / "t.tar", [("k.txt", b"a caption"), ("k.jpg", b"x" * 5000)])
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(InputFileError, match=r"t\.tar: not a readable tar file \(3000 bytes"):
        _validate(path)


@pytest.mark.parametrize(("content", "why"), [(b"", "empty file"), (b"hello" * 200, "first member")])
def test_a_file_that_is_no_tar_is_refused(tmp_path: Path, content: bytes, why: str) -> None:
    (tmp_path / "n.tar").write_bytes(content[:512])
    with pytest.raises(InputFileError, match=rf"n\.tar: not a readable tar file \({why}"):
        _validate(tmp_path / "n.tar")


def test_a_gzipped_tar_named_tar_is_accepted(tmp_path: Path) -> None:
    import gzip

    plain = _tar(tmp_path / "p.tar", [("k.txt", b"a caption")]).read_bytes()
    (tmp_path / "p.tar").write_bytes(gzip.compress(plain))
    _validate(tmp_path / "p.tar")


def _clip_folder(root: Path, img: np.ndarray | bytes) -> Path:
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    if isinstance(img, bytes):
        (root / "img_emb" / "img_emb_0.npy").write_bytes(img)
    else:
        np.save(root / "img_emb" / "img_emb_0.npy", img)
    np.save(root / "text_emb" / "text_emb_0.npy", np.ones((2, 4), np.float16))
    pq.write_table(pa.table({"caption": ["a", "b"]}), root / "metadata" / "metadata_0.parquet")
    return root


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("img", "expected"),
    [
        (_npy_bytes(np.ones((2, 4), np.float16))[:-5], r"img_emb_0\.npy: \.npy file is truncated"),
        (_npy_bytes(np.ones((2, 4), np.float16)) + b"xx", r"img_emb_0\.npy: 2 bytes after the array"),
        (np.ones((2, 2, 2), np.float16), r"img_emb_0\.npy: embeddings must be 2-D .* shape \(2, 2, 2\)"),
        (b"not numpy at all", r"img_emb_0\.npy: not a readable \.npy embedding file"),
        (np.array([{"a": 1}, None], dtype=object).reshape(1, 2), r"object arrays"),
    ],
)
def test_a_bad_npy_is_refused_up_front(tmp_path: Path, img, expected: str) -> None:
    with pytest.raises(InputFileError, match=expected):
        _validate(_clip_folder(tmp_path / "emb", img))


def _datacomp_pair(folder: Path, npz: bytes | dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"uid": ["u0", "u1"], "text": ["a", "b"]}), folder / "0000.parquet")
    if isinstance(npz, bytes):
        (folder / "0000.npz").write_bytes(npz)
    else:
        np.savez(folder / "0000.npz", **npz)
    return folder / "0000.parquet"


def test_an_npz_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"0000\.npz: not a readable \.npz file"):
        _validate(_datacomp_pair(tmp_path, b"PK but not really a zip file"))


def test_an_npz_without_model_arrays_is_refused_up_front(tmp_path: Path) -> None:
    path = _datacomp_pair(tmp_path, {"b32_img": np.ones((2, 4), np.float16)})
    with pytest.raises(InputFileError, match=r"0000\.npz: no <model>_img/<model>_txt arrays .*b32_img"):
        _validate(path)


def test_an_npz_with_a_3d_array_is_refused_up_front(tmp_path: Path) -> None:
    path = _datacomp_pair(
        tmp_path, {"b32_img": np.ones((2, 4, 1), np.float16), "b32_txt": np.ones((2, 4), np.float16)}
    )
    with pytest.raises(InputFileError, match=r"0000\.npz:b32_img\.npy: embeddings must be 2-D"):
        _validate(path)


def test_a_truncated_npz_is_refused(tmp_path: Path) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, b32_img=np.ones((2, 4), np.float16), b32_txt=np.ones((2, 4), np.float16))
    with pytest.raises(InputFileError, match=r"0000\.npz: not a readable \.npz file"):
        _validate(_datacomp_pair(tmp_path, buf.getvalue()[:-30]))


def test_good_embedding_files_pass_validation(tmp_path: Path) -> None:
    _validate(_clip_folder(tmp_path / "emb", np.ones((2, 4), np.float16)))
    _validate(
        _datacomp_pair(
            tmp_path / "dc", {"b32_img": np.ones((2, 4), np.float16), "b32_txt": np.ones((2, 4), np.float16)}
        )
    )


def test_symlinks_inside_a_folder_are_followed_once(tmp_path: Path, caplog) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    _laion(tmp_path / "in" / "sub" / "a.parquet")
    _laion(tmp_path / "elsewhere.parquet")
    (tmp_path / "in" / "b.parquet").symlink_to(tmp_path / "elsewhere.parquet")
    (tmp_path / "in" / "alias").symlink_to(tmp_path / "in" / "sub", target_is_directory=True)
    with caplog.at_level("WARNING", logger="audit.shards"):
        specs = discover_shards([str(tmp_path / "in")])
    assert sorted(Path(s.path).name for s in specs) == ["a.parquet", "b.parquet"]
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("1 path to shard files already given")


def test_a_broken_symlink_named_like_a_shard_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _laion(tmp_path / "in" / "a.parquet")
    (tmp_path / "in" / "gone.parquet").symlink_to(tmp_path / "nowhere.parquet")
    with pytest.raises(InputFileError, match=r"gone\.parquet: a broken symbolic link"):
        discover_shards([str(tmp_path / "in")])
