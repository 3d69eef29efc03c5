"""Peak memory of the audit as the number of shards grows, and as one shard grows.

    python -m audit.benchmarks.memory --out bench/results/memory.json

shard_count: the same shard set at 10 and at 100 shards (every tenth an img2dataset parquet of the
sample's photos, the rest LAION metadata shards of ``--text-rows`` text rows built from the
sample's), each audited by the real ``run_audit`` on a LocalCluster, in a fresh process per size.
The config is the sample's (profanity-check, hatesonar, lexicon, PII, open_nsfw, concept probes)
with a tiny 1-layer open_clip by default, since ViT-B-32 encodes every caption at ~20-50 rows/s
on 2 cores (``--clip ViT-B-32`` runs the shipped one). Records the peak RSS (VmHWM) of the driver
and of the largest Dask worker (sampled from outside with psutil), the peak of the process tree's
summed RSS, rows/s end to end and per stage (summed from the shard records), and the driver's
peak per phase of the run (validate, shards, neighbours, finalize) to tell which one grows. Passes
when peak(100) / peak(10) <= 1.2 for the driver and for the workers. ``--set KEY=VALUE`` passes
config overrides to the audited runs (e.g. ``--set neighbours.enabled=false``).

shard_size: one img2dataset shard of ``--large-rows`` (128 and 1024) rows of 1 MiB images
(decodable JPEGs padded with random bytes), audited by ``audit_shard`` with ``batch_rows=16`` in
one process after a warm-up shard: the growth of the peak beyond the loaded models must follow
the batch, not the shard (peak ratio <= 1.2 between the two shards, growth under half the shard).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audit.benchmarks.common import machine, write_json
from audit.benchmarks.process_tree import own_peak_mib, rss_mib, run_sampled
from audit.local_models import build_tiny_clip

MAX_RATIO = 1.2
STAGES = ("load_models", "read", "score", "flag", "write")


# --- inputs ---------------------------------------------------------------------------------------


def text_shard(template: Path, rows: int, out: Path) -> None:
    """The sample's LAION metadata rows repeated to ``rows`` rows, with unique ids and URLs."""
    t = pq.read_table(template)
    idx = pa.array(np.arange(rows) % t.num_rows)
    t = t.take(idx)
    t = t.set_column(t.schema.get_field_index("SAMPLE_ID"), "SAMPLE_ID", pa.array(np.arange(rows) + 10_000))
    urls = [f"{u}?n={i}" for i, u in enumerate(t.column("URL").to_pylist())]
    t = t.set_column(t.schema.get_field_index("URL"), "URL", pa.array(urls, pa.string()))
    pq.write_table(t, out, row_group_size=1000)


def shard_set(sample: Path, n: int, text_rows: int, out: Path) -> Path:
    """``n`` shards in one folder: every tenth the sample's image parquet, the rest text shards."""
    out.mkdir(parents=True, exist_ok=True)
    template = out.parent / f"text-{text_rows}.parquet"
    if not template.exists():
        text_shard(sample / "laion_metadata" / "part-00000.parquet", text_rows, template)
    for i in range(n):
        if i % 10 == 0:
            shutil.copyfile(sample / "parquet" / "00000.parquet", out / f"img-{i:04d}.parquet")
        else:
            shutil.copyfile(template, out / f"meta-{i:04d}.parquet")
    return out


