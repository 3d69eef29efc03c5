"""Benchmark: block-int8 kernels against float32 (CPU) and float16 (CUDA) baselines in one run.

    python -m audit.kernels.bench --out bench/results/kernels.json [--rows 1000000 --dim 512]
    python -m audit.kernels.bench --sweep --out bench/results/block_sizes.json   # error per block size

Measures rows/s of paired cosine and of concept scoring (K concepts, with mask and top-k) on
CLIP-like unit vectors (``audit.kernels.synthetic``). Baselines, measured in the same run and
interleaved with the int8 runs so machine load hits both alike: ``np.einsum('ij,ij->i')`` on
normalised float32 for paired cosine, ``a @ C.T`` (scores only, no mask or top-k) for concepts.
Medians of ``--reps`` runs after a warm-up (Numba JIT, BLAS threads). With CUDA it also times the
Triton kernels against torch float16 and a device-to-device copy for the card's bandwidth.
Writes one JSON: timings, bytes of each representation, peak memory, errors, and each target
with pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import numba
import numpy as np
import psutil
from threadpoolctl import threadpool_info

from audit.kernels import vnni
from audit.kernels.int8_cpu import (
    concept_engine,
    concept_scores_int8_cpu,
    paired_cosine_int8_cpu,
    quantize_int8_cpu,
)
from audit.kernels.quantize import DEFAULT_BLOCK_SIZE
from audit.kernels.synthetic import clip_like_concepts, clip_like_pairs

ERROR_BOUND = 0.003
TARGETS = {  # name: (comparison, threshold)
    "cpu_paired_speedup": (">=", 1.5),
    "cpu_concept_speedup": (">=", 1.5),  # issue 12: int8 concept scoring earns its place
    "int8_bytes_ratio": ("<=", 0.30),  # "about a quarter" of float32
    "paired_error_p999": ("<=", ERROR_BOUND),
    "concept_error_p999": ("<=", ERROR_BOUND),
    "concept_topk_overlap": (">=", 0.95),
}


def timed(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, dict[str, Any]]:
    """Warm each function up once, then run them interleaved ``reps`` times; medians per name."""
    last: dict[str, Any] = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            last[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {
        name: {"median_s": float(np.median(ts)), "times_s": [round(t, 5) for t in ts], "result": last[name]}
        for name, ts in times.items()
    }


def peak_rss_delta(fn: Callable[[], Any], interval_s: float = 0.002) -> int:
    """Peak growth of this process's resident memory while ``fn`` runs (outputs + temporaries)."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(0, max(peak[0], proc.memory_info().rss) - base)


def topk_overlap(top_a: np.ndarray, top_b: np.ndarray) -> float:
    """Mean over rows of |set(top_a[i]) & set(top_b[i])| / k."""
    k = top_a.shape[1]
    if k == 0:
        return 1.0
    hits = (top_a[:, :, None] == top_b[:, None, :]).any(axis=2).sum(axis=1)
    return float(np.mean(hits / k))


def top_indices(scores: np.ndarray, k: int, chunk: int = 65_536) -> np.ndarray:
    out = np.empty((scores.shape[0], k), np.int32)
    for i0 in range(0, scores.shape[0], chunk):
        s = scores[i0 : i0 + chunk]
        out[i0 : i0 + chunk] = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return out


def rate(rows: int, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "rows_per_s": rows / entry["median_s"],
        "median_s": entry["median_s"],
        "times_s": entry["times_s"],
    }


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")
    ]
    model = names[0] if names else platform.processor()
    return {
        "cpu": model,
        "cpus": len(os.sched_getaffinity(0)),
        "numba_threads": numba.get_num_threads(),
        "cpu_flags": cpu_flags(),
        "blas": [
            f"{i['internal_api']} {i.get('version')} threads={i['num_threads']}" for i in threadpool_info()
        ],
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "python": platform.python_version(),
    }


