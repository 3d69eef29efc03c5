"""Audit one shard batch by batch: read, score, flag, and write its outputs atomically (temp +
rename, the shard record last). Runs inside a worker; memory follows the batch, not the shard."""

from __future__ import annotations

import contextlib
import gc
import posixpath
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audit.caption_duplicates import CAPTION_HASH_SCHEMA, caption_hashes
from audit.cascade import Plan, add_counts, is_expensive, shard_counts
from audit.config import AuditConfig
from audit.embedding_store import embedding_path, embedding_tables
from audit.errors import EmbeddingMismatchError
from audit.jpeg_batch import DecodeCounts
from audit.kernels.dispatch import kernel_backends
from audit.kernels.quantize_memo import forget as forget_quantized
from audit.languages import ScoredColumns, clip_languages
from audit.model_cache import Models, get_models, limit_threads
from audit.readers import DEFAULT_BATCH_ROWS, iter_shard
from audit.rules import any_rule_fires, apply_rules
from audit.runfolder import RunFolder
from audit.schemas import FLAGS_SCHEMA, QUARANTINE_SCHEMA, SCORES_SCHEMA, ShardRecord
from audit.shard_tallies import ShardTally
from audit.shards import ShardSpec
from audit.stages.clip_similarity import ClipSimilarityConfig, captions_not_embedded, score_clip_similarity
from audit.stages.concept_probes import score_concepts
from audit.stages.decode_images import DecodeImagesConfig, decode_images, quarantine_unscorable
from audit.stages.image_safety import ImageNsfwConfig, score_clip_nsfw, score_image_nsfw
from audit.stages.known_bad import match_known_bad
from audit.stages.languages import detect_caption_languages, scope_scores
from audit.stages.nudity import score_nudity
from audit.stages.ocr_text import read_image_text, score_image_text
from audit.stages.similarity_analysis import analyse_similarity
from audit.stages.text_safety import TextSafetyConfig, score_text_safety
from audit.tables import conform

# Rows per row group of the per-shard output files: scores hold no image bytes (~1 KB a row), so
# a shard's writers buffer ~16 MB at most.
OUTPUT_ROW_GROUP_ROWS = 16_384
# zstd at its fastest level; the wide score table's columns are mostly null or low-cardinality,
# which dictionary and RLE encoding already shrink. Statistics stay: lookups by row_id (a pair's
# detail, the evaluation queue) skip row groups by them.
WRITER_OPTIONS: dict[str, object] = {"compression": "zstd", "compression_level": 1}


def dictionary_columns(schema: pa.Schema, per_row: set[str]) -> list[str]:
    """The Parquet leaf paths of ``schema``'s string values, but for the columns in ``per_row``
    (an id, a caption, a URL: nearly every value differs, so a dictionary is built and dropped)."""
    leaves = []
    for f in schema:
        if f.name in per_row:
            continue
        if pa.types.is_string(f.type):
            leaves.append(f.name)
        elif pa.types.is_list(f.type) and pa.types.is_string(f.type.value_type):
            leaves.append(f"{f.name}.list.element")
        elif pa.types.is_map(f.type) and pa.types.is_string(f.type.key_type):
            leaves.append(f"{f.name}.key_value.key")
    return leaves


# the scores table's dictionaries on its few-valued strings only: numbers and per-row strings were
# dictionary-encoded, then dropped for plain encoding page by page (measured: 30% of writing it,
# and the file comes out smaller without them)
SCORES_WRITER_OPTIONS: dict[str, object] = {
    "use_dictionary": dictionary_columns(
        SCORES_SCHEMA,
        {"row_id", "key", "url", "caption", "sha256", "fetch_error", "image_phash", "image_pdq", "ocr_text"},
    )
}
# block-int8 codes are near-random bytes: dictionaries and statistics buy nothing there, and zstd
# shrinks them 13% at a fifth of snappy's speed (measured: 0.78M vs 3.4M rows/s at 512-d)
EMBEDDING_WRITER_OPTIONS: dict[str, object] = {
    "compression": "snappy",
    "use_dictionary": False,
    "write_statistics": False,
}


