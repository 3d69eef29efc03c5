"""Fetch benchmark: images/s of ``audit.fetch.fetch_images`` (img2dataset) against a local HTTP
server of generated JPEGs, and the cost of keeping the metadata columns (save_additional_columns).

    python -m audit.benchmarks.fetch --images 2000 --out bench/results/fetch.json

The local server removes the network from the measurement: the numbers are the pipeline's own
ceiling on this machine (HTTP parsing, JPEG decode + resize + re-encode, parquet writing), not
what a crawl of the real web gets. ``LocalImageServer`` is also what tests/test_fetch.py serves.
img2dataset spawns workers that import ``__main__``: nothing runs at import time here.
"""

from __future__ import annotations

import argparse
import io
import shutil
import socket
import tempfile
import threading
import time
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audit.benchmarks.common import machine, write_json


@lru_cache(maxsize=4096)
def jpeg_bytes(n: int, width: int = 96, height: int = 72) -> bytes:
    """A small deterministic JPEG: a colour gradient plus noise, different for each ``n``."""
    from PIL import Image

    rng = np.random.default_rng(n)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, (n * 37) % 256)], axis=-1)
    pixels = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    """Routes: /img/N.jpg (a JPEG), /redirect/N.jpg (302 to /img/N.jpg), /noai/N.jpg (a JPEG
    with X-Robots-Tag: noai), /missing.jpg (404), /text.jpg (text served as image/jpeg),
    /truncated.jpg (the first 200 bytes of a JPEG)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, ctype: str = "image/jpeg", **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        kind, _, name = path.strip("/").partition("/")
        n = int(name[: -len(".jpg")]) if name.endswith(".jpg") and name[:-4].isdigit() else None
        if kind == "img" and n is not None:
            self._send(200, jpeg_bytes(n))
        elif kind == "redirect" and n is not None:
            self.send_response(302)
            self.send_header("Location", f"/img/{n}.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "noai" and n is not None:
            self._send(200, jpeg_bytes(n), X_Robots_Tag="noai")
        elif kind == "text.jpg":
            self._send(200, b"this is plain text, not a JPEG\n" * 4)
        elif kind == "truncated.jpg":
            self._send(200, jpeg_bytes(0)[:200])
        else:
            self._send(404, b"not found", "text/plain")


class LocalImageServer:
    """A ThreadingHTTPServer on 127.0.0.1 and a free port, serving in a daemon thread."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def closed_port() -> int:
    """A port nothing listens on (bound, then closed): connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def laion_metadata(urls: list[str], captions: list[str]) -> pa.Table:
    """A LAION-style metadata table (upper-case columns as LAION ships them) for the given URLs."""
    n = len(urls)
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "SAMPLE_ID": pa.array(np.arange(1000, 1000 + n), pa.int64()),
            "URL": pa.array(urls, pa.string()),
            "TEXT": pa.array(captions, pa.string()),
            "HEIGHT": pa.array([72] * n, pa.int32()),
            "WIDTH": pa.array([96] * n, pa.int32()),
            "LICENSE": pa.array(["?"] * n, pa.string()),
            "NSFW": pa.array(["UNLIKELY"] * n, pa.string()),
            "similarity": pa.array(rng.uniform(0.28, 0.4, n), pa.float64()),
            "punsafe": pa.array(rng.uniform(0, 0.1, n).astype(np.float32), pa.float32()),
            "pwatermark": pa.array(rng.uniform(0, 0.5, n).astype(np.float32), pa.float32()),
            "hash": pa.array(rng.integers(-(2**62), 2**62, n), pa.int64()),
        }
    )


def _fetch_once(meta: Path, out: Path, keep_metadata: bool, processes: int, threads: int) -> dict:
    from audit.fetch import FetchSettings, fetch_images

    if out.exists():
        shutil.rmtree(out)
    settings = FetchSettings(
        processes_count=processes, thread_count=threads, keep_metadata=keep_metadata, timeout=10
    )
    t0 = time.perf_counter()
    result = fetch_images([str(meta)], str(out), settings=settings)
    seconds = time.perf_counter() - t0
    return {
        "seconds": round(seconds, 3),
        "images_per_s": round(result.stats.successes / seconds, 1),
        "rows": result.stats.count,
        "successes": result.stats.successes,
        "output_mib": round(sum(p.stat().st_size for p in out.rglob("*.parquet")) / 2**20, 2),
    }


def run(images: int, processes: int, threads: int, repeats: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mmaudit-bench-fetch-"))
    try:
        with LocalImageServer() as server:
            urls = [f"{server.base}/img/{i}.jpg" for i in range(images)]
            meta = work / "meta.parquet"
            pq.write_table(laion_metadata(urls, [f"a generated picture number {i}" for i in urls]), meta)
            for i in range(images):  # JPEGs generated before timing: the server is not measured
                jpeg_bytes(i)
            runs: dict[str, list[dict]] = {"with_metadata": [], "without_metadata": []}
            for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
                runs["with_metadata"].append(_fetch_once(meta, work / "with", True, processes, threads))
                runs["without_metadata"].append(
                    _fetch_once(meta, work / "without", False, processes, threads)
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(rs: list[dict], key: str) -> float:
        return float(np.median([r[key] for r in rs]))

    with_s, without_s = median(runs["with_metadata"], "seconds"), median(runs["without_metadata"], "seconds")
    return {
        "benchmark": "fetch",
        "what": "audit.fetch.fetch_images (img2dataset) on LAION-style metadata against a local HTTP "
        "server of generated 96x72 JPEGs; resize keep_ratio 256, re-encode jpg, parquet output",
        "machine": machine(),
        "images": images,
        "processes_count": processes,
        "thread_count": threads,
        "repeats": repeats,
        "images_per_s_with_metadata": round(images / with_s, 1),
        "images_per_s_without_metadata": round(images / without_s, 1),
        "metadata_join_overhead_pct": round(100 * (with_s - without_s) / without_s, 1),
        "runs": runs,
        "note": "wall time includes img2dataset's process pool start (spawn) and input sharding, "
        "about 1-3 s per call on a small machine; medians of interleaved repeats",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/fetch.json")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    doc = run(args.images, args.processes, args.threads, args.repeats)
    print(write_json(args.out, doc))
    for k in ("images_per_s_with_metadata", "images_per_s_without_metadata", "metadata_join_overhead_pct"):
        print(f"{k:<32} {doc[k]}")


if __name__ == "__main__":
    main()