def cpu_flags() -> list[str]:
    """The SIMD extensions the int8 kernels care about, as /proc/cpuinfo lists them."""
    wanted = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return [f for f in wanted if f in flags]


def instructions_used() -> dict[str, Any]:
    """Which instructions the concept kernel runs: its machine code is compiled once more here
    (Numba does not disassemble code loaded from its cache) and the VNNI and FMA opcodes counted."""
    from audit.kernels import int8_cpu

    if not vnni.has_vnni():
        return {"engine": concept_engine(), "note": "BLAS sgemm: see machine.blas for the library"}
    fresh = numba.njit(parallel=True)(int8_cpu._concept_scores_vnni.py_func)
    x = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)
    q = quantize_int8_cpu(x)
    p, init, cscale, kp = int8_cpu._vnni_concepts(np.ascontiguousarray(x[:16].T), q.block_size)
    out = [np.empty((64, 16), np.float32), np.empty((64, 16), np.bool_)]
    out += [np.empty((64, 2), np.float32), np.empty((64, 2), np.int32)]
    words, scales = q.codes.reshape(-1).view(np.uint32), np.ascontiguousarray(q.scales).reshape(-1)
    nb, threads = q.scales.shape[1], numba.get_num_threads()
    fresh(words, scales, p, init, cscale, 64, nb, kp, np.zeros(16, np.float32), 2, 32, *out, threads)
    asm = fresh.inspect_asm(fresh.signatures[0])
    return {
        "engine": concept_engine(),
        "opcodes_in_kernel": {op: asm.count(op) for op in ("vpdpbusd", "vfmadd", "vpmaddwd", "vpmulld")},
    }


def run_cpu(args: argparse.Namespace, a: np.ndarray, b: np.ndarray, concepts: np.ndarray) -> dict[str, Any]:
    n = a.shape[0]
    quantize = timed({"int8": lambda: quantize_int8_cpu(a, args.block_size)}, min(args.reps, 3))["int8"]
    qa, qb = quantize["result"], quantize_int8_cpu(b, args.block_size)

    paired = timed(
        {
            "float32_einsum": lambda: np.einsum("ij,ij->i", a, b),
            "int8": lambda: paired_cosine_int8_cpu(qa, qb),
        },
        args.reps,
    )
    cos_ref, cos_int8 = paired["float32_einsum"]["result"], paired["int8"]["result"]

    scoring = timed(
        {
            "float32_matmul": lambda: a @ concepts.T,
            "int8": lambda: concept_scores_int8_cpu(qa, concepts, k=args.top_k, threshold=args.threshold),
        },
        args.reps,
    )
    s_ref, s_int8 = scoring["float32_matmul"]["result"], scoring["int8"]["result"]
    concept_err = np.abs(s_int8.scores - s_ref)
    fallback = None
    if vnni.has_vnni():  # the kernel a CPU without VNNI runs, for comparison (same run, same load)

        def blas() -> Any:
            return concept_scores_int8_cpu(qa, concepts, k=args.top_k, threshold=args.threshold)

        with mock.patch.object(vnni, "has_vnni", lambda: False):
            fallback = rate(n, timed({"blas": blas}, min(args.reps, 3))["blas"])

    f32_bytes = a.nbytes + b.nbytes
    int8_bytes = qa.nbytes + qb.nbytes
    return {
        "quantize": rate(n, quantize),
        "paired_cosine": {
            "float32_einsum": rate(n, paired["float32_einsum"]),
            "int8": rate(n, paired["int8"]),
            "speedup": paired["float32_einsum"]["median_s"] / paired["int8"]["median_s"],
            "error_p999": float(np.percentile(np.abs(cos_int8 - cos_ref), 99.9)),
            "error_max": float(np.max(np.abs(cos_int8 - cos_ref))),
            "peak_rss_delta_bytes": {
                "float32_einsum": peak_rss_delta(lambda: np.einsum("ij,ij->i", a, b)),
                "int8": peak_rss_delta(lambda: paired_cosine_int8_cpu(qa, qb)),
            },
        },
        "concept_scores": {
            "concepts": concepts.shape[0],
            "top_k": args.top_k,
            "threshold": args.threshold,
            "float32_matmul": rate(n, scoring["float32_matmul"]),
            "int8": rate(n, scoring["int8"]),
            "speedup": scoring["float32_matmul"]["median_s"] / scoring["int8"]["median_s"],
            "note": "the float32 baseline computes scores only; the int8 time includes mask and top-k",
            "engine": instructions_used(),
            "int8_without_vnni": fallback,
            "error_p999": float(np.percentile(concept_err, 99.9)),
            "error_max": float(concept_err.max()),
            "topk_overlap": topk_overlap(s_int8.top_indices, top_indices(s_ref, args.top_k)),
            "mask_agreement": float(np.mean(s_int8.mask == (s_ref >= args.threshold))),
            "peak_rss_delta_bytes": {
                "float32_matmul": peak_rss_delta(lambda: a @ concepts.T),
                "int8": peak_rss_delta(
                    lambda: concept_scores_int8_cpu(qa, concepts, k=args.top_k, threshold=args.threshold)
                ),
            },
        },
        "bytes": {
            "float32_pair": f32_bytes,
            "int8_pair": int8_bytes,
            "int8_codes_scales_norms_per_row": qa.nbytes // n,
            "float32_per_row": a.nbytes // n,
            "ratio": int8_bytes / f32_bytes,
        },
    }


