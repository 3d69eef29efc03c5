"""Exact and near-exact caption duplicates without a model: a 64-bit hash of each caption after
normalisation (Unicode NFKC, lower case, every run of characters that are not letters or digits
made one space, trimmed), grouped across the corpus.

On a CPU, CLIP's text tower embeds ~18 captions/s, so metadata audits do not embed captions by
default (``clip.encode_captions_on_cpu``) and the FAISS caption neighbours have nothing to search;
these groups are what finds copied alt-text then ("Free Shipping!!" and "free shipping" are one
group; "red dress" and "a red dress" are not). Per shard the hashes go to
``parts/caption_hashes/<shard>.parquet``; ``write_caption_duplicates`` groups them with DuckDB,
which spills to disk past its memory limit, into ``caption_duplicates.parquet`` (the neighbours'
DUPLICATES_SCHEMA, kind ``caption_text``, similarity 1.0).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.kernels.text_hash import hash_strings, hash_words_ascii
from audit.neighbours.schemas import DUPLICATES_SCHEMA
from audit.runfolder import RunFolder
from audit.tables import has_usable_caption, single_array

KIND = "caption_text"
CAPTION_HASH_SCHEMA = pa.schema(
    [
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("row_index", pa.int64(), nullable=False),
        pa.field("caption_hash", pa.uint64(), nullable=False),
    ]
)


def normalized_captions(captions: pa.Array) -> pa.Array:
    """What two captions must share to count as one (RE2 regex: linear in the caption)."""
    text = pc.utf8_lower(pc.utf8_normalize(captions, "NFKC"))
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"[^\pL\pN]+", " "))


def caption_hashes(scored: pa.Table) -> pa.Table:
    """CAPTION_HASH_SCHEMA rows of the scored rows whose caption is usable and not empty once
    normalised."""
    usable = scored.select(["row_id", "key", "row_index", "caption", "caption_problem"])
    usable = usable.filter(pa.array(has_usable_caption(usable)))  # a narrow table: filter copies it
    captions = single_array(usable.column("caption"))
    # ASCII captions (most alt-text) normalised and hashed in one pass over their bytes; the same
    # hash as hash_strings(normalized_captions(...)), which does the others
    hashes, length = hash_words_ascii(captions)
    other = np.flatnonzero(length < 0)
    if other.size:
        text = normalized_captions(captions.take(pa.array(other)))
        hashes[other] = hash_strings(text)
        length[other] = pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
    keep = pa.array(length > 0)
    usable = usable.filter(keep)
    return pa.table(
        {
            "row_id": usable.column("row_id"),
            "key": usable.column("key"),
            "row_index": usable.column("row_index"),
            "caption_hash": pa.array(hashes[length > 0], pa.uint64()),
        },
        schema=CAPTION_HASH_SCHEMA,
    )


def write_caption_duplicates(
    run: RunFolder, shard_ids: list[str], memory_limit: str = "1GB"
) -> dict[str, int]:
    """RUN/caption_duplicates.parquet from the shards' caption hashes, groups in corpus order (the
    representative is the group's first row by shard order, then row); counts for the summary."""
    import duckdb

    parts = [run.path("parts", "caption_hashes", f"{s}.parquet") for s in shard_ids]
    parts = [p for p in parts if run.exists(p)]
    out = run.path("caption_duplicates.parquet")
    if not parts or run.fs.protocol not in ("file", ("file", "local")):
        run.write_parquet(out, DUPLICATES_SCHEMA.empty_table())
        return {"duplicate_rows_caption_text": 0, "duplicate_groups_caption_text": 0}
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit='{memory_limit}'")
        con.execute(f"SET temp_directory={_sql_str(run.path('tmp', 'duckdb'))}")
        order = pa.table({"file": parts, "shard_order": list(range(len(parts)))})
        con.register("shard_order", order)
        con.execute(
            """
            CREATE TEMP VIEW hashes AS
            SELECT h.row_id, h.key, h.caption_hash, o.shard_order * 4294967296 + h.row_index AS pos
            FROM read_parquet(__FILES__, filename = true) h JOIN shard_order o ON h.filename = o.file
            """.replace("__FILES__", _sql_list(parts))
        )
        con.execute(
            """
            CREATE TEMP TABLE reps AS
            SELECT caption_hash, arg_min(row_id, pos) AS rep_id, arg_min(key, pos) AS rep_key,
                   min(pos) AS rep_pos
            FROM hashes GROUP BY caption_hash HAVING count(*) > 1
            """
        )
        query = """
            SELECT h.row_id, h.key, (dense_rank() OVER (ORDER BY r.rep_pos)) - 1 AS "group",
                   r.rep_id AS representative_row_id, r.rep_key AS representative_key,
                   CAST(1.0 AS FLOAT) AS similarity, 'caption_text' AS kind
            FROM hashes h JOIN reps r USING (caption_hash)
            ORDER BY r.rep_pos, h.pos
        """
        reader = con.sql(query).to_arrow_reader(65_536)
        tables = (pa.Table.from_batches([b]).cast(DUPLICATES_SCHEMA) for b in reader)
        rows = run.write_parquet_stream(out, DUPLICATES_SCHEMA, tables)
        (groups,) = con.execute("SELECT count(*) FROM reps").fetchone()
    finally:
        con.close()
    return {"duplicate_rows_caption_text": int(rows), "duplicate_groups_caption_text": int(groups)}


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join(_sql_str(v) for v in values) + "]"
