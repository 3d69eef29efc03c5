"""Synthetic embeddings with planted structure, for tests and the benchmark.

Rows are unit vectors: members of ``n_clusters`` clusters, copies in near-duplicate groups (2..max members,
each a slightly perturbed copy of one base vector) and uniformly random outliers. They are generated block
by block from (seed, block) alone, so a million rows never need to sit in memory together and any block
can be regenerated to the same values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


class PlantedCorpus:
    def __init__(
        self,
        n_rows: int,
        dim: int,
        *,
        n_clusters: int = 50,
        n_dup_groups: int = 50,
        max_group_size: int = 4,
        n_outliers: int = 20,
        cluster_spread: float = 1.0,
        dup_spread: tuple[float, float] = (0.005, 0.04),
        block_rows: int = 8192,
        seed: int = 0,
    ) -> None:
        """cluster_spread: squared norm of a member's noise relative to its unit centre, so a member's
        cosine to the centre is 1/sqrt(1 + spread). dup_spread: the same for a copy around its group's
        base, drawn per group, so copies meet at cosine ~ 1/(1 + spread) (0.96..0.995 by default)."""
        self.n_rows, self.dim, self.block_rows, self.seed = n_rows, dim, block_rows, seed
        self.n_clusters = n_clusters
        self._sigma = math.sqrt(cluster_spread / dim)
        rng = np.random.default_rng([seed, 0])
        self.centres = _unit(rng.standard_normal((n_clusters, dim), dtype=np.float32))

        sizes = rng.integers(2, max_group_size + 1, n_dup_groups)
        special = rng.choice(n_rows, size=int(sizes.sum()) + n_outliers, replace=False)
        dup_rows, self.outlier_rows = special[: sizes.sum()], np.sort(special[sizes.sum() :])
        self.group_cluster = rng.integers(0, n_clusters, n_dup_groups)
        noise = rng.standard_normal((n_dup_groups, dim), dtype=np.float32) * self._sigma
        self._group_base = _unit(self.centres[self.group_cluster] + noise)
        self._group_tau = np.sqrt(rng.uniform(*dup_spread, n_dup_groups) / dim).astype(np.float32)
        group_of_dup = np.repeat(np.arange(n_dup_groups), sizes)
        order = np.argsort(dup_rows)
        self.dup_rows, self.dup_group = dup_rows[order], group_of_dup[order]
        self.groups = [np.sort(dup_rows[group_of_dup == g]) for g in range(n_dup_groups)]

    @property
    def n_blocks(self) -> int:
        return -(-self.n_rows // self.block_rows)

    def block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(vectors float32 unit, planted cluster per row with -1 for outliers) of block b."""
        start, stop = b * self.block_rows, min(self.n_rows, (b + 1) * self.block_rows)
        rng = np.random.default_rng([self.seed, 1, b])
        labels = rng.integers(0, self.n_clusters, stop - start)
        x = rng.standard_normal((stop - start, self.dim), dtype=np.float32)
        x *= self._sigma
        x += self.centres[labels]
        lo, hi = np.searchsorted(self.dup_rows, [start, stop])
        if hi > lo:
            rows, groups = self.dup_rows[lo:hi] - start, self.dup_group[lo:hi]
            noise = rng.standard_normal((hi - lo, self.dim), dtype=np.float32)
            x[rows] = self._group_base[groups] + noise * self._group_tau[groups, None]
            labels[rows] = self.group_cluster[groups]
        lo, hi = np.searchsorted(self.outlier_rows, [start, stop])
        if hi > lo:
            rows = self.outlier_rows[lo:hi] - start
            x[rows] = rng.standard_normal((hi - lo, self.dim), dtype=np.float32)
            labels[rows] = -1
        return _unit(x), labels.astype(np.int32)

    def chunks(self, blocks_per_chunk: int = 1) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first row, vectors, labels) of consecutive runs of blocks."""
        for b0 in range(0, self.n_blocks, blocks_per_chunk):
            parts = [self.block(b) for b in range(b0, min(self.n_blocks, b0 + blocks_per_chunk))]
            yield (
                b0 * self.block_rows,
                np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]),
            )

    def vectors(self) -> np.ndarray:
        """All rows at once (small corpora only)."""
        return np.concatenate([self.block(b)[0] for b in range(self.n_blocks)])

    def labels(self) -> np.ndarray:
        return np.concatenate([self.block(b)[1] for b in range(self.n_blocks)])

    def sample(self, n: int) -> np.ndarray:
        """About n rows from whole blocks spread evenly over the corpus (rows are iid within a block)."""
        n_take = min(self.n_blocks, -(-n // self.block_rows) + 1)  # a spare block: the last may be short
        picks = np.unique(np.linspace(0, self.n_blocks - 1, n_take).round().astype(int))
        return np.concatenate([self.block(int(b))[0] for b in picks])[:n]

    def planted_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) row ids with a < b of every pair inside a planted near-duplicate group."""
        pairs = [(g[i], g[j]) for g in self.groups for i in range(len(g)) for j in range(i + 1, len(g))]
        a, b = (
            (np.array(c, dtype=np.int64) for c in zip(*pairs, strict=True)) if pairs else (np.empty(0),) * 2
        )
        return a, b


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x
