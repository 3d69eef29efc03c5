"""What the pair-detail page shows besides the image: every score with its scorer and version, the row's
near-duplicate groups, its cluster and cluster-mates, and its nearest neighbours in the run's index.

Rows other than the one under review are named by row id; a never-render row is listed by its row id
only (its key is left empty), as everywhere in the dashboard.
"""

from __future__ import annotations

import pyarrow as pa

from audit.errors import InputFileError
from audit.report_mask import Masker
from audit.review.run import ReviewRun, glob_escaped, has_view, sql_literal
from audit.review.safety import masked_terms
from audit.runfolder import RunFolder
from audit.schemas import SCORE_COLUMNS, SOURCE_SCORE_COLUMNS, ModelRecord

# score column -> the manifest's model key (see audit.model_cache.Models.records)
_SCORER = {
    "text_offensive_prob": "profanity_check",
    "text_hate_prob": "hatesonar",
    "text_sonar_offensive_prob": "hatesonar",
    "image_nsfw_prob": "opennsfw",
    "clip_nsfw_prob": "clip_nsfw",
    "pii_count": "pii",
    "pii_types": "pii",
    "concept_scores": "concepts",
    "concept_hits": "concepts",
    "identity_top": "concepts",
}
_PREFIX_SCORER = (
    ("detoxify_", "detoxify"),
    ("lexicon_", "lexicon"),
    ("clip_", "clip"),
    ("image_status", "clip"),
)
SCORE_DETAIL_COLUMNS = ("score", "value", "scorer", "version", "weights", "threshold")


def scorer_of(score: str, models: dict[str, ModelRecord]) -> ModelRecord | None:
    """The model record that produced ``score`` (None for the dataset's own columns and unknown names)."""
    if score in SOURCE_SCORE_COLUMNS:
        return None
    if score.startswith("known_bad") or score == "image_phash":
        lists = [m for k, m in models.items() if k.startswith("known_bad:")]
        if not lists:
            return None
        if len(lists) == 1:
            return lists[0]
        return ModelRecord(name=", ".join(m.name for m in lists), source="hash lists", weights="file")
    key = _SCORER.get(score) or next((k for p, k in _PREFIX_SCORER if score.startswith(p)), None)
    return models.get(key) if key else None


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        if value and isinstance(value[0], tuple):  # a map as (key, value) pairs
            return ", ".join(f"{k}={_text(v)}" for k, v in value)
        return ", ".join(_text(v) for v in value)
    return str(value)


def scores_row(run: ReviewRun, row_id: str, shard_id: str) -> dict:
    """The row's line of RUN/scores/<shard>.parquet (every score), {} when the file or row is absent."""
    path = run.folder.scores(shard_id)
    if not run.folder.exists(path):
        return {}
    url = run.folder.url_of("scores", f"{shard_id}.parquet")
    rows = (
        run.db()
        .sql(
            f"SELECT * FROM read_parquet({sql_literal(glob_escaped(url))}) WHERE row_id = ? LIMIT 1",
            params=[row_id],
        )
        .to_arrow_table()
        .to_pylist()
    )
    return rows[0] if rows else {}


def scored_keys(run: ReviewRun, row_ids: list[str]) -> dict[str, str]:
    """The dataset key of each of ``row_ids`` that is a scored row of the run (in its shard's
    RUN/scores file): rows a reviewer may decide although no rule flagged them (a "more like this"
    find). Only shards of the run's manifest are read: a row id never names a file by itself."""
    from audit.row_identity import row_ids_by_shard

    by_shard = row_ids_by_shard(row_ids, {r.shard_id for r in run.manifest.shards if r.status == "done"})
    out: dict[str, str] = {}
    cur = run.db()
    for shard_id, ids in by_shard.items():
        if not run.folder.exists(run.folder.scores(shard_id)):
            continue
        url = run.folder.url_of("scores", f"{shard_id}.parquet")
        cur.register("wanted_rows", pa.table({"row_id": pa.array(ids, pa.string())}))
        out.update(
            cur.execute(
                f"SELECT row_id, key FROM read_parquet({sql_literal(glob_escaped(url))}) "
                "WHERE row_id IN (SELECT row_id FROM wanted_rows)"
            ).fetchall()
        )
        cur.unregister("wanted_rows")
    return out