def image_shard(rows: int, image_bytes: int, out: Path, seed: int = 0) -> Path:
    """An img2dataset parquet of ``rows`` decodable 64x64 JPEGs padded to ``image_bytes`` each."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    group = 64
    # img2dataset writes with pyarrow's defaults: a page per 1024 values. Pages are the unit a
    # parquet reader decodes, so this shard keeps them to 8 rows (8 MiB) and its row groups to 64.
    with pq.ParquetWriter(out, IMAGE_SHARD_SCHEMA, compression="none", write_batch_size=8) as writer:
        for start in range(0, rows, group):
            ids = range(start, min(rows, start + group))
            images = []
            for _ in ids:
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
                data = buf.getvalue()
                images.append(data + rng.bytes(max(0, image_bytes - len(data))))  # decoders stop at EOI
            table = {
                "key": [f"k{i}" for i in ids],
                "url": [f"http://bench.invalid/{i}.jpg" for i in ids],
                "caption": [f"a photo of noise number {i}" for i in ids],
                "status": ["success"] * len(ids),
                "jpg": images,
            }
            writer.write_table(pa.table(table, schema=IMAGE_SHARD_SCHEMA))
    return out


IMAGE_SHARD_SCHEMA = pa.schema(
    [(name, pa.string()) for name in ("key", "url", "caption", "status")] + [("jpg", pa.binary())]
)


# audit.local_models' tiny open_clip (the one the tests use): 2 CPU cores audit thousands of rows
# a second; its random weights are saved to a local checkpoint and loaded from there.
def tiny_clip(folder: Path) -> Path:
    return build_tiny_clip(folder)


def _config(overrides: dict, clip: str):
    """The sample config (as `make audit` runs it), with ``clip``: "ViT-B-32" (random weights, as
    shipped) or a tiny local-dir CLIP folder."""
    from audit.config import load_config, packaged_file

    if clip != "ViT-B-32":
        overrides = {"clip.model": f"local-dir:{clip}", "clip.pretrained": None, **overrides}
    return load_config(packaged_file("configs", "sample.yaml"), overrides)


# --- children (one fresh process per measurement) -------------------------------------------------


class RssTimeline:
    """This process's RSS every 0.2 s, to tell which phase of a run holds the driver's peak."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = rss_mib()
            if rss is not None:
                self.samples.append((time.perf_counter() - self._t0, rss))
            self._stop.wait(0.2)

    def __enter__(self) -> RssTimeline:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def by_phase(self, timings: dict[str, float]) -> dict[str, float]:
        """Peak sampled RSS per phase of run_audit (manifest timings are sequential phases)."""
        out: dict[str, float] = {}
        start = 0.0
        for name, seconds in timings.items():
            if name in ("total", "finalize"):
                continue
            end = start + seconds
            inside = [rss for t, rss in self.samples if start <= t < end]
            if inside:
                out[name] = round(max(inside), 1)
            start = end
        tail = [rss for t, rss in self.samples if t >= start]
        if tail:
            out["finalize"] = round(max(tail), 1)
        return out


def child_shard_count(shards: str, run: str, workers: int, clip: str, extra: dict) -> dict:
    from rich.console import Console

    from audit.pipelines.audit_run import run_audit

    base = {"shards": [shards], "out": run, "dask.n_workers": workers, "dask.retries": 0}
    cfg = _config({**base, **extra}, clip)
    t0 = time.perf_counter()
    with RssTimeline() as timeline:
        summary = run_audit(cfg, console=Console(quiet=True))
    wall = time.perf_counter() - t0
    phases = json.loads(Path(run, "manifest.json").read_text()).get("timings", {})
    stage = dict.fromkeys(STAGES, 0.0)
    records = [json.loads(p.read_text()) for p in sorted(Path(run, "shards").glob("*.json"))]
    for r in records:
        for k, v in r["seconds"].items():
            stage[k] = stage.get(k, 0.0) + v
    return {
        "shards": len(records),
        "rows_in": summary.rows_in,
        "rows_scored": summary.rows_scored,
        "rows_quarantined": summary.rows_quarantined,
        "rows_flagged": summary.rows_flagged,
        "wall_s": round(wall, 2),
        "rows_per_s": round(summary.rows_in / wall, 1),
        "driver_peak_mib": round(own_peak_mib(), 1),  # workers: sampled by the parent
        "driver_peak_by_phase_mib": timeline.by_phase(phases),
        "stage_worker_seconds": {k: round(v, 2) for k, v in stage.items()},
        "stage_rows_per_worker_s": {
            k: round(summary.rows_in / v, 1) for k, v in stage.items() if v > 0 and k != "load_models"
        },
    }