# CPU seconds of the task's thread per stage, beside the wall seconds: what a stage costs whatever
# else runs on the machine (a shared or oversubscribed machine stretches only the wall seconds)
CPU = ":cpu"


@contextmanager
def _timed(seconds: dict[str, float], name: str):
    """Adds the block's wall seconds to ``seconds[name]`` and its thread's CPU seconds to
    ``seconds[name + ":cpu"]`` (summed over a shard's batches)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    yield
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
    seconds[name + CPU] = seconds.get(name + CPU, 0.0) + time.thread_time() - c0


def split_quarantine(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(scored rows as SCORES_SCHEMA, quarantined rows as QUARANTINE_SCHEMA)."""
    bad = pc.is_valid(table.column("quarantine_reason")).to_numpy(zero_copy_only=False)
    if not bad.any():  # the common case: filtering would copy every column of the wide table
        return conform(table, SCORES_SCHEMA), QUARANTINE_SCHEMA.empty_table()
    scored = conform(table.filter(pa.array(~bad)), SCORES_SCHEMA)
    q = table.filter(pa.array(bad))
    quarantined = pa.table(
        {
            "row_id": q.column("row_id"),
            "key": q.column("key"),
            "shard_id": q.column("shard_id"),
            "row_index": q.column("row_index"),
            "url": q.column("url"),
            "caption": q.column("caption"),
            "reason": q.column("quarantine_reason"),
            "detail": q.column("quarantine_detail"),
            "known_bad_match": q.column("known_bad_match"),
            "known_bad_list": q.column("known_bad_list"),
        },
        schema=QUARANTINE_SCHEMA,
    )
    return scored, quarantined


def quarantined_known_bad_flags(table: pa.Table, models: Models) -> pa.Table:
    """Flags for quarantined rows that matched a hash list: a row that cannot be scored is still
    flagged critical and reaches the authority report (rules see only its hash-list columns)."""
    hit = pc.and_(
        pc.is_valid(table.column("quarantine_reason")), pc.fill_null(table.column("known_bad_match"), False)
    )
    if not pc.any(hit).as_py():  # the common case: no rule needs evaluating on no rows
        return FLAGS_SCHEMA.empty_table()
    rows = conform(table.filter(hit), SCORES_SCHEMA)
    return apply_rules(rows, models.rules, clip_meaningful=models.clip.meaningful)


def check_precomputed(table: pa.Table, embedding_model: str | None, spec: ShardSpec, models: Models) -> bool:
    """Precomputed embeddings must live in the configured CLIP model's space: concept probes and
    similarities compare them with that model's text embeddings. False while ``table`` (a batch)
    holds no embedding to check yet."""
    emb = pc.drop_null(table.column("image_embedding"))
    if len(emb) == 0:
        return False
    first = emb[0].as_py()
    source = f" (from {embedding_model})" if embedding_model else ""
    if embedding_model and embedding_model != models.clip.architecture:
        raise EmbeddingMismatchError(
            f"{spec.path}: precomputed embeddings come from {embedding_model}, "
            f"but clip.model is {models.clip.architecture}"
        )
    if len(first) != models.clip.embed_dim:
        raise EmbeddingMismatchError(
            f"{spec.path}: precomputed embeddings are {len(first)}-d{source}, "
            f"but clip.model {models.clip.architecture} makes {models.clip.embed_dim}-d embeddings"
        )
    return True


def encode_text_only_rows(cfg: AuditConfig, device: str) -> bool:
    """CLIP's text tower on text-only rows: on CUDA, or on a CPU when the config asks for it (it
    runs ~18 captions/s there: a metadata audit would take years at 10^9 rows)."""
    return device == "cuda" or cfg.clip.encode_captions_on_cpu