def _lexicon_terms(masker: Masker, value: list[str] | None, reveal: bool) -> str:
    """ "category:term (group)" entries with the term masked like the caption's."""
    out = []
    for entry in value or []:
        category, _, rest = entry.partition(":")
        term, sep, group = rest.partition(" (")
        shown = term if reveal else (masked_terms(masker, term) or [term[:1] + "*" * (len(term) - 1)])[0]
        out.append(f"{category}:{shown}{sep}{group}")
    return ", ".join(out)


def score_details(run: ReviewRun, flag: dict, masker: Masker, reveal: bool = False) -> list[dict]:
    """One line per score of the row (the flag's scores, then every other score column the audit wrote),
    with the model that produced it, its version (or weights checksum) and the threshold a rule used."""
    record = next((s for s in run.manifest.shards if s.shard_id == flag["shard_id"]), None)
    models = {**run.manifest.models, **(record.models if record else {})}  # what ran on that shard
    thresholds: dict[str, list[str]] = {}
    for name, value in flag.get("thresholds") or []:
        rule, _, score = name.rpartition(":")
        thresholds.setdefault(score, []).append(f"{rule} {value:.4g}")
    values: dict[str, object] = dict(flag.get("scores") or [])
    full = scores_row(run, flag["row_id"], flag["shard_id"])
    for name in (*SCORE_COLUMNS, *SOURCE_SCORE_COLUMNS):
        if name in full and name not in values and full[name] is not None:
            values[name] = full[name]
    for name in thresholds:  # a rule's score this run did not compute (its scorer was off)
        values.setdefault(name, None)
    lines = []
    for name, value in values.items():
        model = scorer_of(name, models)
        terms = name == "lexicon_terms"
        shown = _lexicon_terms(masker, value, reveal) if terms else _text(value)  # type: ignore[arg-type]
        if value is None:
            shown = "not scored in this run"
        version = ""
        if model is not None:
            version = model.version or (f"sha256 {model.sha256[:12]}" if model.sha256 else "")
        lines.append(
            {
                "score": name,
                "value": shown,
                "scorer": "dataset column" if name in SOURCE_SCORE_COLUMNS else (model.name if model else ""),
                "version": version,
                "weights": model.weights if model else "",
                "threshold": "; ".join(thresholds.get(name, [])),
            }
        )
    return lines


# --- duplicates, clusters, neighbours ------------------------------------------------------------


def duplicate_groups(run: ReviewRun, row_id: str, limit: int = 200) -> pa.Table:
    """Every member of each near-duplicate group (exact, image, caption) that holds ``row_id``."""
    if not has_view(run, "duplicates"):
        return pa.table(
            {"kind": [], "group": [], "row_id": [], "key": [], "similarity": [], "representative": []}
        )
    return (
        run.db()
        .sql(
            "SELECT d.kind, d.\"group\", d.row_id, CASE WHEN n.row_id IS NOT NULL THEN '' "
            "ELSE d.key END AS key, d.similarity, d.row_id = d.representative_row_id AS representative "
            'FROM duplicates d JOIN (SELECT kind, "group" FROM duplicates WHERE row_id = ?) g '
            'USING (kind, "group") LEFT JOIN never_rendered n USING (row_id) '
            'ORDER BY d.kind, d."group", representative DESC, d.row_id LIMIT ?',
            params=[row_id, limit],
        )
        .to_arrow_table()
    )


def _neighbours_file(run: ReviewRun, shard_id: str) -> str | None:
    path = run.folder.path("neighbours", f"{shard_id}.parquet")
    return run.folder.url_of("neighbours", f"{shard_id}.parquet") if run.folder.exists(path) else None


def cluster_of(run: ReviewRun, row_id: str, shard_id: str) -> int | None:
    """The row's k-means cluster (from its shard's neighbours file), None without one."""
    url = _neighbours_file(run, shard_id) if has_view(run, "neighbours") else None
    if url is None:
        return None
    got = (
        run.db()
        .execute(
            f"SELECT cluster FROM read_parquet({sql_literal(glob_escaped(url))}) WHERE row_id = ?", [row_id]
        )
        .fetchone()
    )
    return int(got[0]) if got and got[0] is not None else None