def run_cuda(args: argparse.Namespace, a: np.ndarray, b: np.ndarray, concepts: np.ndarray) -> dict[str, Any]:
    """Triton int8 kernels vs torch float16 on the GPU, and a device-to-device copy for bandwidth."""
    import torch

    from audit.kernels.int8_triton import (
        concept_scores_int8_cuda,
        paired_cosine_int8_cuda,
        quantize_int8_cuda,
    )

    dev = torch.device("cuda")

    def gpu_timed(fns: dict[str, Callable[[], Any]]) -> dict[str, dict[str, Any]]:
        def synced(fn: Callable[[], Any]) -> Callable[[], Any]:
            def call() -> Any:
                out = fn()
                torch.cuda.synchronize()
                return out

            return call

        return timed({k: synced(f) for k, f in fns.items()}, args.reps)

    def peak_alloc(fn: Callable[[], Any]) -> int:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)

    n, d = a.shape
    a16, b16 = (torch.from_numpy(x).to(dev, torch.float16) for x in (a, b))
    c16 = torch.from_numpy(concepts).to(dev, torch.float16)
    qa = quantize_int8_cuda(torch.from_numpy(a).to(dev), args.block_size)
    qb = quantize_int8_cuda(torch.from_numpy(b).to(dev), args.block_size)
    c32 = torch.from_numpy(concepts).to(dev)

    def copy_bandwidth() -> float:
        src = torch.empty(2**30, dtype=torch.uint8, device=dev)
        dst = torch.empty_like(src)
        res = gpu_timed({"d2d_copy": lambda: dst.copy_(src)})["d2d_copy"]
        return 2 * src.numel() / res["median_s"]  # bytes read + written

    copy_bw = copy_bandwidth()
    paired = gpu_timed(
        {
            "float16_torch": lambda: torch.einsum("ij,ij->i", a16, b16),
            "int8": lambda: paired_cosine_int8_cuda(qa, qb),
        }
    )
    scoring = gpu_timed(
        {
            "float16_torch": lambda: a16 @ c16.T,
            "int8": lambda: concept_scores_int8_cuda(qa, c32, k=args.top_k, threshold=args.threshold),
        }
    )
    k = concepts.shape[0]
    bytes_int8_paired = 2 * qa.nbytes + 4 * n
    bytes_f16_paired = 2 * a16.numel() * 2 + 2 * n
    bytes_int8_concept = qa.nbytes + n * k * (4 + 1) + n * args.top_k * 8
    bytes_f16_concept = a16.numel() * 2 + n * k * 2
    cos_err = (paired["int8"]["result"] - paired["float16_torch"]["result"].float()).abs()

    def entry(res: dict[str, Any], moved: int) -> dict[str, Any]:
        bw = moved / res["median_s"]
        return {
            **rate(n, res),
            "bytes_moved": moved,
            "bandwidth_Bps": bw,
            "fraction_of_copy_bw": bw / copy_bw,
        }

    return {
        "device": torch.cuda.get_device_name(dev),
        "d2d_copy_bandwidth_Bps": copy_bw,
        "paired_cosine": {
            "float16_torch": entry(paired["float16_torch"], bytes_f16_paired),
            "int8": entry(paired["int8"], bytes_int8_paired),
            "speedup": paired["float16_torch"]["median_s"] / paired["int8"]["median_s"],
            "diff_vs_float16_p999": float(torch.quantile(cos_err[: 2**24], 0.999)),
            "peak_alloc_bytes": {
                "float16_torch": peak_alloc(lambda: torch.einsum("ij,ij->i", a16, b16)),
                "int8": peak_alloc(lambda: paired_cosine_int8_cuda(qa, qb)),
            },
        },
        "concept_scores": {
            "float16_torch": entry(scoring["float16_torch"], bytes_f16_concept),
            "int8": entry(scoring["int8"], bytes_int8_concept),
            "speedup": scoring["float16_torch"]["median_s"] / scoring["int8"]["median_s"],
            "peak_alloc_bytes": {
                "float16_torch": peak_alloc(lambda: a16 @ c16.T),
                "int8": peak_alloc(
                    lambda: concept_scores_int8_cuda(qa, c32, k=args.top_k, threshold=args.threshold)
                ),
            },
        },
        "bytes": {"float16_pair": 2 * a16.numel() * 2, "int8_pair": 2 * qa.nbytes},
        "dim": d,
    }


