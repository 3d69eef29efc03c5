"""Every figure of the report as plain data (RUN/report/figures.json), masked where it carries text
from the data. audit.report_charts draws them; report.html shows them; nothing here renders.

Each section that can be missing says so: ``{"shown": false, "absent_reason": "..."}``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from audit import report_queries as q
from audit.config import RemovalSettings
from audit.evaluation.section import evaluation_figure
from audit.report_exports import ExportResult
from audit.report_mask import Masker
from audit.review import DecisionRow
from audit.rules import load_rules
from audit.runfolder import RunFolder
from audit.schemas import CLIP_RANDOM_WARNING, SCORE_COLUMNS, SEVERITIES, Manifest, Summary

FIGURES_VERSION = "1"
# LAION-400M kept pairs with CLIP ViT-B/32 similarity >= 0.3, LAION-5B's English part >= 0.28.
SWEEP_THRESHOLDS = tuple(round(0.25 + 0.01 * i, 2) for i in range(11))
LAION_THRESHOLDS = (0.28, 0.3)
# Caption measures of the cross-tab: the classifiers' decision boundary, and any lexicon hit.
CROSSTAB_MEASURES = {
    "hate": ("text_hate_prob", "text_hate_prob >= 0.5", "hateful caption (hatesonar P(hate) ≥ 0.5)"),
    "offensive": ("text_offensive_prob", "text_offensive_prob >= 0.5",
                  "offensive caption (profanity-check P ≥ 0.5)"),
    "toxic": ("detoxify_toxicity", "detoxify_toxicity >= 0.5", "toxic caption (Detoxify toxicity ≥ 0.5)"),
    "lexicon": ("lexicon_slur_hits",
                "coalesce(lexicon_slur_hits, 0) + coalesce(lexicon_sexual_hits, 0) "
                "+ coalesce(lexicon_violence_hits, 0) >= 1", "any lexicon term"),
    "slur": ("lexicon_slur_hits", "lexicon_slur_hits >= 1", "slur lexicon term"),
}  # fmt: skip
CLUSTERS_SHOWN = 15
MIN_CLUSTER_ROWS = 3  # smaller clusters' rates are noise


def absent(reason: str) -> dict:
    return {"shown": False, "absent_reason": reason}


def build_figures(
    folder: RunFolder,
    summary: Summary,
    manifest: Manifest,
    res: ExportResult,
    masker: Masker,
    policy: RemovalSettings,
    decisions: Mapping[str, DecisionRow],
    notes: list[str],
    generated_at: str,
) -> dict:
    done = [s for s in manifest.shards if s.status == "done"]
    score_paths = [
        q.url(folder, folder.scores(s.shard_id)) for s in done if q.exists(folder, folder.scores(s.shard_id))
    ]
    flags = q.url(folder, folder.flags)
    figures: dict = {
        "schema": "mmaudit.report.figures",
        "version": FIGURES_VERSION,
        "generated_at": generated_at,
        "run": _run(summary),
        "notes": list(notes),
    }
    with q.connect(folder) as con:
        con.register("removed", pa.table({"row_id": pa.array(res.removed_row_ids, pa.string())}))
        figures["flags"] = _flags(con, flags, summary)
        if score_paths:
            scores = q.parquet_list(score_paths)
            present = q.columns_of(folder, folder.scores(done[0].shard_id)) if done else set()
            figures["score_distributions"] = _distributions(con, scores, present, summary)
            figures["similarity_sweep"] = _sweep(con, flags, scores, present, summary, manifest)
            figures["nsfw_crosstab"] = _crosstab(con, scores, present)
            figures["lexicon_terms"] = _terms(con, scores, present, masker)
        else:
            why = "no shard was scored"
            for name in ("score_distributions", "similarity_sweep", "nsfw_crosstab", "lexicon_terms"):
                figures[name] = absent(why)
        figures["shard_rates"] = _shard_rates(con, flags, done, masker)
        figures["cluster_hotspots"] = _clusters(con, folder, flags, done, summary, masker)
        figures["duplicates"] = _duplicates(con, folder, flags)
    figures["decisions"] = _decisions(res, decisions, masker)
    figures["removal"] = _removal(res, policy)
    figures["provenance"] = _provenance(summary, manifest)
    figures["energy"] = manifest.energy or absent("no energy estimate in this run's manifest")
    figures["evaluation"] = evaluation_figure(folder)  # RUN/evaluation/evaluation.json, when there is one
    return figures


def _run(s: Summary) -> dict:
    keys = ("run_name", "status", "rows_in", "rows_scored", "rows_quarantined", "rows_flagged",
            "rows_text_only", "rows_image_only", "keys_repeated", "keys_in_several_shards", "shards_done",
            "shards_failed", "clip_weights", "clip_meaningful", "quarantine_by_reason", "image_status",
            "skipped_rules")  # fmt: skip
    return {k: getattr(s, k) for k in keys}


def _flags(con, flags: str, s: Summary) -> dict:
    return {
        "by_reason": dict(s.flags_by_reason),
        "by_severity": {
            sev: s.flags_by_severity[sev] for sev in reversed(SEVERITIES) if sev in s.flags_by_severity
        },
        "by_reason_and_severity": q.flags_by_reason_severity(con, flags),
    }


def _distributions(con, scores: str, present: set[str], s: Summary) -> dict:
    hists = q.score_histograms(con, scores, present)
    for h in hists:
        col = SCORE_COLUMNS.get(h["score"])
        h["clip_based"] = bool(col and col.clip_based)
        h["meaningful"] = not h["clip_based"] or s.clip_meaningful or bool(s.image_status.get("precomputed"))
        h["description"] = col.description if col else "the dataset's own score"
    shown = [h for h in hists if h["rows"]]
    if not shown:
        return absent("no numeric score has a value in this run")
    return {"shown": True, "bins": q.HISTOGRAM_BINS, "scores": shown,
            "without_values": [h["score"] for h in hists if not h["rows"]]}  # fmt: skip


def _similarity_reasons(manifest: Manifest) -> list[str]:
    """Reasons of rules defined by a similarity (their pairs are below a threshold by definition)."""
    try:
        rules = load_rules(str(manifest.config.get("rules", "default"))).rules
    except Exception:  # a rules file moved since the audit: the default rules' reason
        return ["image-text-mismatch"]
    return sorted({r.reason for r in rules if any(c.score in q.SIMILARITY_SCORES for c in r.conditions)})


def _sweep(con, flags: str, scores: str, present: set[str], s: Summary, manifest: Manifest) -> dict:
    excluded = _similarity_reasons(manifest)
    series, why_not = [], []
    precomputed = bool(s.image_status.get("precomputed"))
    if "clip_similarity" in present and (s.clip_meaningful or precomputed):
        only = not s.clip_meaningful
        doc = q.similarity_sweep(con, flags, scores, "clip_similarity", SWEEP_THRESHOLDS,
                                 only_precomputed=only, excluded_reasons=excluded)  # fmt: skip
        doc["label"] = "this audit's CLIP similarity" + (
            " (rows with precomputed embeddings)" if only else ""
        )
        series.append(doc)
    elif "clip_similarity" in present:
        why_not.append("this audit's CLIP similarity is not meaningful: " + CLIP_RANDOM_WARNING.rstrip("."))
    if (
        "source_similarity" in present
        and q.non_null_counts(con, scores, ["source_similarity"])["source_similarity"]
    ):
        doc = q.similarity_sweep(con, flags, scores, "source_similarity", SWEEP_THRESHOLDS,
                                 excluded_reasons=excluded)  # fmt: skip
        doc["label"] = "the dataset's own similarity column (precomputed, e.g. LAION's CLIP ViT-B/32 score)"
        series.append(doc)
    else:
        why_not.append("the input carries no precomputed similarity column (LAION metadata does)")
    series = [d for d in series if d["pairs"]]
    if not series:
        reason = "; ".join(why_not) or "no flagged pair has a similarity value"
        return absent(reason) | {"thresholds": list(SWEEP_THRESHOLDS)}
    return {"shown": True, "thresholds": list(SWEEP_THRESHOLDS), "laion_thresholds": list(LAION_THRESHOLDS),
            "excluded_reasons": excluded, "series": series, "not_shown": why_not}  # fmt: skip


def _crosstab(con, scores: str, present: set[str]) -> dict:
    if not {"source_nsfw", "source_punsafe"} & present:
        return absent("the input carries neither an NSFW tag nor punsafe (LAION metadata does)")
    sources = [c for c in ("source_nsfw", "source_punsafe") if c in present]
    needed = sorted({col for col, _, _ in CROSSTAB_MEASURES.values() if col in present})
    counts = q.non_null_counts(con, scores, sources + needed)
    if not any(counts.get(c) for c in sources):
        return absent("no row has an NSFW tag or a punsafe value")
    measures = {k: cond for k, (col, cond, _) in CROSSTAB_MEASURES.items() if counts.get(col)}
    if not measures:
        return absent("no caption scorer ran (hatesonar, profanity-check, Detoxify or the lexicon)")
    rows = q.nsfw_crosstab(con, scores, measures, {c for c in sources if counts.get(c)})
    return {"shown": True, "measures": {k: CROSSTAB_MEASURES[k][2] for k in measures}, "rows": rows,
            "population": "rows with a usable caption"}  # fmt: skip


def _terms(con, scores: str, present: set[str], masker: Masker) -> dict:
    if "lexicon_terms" not in present:
        return absent("the lexicon scorer did not run")
    out = []
    for text, n in q.lexicon_terms(con, scores):
        category, _, rest = text.partition(":")  # category:term (group)
        term, _, group = rest.partition(" (")
        masked = _mask_term(masker, term)
        out.append({"category": category, "term": masked, "group": group.rstrip(")") or None, "rows": int(n)})
    if not out:
        return absent("no caption matched a lexicon term")
    return {"shown": True, "terms": out}


def _mask_term(masker: Masker, term: str) -> str:
    masked = masker.mask(term) or term
    return masked if masked != term else (term[:1] + "*" * (len(term) - 1))  # a term is always masked


def _shard_rates(con, flags: str, done: list, masker: Masker) -> dict:
    if not done:
        return absent("no shard finished")
    total, by_reason = q.flags_per_shard(con, flags)
    reasons = sorted({r for _, r, _ in by_reason})
    counts = {(s, r): n for s, r, n in by_reason}
    shards = []
    for rec in done:
        rows = rec.rows_in or 0
        doc = {"shard": masker.mask(rec.shard_id), "rows": rows, "flagged": int(total.get(rec.shard_id, 0))}
        doc["rate"] = doc["flagged"] / rows if rows else None
        doc["by_reason"] = {r: (counts.get((rec.shard_id, r), 0) / rows if rows else None) for r in reasons}
        shards.append(doc)
    summary = [_quartiles("any reason", [d["rate"] for d in shards])]
    summary += [_quartiles(r, [d["by_reason"][r] for d in shards]) for r in reasons]
    return {"shown": True, "shards": shards, "distribution": summary}


def _quartiles(reason: str, values: list) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not v.size:
        return {"reason": reason, "shards": 0}
    lo, q1, med, q3, hi = (float(x) for x in np.quantile(v, [0, 0.25, 0.5, 0.75, 1]))
    return {"reason": reason, "shards": int(v.size), "min": lo, "q1": q1, "median": med, "q3": q3, "max": hi,
            "mean": float(v.mean())}  # fmt: skip


def _clusters(con, folder: RunFolder, flags: str, done: list, s: Summary, masker: Masker) -> dict:
    path = folder.path("clusters.parquet")
    if not q.exists(folder, path):
        return absent("no clusters.parquet (neighbours were not enabled for this audit)")
    table = folder.read_parquet(path)
    if not table.num_rows:
        return absent("clusters.parquet is empty (no row had an image embedding)")
    rows = table.to_pylist()
    overall = s.rows_flagged / s.rows_scored if s.rows_scored else 0.0
    candidates = [r for r in rows if r["n_rows"] >= MIN_CLUSTER_ROWS] or rows
    top = sorted(candidates, key=lambda r: (-r["flag_rate"], -r["n_flagged"], r["cluster"]))[:CLUSTERS_SHOWN]
    neighbours = [folder.path("neighbours", f"{r.shard_id}.parquet") for r in done]
    neighbours = [q.url(folder, p) for p in neighbours if q.exists(folder, p)]
    reasons = q.cluster_reasons(con, flags, q.parquet_list(neighbours)) if neighbours else {}
    out = []
    for r in top:
        top_reasons = Counter(reasons.get(r["cluster"], {})).most_common(3)
        out.append({
            "cluster": int(r["cluster"]), "rows": int(r["n_rows"]), "flagged": int(r["n_flagged"]),
            "flag_rate": float(r["flag_rate"]), "lift": (r["flag_rate"] / overall) if overall else None,
            "top_concepts": [masker.mask(c) for c in r["top_concepts"][:3]],
            "top_reasons": [{"reason": k, "flags": v} for k, v in top_reasons],
        })  # fmt: skip
    flagged_in_top = sum(d["flagged"] for d in out)
    return {"shown": True, "clusters": len(rows), "overall_flag_rate": overall, "hot_spots": out,
            "min_cluster_rows": MIN_CLUSTER_ROWS, "flagged_in_shown": flagged_in_top}  # fmt: skip


def _duplicates(con, folder: RunFolder, flags: str) -> dict:
    path = folder.path("duplicates.parquet")
    if not q.exists(folder, path):
        return absent("no duplicates.parquet (neighbours were not enabled for this audit)")
    if "row_id" not in q.columns_of(folder, path):
        return absent("duplicates.parquet was written by an older mmaudit (rows named by key)")
    stats = q.duplicate_stats(con, q.url(folder, path), flags, "removed")
    if not stats["by_kind"]:
        return absent("no duplicate groups were found")
    return {"shown": True, **stats}


def _decisions(res: ExportResult, decisions: Mapping[str, DecisionRow], masker: Masker) -> dict:
    by_reviewer = Counter(masker.mask(d.reviewer) for d in decisions.values())
    return {
        "flagged_rows": res.flags,
        "by_decision": {k: res.decided.get(k, 0)
                        for k in ("confirm_harmful", "false_positive", "needs_escalation", "undecided")},
        "by_reviewer": [{"reviewer": k, "rows": v} for k, v in by_reviewer.most_common()],
        "pending_escalations": res.escalations_pending,
        "pending_escalations_never_rendered": res.escalations_never_rendered,
        "pending_escalations_listed": [
            {k: e[k] for k in ("row_id", "key", "severity", "reasons", "reviewer", "note", "decided_at")}
            for e in res.escalations
        ],
    }  # fmt: skip


def _removal(res: ExportResult, policy: RemovalSettings) -> dict:
    return {
        "policy": policy.model_dump(mode="json"),
        "rows": res.removal_rows,
        "by_basis": dict(res.removal_by_basis),
        "by_severity": {
            s: res.removal_by_severity[s] for s in reversed(SEVERITIES) if s in res.removal_by_severity
        },
        "by_reason": dict(sorted(res.removal_by_reason.items())),
        "datacomp_uids": res.datacomp_uids,
        "datacomp_uids_skipped": res.datacomp_uids_skipped,
    }


def _provenance(s: Summary, m: Manifest) -> dict:
    return {
        "clip_meaningful": s.clip_meaningful,
        "clip_warning": None if s.clip_meaningful else CLIP_RANDOM_WARNING,
        "models": {k: v.model_dump(mode="json") for k, v in m.models.items()},
        "config_hash": m.config_hash,
        "rules_hash": m.rules_hash,
        "device": m.device,
        "scheduler": m.scheduler,
        "kernel_backends": dict(m.kernel_backends),
        "versions": dict(m.versions),
        "created_at": m.created_at,
        "finished_at": m.finished_at,
    }