def score_shard_table(
    table: pa.Table, cfg: AuditConfig, decode_counts: DecodeCounts | None = None
) -> pa.Table:
    """The chain of row-local stages over an ingested table; every stage keeps every row.

    The cheap tier runs on every row; the expensive tier (``audit.cascade.EXPENSIVE``) on every
    row too, or, with ``cascade.enabled``, on the cascade's candidates and audit sample only.
    Models are built on first use: a batch with no image needs no pixel model.
    """
    models = get_models(cfg)
    # GPU JPEG decoding on CUDA only: CPU runs keep PIL's pixels exactly.
    jpeg_device = models.device if models.device == "cuda" and cfg.images.gpu_decode else None
    table, images = decode_images(
        table, DecodeImagesConfig(max_pixels=cfg.images.max_pixels, jpeg_device=jpeg_device), decode_counts
    )
    # hash lists before any quarantine: every row with bytes or a sha256 is matched
    table = match_known_bad(
        table, lists=models.known_bad, images=images, pdq_min_quality=cfg.images.pdq_min_quality
    )
    table = quarantine_unscorable(table)
    clip_cfg = ClipSimilarityConfig(
        batch_size=cfg.clip.batch_size,
        device=models.device,
        encode_text_only_rows=encode_text_only_rows(cfg, models.device),
    )
    table = score_clip_similarity(table, clip_cfg, model=models.clip, images=images)
    table = analyse_similarity(table)
    if models.concepts is not None:
        table = score_concepts(table, probes=models.concepts)
    if models.configured("clip_nsfw") and pc.any(pc.is_valid(table.column("image_embedding"))).as_py():
        table = score_clip_nsfw(table, model=models.clip_nsfw)
    text_cfg = TextSafetyConfig(batch_size=cfg.text.batch_size)
    costly = [s for s in models.text if is_expensive(s.name)]
    table = score_text_safety(table, text_cfg, scorers=[s for s in models.text if not is_expensive(s.name)])
    plan = Plan.of(table, cfg.cascade)  # every row when the cascade is off
    if models.languages is not None:
        # the cascade's rows and the flagged ones: scoping only ever nulls a score, so a row no
        # rule fires on unscoped fires none scoped either
        detector = models.languages
        where = plan
        if plan.rows is not None:
            where = plan.widened(any_rule_fires(table, models.rules, clip_meaningful=models.clip.meaningful))
        table = where.run(table, {}, lambda t, _: detect_caption_languages(t, detector=detector))
    if costly:
        table = plan.run(table, images, lambda t, _: score_text_safety(t, text_cfg, scorers=costly))
    table = scope_caption_scores(table, models)
    if images:
        table = plan.run(table, images, lambda t, im: score_pixels(t, im, models, cfg))
    return plan.mark(table)


def scope_caption_scores(table: pa.Table, models: Models) -> pa.Table:
    """Caption languages null the scores of scorers not valid for them (not_applicable)."""
    if models.languages is None:
        return table
    # CLIP similarity reads the caption too: English-trained text towers are scoped like scorers
    clip = ScoredColumns("clip", ("clip_similarity",), clip_languages(models.clip.architecture))
    return scope_scores(table, [*models.text, clip], language_column="caption_language")


def score_pixels(table: pa.Table, images: dict, models: Models, cfg: AuditConfig) -> pa.Table:
    """The expensive image tier: open_nsfw and NudeNet on the pixels, then the text read from each
    image (OCR) scored as a second text side."""
    batch = cfg.images.batch_size
    if models.configured("opennsfw"):
        table = score_image_nsfw(
            table, ImageNsfwConfig(batch_size=batch), model=models.opennsfw, images=images
        )
    if models.configured("nudenet"):
        table = score_nudity(table, model=models.nudenet, images=images, batch_size=batch)
    if models.configured("ocr") and models.languages is not None:
        table = read_image_text(table, reader=models.ocr, images=images)
        table = score_image_text(
            table, scorers=models.text, detector=models.languages, batch_size=cfg.text.batch_size
        )
    return table


