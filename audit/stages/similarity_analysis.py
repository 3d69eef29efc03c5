"""How the recomputed CLIP similarity relates to LAION's filters (0.28 for LAION-400M, 0.30 the
stricter cut) and to the shard's own ``similarity`` column."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from audit.tables import set_columns, single_array

OUTPUT_COLUMNS = ("clip_below_028", "clip_below_030", "clip_similarity_delta")
LAION_THRESHOLDS = {"clip_below_028": 0.28, "clip_below_030": 0.30}


def analyse_similarity(table: pa.Table) -> pa.Table:
    """Null wherever clip_similarity is null; the delta also needs the shard's own similarity."""
    sim = pc.cast(table.column("clip_similarity"), pa.float32())
    columns = {name: pc.less(sim, pa.scalar(t, pa.float32())) for name, t in LAION_THRESHOLDS.items()}
    columns["clip_similarity_delta"] = pc.subtract(
        sim, pc.cast(table.column("source_similarity"), pa.float32())
    )
    return set_columns(table, {k: single_array(v) for k, v in columns.items()})