def targets(cpu: dict[str, Any]) -> dict[str, dict[str, Any]]:
    values = {
        "cpu_paired_speedup": cpu["paired_cosine"]["speedup"],
        "cpu_concept_speedup": cpu["concept_scores"]["speedup"],
        "int8_bytes_ratio": cpu["bytes"]["ratio"],
        "paired_error_p999": cpu["paired_cosine"]["error_p999"],
        "concept_error_p999": cpu["concept_scores"]["error_p999"],
        "concept_topk_overlap": cpu["concept_scores"]["topk_overlap"],
    }
    out = {}
    for name, (op, threshold) in TARGETS.items():
        v = values[name]
        out[name] = {
            "value": v,
            "target": f"{op} {threshold}",
            "pass": v >= threshold if op == ">=" else v <= threshold,
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    a, b = clip_like_pairs(args.rows, args.dim, seed=args.seed)
    concepts = clip_like_concepts(args.concepts, args.dim, seed=args.seed)
    load_before = os.getloadavg()  # other processes on the machine skew every timing; say how busy it was
    cpu = run_cpu(args, a, b, concepts)
    result: dict[str, Any] = {
        "benchmark": "audit.kernels.bench",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "sweep")},
        "machine": {
            **machine_info(),
            "loadavg_1_5_15_before": load_before,
            "loadavg_1_5_15_after": os.getloadavg(),
        },
        "cpu": cpu,
        "targets": targets(cpu),
    }
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    result["cuda"] = run_cuda(args, a, b, concepts) if has_cuda else None
    result["all_targets_pass"] = all(t["pass"] for t in result["targets"].values())
    result["wall_s"] = time.perf_counter() - t_start
    return result


