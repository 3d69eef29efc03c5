"""RUN/report/: a self-contained report.html (plots drawn in as SVG: it opens offline, makes no
network request and prints), figures.json with every figure in it, counts.json, and the exports of
audit.report_exports (flags, removal lists, authority_report.csv).

Nothing here reads an input shard: the report carries keys, URLs, captions and scores, never image
bytes, so it can be mailed around without redistributing harmful images. Rows that are never
rendered (known-bad matches, never-render rules) appear in report.html only as counts. Lexicon
terms are masked in report.html and figures.json wherever text from the data is shown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jinja2
import pyarrow.parquet as pq
from pydantic import ValidationError

from audit.config import RemovalSettings
from audit.errors import InputFileError
from audit.evaluation.section import evaluation_charts, section_html
from audit.finalize import now
from audit.lexicon import Lexicon
from audit.removals import check_rule_ids, resolve_policy
from audit.report_charts import Chart, charts_for
from audit.report_exports import (
    AUTHORITY_COLUMNS,
    CSV_COLUMNS,
    JSONL_COLUMNS,
    MAX_HTML_ROWS,
    ExportResult,
    cell,
    write_exports,
)
from audit.report_figures import build_figures
from audit.report_mask import Masker
from audit.report_template import REPORT_TEMPLATE
from audit.review import DecisionRow, ReviewRun, load_decisions
from audit.runfolder import RunFolder
from audit.schemas import CLIP_RANDOM_WARNING, FLAGS_SCHEMA, QUARANTINE_REASONS, Manifest, Summary

__all__ = ["AUTHORITY_COLUMNS", "CSV_COLUMNS", "JSONL_COLUMNS", "MAX_HTML_ROWS", "write_report"]

_cell = cell  # the name tests and older callers use
# report.html first, then the files in the order they are documented (README, docs/removal-lists.md)
REPORT_FILES = ("report.html", "flags.csv", "flags.jsonl", "removal_list.txt", "authority_report.csv",
                "flags.parquet", "removal_list.parquet", "removed_urls.parquet", "datacomp_removed_uids.npy",
                "counts.json", "figures.json")  # fmt: skip
# text fields of a flag the HTML may show; each is masked first
_SHOWN_TEXT = ("key", "url", "caption", "ocr_text", "reviewer", "note")

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_ENV.filters["pct"] = lambda v: "–" if v is None else f"{v:.1%}"
_ENV.filters["num"] = lambda v: "–" if v is None else f"{v:.3g}"


def _open_run(run_url: str) -> tuple[RunFolder, Summary, Manifest]:
    """Summary and manifest of a finished run whose flags name rows by row id; nothing is written
    and flags are not read (they are streamed later)."""
    folder = RunFolder(str(run_url))
    if not folder.exists(folder.summary):
        raise InputFileError(
            f"{folder.url}: not a finished run folder "
            f"(no summary.json; run `mmaudit audit --out {folder.url}` first)"
        )
    for path in (folder.manifest, folder.flags):
        if not folder.exists(path):
            raise InputFileError(f"{path}: missing from the run folder")
    try:
        summary = Summary.model_validate(folder.read_json(folder.summary))
        manifest = Manifest.model_validate(folder.read_json(folder.manifest))
    except (ValidationError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise InputFileError(f"{folder.url}: unreadable summary.json or manifest.json ({first})") from None
    with folder.fs.open(folder.flags, "rb") as f:
        names = pq.read_schema(f).names
    if "row_id" not in names:
        raise InputFileError(
            f"{folder.flags}: written by an older mmaudit that identified rows by key; "
            "audit again into a new run folder to report on it"
        )
    return folder, summary, manifest


def _lexicon(manifest: Manifest, notes: list[str]) -> Lexicon:
    """The run's own lexicon (what its scorer matched), else the packaged one, said in a note."""
    folder = (manifest.config.get("text") or {}).get("lexicons")
    if folder:
        try:
            return Lexicon(folder)
        except Exception as e:  # the folder moved since the audit
            notes.append(
                f"masking uses the packaged lexicon: the run's text.lexicons {folder} is unreadable ({e})"
            )
    return Lexicon()


def _shown(masker: Masker) -> Any:
    def shown(record: dict) -> dict:
        view = {k: record.get(k) for k in ("row_id", "severity", "reasons", "scores_text", "decision",
                                           "decided_at", "removal", "removal_basis")}  # fmt: skip
        view.update({k: masker.mask(record.get(k)) for k in _SHOWN_TEXT})
        return view

    return shown


