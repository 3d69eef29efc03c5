"""The report's machine-readable exports, written in one streaming pass over RUN/flags.parquet.

flags.csv, flags.jsonl, flags.parquet (the run's flags plus each row's latest decision and removal
basis), authority_report.csv, removal_list.txt, removal_list.parquet, removed_urls.parquet and, for
DataComp shards, datacomp_removed_uids.npy. Flags are read a batch at a time and every file is
written as it goes (temp file, renamed into place once complete), so memory holds one batch, the
decisions and the aggregates the report needs, never every flag.

These files carry the data as it is (captions and URLs unmasked: curators and authorities act on
them). Only report.html and figures.json are masked.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import posixpath
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audit.config import RemovalSettings
from audit.removals import (
    REMOVAL_LIST_SCHEMA,
    REMOVED_URLS_SCHEMA,
    datacomp_uid,
    datacomp_uid_array,
    removal_basis,
)
from audit.render_policy import never_render
from audit.review import DecisionRow, format_scores
from audit.runfolder import RunFolder
from audit.schemas import FLAGS_SCHEMA

FLAG_BATCH_ROWS = 8192
# The HTML table stops here (the exports always hold every row); browsers choke on more.
MAX_HTML_ROWS = 10_000
MAX_ESCALATIONS_SHOWN = 1_000  # pending escalations listed; all are counted

CSV_COLUMNS = (
    "row_id",
    "key",
    "shard_id",
    "row_index",
    "url",
    "caption",
    "ocr_text",
    "reasons",
    "rules",
    "severity",
    "scores",
    "thresholds",
    "clip_meaningful",
    "decision",
    "reviewer",
    "decided_at",
    "removal",
    "removal_basis",
)
JSONL_COLUMNS = (*(c for c in CSV_COLUMNS if c not in ("removal", "removal_basis")), "severity_rank",
                 "removal", "removal_basis")  # fmt: skip
AUTHORITY_COLUMNS = ("row_id", "key", "url", "reasons", "severity", "sha256", "image_phash", "image_pdq",
                     "known_bad_list", "known_bad_distance", "shard_id", "row_index")  # fmt: skip
EXPORTED_FLAGS_SCHEMA = pa.schema(
    [
        *FLAGS_SCHEMA,
        pa.field("decision", pa.string()),
        pa.field("reviewer", pa.string()),
        pa.field("decided_at", pa.string()),
        pa.field("removal", pa.bool_(), nullable=False),
        pa.field("removal_basis", pa.string()),
    ],
    metadata={"mmaudit.schema": "report_flags", "mmaudit.version": "1"},
)


def cell(value: object) -> object:
    """Web text that starts like a formula is prefixed with ' so a spreadsheet shows it as text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _clean(text: str | None) -> str:
    """One field of a tab-separated line: tabs and line breaks in web text would split it."""
    return " ".join((text or "").split())