class _ParquetSink:
    """Rows of one output file, written through a single ParquetWriter on a temp path in the run
    folder and renamed into place by ``commit``; rows are buffered up to ``flush_rows`` so a shard
    read in small batches still gets row groups of a useful size."""

    def __init__(
        self, run: RunFolder, final: str, schema: pa.Schema, flush_rows: int, **options: object
    ) -> None:
        self.fs, self.final, self.schema, self.flush_rows = run.fs, final, schema, flush_rows
        self.tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"  # RunFolder.ls skips these
        self.rows = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        self._file = self.fs.open(self.tmp, "wb")
        merged = {**WRITER_OPTIONS, **options}
        if merged.get("compression") != "zstd":
            merged.pop("compression_level", None)  # a zstd level means nothing to other codecs
        self._writer = pq.ParquetWriter(self._file, schema, **merged)

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self._buffer.append(table)
            self._buffered += table.num_rows
            self.rows += table.num_rows
        if self._buffered >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            table = pa.concat_tables(self._buffer)
            if not table.schema.equals(self.schema):  # conform() made most of them so already
                table = table.cast(self.schema)
            self._writer.write_table(table)
            self._buffer, self._buffered = [], 0

    def commit(self) -> None:
        self._flush()
        self._writer.close()
        self._file.close()
        self.fs.mv(self.tmp, self.final)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):
            self._file.close()
        with contextlib.suppress(Exception):
            if self.fs.exists(self.tmp):
                self.fs.rm(self.tmp)


@contextmanager
def _sinks(run: RunFolder, shard_id: str, flush_rows: int) -> Iterator[dict[str, _ParquetSink]]:
    """The shard's output files; all renamed into place on success, temp files removed on error."""
    sinks: dict[str, _ParquetSink] = {}
    try:
        sinks["scores"] = _ParquetSink(
            run, run.scores(shard_id), SCORES_SCHEMA, flush_rows, **SCORES_WRITER_OPTIONS
        )
        sinks["flags"] = _ParquetSink(run, run.part("flags", shard_id), FLAGS_SCHEMA, flush_rows)
        sinks["quarantine"] = _ParquetSink(
            run, run.part("quarantine", shard_id), QUARANTINE_SCHEMA, flush_rows
        )
        sinks["caption_hashes"] = _ParquetSink(
            run, run.part("caption_hashes", shard_id), CAPTION_HASH_SCHEMA, flush_rows
        )
        yield sinks
    except BaseException:
        for sink in sinks.values():
            sink.abort()
        raise


def _timed_iter(it: Iterator[pa.Table], seconds: dict[str, float], name: str) -> Iterator[pa.Table]:
    while True:
        t0, c0 = time.perf_counter(), time.thread_time()
        item = next(it, None)
        seconds[name] += time.perf_counter() - t0
        seconds[name + CPU] += time.thread_time() - c0
        if item is None:
            return
        yield item


def warm_models(cfg: AuditConfig) -> float:
    """Build this worker's models (and fill the on-disk prompt-bank cache); returns the seconds."""
    t0 = time.perf_counter()
    limit_threads(cfg.dask.threads_per_worker)
    get_models(cfg)
    _freeze_long_lived()
    return time.perf_counter() - t0


_frozen = False