def _counts(summary: Summary, figures: dict) -> dict:
    removal = figures["removal"]
    return {
        "run_name": summary.run_name,
        "flags_by_reason": summary.flags_by_reason,
        "flags_by_severity": summary.flags_by_severity,
        "flags_by_reason_and_severity": figures["flags"]["by_reason_and_severity"],
        "quarantine_by_reason": summary.quarantine_by_reason,
        "removal_rows": removal["rows"],
        "removal_by_reason": removal["by_reason"],
        "removal_by_basis": removal["by_basis"],
        "removal_by_severity": removal["by_severity"],
        "analyses_not_run": summary.analyses_not_run,
        "cascade": summary.cascade,
    }


def render_html(summary: Summary, manifest: Manifest, figures: dict, charts: Mapping[str, list[Chart]],
                res: ExportResult, policy: RemovalSettings, masker: Masker) -> str:  # fmt: skip
    shards = [
        {**sh.model_dump(), "shard_id": masker.mask(sh.shard_id), "path": masker.mask(sh.path),
         "error": masker.mask(sh.error)}
        for sh in manifest.shards
    ]  # fmt: skip
    return _ENV.from_string(REPORT_TEMPLATE).render(
        shards=shards,
        s=summary,
        m=manifest,
        f=figures,
        charts=charts,
        generated_at=figures["generated_at"],
        clip_warning=CLIP_RANDOM_WARNING,
        other_warnings=[w for w in summary.warnings if w != CLIP_RANDOM_WARNING],
        quarantine_reasons=QUARANTINE_REASONS,
        rows=res.html_rows,
        n_flags=res.flags,
        truncated=res.truncated,
        blocked_count=res.never_rendered,
        removal_count=res.removal_rows,
        policy=policy,
        evaluation=section_html(figures["evaluation"], charts.get("evaluation", [])),
    )


def write_report(
    run_url: str, *, config: str | None = None, overrides: Mapping[str, Any] | None = None
) -> list[str]:
    """Write RUN/report/* (each file atomically) and return the written paths, report.html first.
    ``config`` / ``overrides`` (``removal.*`` keys) change which rows go on the removal list."""
    folder, summary, manifest = _open_run(run_url)
    policy = resolve_policy(manifest.config, config, overrides)
    notes: list[str] = []
    note = check_rule_ids(policy, str(manifest.config.get("rules", "default")))
    if note:
        notes.append(note)
    decisions = _decisions(folder, summary, manifest, notes)
    masker = Masker(_lexicon(manifest, notes))
    generated_at = now()
    metadata = {
        "mmaudit.run_name": summary.run_name,
        "mmaudit.config_hash": manifest.config_hash,
        "mmaudit.removal_policy": policy.model_dump_json(),
        "mmaudit.generated_at": generated_at,
    }
    res = write_exports(folder, decisions, policy, {s.shard_id: s.format for s in manifest.shards},
                        metadata=metadata, shown=_shown(masker))  # fmt: skip
    figures = build_figures(folder, summary, manifest, res, masker, policy, decisions, notes, generated_at)
    charts = charts_for(figures)
    charts["evaluation"] = evaluation_charts(figures["evaluation"])
    figures["charts"] = {section: [c.id for c in cs] for section, cs in charts.items()}
    html = render_html(summary, manifest, figures, charts, res, policy, masker)
    written = {p.rsplit("/", 1)[-1]: p for p in res.written}
    for name, doc in (("counts.json", _counts(summary, figures)), ("figures.json", figures)):
        path = folder.report(name)
        folder.write_bytes(path, json.dumps(doc, indent=2, ensure_ascii=False, default=str).encode())
        written[name] = path
    written["report.html"] = folder.report("report.html")
    folder.write_bytes(written["report.html"], html.encode("utf-8"))
    return [written[n] for n in REPORT_FILES if n in written]


def _decisions(
    folder: RunFolder, summary: Summary, manifest: Manifest, notes: list[str]
) -> dict[str, DecisionRow]:
    if folder.fs.protocol not in ("file", ("file", "local")):  # decisions.db is SQLite: local only
        notes.append(f"reviewer decisions not read: {folder.url} is not a local run folder")
        return {}
    return load_decisions(ReviewRun(folder, summary, manifest, FLAGS_SCHEMA.empty_table()))