def _fake_quantize(x: np.ndarray, block: int) -> np.ndarray:
    """Quantize-dequantize with any divisor of D as block (the kernels need powers of two)."""
    n, d = x.shape
    blocks = x.reshape(n, d // block, block)
    amax = np.abs(blocks).max(axis=2, keepdims=True)
    inv = np.divide(np.float32(127), amax, out=np.zeros_like(amax), where=amax > 0)
    codes = np.clip(np.floor(blocks * inv + np.float32(0.5)), -127, 127)
    return (codes * (amax / np.float32(127))).reshape(n, d).astype(np.float32)


def _dynamic_map() -> np.ndarray:
    """Dettmers' signed dynamic tree code (bitsandbytes ``create_dynamic_map``): 256 values in [-1, 1]."""
    values = [0.0, 1.0]
    for i in range(7):  # exponent i: 2**i evenly spaced fractions in (0.1, 1] times 10**(i - 6)
        edges = np.linspace(0.1, 1.0, 2**i + 1)
        mids = (edges[:-1] + edges[1:]) / 2 * 10.0 ** (i - 6)
        values += [*mids, *(-mids)]
    return np.sort(np.array(values + [0.0] * (256 - len(values)), np.float32))


def _dynamic_quantize(x: np.ndarray, block: int) -> np.ndarray:
    """Quantize-dequantize with the dynamic code (nearest code value) and an absmax scale per block."""
    code = _dynamic_map()
    n, d = x.shape
    blocks = x.reshape(n, d // block, block)
    amax = np.abs(blocks).max(axis=2, keepdims=True)
    y = np.divide(blocks, amax, out=np.zeros_like(blocks), where=amax > 0)
    hi = np.clip(np.searchsorted(code, y), 1, len(code) - 1)
    lo_v, hi_v = code[hi - 1], code[hi]
    return (np.where(y - lo_v < hi_v - y, lo_v, hi_v) * amax).reshape(n, d)


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Error of block-wise int8 against float32 for each block size: the table in quantize.py."""

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    rows = []
    for dim in (512, 768):
        a, b = clip_like_pairs(args.rows, dim, seed=args.seed + 3)
        concepts = unit(clip_like_concepts(args.concepts, dim, seed=args.seed + 3))
        cos_ref = np.sum(a * b, axis=1)
        m = min(args.rows, 50_000)
        s_ref = a[:m] @ concepts.T
        top_ref = top_indices(s_ref, args.top_k)
        cases = [("linear", block) for block in sorted({16, 32, 64, 128, 256, dim})]
        for code, block in [*cases, ("dynamic", 64), ("dynamic", 128)]:
            fq = _fake_quantize if code == "linear" else _dynamic_quantize
            ah, bh = unit(fq(a, block)), unit(fq(b, block))
            s = ah[:m] @ concepts.T
            rows.append(
                {
                    "dim": dim,
                    "code": code,
                    "block_size": block,
                    "bytes_ratio": (dim + 4 * dim // block) / (4 * dim),
                    "paired_error_p999": float(
                        np.percentile(np.abs(np.sum(ah * bh, axis=1) - cos_ref), 99.9)
                    ),
                    "concept_error_p999": float(np.percentile(np.abs(s - s_ref), 99.9)),
                    "topk_overlap": topk_overlap(top_indices(s, args.top_k), top_ref),
                }
            )
            r = rows[-1]
            print(
                f"{dim:5d} {code:8s} {block:6d} {r['bytes_ratio']:7.3f} {r['paired_error_p999']:13.5f} "
                f"{r['concept_error_p999']:15.5f} {r['topk_overlap']:15.3f}",
                flush=True,
            )
    return {"benchmark": "audit.kernels.bench --sweep", "rows": args.rows, "results": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m audit.kernels.bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--concepts", type=int, default=64)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.2)
    p.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep", action="store_true", help="measure error per block size instead of speed")
    args = p.parse_args(argv)
    if args.sweep and args.rows == p.get_default("rows"):
        args.rows = 200_000
    result = sweep(args) if args.sweep else run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.sweep:
        for name, t in result["targets"].items():
            print(f"{name:24s} {t['value']:10.4f}  {t['target']:8s}  {'pass' if t['pass'] else 'FAIL'}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
