"""Outlier score: how far a row is from its k-th nearest other row (cosine distance, 0..2).

Rows in no cluster and with no copies (odd crawls, broken images, rare content) score high; copies and
cluster members score low. Reuses the shard's kNN search made for near-duplicates.
"""

from __future__ import annotations

import numpy as np

from audit.neighbours.results import Neighbours

# The largest cosine distance, given to a row with fewer than k other rows found.
MAX_DISTANCE = 2.0


def outlier_scores(query_ids: np.ndarray, neighbours: Neighbours, k: int) -> np.ndarray:
    """1 - cosine similarity to the k-th nearest row other than the query itself, per query.

    Search with at least k + 1 neighbours: an indexed query finds itself first.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    query_ids = np.asarray(query_ids, np.int64)
    other = neighbours.found & (neighbours.ids != query_ids[:, None])
    kth = other & (np.cumsum(other, axis=1) == k)
    has_kth = kth.any(axis=1)
    sims = neighbours.similarities[np.arange(len(query_ids)), kth.argmax(axis=1)]
    scores = np.where(has_kth, 1.0 - sims, MAX_DISTANCE)
    return np.clip(scores, 0.0, MAX_DISTANCE).astype(np.float32)
