"""Zero-shot concept scores of every image embedding against the prompt bank."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from audit.concepts import ConceptProbes
from audit.tables import set_columns

OUTPUT_COLUMNS = ("concept_scores", "concept_hits", "identity_top")


def score_concepts(table: pa.Table, *, probes: ConceptProbes) -> pa.Table:
    """Adds concept_scores (concept -> cosine), concept_hits and identity_top; rows without an
    image embedding get nulls."""
    n = table.num_rows
    emb = table.column("image_embedding").to_pylist()
    idx = [i for i, e in enumerate(emb) if e is not None]
    scores_col: list = [None] * n
    hits_col: list = [None] * n
    ident_col: list = [None] * n
    if idx:
        scores, hits = probes.score(np.asarray([emb[i] for i in idx], np.float32))
        hit_lists, identity_top = probes.describe(scores, hits)
        ids = probes.ids
        for j, i in enumerate(idx):
            scores_col[i] = list(zip(ids, scores[j].tolist(), strict=True))
            hits_col[i] = hit_lists[j]
            ident_col[i] = identity_top[j]
    return set_columns(
        table,
        {
            "concept_scores": pa.array(scores_col, pa.map_(pa.string(), pa.float32())),
            "concept_hits": pa.array(hits_col, pa.list_(pa.string())),
            "identity_top": pa.array(ident_col, pa.string()),
        },
    )
