"""Benchmark: neighbourhoods on synthetic embeddings with planted near-duplicates, clusters and outliers.

    python -m audit.neighbours.bench --out bench/results/neighbours.json --rows 1000000 --dim 512

Runs the pipeline's sync points in order (sample -> train -> add per chunk -> save -> search per chunk) and
writes a JSON of timings, peak memory, quality numbers and each target with pass/fail. Data are generated
chunk by chunk and generated again for the search pass, so the corpus is never held whole.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.neighbours.clusters import assign_clusters, cluster_counts, clusters_table, train_kmeans
from audit.neighbours.duplicates import SimilarPairs, near_duplicate_groups, similar_pairs
from audit.neighbours.ids import row_labels
from audit.neighbours.index import NeighbourIndex
from audit.neighbours.outliers import outlier_scores
from audit.neighbours.planted import PlantedCorpus
from audit.neighbours.spec import IndexConfig, choose_index_spec

GIB = 2**30


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def pair_codes(a: np.ndarray, b: np.ndarray, n_rows: int) -> np.ndarray:
    return np.asarray(a, np.int64) * n_rows + np.asarray(b, np.int64)


class Phases:
    """Wall and CPU seconds (all threads) per phase; a phase may be timed in pieces inside chunk loops."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        acc = self.seconds.setdefault(name, [0.0, 0.0])
        acc[0] += time.perf_counter() - wall
        acc[1] += time.process_time() - cpu

    def chunks(self, corpus: PlantedCorpus, blocks: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """corpus.chunks(), with the generation time booked to 'generate_data'."""
        it = corpus.chunks(blocks)
        while True:
            with self.time("generate_data"):
                item = next(it, None)
            if item is None:
                return
            yield item

    def report(self) -> dict[str, dict[str, float]]:
        return {k: {"wall_s": round(w, 2), "cpu_s": round(c, 2)} for k, (w, c) in self.seconds.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start, cpu_start, load_start = time.perf_counter(), time.process_time(), os.getloadavg()
    phases = Phases()
    threads = args.threads or len(os.sched_getaffinity(0))
    faiss.omp_set_num_threads(threads)
    corpus = PlantedCorpus(
        args.rows, args.dim, n_clusters=args.clusters, n_dup_groups=args.rows // 50,
        n_outliers=max(10, args.rows // 1000), block_rows=args.block_rows, seed=args.seed,
    )  # fmt: skip
    blocks = max(1, args.chunk_rows // args.block_rows)

    # Exact-search check: a few hundred queries (half of them planted copies) against every row, brute
    # force. Their vectors, and those of all planted copies, are picked up while adding.
    rng = np.random.default_rng(args.seed)
    plain = np.setdiff1d(np.arange(args.rows), np.concatenate([corpus.dup_rows, corpus.outlier_rows]))
    n_q = min(args.exact_queries // 2, len(corpus.dup_rows))
    picks = [
        rng.choice(corpus.dup_rows, n_q, replace=False),
        rng.choice(plain, args.exact_queries - n_q, replace=False),
    ]
    check_rows = np.sort(np.concatenate(picks))
    check_vecs = np.zeros((len(check_rows), args.dim), np.float32)
    dup_vecs = np.zeros((len(corpus.dup_rows), args.dim), np.float32)

    # --- the pipeline's sync points: sample -> train -> add per shard -> save -> search per shard ------
    spec = choose_index_spec(
        args.rows, args.dim, IndexConfig(memory_budget_bytes=int(args.index_budget_gib * GIB))
    )
    index = NeighbourIndex.create(spec)
    with phases.time("generate_data"):
        index_sample, kmeans_sample = (
            corpus.sample(max(spec.train_size, 1)),
            corpus.sample(args.clusters * 50),
        )
    with phases.time("train_index"):
        index.train(index_sample)
    with phases.time("train_kmeans"):
        centroids = train_kmeans(kmeans_sample, args.clusters, niter=10, seed=args.seed)
    del index_sample, kmeans_sample
    for start, x, _ in phases.chunks(corpus, blocks):
        with phases.time("add"):
            index.add(x, np.arange(start, start + len(x)))
        with phases.time("exact_check"):
            lo, hi = np.searchsorted(check_rows, [start, start + len(x)])
            check_vecs[lo:hi] = x[check_rows[lo:hi] - start]
            lo, hi = np.searchsorted(corpus.dup_rows, [start, start + len(x)])
            dup_vecs[lo:hi] = x[corpus.dup_rows[lo:hi] - start]

    with tempfile.TemporaryDirectory() as tmp:
        with phases.time("save"):
            index.save(f"{tmp}/index")
        index_bytes = sum(f.stat().st_size for f in Path(tmp, "index").iterdir())
        with phases.time("load_and_compare"):
            reloaded = NeighbourIndex.load(f"{tmp}/index", mmap=True)
            probe = corpus.block(0)[0][:200]
            same_after_reload = bool(
                np.array_equal(reloaded.search(probe, 5).ids, index.search(probe, 5).ids)
            )
            del reloaded

    parts: list[SimilarPairs] = []
    exact_a: list[np.ndarray] = []
    exact_b: list[np.ndarray] = []
    scores = np.empty(args.rows, np.float32)
    clusters = np.empty(args.rows, np.int32)
    planted = np.empty(args.rows, np.int32)
    for start, x, labels in phases.chunks(corpus, blocks):
        rows = slice(start, start + len(x))
        ids = np.arange(start, start + len(x))
        with phases.time("search"):  # one kNN search per shard serves near-duplicates and outliers
            nb = index.search(x, args.k, nprobe=args.nprobe)
            parts.append(similar_pairs(ids, nb, args.min_similarity))
            scores[rows] = outlier_scores(ids, nb, args.outlier_k)
        with phases.time("assign_clusters"):
            clusters[rows] = assign_clusters(centroids, x)[0]
        planted[rows] = labels
        with phases.time("exact_check"):
            q, j = np.nonzero(check_vecs @ x.T >= args.min_similarity)
            keep = check_rows[q] != ids[j]
            exact_a.append(check_rows[q][keep])
            exact_b.append(ids[j][keep])

    with phases.time("duplicate_groups"):
        pairs = SimilarPairs.concat(parts)
        del parts
        groups = near_duplicate_groups(pairs, _id_labels, kind="image")
    with phases.time("clusters_table"):
        flagged = planted < args.clusters // 10  # a tenth of the planted clusters is "harmful"
        table = clusters_table(cluster_counts(clusters, flagged))
    wall, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    rss = peak_rss_bytes()
    times = phases.report()
    overhead = ("generate_data", "exact_check", "load_and_compare")
    pipeline_wall = sum(v["wall_s"] for k, v in times.items() if k not in overhead)

    # --- quality --------------------------------------------------------------------------------
    found = pair_codes(pairs.a, pairs.b, args.rows)
    pa_, pb_ = corpus.planted_pairs()
    a_pos, b_pos = np.searchsorted(corpus.dup_rows, pa_), np.searchsorted(corpus.dup_rows, pb_)
    exact_sim = np.einsum("ij,ij->i", dup_vecs[a_pos], dup_vecs[b_pos])
    truth = pair_codes(pa_, pb_, args.rows)[exact_sim >= args.min_similarity]
    planted_recall = float(np.isin(truth, found).mean()) if truth.size else 1.0
    ea, eb = np.concatenate(exact_a), np.concatenate(exact_b)
    exact = np.unique(pair_codes(np.minimum(ea, eb), np.maximum(ea, eb), args.rows))
    exact_recall = float(np.isin(exact, found).mean()) if exact.size else 1.0
    unplanted = int((~np.isin(found, pair_codes(pa_, pb_, args.rows))).sum())

    whole = _groups_recovered_whole(groups, corpus.groups)
    n_out = len(corpus.outlier_rows)
    top = np.argpartition(-scores, n_out)[:n_out]
    real = planted >= 0
    purity = _purity(clusters[real], planted[real])
    flagged_total = int(table["n_flagged"].to_numpy().sum())

    targets = {
        "planted_pair_recall": {
            "value": round(planted_recall, 5),
            "target": ">= 0.95",
            "pass": planted_recall >= 0.95,
        },
        "wall_time_s": {"value": round(wall, 1), "target": "<= 300", "pass": wall <= 300},
        "peak_rss_gib": {"value": round(rss / GIB, 3), "target": "<= 4", "pass": rss <= 4 * GIB},
    }
    return {
        "benchmark": "neighbours",
        "machine": {
            "cpus": threads,
            "faiss": faiss.__version__,
            "faiss_simd": faiss.get_compile_options().strip(),
        },
        "params": {
            "rows": args.rows,
            "dim": args.dim,
            "chunk_rows": blocks * args.block_rows,
            "planted_clusters": args.clusters,
            "planted_dup_groups": len(corpus.groups),
            "planted_dup_rows": len(corpus.dup_rows),
            "planted_outliers": n_out,
            "min_similarity": args.min_similarity,
            "k": args.k,
            "nprobe": args.nprobe,
            "outlier_k": args.outlier_k,
            "exact_check_queries": len(check_rows),
            "seed": args.seed,
        },
        "index": {
            **index.describe(),
            "file_bytes": index_bytes,
            "memory_bytes_estimate": spec.memory_bytes(args.rows),
            "reload_gives_same_results": same_after_reload,
        },
        "times": times,
        "wall_time_s": round(wall, 1),
        "cpu_time_s": round(cpu, 1),
        "pipeline_wall_time_s": round(pipeline_wall, 1),
        "load_average_1min": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)},
        "peak_rss_bytes": rss,
        "quality": {
            "planted_pairs": len(pa_),
            "planted_pairs_confirmed_by_exact_cosine": int(truth.size),
            "planted_pair_recall": round(planted_recall, 5),
            "exact_search_pairs_from_check_queries": int(exact.size),
            "exact_search_recall_on_check_queries": round(exact_recall, 5),
            "found_pairs": len(pairs),
            "found_pairs_not_planted": unplanted,
            "planted_groups_recovered_whole": f"{whole}/{len(corpus.groups)}",
            "duplicate_rows_in_table": groups.num_rows,
            "kmeans_purity": round(purity, 4),
            "clusters_in_table": table.num_rows,
            "clusters_table_flagged_rows_match": flagged_total == int(flagged.sum()),
            "outlier_precision_at_n_planted": round(float(np.isin(top, corpus.outlier_rows).mean()), 4),
            "outlier_score_median_planted": round(float(np.median(scores[corpus.outlier_rows])), 4),
            "outlier_score_median_others": round(float(np.median(scores[real])), 4),
        },
        "targets": targets,
        "pass": all(v["pass"] for v in targets.values()),
    }


def _id_labels(ids: np.ndarray) -> pa.Table:
    """The planted corpus' rows are named by their index id (as row id and key alike)."""
    text = pc.cast(pa.array(ids), pa.string())
    return row_labels(text, text)


def _groups_recovered_whole(table: pa.Table, planted: list[np.ndarray]) -> int:
    """Planted groups that came out as exactly one group with exactly their members."""
    found: dict[int, set[int]] = {}
    for row, group in zip(
        pc.cast(table["row_id"], pa.int64()).to_pylist(), table["group"].to_pylist(), strict=True
    ):
        found.setdefault(group, set()).add(row)
    as_sets = {frozenset(m) for m in found.values()}
    return sum(frozenset(g.tolist()) in as_sets for g in planted)


def _purity(found: np.ndarray, planted: np.ndarray) -> float:
    """Share of rows whose k-means cluster's most common planted cluster is their own."""
    pair = found.astype(np.int64) * (int(planted.max()) + 1) + planted
    codes, counts = np.unique(pair, return_counts=True)
    best = np.zeros(int(found.max()) + 1, np.int64)
    np.maximum.at(best, codes // (int(planted.max()) + 1), counts)
    return float(best.sum() / len(found))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="JSON results file")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--clusters", type=int, default=1000, help="planted clusters, and k of k-means")
    p.add_argument("--min-similarity", type=float, default=0.95, help="near-duplicate cosine threshold")
    p.add_argument("--k", type=int, default=8, help="neighbours searched per row")
    p.add_argument("--outlier-k", type=int, default=5)
    p.add_argument("--nprobe", type=int, default=2, help="IVF lists probed by the near-duplicate search")
    p.add_argument("--index-budget-gib", type=float, default=4.0)
    p.add_argument("--exact-queries", type=int, default=400)
    p.add_argument("--block-rows", type=int, default=8192)
    p.add_argument("--chunk-rows", type=int, default=65536)
    p.add_argument("--threads", type=int, default=0, help="faiss threads (default: the CPUs available)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(json.dumps(result, indent=2))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
