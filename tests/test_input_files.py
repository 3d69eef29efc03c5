"""Malformed and awkward input files through the real `mmaudit audit` command (issue 11, item 7).

Each case asserts the exit code, the one `error:` line naming the file or column, no traceback,
and what is (or is not) left behind; runs that finish assert every input row is accounted for.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from audit.sample import build_rows

MMAUDIT = str(Path(sys.executable).with_name("mmaudit"))


def _audit(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [MMAUDIT, "audit", *(["--config", str(config)] if config else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _accounted(run: Path) -> dict:
    s = _summary(run)
    scored = sum(pq.read_metadata(p).num_rows for p in (run / "scores").glob("*.parquet"))
    quarantined = pq.read_metadata(run / "quarantine.parquet").num_rows
    assert s["rows_in"] == s["rows_scored"] + s["rows_quarantined"] == scored + quarantined
    return s


@pytest.fixture(scope="module")
def config(make_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample config with the tiny CLIP on the suite's cluster, as a file for the CLI."""
    cfg = make_config(neighbours__enabled=False)
    path = tmp_path_factory.mktemp("config") / "audit.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def _laion(path: Path, n: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {"URL": [f"http://a.invalid/{i}.jpg" for i in range(n)], "TEXT": [f"a dog {i}" for i in range(n)]}
        ),
        path,
    )
    return path