class AtomicFile:
    """A file written under a temporary name beside its final path and renamed when closed cleanly."""

    def __init__(self, folder: RunFolder, path: str, mode: str = "wb") -> None:
        self.folder, self.path = folder, path
        folder.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        self.tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        raw = folder.fs.open(self.tmp, "wb")
        self._raw = raw
        self.f: IO = io.TextIOWrapper(raw, encoding="utf-8", newline="") if mode == "w" else raw

    def commit(self) -> None:
        self.f.close()
        self.folder.fs.mv(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            if self.folder.fs.exists(self.tmp):
                self.folder.fs.rm(self.tmp)


@dataclass
class ExportResult:
    """What the report needs from the pass: a few rows to show and the aggregates."""

    html_rows: list[dict] = field(default_factory=list)
    truncated: bool = False
    flags: int = 0
    never_rendered: int = 0
    removal_rows: int = 0
    removal_by_basis: Counter[str] = field(default_factory=Counter)
    removal_by_reason: Counter[str] = field(default_factory=Counter)
    removal_by_severity: Counter[str] = field(default_factory=Counter)
    removed_row_ids: list[str] = field(default_factory=list)
    decided: Counter[str] = field(default_factory=Counter)  # latest decision of flagged rows
    escalations: list[dict] = field(default_factory=list)  # renderable rows pending escalation
    escalations_pending: int = 0
    escalations_never_rendered: int = 0
    datacomp_uids: int = 0
    datacomp_uids_skipped: int = 0  # DataComp rows whose key is not a 32-hex-digit uid
    written: list[str] = field(default_factory=list)


def _records(batch: pa.Table, decisions: Mapping[str, DecisionRow], policy: RemovalSettings) -> list[dict]:
    out = []
    for flag in batch.to_pylist():
        d = decisions.get(flag["row_id"])
        basis = removal_basis(flag, d, policy)
        out.append(
            {
                **flag,
                "scores": dict(flag["scores"]),
                "thresholds": dict(flag["thresholds"]),
                "scores_text": format_scores(flag["scores"]),
                "decision": d.decision if d else None,
                "reviewer": d.reviewer if d else None,
                "decided_at": d.decided_at if d else None,
                "note": d.note if d else None,
                "removal": basis is not None,
                "removal_basis": basis,
            }
        )
    return out


def _csv_row(r: dict) -> dict:
    row = {
        **r,
        "reasons": ";".join(r["reasons"]),
        "rules": ";".join(r["rules"]),
        "scores": json.dumps(r["scores"], sort_keys=True),
        "thresholds": json.dumps(r["thresholds"], sort_keys=True),
    }
    return {k: cell(row.get(k)) for k in CSV_COLUMNS}


def write_exports(
    folder: RunFolder,
    decisions: Mapping[str, DecisionRow],
    policy: RemovalSettings,
    shard_formats: Mapping[str, str],
    *,
    metadata: Mapping[str, str],
    shown: Callable[[dict], dict],
) -> ExportResult:
    """Stream RUN/flags.parquet into every export; ``shown`` turns a record into what the HTML may
    show (masked). ``metadata`` goes into the Parquet exports' schema metadata."""
    res = ExportResult()
    meta = {k.encode(): v.encode() for k, v in metadata.items()}
    has_datacomp = "datacomp" in shard_formats.values()
    files: dict[str, AtomicFile] = {}
    writers: list[pq.ParquetWriter] = []
    try:
        for name, mode in (("flags.csv", "w"), ("flags.jsonl", "w"), ("removal_list.txt", "w"),
                           ("authority_report.csv", "w"), ("flags.parquet", "wb"),
                           ("removal_list.parquet", "wb"), ("removed_urls.parquet", "wb")):  # fmt: skip
            files[name] = AtomicFile(folder, folder.report(name), mode)
        flags_csv = csv.DictWriter(files["flags.csv"].f, fieldnames=CSV_COLUMNS, lineterminator="\n")
        flags_csv.writeheader()
        authority = csv.DictWriter(files["authority_report.csv"].f, fieldnames=AUTHORITY_COLUMNS,
                                   lineterminator="\n", extrasaction="ignore")  # fmt: skip
        authority.writeheader()
        flags_pq = pq.ParquetWriter(files["flags.parquet"].f, EXPORTED_FLAGS_SCHEMA.with_metadata(meta),
                                    compression="zstd")  # fmt: skip
        removal_pq = pq.ParquetWriter(files["removal_list.parquet"].f, REMOVAL_LIST_SCHEMA.with_metadata(
            {**REMOVAL_LIST_SCHEMA.metadata, **meta}), compression="zstd")  # fmt: skip
        urls_pq = pq.ParquetWriter(files["removed_urls.parquet"].f, REMOVED_URLS_SCHEMA.with_metadata(
            {**REMOVED_URLS_SCHEMA.metadata, **meta}), compression="zstd")  # fmt: skip
        writers += [flags_pq, removal_pq, urls_pq]
        uids: list[tuple[int, int]] = []
        seen: set[str] = set()
        # rows a reviewer confirmed that no rule flagged (a "more like this" find): found by
        # striking the flagged ones off while the flags stream past
        confirmed = [r for r, d in decisions.items() if d.decision == "confirm_harmful"]
        confirmed_unflagged = set(confirmed) if policy.confirmed else set()
        with folder.fs.open(folder.flags, "rb") as src:
            for batch in pq.ParquetFile(src).iter_batches(batch_size=FLAG_BATCH_ROWS):
                table = pa.Table.from_batches([batch]).cast(FLAGS_SCHEMA)
                confirmed_unflagged.difference_update(table.column("row_id").to_pylist())
                records = _records(table, decisions, policy)
                _write_batch(res, records, files, flags_csv, authority, seen)
                flags_pq.write_table(_exported_flags(table, records))
                removed = [r for r in records if r["removal"]]
                if removed:
                    removal_pq.write_table(_table(removed, REMOVAL_LIST_SCHEMA, basis="removal_basis"))
                    urls_pq.write_table(_table(removed, REMOVED_URLS_SCHEMA))
                    if has_datacomp:
                        _datacomp_uids(res, removed, shard_formats, uids)
                for r in records:
                    _collect(res, r, shown)
        if confirmed_unflagged:
            removed = _confirmed_unflagged(folder, sorted(confirmed_unflagged), decisions, shard_formats)
            _write_removals_only(res, removed, files["removal_list.txt"].f, seen)
            removal_pq.write_table(_table(removed, REMOVAL_LIST_SCHEMA, basis="removal_basis"))
            urls_pq.write_table(_table(removed, REMOVED_URLS_SCHEMA))
            if has_datacomp:
                _datacomp_uids(res, removed, shard_formats, uids)
        for w in writers:
            w.close()
        writers.clear()
        if has_datacomp:
            files["datacomp_removed_uids.npy"] = out = AtomicFile(
                folder, folder.report("datacomp_removed_uids.npy")
            )
            np.save(out.f, datacomp_uid_array(uids), allow_pickle=False)
        for f in files.values():
            f.commit()
            res.written.append(f.path)
    except BaseException:
        for w in writers:  # before their files close: a writer closing later writes its footer
            with contextlib.suppress(Exception):
                w.close()
        for f in files.values():
            if folder.fs.exists(f.tmp):
                f.abort()
        raise
    return res


# A confirmed row no rule flagged: its reason on the removal list (the reviewer's, not a rule's)
CONFIRMED_UNFLAGGED_REASON = "reviewer-confirmed"
CONFIRMED_UNFLAGGED_SEVERITY = "medium"


def _confirmed_unflagged(
    folder: RunFolder,
    row_ids: list[str],
    decisions: Mapping[str, DecisionRow],
    shard_formats: Mapping[str, str],
) -> list[dict]:
    """Removal records, read from RUN/scores, of confirmed rows that are in no flag; row ids that
    name no shard of the run or no scored row are left out (nothing to remove)."""
    from audit.row_identity import row_ids_by_shard

    by_shard = row_ids_by_shard(row_ids, shard_formats)  # shards of the run only
    out = []
    columns = ["row_id", "shard_id", "row_index", "key", "url", "sha256", "image_phash"]
    for shard_id, ids in sorted(by_shard.items()):
        path = folder.scores(shard_id)
        if not folder.exists(path):
            continue
        with folder.fs.open(path, "rb") as f:
            rows = pq.read_table(f, columns=columns, filters=[("row_id", "in", ids)]).to_pylist()
        for row in rows:
            d = decisions[row["row_id"]]
            out.append(
                {
                    **row,
                    "severity": CONFIRMED_UNFLAGGED_SEVERITY,
                    "reasons": [CONFIRMED_UNFLAGGED_REASON],
                    "rules": [],
                    "removal": True,
                    "removal_basis": "confirmed",
                    "decision": d.decision,
                    "reviewer": d.reviewer,
                    "decided_at": d.decided_at,
                }
            )
    return out


def _write_removals_only(res: ExportResult, removed: list[dict], removal_txt: IO, seen: set[str]) -> None:
    for r in removed:
        if r["row_id"] in seen:
            continue
        seen.add(r["row_id"])
        fields = (r["row_id"], _clean(r["key"]), _clean(r["url"]), r["severity"], ",".join(r["reasons"]))
        removal_txt.write("\t".join(fields) + "\n")
        res.removal_rows += 1
        res.removed_row_ids.append(r["row_id"])
        res.removal_by_basis[r["removal_basis"]] += 1
        res.removal_by_severity[r["severity"]] += 1
        res.removal_by_reason.update(r["reasons"])


def _write_batch(res: ExportResult, records: list[dict], files: dict[str, AtomicFile],
                 flags_csv: csv.DictWriter, authority: csv.DictWriter, seen: set[str]) -> None:  # fmt: skip
    jsonl, removal = files["flags.jsonl"].f, files["removal_list.txt"].f
    for r in records:
        flags_csv.writerow(_csv_row(r))
        jsonl.write(json.dumps({c: r[c] for c in JSONL_COLUMNS}, ensure_ascii=False) + "\n")
        if never_render(r):
            row = {c: r.get(c) for c in AUTHORITY_COLUMNS} | {"reasons": ";".join(r["reasons"])}
            authority.writerow({k: cell(v) for k, v in row.items()})
        if r["removal"] and r["row_id"] not in seen:
            seen.add(r["row_id"])
            fields = (r["row_id"], _clean(r["key"]), _clean(r["url"]), r["severity"], ",".join(r["reasons"]))
            removal.write("\t".join(fields) + "\n")


def _exported_flags(table: pa.Table, records: list[dict]) -> pa.Table:
    extra = {
        "decision": pa.array([r["decision"] for r in records], pa.string()),
        "reviewer": pa.array([r["reviewer"] for r in records], pa.string()),
        "decided_at": pa.array([r["decided_at"] for r in records], pa.string()),
        "removal": pa.array([r["removal"] for r in records], pa.bool_()),
        "removal_basis": pa.array([r["removal_basis"] for r in records], pa.string()),
    }
    return pa.table(
        {**{n: table.column(n) for n in table.column_names}, **extra}, schema=EXPORTED_FLAGS_SCHEMA
    )


def _table(records: list[dict], schema: pa.Schema, basis: str | None = None) -> pa.Table:
    cols = {}
    for f in schema:
        src = basis if f.name == "basis" and basis else f.name
        cols[f.name] = pa.array([r.get(src) for r in records], f.type)
    return pa.table(cols, schema=schema)


def _datacomp_uids(res: ExportResult, removed: list[dict], formats: Mapping[str, str], out: list) -> None:
    for r in removed:
        if formats.get(r["shard_id"]) != "datacomp":
            continue
        pair = datacomp_uid(r["key"])
        if pair is None:
            res.datacomp_uids_skipped += 1
        else:
            out.append(pair)
            res.datacomp_uids += 1


def _collect(res: ExportResult, r: dict, shown: Callable[[dict], dict]) -> None:
    res.flags += 1
    blocked = never_render(r)
    res.never_rendered += blocked
    res.decided[r["decision"] or "undecided"] += 1
    if r["decision"] == "needs_escalation":
        res.escalations_pending += 1
        if blocked:
            res.escalations_never_rendered += 1
        elif len(res.escalations) < MAX_ESCALATIONS_SHOWN:
            res.escalations.append(shown(r))
    if r["removal"]:
        res.removal_rows += 1
        res.removed_row_ids.append(r["row_id"])
        res.removal_by_basis[r["removal_basis"]] += 1
        res.removal_by_severity[r["severity"]] += 1
        res.removal_by_reason.update(r["reasons"])
    if not blocked:  # never-render rows: counted, never shown
        if len(res.html_rows) < MAX_HTML_ROWS:
            res.html_rows.append(shown(r))
        else:
            res.truncated = True
