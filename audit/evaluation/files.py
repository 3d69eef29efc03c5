"""Where the evaluation lives in a run folder, and opening the run for it.

RUN/evaluation/ holds ``sample.parquet`` (the rows drawn for labelling, their stratum, design weight,
dev/test split and double-label flag), ``design.json`` (how they were drawn), ``excluded.parquet``
(never-render rows left out of labelling, by row id only), ``labels.db`` (append-only labels, SQLite)
and ``evaluation.json`` / ``evaluation.html`` (the estimates).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from audit.errors import InputFileError, RuleError
from audit.review.run import glob_escaped, sql_literal
from audit.rules import RuleSet, load_rules
from audit.runfolder import RunFolder
from audit.schemas import Manifest, Summary

DUCKDB_MEMORY = "1GB"

SAMPLE_SCHEMA = pa.schema(
    [
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("stratum", pa.string(), nullable=False),
        pa.field("stratum_rows", pa.int64(), nullable=False),  # N_h: frame rows in the stratum
        pa.field("stratum_sampled", pa.int64(), nullable=False),  # n_h: of them drawn
        pa.field("weight", pa.float64(), nullable=False),  # N_h / n_h: 1 / inclusion probability
        pa.field("split", pa.string(), nullable=False),  # dev (chooses thresholds) | test (reports)
        pa.field("double_label", pa.bool_(), nullable=False),  # a second reviewer labels it too
        pa.field("position", pa.int64(), nullable=False),  # queue order (shuffled: strata mixed)
    ],
    metadata={"mmaudit.schema": "evaluation_sample", "mmaudit.version": "1"},
)
EXCLUDED_SCHEMA = pa.schema(
    [pa.field("row_id", pa.string(), nullable=False), pa.field("reason", pa.string(), nullable=False)],
    metadata={"mmaudit.schema": "evaluation_excluded", "mmaudit.version": "1"},
)


@dataclass(frozen=True)
class EvalRun:
    """A finished run opened for evaluation: its folder, summary, manifest and rule set."""

    folder: RunFolder
    summary: Summary
    manifest: Manifest

    # --- paths --------------------------------------------------------------------------------
    def path(self, name: str = "") -> str:
        return self.folder.path("evaluation", name) if name else self.folder.path("evaluation")

    @property
    def sample_path(self) -> str:
        return self.path("sample.parquet")

    @property
    def design_path(self) -> str:
        return self.path("design.json")

    @property
    def excluded_path(self) -> str:
        return self.path("excluded.parquet")

    @property
    def results_path(self) -> str:
        return self.path("evaluation.json")

    @property
    def html_path(self) -> str:
        return self.path("evaluation.html")

    @property
    def labels_db(self) -> Path:
        if self.folder.fs.protocol not in ("file", ("file", "local")):
            raise InputFileError(f"{self.folder.url}: labels.db needs a local run folder (SQLite)")
        return Path(self.path("labels.db"))

    def has_sample(self) -> bool:
        return self.folder.exists(self.sample_path) and self.folder.exists(self.design_path)

    def sample(self) -> pa.Table:
        """RUN/evaluation/sample.parquet; InputFileError naming the command when there is none."""
        if not self.has_sample():
            raise InputFileError(
                f"{self.sample_path}: no labelling sample (run `mmaudit evaluate sample {self.folder.url}`)"
            )
        return self.folder.read_parquet(self.sample_path, schema=SAMPLE_SCHEMA)

    def design(self) -> dict:
        if not self.has_sample():
            self.sample()  # raises the one-line error
        return self.folder.read_json(self.design_path)

    # --- the run's own tables -----------------------------------------------------------------
    def score_urls(self) -> list[str]:
        folder = self.folder
        done = [s.shard_id for s in self.manifest.shards if s.status == "done"]
        return [folder.url_of("scores", f"{s}.parquet") for s in done if folder.exists(folder.scores(s))]

    def scores_sql(self) -> str:
        """DuckDB source over every scored row (the shards' score files)."""
        urls = self.score_urls()
        if not urls:
            raise InputFileError(f"{self.folder.url}: no scored shard (nothing to sample from)")
        listed = ", ".join(sql_literal(glob_escaped(u)) for u in urls)
        return f"read_parquet([{listed}], union_by_name = true)"

    def flags_sql(self) -> str:
        return f"read_parquet({sql_literal(glob_escaped(self.folder.url_of('flags.parquet')))})"

    @contextlib.contextmanager
    def db(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect()
        try:
            con.execute(f"SET threads = 2; SET memory_limit = '{DUCKDB_MEMORY}'")
            if self.folder.fs.protocol not in ("file", ("file", "local")):
                con.register_filesystem(self.folder.fs)
            yield con
        finally:
            con.close()

    def rules(self) -> RuleSet:
        """The rule set the run was flagged with; RuleError when its file changed since the audit (the
        flags, strata and thresholds would not belong together)."""
        ref = str(self.manifest.config.get("rules", "default"))
        rules = load_rules(ref)
        if self.manifest.rules_hash and rules.sha256 != self.manifest.rules_hash:
            raise RuleError(
                f"rules {ref}: the file changed since run {self.summary.run_name} was audited (sha256 "
                f"{rules.sha256[:12]} vs the manifest's {self.manifest.rules_hash[:12]}); audit again"
            )
        return rules


def open_eval_run(run: str | RunFolder) -> EvalRun:
    """A finished run folder (summary, manifest, flags keyed by row id), as the review opens it."""
    from audit.review.run import load_run

    review = load_run(run)
    return EvalRun(review.folder, review.summary, review.manifest)
