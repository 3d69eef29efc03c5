"""Small helpers over pyarrow tables shared by the stages."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def set_columns(table: pa.Table, columns: Mapping[str, pa.Array]) -> pa.Table:
    """Replace columns that exist, append the others; row count never changes."""
    for name, arr in columns.items():
        if len(arr) != table.num_rows:
            raise ValueError(f"column {name}: {len(arr)} values for {table.num_rows} rows")
        idx = table.schema.get_field_index(name)
        table = table.set_column(idx, name, arr) if idx >= 0 else table.append_column(name, arr)
    return table


def active_rows(table: pa.Table) -> np.ndarray:
    """Indices of the rows no stage has quarantined yet."""
    return np.flatnonzero(pc.is_null(table.column("quarantine_reason")).to_numpy(zero_copy_only=False))


def has_usable_caption(table: pa.Table) -> np.ndarray:
    """Per row: the caption can be scored (no ``caption_problem``); False marks image-only rows."""
    if "caption_problem" not in table.column_names:
        return pc.is_valid(table.column("caption")).to_numpy(zero_copy_only=False)
    return pc.is_null(table.column("caption_problem")).to_numpy(zero_copy_only=False)


def scatter(n: int, idx: np.ndarray, values: np.ndarray, typ: pa.DataType) -> pa.Array:
    """A length-n array holding values at idx and nulls elsewhere."""
    out = np.zeros(n, dtype=values.dtype if values.size else np.float32)
    mask = np.ones(n, dtype=bool)
    out[idx] = values
    mask[idx] = False
    return pa.array(out, type=typ, mask=mask)


def quarantine(table: pa.Table, reasons: Mapping[int, tuple[str, str]]) -> pa.Table:
    """Mark rows (index -> (reason, detail)) as quarantined, keeping earlier reasons."""
    if not reasons:
        return table
    r = table.column("quarantine_reason").to_pylist()
    d = table.column("quarantine_detail").to_pylist()
    for i, (reason, detail) in reasons.items():
        if r[i] is None:
            r[i], d[i] = reason, detail
    return set_columns(
        table, {"quarantine_reason": pa.array(r, pa.string()), "quarantine_detail": pa.array(d, pa.string())}
    )


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Exactly ``schema``'s columns, in order; columns no stage produced (a scorer that is not
    configured) are nulls, so every file of a run has the same schema."""
    n = table.num_rows
    cols = [table.column(f.name) if f.name in table.column_names else pa.nulls(n, f.type) for f in schema]
    return pa.table(cols, schema=schema.remove_metadata()).cast(schema)
