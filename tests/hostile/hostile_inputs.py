"""Builders of hostile inputs (real files in every input format, broken in the ways data breaks in the
wild) and the checks every hostile case makes on a real `mmaudit` run. Tested in test_builders.py."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CONFIG = REPO / "pipelines" / "configs" / "sample.yaml"
MIB = 1 << 20

# --- images ---------------------------------------------------------------------------------------


def jpeg(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A real JPEG of random pixels; each seed gives other bytes (no exact duplicates by accident)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def png(width: int, height: int) -> bytes:
    """A real, fully decodable PNG of one colour: tiny on disk whatever its dimensions."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` over almost no data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


# --- strings --------------------------------------------------------------------------------------

MARKDOWN_HTML = (
    '![x](http://127.0.0.1:9/x.png) <img src="http://127.0.0.1:9/y.png"> <script>alert(1)</script> **b**'
)
RTL = "\u202eevil\u202c مرحبا שלום \u2067isolate\u2069"
WITH_NUL = "before\x00after\x00"
CONTROL = "tab\there\r\nbell\x07 esc\x1b[31m red \x1b[0m del\x7f"


def mib_email_bait() -> str:
    """1 MiB that an e-mail pattern with nested quantifiers backtracks over: ``a.a.a. ... a.1``."""
    return "a." * (MIB // 2 - 1) + "a1"


def mib_digits_bait() -> str:
    """1 MiB of digit groups a phone or card-number pattern tries at every offset."""
    return ("12 " * (MIB // 3 + 1))[:MIB]


# --- parquet --------------------------------------------------------------------------------------


def write_parquet(path: Path, table: pa.Table, **kwargs: object) -> int:
    """Write ``table`` to ``path`` (parents created); returns its row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **kwargs)
    return table.num_rows


def table_with_duplicate_column(name: str, rows: int = 2) -> pa.Table:
    """URL plus two columns both called ``name`` (Arrow allows it, pandas and SQL do not)."""
    arrays = [
        pa.array([f"http://x.invalid/{i}.jpg" for i in range(rows)]),
        pa.array(["a"] * rows),
        pa.array(["b"] * rows),
    ]
    return pa.Table.from_arrays(arrays, names=["URL", name, name])


def corrupt_first_page(path: Path, column: int = 0) -> None:
    """Overwrite the first page of ``column`` (header and data) with 0xFF; the footer stays intact,
    so the schema and row count still read, and reading the rows fails."""
    col = pq.read_metadata(path).row_group(0).column(column)
    start = col.dictionary_page_offset or col.data_page_offset
    data = bytearray(path.read_bytes())
    data[start : start + col.total_compressed_size] = b"\xff" * col.total_compressed_size
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: int) -> None:
    """Keep the first ``keep`` bytes of ``path`` (negative: drop that many from the end)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])


# --- webdataset -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One tar member: a regular file, a symlink or hard link to ``target``, or a directory."""

    name: str
    data: bytes = b""
    kind: str = "file"  # file | symlink | hardlink | dir
    target: str = ""


def write_tar(path: Path, members: Sequence[Member]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.mtime = 0
            if m.kind == "file":
                info.size = len(m.data)
                tar.addfile(info, io.BytesIO(m.data))
                continue
            info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "dir": tarfile.DIRTYPE}[
                m.kind
            ]
            info.linkname = m.target
            tar.addfile(info)


def sample_members(
    stem: str, caption: bytes | None, image: bytes | None, meta: bytes | None = None
) -> list[Member]:
    """The members img2dataset writes for one sample: STEM.jpg, STEM.txt, STEM.json (each optional)."""
    out = []
    for suffix, data in ((".jpg", image), (".txt", caption), (".json", meta)):
        if data is not None:
            out.append(Member(stem + suffix, data))
    return out


# --- precomputed embeddings -----------------------------------------------------------------------


def npy_bytes(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def unit_rows(rows: int, dim: int, seed: int) -> np.ndarray:
    """``rows`` L2-normalised float32 vectors, as CLIP embeddings are stored."""
    a = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def clip_retrieval_folder(
    root: Path, metadata: pa.Table, img: np.ndarray | bytes, txt: np.ndarray | bytes, index: int = 0
) -> Path:
    """A clip-retrieval output folder: img_emb/, text_emb/ and metadata/ (arrays or raw .npy bytes)."""
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for sub, arr in (("img_emb", img), ("text_emb", txt)):
        data = arr if isinstance(arr, bytes) else npy_bytes(arr)
        (root / sub / f"{sub}_{index}.npy").write_bytes(data)
    pq.write_table(metadata, root / "metadata" / f"metadata_{index}.parquet")
    return root


def datacomp_shard(folder: Path, stem: str, metadata: pa.Table, npz: dict[str, np.ndarray] | bytes) -> Path:
    """DataComp: STEM.parquet beside STEM.npz (arrays ``b32_img``/``b32_txt``, or raw bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(metadata, folder / f"{stem}.parquet")
    if isinstance(npz, bytes):
        (folder / f"{stem}.npz").write_bytes(npz)
    else:
        np.savez(folder / f"{stem}.npz", **npz)
    return folder / f"{stem}.parquet"


# --- running the CLI and what every case checks ---------------------------------------------------


def mmaudit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, as a user runs it. Past ``timeout`` (keep it under the suite's
    pytest timeout) its whole process group, Dask workers included, is killed, and TimeoutExpired
    raised: a hung audit (a super-linear pattern, say) fails its test and leaves nothing running."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "audit.cli", *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as proc:  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def audit_args(tiny_clip_dir: Path, out: Path, *extra: str) -> list[str]:
    """`mmaudit audit` on the sample config with the tiny CLIP, its own one-worker LocalCluster."""
    sets = {
        "clip.model": f"local-dir:{tiny_clip_dir}",
        "clip.pretrained": "null",
        "clip.allow_random_weights": "false",
        "dask.n_workers": "1",
        "dask.retries": "0",
    }
    args = ["audit", "--config", str(SAMPLE_CONFIG), "--out", str(out)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return [*args, *extra]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def one_error_line(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The run stopped as bad input must: ``exit_code``, exactly one `error:` line, no traceback."""
    tail = result.stderr[-3000:]
    assert "Traceback" not in result.stderr, tail
    assert result.returncode == exit_code, f"exit {result.returncode}, expected {exit_code}: {tail}"
    lines = error_lines(result.stderr)
    assert len(lines) == 1, f"expected one error line, got {lines}: {tail}"
    return lines[0]


@dataclass(frozen=True)
class Expect:
    """What a case must end with: the exit code and the strings its one `error:` line must name."""

    exit_code: int
    names: tuple[str, ...]
    out: Path  # the run folder the case asked for


# A case builds its inputs under a fresh folder and returns the CLI arguments and what to expect.
CaseBuilder = Callable[[Path, Path], tuple[list[str], Expect]]