def cluster_mates(run: ReviewRun, cluster: int, row_id: str | None = None, limit: int = 20) -> pa.Table:
    """Flagged rows of ``cluster`` (most severe first), ``row_id`` left out."""
    if not has_view(run, "neighbours"):
        return pa.table({"row_id": pa.array([], pa.string())})
    return (
        run.db()
        .sql(
            "SELECT f.row_id, CASE WHEN f.never_render THEN '' ELSE f.key END AS key, f.severity, "
            "array_to_string(f.reasons, ', ') AS reasons, f.never_render FROM neighbours n JOIN flags f "
            "USING (row_id) WHERE n.cluster = ? AND f.row_id IS DISTINCT FROM ? "
            "ORDER BY f.severity_rank DESC, f.pos LIMIT ?",
            params=[int(cluster), row_id, limit],
        )
        .to_arrow_table()
    )


_RANKING = """
WITH q AS (
    SELECT n.cluster, count(*) AS in_queue, count(*) FILTER (WHERE l.row_id IS NULL) AS undecided
    FROM flags f JOIN neighbours n USING (row_id) LEFT JOIN latest_rows l USING (row_id)
    WHERE NOT f.never_render GROUP BY n.cluster
)
SELECT c.cluster, c.n_rows, c.n_flagged, c.flag_rate, coalesce(q.in_queue, 0) AS in_queue,
       coalesce(q.undecided, 0) AS undecided, array_to_string(c.top_concepts, ', ') AS top_concepts
FROM clusters c LEFT JOIN q USING (cluster) ORDER BY c.flag_rate DESC, c.n_flagged DESC, c.cluster
"""
_RANKING_NO_ROWS = """
SELECT cluster, n_rows, n_flagged, flag_rate, array_to_string(top_concepts, ', ') AS top_concepts
FROM clusters ORDER BY flag_rate DESC, n_flagged DESC, cluster
"""


def cluster_ranking(run: ReviewRun) -> pa.Table:
    """Clusters by flag rate (highest first) with the flagged rows a reviewer can see in each (never-
    render rows left out) and how many of those nobody has decided yet."""
    if not has_view(run, "clusters"):
        return pa.table({"cluster": pa.array([], pa.int32())})
    cur = run.db()
    cur.register("latest_rows", run.decision_log.refresh())
    sql = _RANKING if has_view(run, "neighbours") else _RANKING_NO_ROWS
    return cur.sql(sql).to_arrow_table()


def has_index(run: ReviewRun) -> bool:
    return run.has("index", "image", "index.json")


def expand(
    run: ReviewRun, seeds: list[str], *, k: int | None = None, min_similarity: float | None = None
) -> tuple[pa.Table, list[str]]:
    """kNN expansion from seed rows (``mmaudit expand``'s library code, nothing written): the found rows
    with their seed and similarity, whether each is flagged, its severity and latest decision; and the
    seeds without an image embedding. InputFileError when the run has no image index."""
    from audit.pipelines.neighbours_run import expand_seeds

    if not has_index(run):
        raise InputFileError(f"{run.url}: no index/image in the run folder (audit with neighbours.enabled)")
    found, missing = expand_seeds(
        RunFolder(run.folder.url), seeds, min_similarity=min_similarity, k=k, write=False
    )
    cur = run.db()
    cur.register("found", found)
    cur.register("latest_rows", run.decision_log.refresh())
    table = cur.sql(
        "SELECT x.row_id, CASE WHEN coalesce(f.never_render, false) THEN '' ELSE x.key END AS key, "
        "x.seed_row_id, x.similarity, f.row_id IS NOT NULL AS flagged, coalesce(f.never_render, false) AS "
        "never_render, f.severity, l.decision AS latest_decision "
        "FROM found x LEFT JOIN flags f USING (row_id) LEFT JOIN latest_rows l USING (row_id) "
        "ORDER BY x.similarity DESC, x.row_id"
    ).to_arrow_table()
    return table, missing


def nearest_neighbours(run: ReviewRun, row_id: str, k: int = 10) -> pa.Table | None:
    """The ``k`` nearest rows to ``row_id`` in the image index (None: no index, or no embedding)."""
    if not has_index(run):
        return None
    try:
        table, missing = expand(run, [row_id], k=k)
    except InputFileError:
        return None  # the row has no image embedding
    return None if missing else table
