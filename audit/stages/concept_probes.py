"""Zero-shot concept scores of every image embedding against the prompt bank."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from audit.concepts import ConceptProbes
from audit.tables import embedding_matrix, scatter_array, set_columns

OUTPUT_COLUMNS = ("concept_scores", "concept_hits", "identity_top")
SCORES_TYPE = pa.map_(pa.string(), pa.float32())


def score_concepts(table: pa.Table, *, probes: ConceptProbes) -> pa.Table:
    """Adds concept_scores (concept -> cosine), concept_hits and identity_top; rows without an
    image embedding get nulls. Built from NumPy arrays, never a Python object per row."""
    n = table.num_rows
    idx, emb = embedding_matrix(table.column("image_embedding"))
    if not idx.size:
        columns = {
            "concept_scores": pa.nulls(n, SCORES_TYPE),
            "concept_hits": pa.nulls(n, pa.list_(pa.string())),
            "identity_top": pa.nulls(n, pa.string()),
        }
        return set_columns(table, columns)
    scores, hits = probes.score(emb, normalized=True)  # the CLIP stage's unit vectors
    hit_lists, identity_top = probes.describe_arrays(scores, hits)
    k = scores.shape[1]
    keys = pa.array(probes.ids, pa.string()).take(pa.array(np.tile(np.arange(k, dtype=np.int32), idx.size)))
    offsets = pa.array(np.arange(0, (idx.size + 1) * k, k, dtype=np.int32))
    score_map = pa.MapArray.from_arrays(offsets, keys, pa.array(scores.reshape(-1), pa.float32()))
    columns = {
        "concept_scores": scatter_array(n, idx, score_map),
        "concept_hits": scatter_array(n, idx, hit_lists),
        "identity_top": scatter_array(n, idx, identity_top),
    }
    return set_columns(table, columns)
