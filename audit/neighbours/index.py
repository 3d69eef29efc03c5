"""A cosine-similarity faiss index over the corpus, with one interface on the CPU and the GPU.

Sync points for a sharded pipeline: ``create`` -> ``train(sample)`` -> ``add(vectors, ids)`` per shard ->
``save``; then any worker can ``load`` it and ``search`` its own shard. Vectors are L2-normalised on the
way in, so inner product is cosine similarity. Callers never branch on the device: ``create`` and
``load`` return ``NeighbourIndexGPU`` when faiss-gpu sees a GPU (as faiss.contrib does with
``DatasetAssign`` / ``DatasetAssignGPU``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

from audit.neighbours.device import GPU_MAX_K, gpu_resources, resolve_faiss_device
from audit.neighbours.results import Neighbours, RangeNeighbours
from audit.neighbours.spec import IndexSpec
from audit.neighbours.storage import FORMAT, FORMAT_VERSION, read_index_folder, write_index_folder

log = logging.getLogger(__name__)

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def normalised(vectors: np.ndarray, dim: int) -> np.ndarray:
    """A float32, C-ordered, L2-normalised copy (the caller's array is never modified)."""
    x = np.array(vectors, dtype=np.float32, order="C", copy=True, ndmin=2)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {x.shape}")
    bad = x.shape[0] - int(np.isfinite(x).all(axis=1).sum())
    if bad:
        raise ValueError(f"{bad} of {x.shape[0]} vectors hold NaN or inf: quarantine those rows first")
    faiss.normalize_L2(x)
    return x


class NeighbourIndex:
    """The CPU index. See the module docstring for the life cycle."""

    device = "cpu"

    def __init__(self, spec: IndexSpec, index: faiss.Index, trained_on: int = 0) -> None:
        self.spec = spec
        self.trained_on = trained_on
        self._index = self._to_device(index)

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def create(cls, spec: IndexSpec, device: str = "auto") -> NeighbourIndex:
        index = faiss.index_factory(spec.dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
        if spec.kind != "flat":
            ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
            ivf.cp.niter = spec.train_iterations
            if spec.kind == "ivf_pq":
                ivf.pq.cp.niter = spec.train_iterations  # the PQ codebooks' k-means (faiss default: 25)
        return _class_for(device)(spec, index)

    @classmethod
    def load(cls, folder: str, device: str = "auto", *, mmap: bool = False) -> NeighbourIndex:
        meta, index = read_index_folder(folder, mmap=mmap)
        spec = IndexSpec(**{f.name: meta[f.name] for f in dataclasses.fields(IndexSpec)})
        return _class_for(device)(spec, index, trained_on=meta["trained_on"])

    def save(self, folder: str) -> None:
        write_index_folder(folder, self.to_cpu(), self.describe())

    def describe(self) -> dict[str, Any]:
        """What index.json records."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **dataclasses.asdict(self.spec),
            "factory": self.spec.factory,
            "metric": "cosine",
            "faiss_metric": "inner product of L2-normalised vectors",
            "n": self.ntotal,
            "trained_on": self.trained_on,
            "faiss_version": faiss.__version__,
        }

    # --- filling --------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def train(self, sample: np.ndarray) -> None:
        """Learn the IVF lists and codec from a sample of the corpus (a no-op for flat)."""
        x = normalised(sample, self.spec.dim)
        if self.spec.kind == "flat":
            return
        if len(x) < self.spec.nlist:
            raise ValueError(
                f"training {self.spec.factory} needs at least {self.spec.nlist} rows, got {len(x)}"
            )
        self._train(x)
        self.trained_on = len(x)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add one batch (a shard) of vectors under the caller's int64 row ids."""
        if not self.is_trained:
            raise ValueError(f"train {self.spec.factory} on a sample before adding vectors")
        x = normalised(vectors, self.spec.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape != (len(x),):
            raise ValueError(f"{len(x)} vectors but ids of shape {ids.shape}")
        if len(x):
            self._index.add_with_ids(x, ids)

    # --- queries --------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, nprobe: int | None = None) -> Neighbours:
        """The k most similar indexed items of each query (a query finds itself if it is indexed)."""
        x = normalised(queries, self.spec.dim)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not len(x):
            return Neighbours(np.empty((0, k), np.float32), np.empty((0, k), np.int64))
        sims, ids = self._search(x, k, nprobe)
        return Neighbours(_clip_cosine(sims), ids)

    def range_search(
        self, queries: np.ndarray, min_similarity: float, *, nprobe: int | None = None
    ) -> RangeNeighbours:
        """Every indexed item with cosine >= min_similarity to each query, best first per query."""
        x = normalised(queries, self.spec.dim)
        return self._range_search(x, float(min_similarity), nprobe)

    def to_cpu(self) -> faiss.Index:
        """The underlying faiss index on the CPU (what save writes)."""
        return self._index

    # --- device hooks: the GPU class overrides these -------------------------------------------
    def _to_device(self, index: faiss.Index) -> faiss.Index:
        return index

    def _train(self, x: np.ndarray) -> None:
        self._index.train(x)

    def _params(self, nprobe: int | None) -> faiss.SearchParameters | None:
        if self.spec.kind == "flat":
            return None
        # Per-call parameters instead of index.nprobe, so threads sharing the index never race.
        return faiss.SearchParametersIVF(nprobe=int(nprobe or self.spec.nprobe))

    def _search(self, x: np.ndarray, k: int, nprobe: int | None) -> tuple[np.ndarray, np.ndarray]:
        return self._index.search(x, k, params=self._params(nprobe))

    def _range_search(self, x: np.ndarray, min_similarity: float, nprobe: int | None) -> RangeNeighbours:
        # faiss keeps inner products strictly above the radius; step just below it to keep ">=".
        radius = float(np.nextafter(np.float32(min_similarity), np.float32(-np.inf)))
        lims, sims, ids = self._index.range_search(x, radius, params=self._params(nprobe))
        keep = sims >= min_similarity
        query = np.repeat(np.arange(len(x)), np.diff(lims.astype(np.int64)))[keep]
        return _range_result(len(x), query, sims[keep], ids[keep])


class NeighbourIndexGPU(NeighbourIndex):
    """The same index on a GPU (faiss-gpu). IVF lists are trained with GPU k-means on the CPU index, then
    the trained index is moved to the GPU; ``to_cpu`` copies it back for saving."""

    device = "cuda"

    def _to_device(self, index: faiss.Index) -> faiss.Index:
        if not index.is_trained:
            return index  # stays on the CPU until train() moves it
        options = faiss.GpuClonerOptions()
        options.useFloat16 = self.spec.kind == "ivf_pq"  # large PQ lookup tables only fit in float16
        return faiss.index_cpu_to_gpu(gpu_resources(), 0, index, options)

    def _train(self, x: np.ndarray) -> None:
        cpu = self._index
        ivf = faiss.extract_index_ivf(cpu)
        # Keep a Python reference: faiss does not own clustering_index, and it must outlive train().
        clustering = faiss.index_cpu_to_gpu(gpu_resources(), 0, faiss.IndexFlatIP(self.spec.dim))
        ivf.clustering_index = clustering
        try:
            cpu.train(x)
        finally:
            ivf.clustering_index = None
        self._index = self._to_device(cpu)

    def _search(self, x: np.ndarray, k: int, nprobe: int | None) -> tuple[np.ndarray, np.ndarray]:
        if k > GPU_MAX_K:
            raise ValueError(f"faiss-gpu searches at most k={GPU_MAX_K} neighbours, asked for {k}")
        if self.spec.kind != "flat":  # GPU indexes take nprobe as state, not as per-call parameters
            faiss.GpuParameterSpace().set_index_parameter(
                self._index, "nprobe", int(nprobe or self.spec.nprobe)
            )
        return self._index.search(x, k)

    def _range_search(self, x: np.ndarray, min_similarity: float, nprobe: int | None) -> RangeNeighbours:
        # faiss-gpu has no range search: grow k until every query's k-th result falls below the threshold.
        return range_search_by_knn(lambda q, k: self._search(q, k, nprobe), x, min_similarity)

    def to_cpu(self) -> faiss.Index:
        return faiss.index_gpu_to_cpu(self._index) if self._index.is_trained else self._index


def _class_for(device: str) -> type[NeighbourIndex]:
    return NeighbourIndexGPU if resolve_faiss_device(device) == "cuda" else NeighbourIndex


def range_search_by_knn(
    search: SearchFn,
    queries: np.ndarray,
    min_similarity: float,
    *,
    start_k: int = 64,
    max_k: int = GPU_MAX_K,
) -> RangeNeighbours:
    """Range search built from kNN searches with a doubling k, for indexes that lack range_search.

    A query is done once its k-th result is below the threshold (or missing); at max_k its results are
    cut there, with a warning.
    """
    n = len(queries)
    pending, k = np.arange(n), min(start_k, max_k)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    truncated = 0
    while pending.size:
        sims, ids = search(queries[pending], k)
        done = (ids[:, -1] < 0) | (sims[:, -1] < min_similarity)
        if k >= max_k:
            truncated = int((~done).sum())
            done[:] = True
        keep = done[:, None] & (ids >= 0) & (sims >= min_similarity)
        rows, cols = np.nonzero(keep)
        parts.append((pending[rows], sims[rows, cols], ids[rows, cols]))
        pending, k = pending[~done], min(2 * k, max_k)
    if truncated:
        log.warning(
            "range search stopped at %d results for %d queries (faiss-gpu's k limit)", max_k, truncated
        )
    query, sims, ids = (np.concatenate(p) for p in zip(*parts, strict=True)) if parts else ([],) * 3
    return _range_result(
        n, np.asarray(query, np.int64), np.asarray(sims, np.float32), np.asarray(ids, np.int64)
    )


def _range_result(n_queries: int, query: np.ndarray, sims: np.ndarray, ids: np.ndarray) -> RangeNeighbours:
    order = np.lexsort((ids, -sims, query))  # by query, then best first, ties by id: deterministic
    lims = np.zeros(n_queries + 1, np.int64)
    np.cumsum(np.bincount(query, minlength=n_queries), out=lims[1:])
    return RangeNeighbours(lims, _clip_cosine(sims[order].astype(np.float32)), ids[order].astype(np.int64))


def _clip_cosine(sims: np.ndarray) -> np.ndarray:
    # Quantised codes can score a hair above 1; missing results (-FLT_MAX) become -1 (their id is -1).
    return np.clip(sims, -1.0, 1.0, out=sims)