def child_shard_size(shard: str, warmup: str, run: str, batch_rows: int, clip: str, extra: dict) -> dict:
    from audit.model_cache import get_models
    from audit.shard_audit import audit_shard
    from audit.shards import discover_shards

    cfg = _config({"out": run, **extra}, clip)
    get_models(cfg)
    [warm] = discover_shards([warmup])
    audit_shard(warm, cfg, run, batch_rows=batch_rows)  # first inference allocates once
    before = own_peak_mib()
    [spec] = discover_shards([shard])
    t0 = time.perf_counter()
    record = audit_shard(spec, cfg, run, batch_rows=batch_rows)
    seconds = time.perf_counter() - t0
    after = own_peak_mib()
    return {
        "rows": record.rows_in,
        "rows_scored": record.rows_scored,
        "shard_mib": round(Path(shard).stat().st_size / 2**20, 1),
        "batch_rows": batch_rows,
        "peak_before_mib": round(before, 1),
        "peak_mib": round(after, 1),
        "growth_mib": round(after - before, 1),
        "seconds": round(seconds, 2),
        "rows_per_s": round(record.rows_in / seconds, 1),
        "stage_seconds": record.seconds,
    }


# --- parent ---------------------------------------------------------------------------------------


def run_child(args: list[str], result: Path, timeout: float, extra: dict) -> dict:
    cmd = [sys.executable, "-m", "audit.benchmarks.memory", "--child", *args, "--result", str(result)]
    cmd += ["--overrides", json.dumps(extra)]
    sampler = run_sampled(cmd, timeout)
    doc = json.loads(result.read_text())
    if sampler.available:
        doc["tree_peak_mib"] = round(sampler.peak_total, 1)
        if sampler.descendant_peaks:  # Dask's worker processes (and multiprocessing's small helpers)
            doc["worker_peak_mib"] = round(max(sampler.descendant_peaks.values()), 1)
            doc["child_processes"] = len(sampler.descendant_peaks)
    return doc


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("inf")


def bench_shard_count(
    work: Path, sample: Path, sizes: list[int], text_rows: int, workers: int, clip: str, extra: dict
) -> dict:
    runs: dict[str, dict] = {}
    for n in sizes:
        shards = shard_set(sample, n, text_rows, work / f"shards-{n}")
        print(f"shard_count: auditing {n} shards ...", file=sys.stderr, flush=True)
        runs[str(n)] = run_child(
            ["shard-count", str(shards), str(work / f"run-{n}"), str(workers), clip],
            work / f"result-{n}.json",
            timeout=3600,
            extra=extra,
        )
        print(f"  {runs[str(n)]}", file=sys.stderr, flush=True)
    lo, hi = runs[str(min(sizes))], runs[str(max(sizes))]
    ratios = {"driver_peak": _ratio(hi["driver_peak_mib"], lo["driver_peak_mib"])}
    for key in ("worker_peak", "tree_peak"):
        if f"{key}_mib" in hi and f"{key}_mib" in lo:
            ratios[key] = _ratio(hi[f"{key}_mib"], lo[f"{key}_mib"])
    lo_phase, hi_phase = lo["driver_peak_by_phase_mib"], hi["driver_peak_by_phase_mib"]
    by_phase = {k: _ratio(hi_phase[k], lo_phase[k]) for k in hi_phase if k in lo_phase}
    return {
        "what": f"peak RSS auditing {max(sizes)} vs {min(sizes)} shards of the same kinds and sizes",
        "text_rows_per_shard": text_rows,
        "n_workers": workers,
        "runs": runs,
        "ratios": ratios,
        # which phase of the run grows on the driver (validate, shards, neighbours, finalize)
        "driver_ratio_by_phase": by_phase,
        "max_ratio": MAX_RATIO,
        "pass": ratios["driver_peak"] <= MAX_RATIO and ratios.get("worker_peak", float("inf")) <= MAX_RATIO,
    }


