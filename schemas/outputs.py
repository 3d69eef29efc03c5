"""Arrow schemas of every table in a run folder, version 1.

These are the one source used by writers, Dask ``meta``, the dashboard and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

OUTPUT_SCHEMA_VERSION = "1"


def _versioned(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={"mmaudit.schema": name, "mmaudit.version": OUTPUT_SCHEMA_VERSION})


# One row of the corpus after ingest: what every stage receives. Image bytes live only here,
# never in an output file.
ROW_FIELDS: list[pa.Field] = [
    # corpus-unique and stable across reruns (audit.row_identity): what picks a row everywhere
    pa.field("row_id", pa.string(), nullable=False),
    # the dataset's own label; it may repeat (img2dataset renumbers keys per output folder)
    pa.field("key", pa.string(), nullable=False),
    pa.field("shard_id", pa.string(), nullable=False),
    pa.field("row_index", pa.int64(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("caption", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("source_similarity", pa.float32()),
    pa.field("source_punsafe", pa.float32()),
    pa.field("source_pwatermark", pa.float32()),
    pa.field("source_nsfw", pa.string()),
    pa.field("sha256", pa.string()),
    pa.field("fetch_status", pa.string()),
    pa.field("fetch_error", pa.string()),
    # why a side cannot be scored (a QUARANTINE_REASONS code) while the other side is: the row is
    # audited on the usable side only; a row with both set is quarantined
    pa.field("caption_problem", pa.string()),
    pa.field("image_problem", pa.string()),
]
INGEST_EXTRA_FIELDS: list[pa.Field] = [
    pa.field("image", pa.binary()),
    pa.field("image_embedding", pa.list_(pa.float32())),
    pa.field("text_embedding", pa.list_(pa.float32())),
    # Set by ingest or a stage when a row cannot be scored; such rows leave for quarantine.
    pa.field("quarantine_reason", pa.string()),
    pa.field("quarantine_detail", pa.string()),
]
INGESTED_SCHEMA = _versioned("ingested", ROW_FIELDS + INGEST_EXTRA_FIELDS)


@dataclass(frozen=True)
class ScoreColumn:
    """A column a scoring stage adds. ``clip_based`` scores mean nothing under random CLIP weights."""

    name: str
    type: pa.DataType
    stage: str
    description: str
    clip_based: bool = False


SCORE_COLUMNS: dict[str, ScoreColumn] = {
    c.name: c
    for c in (
        ScoreColumn("image_status", pa.string(), "clip", "decoded | precomputed | absent"),
        ScoreColumn(
            "clip_similarity", pa.float32(), "clip", "cosine of CLIP image and text embeddings", True
        ),
        ScoreColumn("text_offensive_prob", pa.float32(), "text_safety", "alt-profanity-check P(offensive)"),
        ScoreColumn("text_hate_prob", pa.float32(), "text_safety", "hatesonar P(hate_speech)"),
        ScoreColumn(
            "text_sonar_offensive_prob", pa.float32(), "text_safety", "hatesonar P(offensive_language)"
        ),
        *(
            ScoreColumn(f"detoxify_{c}", pa.float32(), "text_safety", f"Detoxify P({c})")
            for c in (
                "toxicity",
                "severe_toxicity",
                "obscene",
                "threat",
                "insult",
                "identity_attack",
                "sexual_explicit",
            )
        ),
        ScoreColumn("lexicon_slur_hits", pa.int32(), "text_safety", "slur lexicon matches (word-boundary)"),
        ScoreColumn("lexicon_sexual_hits", pa.int32(), "text_safety", "sexual-content lexicon matches"),
        ScoreColumn("lexicon_violence_hits", pa.int32(), "text_safety", "violence lexicon matches"),
        ScoreColumn(
            "lexicon_terms", pa.list_(pa.string()), "text_safety", "category:term (group) of each match"
        ),
        ScoreColumn("pii_count", pa.int32(), "text_safety", "personal-data occurrences in the caption"),
        ScoreColumn("pii_types", pa.list_(pa.string()), "text_safety", "email, phone, street_address, ..."),
        ScoreColumn(
            "concept_scores", pa.map_(pa.string(), pa.float32()), "concepts", "concept -> CLIP cosine", True
        ),
        ScoreColumn("concept_hits", pa.list_(pa.string()), "concepts", "harm concepts hit, best first", True),
        ScoreColumn("identity_top", pa.string(), "concepts", "closest identity probe that is a hit", True),
        ScoreColumn("image_nsfw_prob", pa.float32(), "image_safety", "open_nsfw P(NSFW) on pixels"),
        ScoreColumn("clip_nsfw_prob", pa.float32(), "image_safety", "LAION CLIP-embedding NSFW head", True),
        ScoreColumn("image_phash", pa.string(), "known_bad", "64-bit perceptual hash (hex)"),
        ScoreColumn("known_bad_match", pa.bool_(), "known_bad", "matched a known-bad hash list"),
        ScoreColumn("known_bad_list", pa.string(), "known_bad", "list:algorithm:label of the match"),
        ScoreColumn(
            "known_bad_distance", pa.int32(), "known_bad", "pHash or PDQ Hamming distance (0 for exact)"
        ),
        ScoreColumn(
            "image_pdq", pa.string(), "known_bad", "256-bit PDQ hash (64 hex digits, ThreatExchange)"
        ),
        ScoreColumn("image_pdq_quality", pa.int32(), "known_bad", "PDQ quality 0-100 (<50: not matched)"),
        # languages (fastText lid.176): ISO 639-1, "und" when undetermined
        ScoreColumn("caption_language", pa.string(), "languages", "caption language (ISO 639-1 or und)"),
        ScoreColumn("caption_language_conf", pa.float32(), "languages", "fastText top-1 probability"),
        ScoreColumn(
            "not_applicable",
            pa.list_(pa.string()),
            "languages",
            "scorers whose score is null because the row's language is outside theirs "
            "(ocr:<scorer> for the image text, ocr when the image's script is one OCR cannot read)",
        ),
        # NudeNet (YOLOv8 body-part detector): best confidence per group, 0.0 when none detected
        ScoreColumn(
            "nudenet_genitalia_exposed", pa.float32(), "nudity", "NudeNet max conf: exposed genitalia/anus"
        ),
        ScoreColumn(
            "nudenet_breast_exposed", pa.float32(), "nudity", "NudeNet max conf: exposed female breast"
        ),
        ScoreColumn("nudenet_buttocks_exposed", pa.float32(), "nudity", "NudeNet max conf: exposed buttocks"),
        ScoreColumn(
            "nudenet_covered",
            pa.float32(),
            "nudity",
            "NudeNet max conf: covered genitalia/breast/buttocks/anus",
        ),
        ScoreColumn("nudenet_exposed_max", pa.float32(), "nudity", "max of the three exposed groups"),
        ScoreColumn("nudenet_exposed_count", pa.int32(), "nudity", "NudeNet detections of exposed parts"),
        ScoreColumn(
            "nudenet_class_max",
            pa.map_(pa.string(), pa.float32()),
            "nudity",
            "NudeNet class -> best confidence",
        ),
        ScoreColumn(
            "nudenet_class_counts", pa.map_(pa.string(), pa.int32()), "nudity", "NudeNet class -> detections"
        ),
        # text inside the image (rapidocr); the text scorers' ocr_* columns follow
        ScoreColumn("ocr_text", pa.string(), "ocr", 'text read from the image ("": none found)'),
        ScoreColumn("ocr_confidence", pa.float32(), "ocr", "mean recognition confidence of the lines"),
        ScoreColumn("ocr_lines", pa.int32(), "ocr", "text lines read"),
        ScoreColumn("ocr_language", pa.string(), "ocr", "language of the image text (ISO 639-1 or und)"),
        ScoreColumn("ocr_language_conf", pa.float32(), "ocr", "fastText top-1 probability"),
        # cascade scoring (audit.cascade): null when the cascade is off
        ScoreColumn(
            "cascade_status",
            pa.string(),
            "cascade",
            "candidate | audit_sample | skipped_by_cascade (expensive scorers did not run: null scores)",
        ),
        ScoreColumn("cascade_audit_sample", pa.bool_(), "cascade", "in the seeded uniform audit sample"),
    )
}

# The text scorers' columns, computed again on the text read from each image (ocr_<column>)
TEXT_SCORE_COLUMNS = tuple(c.name for c in SCORE_COLUMNS.values() if c.stage == "text_safety")
SCORE_COLUMNS.update(
    {
        f"ocr_{name}": ScoreColumn(
            f"ocr_{name}",
            SCORE_COLUMNS[name].type,
            "ocr_text",
            f"{SCORE_COLUMNS[name].description}, on ocr_text",
        )
        for name in TEXT_SCORE_COLUMNS
    }
)

# Input columns that rules may also use (the dataset's own scores).
SOURCE_SCORE_COLUMNS = ("source_similarity", "source_punsafe", "source_pwatermark", "source_nsfw")

SCORES_SCHEMA = _versioned("scores", ROW_FIELDS + [pa.field(c.name, c.type) for c in SCORE_COLUMNS.values()])

SEVERITIES = ("info", "low", "medium", "high", "critical")

FLAGS_SCHEMA = _versioned(
    "flags",
    [
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("shard_id", pa.string(), nullable=False),
        pa.field("row_index", pa.int64(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("caption", pa.string()),
        # text read from the image (OCR): shown masked like the caption
        pa.field("ocr_text", pa.string()),
        pa.field("reasons", pa.list_(pa.string()), nullable=False),
        pa.field("rules", pa.list_(pa.string()), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("severity_rank", pa.int8(), nullable=False),
        # score name -> value, for every score a firing rule looked at
        pa.field("scores", pa.map_(pa.string(), pa.float64()), nullable=False),
        # "rule_id:score" -> threshold that score was compared against
        pa.field("thresholds", pa.map_(pa.string(), pa.float64()), nullable=False),
        pa.field("clip_meaningful", pa.bool_(), nullable=False),
        # the row's own hash-list outcome (null: no bytes or sha256 to match): audit.render_policy
        # reads it, so a rules file cannot make a known-bad image renderable
        pa.field("known_bad_match", pa.bool_()),
        # what an authority needs to act on a match, without the bytes (authority_report.csv)
        pa.field("sha256", pa.string()),
        pa.field("image_phash", pa.string()),
        pa.field("image_pdq", pa.string()),
        pa.field("known_bad_list", pa.string()),
        pa.field("known_bad_distance", pa.int32()),
        # known-bad matches and never-render rules: never rendered, thumbnailed or copied anywhere
        pa.field("render_blocked", pa.bool_(), nullable=False),
        # the cascade's status of the row (null: cascade off); skipped_by_cascade: expensive-tier
        # rules could not fire on it
        pa.field("cascade_status", pa.string()),
    ],
)

# neighbours/<shard>.parquet: corpus-wide per-row results of the FAISS stage. duplicates.parquet
# and clusters.parquet follow audit.neighbours.schemas (DUPLICATES_SCHEMA, CLUSTERS_SCHEMA).
NEIGHBOURS_SCHEMA = _versioned(
    "neighbours",
    [
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("cluster", pa.int32()),
        pa.field("cluster_similarity", pa.float32()),
        pa.field("outlier_score", pa.float32()),  # 1 - cosine to the k-th nearest other row
    ],
)

QUARANTINE_SCHEMA = _versioned(
    "quarantine",
    [
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("shard_id", pa.string(), nullable=False),
        pa.field("row_index", pa.int64(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        # hash matching runs before quarantine: a quarantined row can still be known-bad
        pa.field("known_bad_match", pa.bool_()),
        pa.field("known_bad_list", pa.string()),
    ],
)

# Reason codes a quarantine row can carry; tests and the report enumerate these.
QUARANTINE_REASONS = {
    "caption_missing": "caption is null or absent",
    "caption_empty": "caption is empty or only whitespace",
    "caption_not_utf8": "caption bytes are not valid UTF-8",
    "image_missing": "the row has no image bytes although the format carries images",
    "image_empty": "zero-byte image",
    "image_undecodable": "bytes are not a decodable image",
    "image_truncated": "image data ends early",
    "image_too_large": "more pixels than the configured limit (decompression-bomb guard)",
    "embedding_missing": "no embedding row for this metadata row (row counts differ)",
    "embedding_invalid": "embedding holds NaN or inf",
    "member_not_regular": "a webdataset sample has a symlink, hard link or other non-regular tar member",
}


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
