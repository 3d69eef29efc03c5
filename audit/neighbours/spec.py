"""Choose a faiss index type for a corpus size within a memory budget.

Flat is exact but costs 4*dim bytes a row and n^2 work for an all-pairs search, so it is kept for small
corpora. Above that an inverted file (IVF, k-means lists) over scalar-quantised codes (SQ8, 1 byte a
dimension, near-lossless for cosine) is the default; product quantisation (PQ, a few bytes a row) is the
fallback when even SQ8 does not fit the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from audit.errors import ConfigError

IndexKind = Literal["flat", "ivf_sq8", "ivf_pq"]

# faiss asks for at least 39 training points per k-means centroid; a few more gives steadier lists.
TRAIN_POINTS_PER_LIST = 50
# PQ trains 256 centroids per sub-quantiser.
PQ_MIN_TRAIN = 256 * 39
# Bytes per PQ code tried from the most to the least accurate (all are GPU-supported sizes).
PQ_CODE_BYTES = (96, 64, 48, 32, 16, 8)
ID_BYTES = 8


@dataclass(frozen=True)
class IndexConfig:
    """How to size the index; the defaults suit CLIP embeddings of up to a few hundred million rows."""

    memory_budget_bytes: int = 4 * 2**30
    flat_max_rows: int = 50_000
    nlist: int | None = None  # None: the power of two nearest sqrt(rows)
    nprobe: int = 8
    train_iterations: int = 10
    device: str = "auto"


@dataclass(frozen=True)
class IndexSpec:
    """What to build: saved beside the index so a reader knows what it loads."""

    kind: IndexKind
    dim: int
    nlist: int = 0
    pq_m: int = 0
    nprobe: int = 1
    train_size: int = 0  # rows to sample for train(); 0 for flat
    train_iterations: int = 10

    @property
    def factory(self) -> str:
        """The faiss index_factory string; ids are always the caller's int64 row ids."""
        if self.kind == "flat":
            return "IDMap,Flat"
        if self.kind == "ivf_sq8":
            return f"IVF{self.nlist},SQ8"
        # "np": skip polysemous training, a slow code reordering only used for Hamming pre-filtering.
        return f"IVF{self.nlist},PQ{self.pq_m}np"

    @property
    def code_bytes(self) -> int:
        return {"flat": 4 * self.dim, "ivf_sq8": self.dim, "ivf_pq": self.pq_m}[self.kind]

    def memory_bytes(self, n_rows: int) -> int:
        """Resident size of the filled index: codes and ids, plus the IVF centroids (and PQ codebooks)."""
        fixed = 4 * self.dim * self.nlist + (4 * 256 * self.dim if self.kind == "ivf_pq" else 0)
        return n_rows * (self.code_bytes + ID_BYTES) + fixed


def default_nlist(n_rows: int) -> int:
    """About sqrt(n) lists as a power of two, with enough rows per list to train k-means."""
    target = 2 ** round(math.log2(max(math.sqrt(n_rows), 1)))
    most = max(1, n_rows // 39)
    return int(max(1, min(target, 65_536, 2 ** int(math.log2(most)))))


def choose_index_spec(n_rows: int, dim: int, cfg: IndexConfig | None = None) -> IndexSpec:
    """Flat when small and it fits; else IVF-SQ8 when it fits; else the most accurate IVF-PQ that fits."""
    cfg = cfg or IndexConfig()
    if n_rows < 1 or dim < 1:
        raise ConfigError(f"neighbours: need at least one row and one dimension, got {n_rows} x {dim}")
    budget = cfg.memory_budget_bytes
    flat = IndexSpec("flat", dim, nprobe=1, train_iterations=cfg.train_iterations)
    if n_rows <= cfg.flat_max_rows and flat.memory_bytes(n_rows) <= budget:
        return flat
    nlist = cfg.nlist or default_nlist(n_rows)
    nprobe = min(cfg.nprobe, nlist)
    train = min(n_rows, TRAIN_POINTS_PER_LIST * nlist)
    sq8 = IndexSpec("ivf_sq8", dim, nlist, 0, nprobe, train, cfg.train_iterations)
    if sq8.memory_bytes(n_rows) <= budget:
        return sq8
    pq_train = min(n_rows, max(train, PQ_MIN_TRAIN))
    for m in PQ_CODE_BYTES:
        if m < dim and dim % m == 0:
            pq = IndexSpec("ivf_pq", dim, nlist, m, nprobe, pq_train, cfg.train_iterations)
            if pq.memory_bytes(n_rows) <= budget:
                return pq
    smallest = min((m for m in PQ_CODE_BYTES if m < dim and dim % m == 0), default=None)
    need = IndexSpec("ivf_pq", dim, nlist, smallest or 0).memory_bytes(n_rows) if smallest else None
    raise ConfigError(
        f"neighbours.memory_budget_bytes: {budget} is too small for {n_rows} rows of dim {dim}"
        + (f" (the smallest index, IVF{nlist},PQ{smallest}, needs {need})" if need else "")
    )
