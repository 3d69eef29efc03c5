"""Search results in plain arrays: cosine similarities, best first, with the caller's int64 row ids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Neighbours:
    """k nearest neighbours of each query; where fewer than k were found the id is -1."""

    similarities: np.ndarray  # (n_queries, k) float32, descending along each row
    ids: np.ndarray  # (n_queries, k) int64

    @property
    def found(self) -> np.ndarray:
        return self.ids >= 0


@dataclass(frozen=True)
class RangeNeighbours:
    """Every indexed item at or above a similarity, per query; query i owns entries lims[i]:lims[i+1]."""

    lims: np.ndarray  # (n_queries + 1,) int64
    similarities: np.ndarray  # (n_results,) float32
    ids: np.ndarray  # (n_results,) int64

    @property
    def query_index(self) -> np.ndarray:
        """The query position of every result."""
        return np.repeat(np.arange(len(self.lims) - 1), np.diff(self.lims))
