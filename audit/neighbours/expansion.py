"""kNN expansion: from a few confirmed (seed) items to every item that looks like them.

Harm comes in clusters and copies: the Stanford Internet Observatory went from 27 confirmed items in
LAION to 2,773 candidates this way.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from audit.neighbours.ids import RowLookup
from audit.neighbours.index import NeighbourIndex
from audit.neighbours.schemas import NEAR_FLAGGED_REASON, NEAR_FLAGGED_SCHEMA

# Extra neighbours fetched per seed so that other seeds in a seed's top-k do not crowd out new items.
_SEED_ALLOWANCE = 64


def expand_from_seeds(
    index: NeighbourIndex,
    seed_vectors: np.ndarray,
    seed_ids: np.ndarray,
    rows: RowLookup,
    *,
    min_similarity: float | None = None,
    k: int | None = None,
    nprobe: int | None = None,
) -> pa.Table:
    """Items within min_similarity of a seed, or among its k nearest, or both (top-k above the threshold).

    Seeds themselves are left out (by index id: a row sharing a seed's key is not a seed). An item
    near several seeds appears once, with its most similar seed (ties to the smaller seed id). Rows
    follow NEAR_FLAGGED_SCHEMA, most similar first, named by row id with their key.
    """
    if min_similarity is None and k is None:
        raise ValueError("expand_from_seeds needs min_similarity, k or both")
    seed_ids = np.asarray(seed_ids, np.int64)
    if len(seed_ids) != len(seed_vectors):
        raise ValueError(f"{len(seed_vectors)} seed vectors but {len(seed_ids)} seed ids")
    if not len(seed_ids):
        return NEAR_FLAGGED_SCHEMA.empty_table()

    if k is None:
        found = index.range_search(seed_vectors, min_similarity, nprobe=nprobe)
        seed, item, sim = seed_ids[found.query_index], found.ids, found.similarities
    else:
        nb = index.search(seed_vectors, k + min(len(seed_ids), _SEED_ALLOWANCE), nprobe=nprobe)
        is_new = (nb.ids >= 0) & ~np.isin(nb.ids, seed_ids)
        within_k = np.cumsum(is_new, axis=1) <= k  # the k best new items of each seed
        keep = is_new & within_k
        if min_similarity is not None:
            keep &= nb.similarities >= min_similarity
        qi, col = np.nonzero(keep)
        seed, item, sim = seed_ids[qi], nb.ids[qi, col], nb.similarities[qi, col]

    not_seed = ~np.isin(item, seed_ids)
    seed, item, sim = seed[not_seed], item[not_seed], sim[not_seed]
    order = np.lexsort((seed, -sim, item))  # per item: best seed first
    seed, item, sim = seed[order], item[order], sim[order]
    first = np.ones(len(item), bool)
    first[1:] = item[1:] != item[:-1]
    seed, item, sim = seed[first], item[first], sim[first]
    order = np.lexsort((item, -sim))
    seed, item, sim = seed[order], item[order], sim[order]
    found, seeds = rows(item), rows(seed)
    return pa.table(
        {
            "row_id": found.column("row_id"),
            "key": found.column("key"),
            "seed_row_id": seeds.column("row_id"),
            "seed_key": seeds.column("key"),
            "similarity": pa.array(sim.astype(np.float32)),
            "reason": pa.array([NEAR_FLAGGED_REASON] * len(item), pa.string()),
        },
        schema=NEAR_FLAGGED_SCHEMA,
    )