def _freeze_long_lived() -> None:
    """Once per process, once its models are built: what exists then (models, imported modules,
    Dask's own state) lives as long as the worker, so it leaves the cyclic collector's generations
    and its full collections walk the batches' objects only (measured: ~1 µs less per row on the
    bench corpus)."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


def audit_shard(
    spec: ShardSpec, cfg: AuditConfig, run_url: str, batch_rows: int = DEFAULT_BATCH_ROWS
) -> ShardRecord:
    """Everything for one shard, ``batch_rows`` rows at a time: memory follows the batch, not the
    shard. Outputs are renamed into place once every batch is written; the shard record is written
    last, so it marks the shard done."""
    run = RunFolder(run_url)
    seconds: dict[str, float] = defaultdict(float)
    limit_threads(cfg.dask.threads_per_worker)
    with _timed(seconds, "load_models"):
        models = get_models(cfg)
        _freeze_long_lived()
    reader = iter_shard(spec, clip_model=models.clip.architecture, batch_rows=batch_rows)
    checked = False
    decode_counts = DecodeCounts()
    image_only = not_embedded = 0
    cascade_counts: dict[str, object] = {}
    tally = ShardTally()  # the summary's counts, so finalize reads no score file back
    flush_rows = max(batch_rows, OUTPUT_ROW_GROUP_ROWS)
    with (
        _sinks(run, spec.shard_id, flush_rows) as out,
        contextlib.closing(reader.batches()) as batches,  # closes the shard's files on error too
    ):
        for batch in _timed_iter(batches, seconds, "read"):
            if not checked:
                checked = check_precomputed(batch, reader.embedding_model, spec, models)
            with _timed(seconds, "score"):
                table = score_shard_table(batch, cfg, decode_counts)
            scored, quarantined = split_quarantine(table)
            image_only += int(pc.sum(pc.is_valid(scored.column("caption_problem"))).as_py() or 0)
            not_embedded += captions_not_embedded(table)
            if scored.num_rows + quarantined.num_rows != batch.num_rows:
                raise AssertionError(f"{spec.path}: rows lost in scoring")  # a bug, never bad data
            with _timed(seconds, "flag"):
                flags = apply_rules(scored, models.rules, clip_meaningful=models.clip.meaningful)
                flags = pa.concat_tables([flags, quarantined_known_bad_flags(table, models)])
                if cfg.cascade.enabled:
                    part = shard_counts(scored, models.rules, clip_meaningful=models.clip.meaningful)
                    cascade_counts = add_counts(cascade_counts, part)
            with _timed(seconds, "tally"):
                tally.add(scored, flags)
            with _timed(seconds, "write"):
                out["scores"].add(scored)
                out["flags"].add(flags)
                out["quarantine"].add(quarantined)
                kept = (
                    table
                    if not quarantined.num_rows
                    else table.filter(pc.is_null(table.column("quarantine_reason")))
                )
                for side, emb in embedding_tables(kept).items():  # block-int8, for the corpus-wide stages
                    if f"embeddings-{side}" not in out:
                        path = embedding_path(run, spec.shard_id, side)
                        out[f"embeddings-{side}"] = _ParquetSink(
                            run, path, emb.schema, flush_rows, **EMBEDDING_WRITER_OPTIONS
                        )
                    out[f"embeddings-{side}"].add(emb)
                out["caption_hashes"].add(caption_hashes(scored))  # caption duplicates without a model
            forget_quantized()  # the batch's codes: no longer needed, not kept alive
        if out["scores"].rows + out["quarantine"].rows != reader.rows:
            raise AssertionError(f"{spec.path}: rows lost in scoring")
        with _timed(seconds, "write"):
            # for summary.json's count of keys that repeat across shards (finalize)
            keys = pa.table({"key_hash": pa.array(reader.key_hashes(), pa.uint64())})
            out["key_hashes"] = _ParquetSink(run, run.part("keys", spec.shard_id), keys.schema, flush_rows)
            out["key_hashes"].add(keys)
        with _timed(seconds, "write"):
            for sink in out.values():
                sink.commit()
    assert reader.sha256 is not None
    record = ShardRecord(
        shard_id=spec.shard_id,
        path=spec.path,
        format=spec.format,
        sha256=reader.sha256,
        status="done",
        rows_in=reader.rows,
        rows_scored=out["scores"].rows,
        rows_quarantined=out["quarantine"].rows,
        rows_flagged=out["flags"].rows,
        rows_image_only=image_only,
        rows_captions_not_embedded=not_embedded,
        cascade=cascade_counts,
        tallies=tally.result(),
        keys_repeated=reader.keys_repeated,
        seconds={k: round(v, 4) for k, v in seconds.items()},
        config_hash=cfg.scoring_hash(),
        fingerprint=spec.fingerprint,
        worker=socket.gethostname(),
        notes=reader.notes,
        models=models.records(),
        device=models.device,
        kernel_backends=kernel_backends(models.device),
        image_decoders=decode_counts.as_dict(),
    )
    run.write_json(run.shard_record(spec.shard_id), record)
    return record
