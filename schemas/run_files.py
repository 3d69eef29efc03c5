"""JSON documents of a run folder (summary.json, manifest.json, shards/<id>.json), version 1."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RUN_FILES_VERSION = "1"

CLIP_RANDOM_WARNING = (
    "CLIP weights are RANDOM (no pretrained weights could be loaded and the config allowed it): "
    "clip_similarity and every CLIP-based score and rule in this run are NOT meaningful."
)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRecord(_Doc):
    name: str
    source: str  # pretrained tag, file path, package name
    weights: str  # "pretrained", "file", "random", "package"
    sha256: str | None = None
    version: str | None = None


class LanguageCounts(_Doc):
    """One language's share of a run: rows, flagged rows and their reasons, and per scorer the rows
    where it was not applicable (null score: the language is outside the scorer's)."""

    rows: int = 0
    rows_flagged: int = 0
    flags_by_reason: dict[str, int] = Field(default_factory=dict)
    not_applicable: dict[str, int] = Field(default_factory=dict)


class ShardTallies(_Doc):
    """What a shard task counts of its own scored rows, as it scores them: finalize sums these over
    the shards instead of reading every score file back (its work follows the shards, not the rows)."""

    image_status: dict[str, int] = Field(default_factory=dict)  # null counted as "None"
    # rows that came from img2dataset: download status -> rows, failure reason -> rows
    fetch_status: dict[str, int] = Field(default_factory=dict)
    fetch_failure_reasons: dict[str, int] = Field(default_factory=dict)
    languages: dict[str, LanguageCounts] = Field(default_factory=dict)
    image_text_languages: dict[str, LanguageCounts] = Field(default_factory=dict)


class ShardRecord(_Doc):
    """Per-shard status, written atomically by the task that audited the shard."""

    schema_version: str = RUN_FILES_VERSION
    shard_id: str
    path: str
    format: str
    sha256: str
    status: Literal["done", "failed"]
    error: str | None = None
    rows_in: int = 0
    rows_scored: int = 0
    rows_quarantined: int = 0
    rows_flagged: int = 0
    rows_image_only: int = 0
    keys_repeated: int = 0  # rows whose key appeared earlier in this shard
    seconds: dict[str, float] = Field(default_factory=dict)
    config_hash: str
    # size + modification time / ETag of every input file of the shard: a change re-audits it
    fingerprint: str = ""
    worker: str | None = None
    notes: list[str] = Field(default_factory=list)
    # what actually ran on the worker that audited this shard
    models: dict[str, ModelRecord] = Field(default_factory=dict)
    device: str | None = None
    kernel_backends: dict[str, str] = Field(default_factory=dict)
    # images per decoder: torchvision (GPU JPEG decoding), pil, torchvision_rejected (fell back to PIL)
    image_decoders: dict[str, int] = Field(default_factory=dict)
    # text-only rows whose caption CLIP did not embed (CPU, clip.encode_captions_on_cpu off)
    rows_captions_not_embedded: int = 0
    # cascade scoring counts (audit.cascade.shard_counts); empty when the cascade is off
    cascade: dict[str, object] = Field(default_factory=dict)
    # the summary's counts of this shard's rows, in shards/<id>.json only (the manifest's copy
    # leaves them out: they grow with the languages seen, times the shards); a finished record
    # without them was written by an older version, and a resumed run audits that shard again
    tallies: ShardTallies | None = None


class Summary(_Doc):
    schema_version: str = RUN_FILES_VERSION
    run_name: str
    status: Literal["complete", "partial"]
    rows_in: int
    rows_scored: int
    rows_quarantined: int
    rows_flagged: int
    shards_done: int
    shards_failed: int
    flags_by_reason: dict[str, int]
    flags_by_severity: dict[str, int]
    quarantine_by_reason: dict[str, int]
    image_status: dict[str, int]
    clip_weights: str
    clip_meaningful: bool
    warnings: list[str] = Field(default_factory=list)
    skipped_rules: dict[str, str] = Field(default_factory=dict)
    # corpus-wide FAISS results: duplicate rows by kind, number of clusters
    neighbours: dict[str, int] = Field(default_factory=dict)
    # rows scored on their caption only (no image bytes: metadata-only input or a failed fetch)
    rows_text_only: int = 0
    # rows scored on their image only (caption null, empty, not UTF-8 or no .txt member)
    rows_image_only: int = 0
    # the dataset's keys are labels, not identities (rows are named by row_id): rows whose key
    # appeared on an earlier row of the corpus, and distinct keys found in more than one shard
    keys_repeated: int = 0
    keys_in_several_shards: int = 0
    # img2dataset download outcome of the rows that went through a fetch: status -> rows, and
    # failure reasons -> rows
    fetch: dict[str, dict[str, int]] = Field(default_factory=dict)
    # analyses that did not run on (some) rows, and why (e.g. caption neighbours of text-only rows
    # whose captions CLIP did not embed on a CPU)
    analyses_not_run: dict[str, str] = Field(default_factory=dict)
    # cascade scoring: what ran where and the estimated misses per rule (audit.cascade.estimates);
    # null when the cascade is off (every scorer ran on every row)
    cascade: dict[str, object] | None = None
    # scored rows by caption language (ISO 639-1; "und": undetermined, "none": no caption scored),
    # and rows with text read from the image by that text's language
    languages: dict[str, LanguageCounts] = Field(default_factory=dict)
    image_text_languages: dict[str, LanguageCounts] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rows_accounted_for(self) -> Summary:
        if self.rows_in != self.rows_scored + self.rows_quarantined:
            raise ValueError(
                f"row count invariant broken: rows_in={self.rows_in} != rows_scored={self.rows_scored}"
                f" + rows_quarantined={self.rows_quarantined}"
            )
        return self


class Manifest(_Doc):
    schema_version: str = RUN_FILES_VERSION
    run_name: str
    created_at: str
    finished_at: str | None = None
    # failed: stopped by bad input (exit 2) after the folder existed; `error` is the line shown
    status: Literal["running", "complete", "partial", "failed"]
    error: str | None = None
    config: dict
    config_hash: str
    rules_hash: str
    versions: dict[str, str]
    models: dict[str, ModelRecord]
    kernel_backends: dict[str, str]
    device: str
    scheduler: str
    shards: list[ShardRecord]
    timings: dict[str, float] = Field(default_factory=dict)
    # see audit/energy.py for the method; None while the run is in progress
    energy: dict[str, object] | None = None