def bench_shard_size(
    work: Path, rows_list: list[int], image_bytes: int, batch_rows: int, clip: str, extra: dict
) -> dict:
    warmup = image_shard(batch_rows, image_bytes, work / "warmup.parquet", seed=1)
    runs: dict[str, dict] = {}
    for rows in rows_list:
        shard = image_shard(rows, image_bytes, work / f"large-{rows}.parquet")
        print(f"shard_size: auditing one shard of {rows} rows ...", file=sys.stderr, flush=True)
        runs[str(rows)] = run_child(
            ["shard-size", str(shard), str(warmup), str(work / f"run-large-{rows}"), str(batch_rows), clip],
            work / f"result-large-{rows}.json",
            timeout=3600,
            extra=extra,
        )
        print(f"  {runs[str(rows)]}", file=sys.stderr, flush=True)
        shard.unlink()
    lo, hi = runs[str(min(rows_list))], runs[str(max(rows_list))]
    ratio = _ratio(hi["peak_mib"], lo["peak_mib"])
    return {
        "what": "peak RSS of audit_shard on one img2dataset shard as the shard grows (batch fixed)",
        "image_bytes": image_bytes,
        "runs": runs,
        "ratios": {"peak": ratio},
        "growth_vs_shard": _ratio(hi["growth_mib"], hi["shard_mib"]),
        "max_ratio": MAX_RATIO,
        "pass": ratio <= MAX_RATIO and hi["growth_mib"] < hi["shard_mib"] / 2,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench/results/memory.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100], help="shard counts")
    parser.add_argument("--text-rows", type=int, default=1000, help="rows per text shard")
    parser.add_argument(
        "--clip",
        choices=["tiny", "ViT-B-32"],
        default="tiny",
        help="tiny: a 1-layer open_clip built here (fast); ViT-B-32: as shipped (~20 img/s on 2 cores)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--large-rows", type=int, nargs="+", default=[128, 1024], help="rows of the large shard"
    )
    parser.add_argument("--image-bytes", type=int, default=1 << 20)
    parser.add_argument("--batch-rows", type=int, default=16)
    parser.add_argument("--workdir", help="keep inputs and run folders here (default: a temp dir)")
    parser.add_argument("--skip", choices=["shard_count", "shard_size"], action="append", default=[])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for the audited runs, e.g. --set neighbours.enabled=false",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "shard-count":
            doc = child_shard_count(rest[0], rest[1], int(rest[2]), rest[3], json.loads(args.overrides))
        else:
            doc = child_shard_size(
                rest[0], rest[1], rest[2], int(rest[3]), rest[4], json.loads(args.overrides)
            )
        Path(args.result).write_text(json.dumps(doc))
        return

    import yaml

    from audit.sample import build_sample

    extra = {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in args.set)}
    with tempfile.TemporaryDirectory(prefix="mmaudit-bench-memory-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        build_sample(work / "sample")
        clip = str(tiny_clip(work / "tiny_clip")) if args.clip == "tiny" else "ViT-B-32"
        t0 = time.perf_counter()
        doc: dict = {
            "benchmark": "memory",
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "clip": args.clip,
            "config": "pipelines/configs/sample.yaml"
            + ("" if args.clip == "ViT-B-32" else " with clip.model: local-dir:<tiny 1-layer open_clip>"),
            "overrides": extra,
        }
        if "shard_count" not in args.skip:
            doc["shard_count"] = bench_shard_count(
                work, work / "sample", sorted(args.sizes), args.text_rows, args.workers, clip, extra
            )
        if "shard_size" not in args.skip:
            doc["shard_size"] = bench_shard_size(
                work, sorted(args.large_rows), args.image_bytes, args.batch_rows, clip, extra
            )
        doc["seconds"] = round(time.perf_counter() - t0, 1)
        doc["pass"] = all(doc[k]["pass"] for k in ("shard_count", "shard_size") if k in doc)
    path = write_json(args.out, doc)
    print(f"wrote {path}: pass={doc['pass']}", file=sys.stderr)


if __name__ == "__main__":
    main()