def _tar(path: Path, members: list[tuple[str, bytes] | tuple[str, bytes, bytes, str]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data, *link in members:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = link[0], link[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


# --- refused up front: exit 2, one line, nothing written --------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["URL", "TEXT", "text"], "columns 'TEXT' and 'text' both match the caption column"),
        (["URL", "text", "text"], "column 'text' appears 2 times"),
    ],
)
def test_duplicate_columns_exit_2_naming_file_and_column(
    tmp_path: Path, names: list[str], expected: str
) -> None:
    shard = tmp_path / "dup.parquet"
    pq.write_table(pa.table([pa.array(["v"]) for _ in names], names=names), shard)
    result = _audit("--shards", str(shard), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = _error_lines(result)
    assert line.startswith(f"error: {shard}: {expected}")
    assert not (tmp_path / "run").exists()


def _corrupt_tar(folder: Path) -> Path:
    path = _tar(folder / "c.tar", [("k.txt", b"a caption")])
    data = bytearray(path.read_bytes())
    data[0:8] = b"garbage!"
    path.write_bytes(bytes(data))
    return path


def _truncated_tar(folder: Path) -> Path:
    path = _tar(folder / "t.tar", [("k.txt", b"a caption"), ("k.jpg", build_rows()[0].image)])
    path.write_bytes(path.read_bytes()[:1500])
    return path


def _clip_retrieval(folder: Path, img: bytes) -> Path:
    root = folder / "emb"
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    (root / "img_emb" / "img_emb_0.npy").write_bytes(img)
    np.save(root / "text_emb" / "text_emb_0.npy", np.ones((2, 8), np.float16))
    pq.write_table(
        pa.table({"caption": ["a", "b"], "url": ["u", "v"]}), root / "metadata" / "metadata_0.parquet"
    )
    return root


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _datacomp(folder: Path, npz: bytes | dict) -> Path:
    pq.write_table(pa.table({"uid": ["u0", "u1"], "text": ["a", "b"]}), folder / "0000.parquet")
    if isinstance(npz, bytes):
        (folder / "0000.npz").write_bytes(npz)
    else:
        np.savez(folder / "0000.npz", **npz)
    return folder / "0000.parquet"


CORRUPT = {
    "tar-bad-first-header": (_corrupt_tar, "c.tar: not a readable tar file (first member header is invalid"),
    "tar-truncated": (_truncated_tar, "t.tar: not a readable tar file (1500 bytes is not a whole number"),
    "npy-truncated": (
        lambda d: _clip_retrieval(d, _npy(np.ones((2, 8), np.float16))[:-7]),
        "img_emb_0.npy: .npy file is truncated",
    ),
    "npy-3d": (
        lambda d: _clip_retrieval(d, _npy(np.ones((2, 4, 2), np.float16))),
        "img_emb_0.npy: embeddings must be 2-D (rows x dim), got shape (2, 4, 2)",
    ),
    "npz-not-a-zip": (lambda d: _datacomp(d, b"this is no zip file"), "0000.npz: not a readable .npz file"),
    "npz-without-arrays": (
        lambda d: _datacomp(d, {"emb": np.ones((2, 8), np.float16)}),
        "0000.npz: no <model>_img/<model>_txt arrays (found ['emb.npy'])",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_inputs_exit_2_before_anything_is_written(tmp_path: Path, case: str) -> None:
    build, expected = CORRUPT[case]
    (tmp_path / "in").mkdir()
    build(tmp_path / "in")
    result = _audit("--shards", str(tmp_path / "in"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = _error_lines(result)
    assert line.startswith("error: ") and expected in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("out", ["in", "in/runs/new"])
def test_out_equal_to_or_inside_an_input_folder_is_refused(tmp_path: Path, out: str) -> None:
    _laion(tmp_path / "in" / "a.parquet")
    result = _audit("--shards", str(tmp_path / "in"), "--out", str(tmp_path / out))
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = _error_lines(result)
    assert f"--out {tmp_path / out}" in line and f"the input folder {tmp_path / 'in'}" in line
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.parquet"]


# --- runs that finish: every sample and row accounted for ------------------------------------------


@pytest.mark.slow
def test_every_tar_sample_is_a_row_or_a_quarantine_row(config: Path, tmp_path: Path) -> None:
    jpg = build_rows()[0].image
    shard = _tar(
        tmp_path / "w.tar",
        [
            ("x/dup.jpg", jpg),
            ("x/dup.txt", b"a red barn"),
            ("y/dup.jpg", jpg),
            ("y/dup.txt", b"a lighthouse"),
            ("z/link.jpg", b"", tarfile.SYMTYPE, "../x/dup.jpg"),
            ("z/link.txt", b"a caption beside a symlinked image"),
        ],
    )
    run = tmp_path / "run"
    result = _audit("--shards", str(shard), "--out", str(run), config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    s = _accounted(run)
    assert (s["rows_in"], s["rows_scored"], s["rows_quarantined"]) == (3, 2, 1)
    scores = pq.read_table(next((run / "scores").glob("*.parquet")))
    assert sorted(scores.column("key").to_pylist()) == ["x/dup", "y/dup"]
    q = pq.read_table(run / "quarantine.parquet").to_pylist()
    assert [(r["key"], r["reason"], r["detail"]) for r in q] == [
        ("z/link", "member_not_regular", "z/link.jpg is a symbolic link to '../x/dup.jpg'")
    ]


@pytest.mark.slow
def test_a_shard_reached_twice_and_an_old_run_folder_are_read_once(config: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    _laion(inputs / "a.parquet", n=4)
    (inputs / "alias.parquet").symlink_to(inputs / "a.parquet")
    first = tmp_path / "run1"
    result = _audit("--shards", str(inputs / "a.parquet"), "--shards", str(inputs / "alias.parquet"),
                    "--out", str(first), config=config)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    [warning] = [line for line in result.stderr.splitlines() if "already given" in line]
    assert f"{inputs / 'alias.parquet'} is the same file as {inputs / 'a.parquet'}" in warning
    assert _accounted(first)["rows_in"] == 4
    # a run folder moved among the inputs is not read as shards
    shutil.copytree(first, inputs / "old-run")
    second = tmp_path / "run2"
    result = _audit("--shards", str(inputs), "--out", str(second), config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _accounted(second)["rows_in"] == 4
    manifest = json.loads((second / "manifest.json").read_text())
    assert [s["path"] for s in manifest["shards"]] == [str(inputs / "a.parquet")]


def _fetch_folder(out: Path) -> int:
    """What `mmaudit fetch` writes (audit/fetch.py): OUT/<shard>/00000.parquet with img2dataset's
    columns and 00000_stats.json, and OUT/fetch.json."""
    rows = [r for r in build_rows() if r.image and r.caption][:4]
    for n, shard in enumerate(("part-00000", "part-00001")):
        (out / shard).mkdir(parents=True)
        mine = rows[2 * n : 2 * n + 2]
        pq.write_table(
            pa.table(
                {
                    "key": [f"{n:04d}{i:05d}" for i in range(len(mine))],
                    "url": [f"http://a.invalid/{n}/{i}.jpg" for i in range(len(mine))],
                    "caption": [r.caption for r in mine],
                    "status": ["success"] * len(mine),
                    "error_message": pa.nulls(len(mine), pa.string()),
                    "jpg": pa.array([r.image for r in mine], pa.binary()),
                    "SAMPLE_ID": [n * 10 + i for i in range(len(mine))],
                }
            ),
            out / shard / "00000.parquet",
        )
        (out / shard / "00000_stats.json").write_text(
            json.dumps({"count": len(mine), "successes": len(mine)})
        )
    (out / "fetch.json").write_text(json.dumps({"out": str(out), "shards": []}))
    return 4


@pytest.mark.slow
def test_the_fetch_output_folder_audits_as_it_is(config: Path, tmp_path: Path) -> None:
    fetched = tmp_path / "fetched"
    n = _fetch_folder(fetched)
    run = tmp_path / "run"
    result = _audit("--shards", str(fetched), "--out", str(run), config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _accounted(run)["rows_in"] == n
    manifest = json.loads((run / "manifest.json").read_text())
    assert sorted(s["shard_id"] for s in manifest["shards"]) == ["part-00000__00000", "part-00001__00000"]


@pytest.mark.slow
def test_a_corrupt_parquet_page_fails_that_shard_only(config: Path, tmp_path: Path) -> None:
    """A corrupt data page is not seen in the footer: that shard fails when it is read (exit 3), the
    others finish, and the failure is recorded with the file named."""
    inputs = tmp_path / "in"
    _laion(inputs / "good.parquet", n=5)
    bad = _laion(inputs / "bad.parquet", n=5)
    offset = pq.ParquetFile(bad).metadata.row_group(0).column(1).data_page_offset
    data = bytearray(bad.read_bytes())
    data[offset : offset + 24] = b"\xff" * 24  # the caption column's page header
    bad.write_bytes(bytes(data))
    run = tmp_path / "run"
    result = _audit("--shards", str(inputs), "--out", str(run), config=config)
    assert result.returncode == 3, result.stderr[-3000:]
    [line] = _error_lines(result)
    assert line.startswith("error: 1 of 2 shards failed") and f"{bad}: not a readable parquet file" in line
    assert "its data at or after row 0 is corrupt" in line
    s = _accounted(run)
    assert s["status"] == "partial" and s["rows_in"] == 5 and s["shards_failed"] == 1
    records = {r["shard_id"]: r for r in json.loads((run / "manifest.json").read_text())["shards"]}
    assert records["good"]["status"] == "done"
    assert records["bad"]["status"] == "failed" and str(bad) in records["bad"]["error"]
