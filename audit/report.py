"""RUN/report/: a self-contained report.html, flags.csv, flags.jsonl, removal_list.txt and
authority_report.csv (rows never to be rendered, with their hashes, for reporting).

Nothing here reads an input shard: the report carries keys, URLs, captions and scores, never image
bytes, so it can be mailed around without redistributing harmful images.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping

import jinja2

from audit.finalize import now
from audit.review import (
    DecisionRow,
    ReviewRun,
    format_scores,
    load_decisions,
    load_run,
    render_blocked,
    severity_rank,
)
from audit.schemas import CLIP_RANDOM_WARNING, QUARANTINE_REASONS, SEVERITIES

# Flagged keys at or above this severity go on the removal list unless a reviewer says false_positive.
REMOVAL_MIN_SEVERITY = "medium"
# The HTML table stops here (flags.csv and flags.jsonl always hold every row); browsers choke on more.
MAX_HTML_ROWS = 10_000

REPORT_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mmaudit report: {{ s.run_name }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem;
       color: #222; }
h1 { margin-bottom: .2rem; } .muted { color: #666; }
.banner { background: #b00020; color: #fff; padding: 1rem 1.2rem; border-radius: 6px; font-size: 1.1rem;
          font-weight: 600; margin: 1rem 0; }
.warn { background: #fff4d6; border-left: 4px solid #e0a800; padding: .5rem .8rem; margin: .3rem 0; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; width: 100%; }
th, td { border: 1px solid #ddd; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.caption { max-width: 28rem; overflow-wrap: anywhere; }
td.url { max-width: 18rem; overflow-wrap: anywhere; } td.key { white-space: nowrap; }
.sev-critical, .sev-high { color: #b00020; font-weight: 600; } .sev-medium { color: #b35c00; }
.ok { color: #1b7f3b; font-weight: 600; } .bad { color: #b00020; font-weight: 600; }
</style>
</head>
<body>
<h1>mmaudit report: {{ s.run_name }}</h1>
<p class="muted">status {{ s.status }} · audited {{ m.created_at }} → {{ m.finished_at or "unfinished" }}
 · report written {{ generated_at }}</p>
{% if not s.clip_meaningful %}
<div class="banner" role="alert" id="clip-warning">{{ clip_warning }}</div>
{% endif %}
{% for w in other_warnings %}<div class="warn">{{ w }}</div>{% endfor %}

<h2>Rows</h2>
<table id="rows">
<tr><th>rows in</th><th>scored</th><th>quarantined</th><th>rows in = scored + quarantined</th>
<th>flagged</th></tr>
<tr><td class="num">{{ s.rows_in }}</td><td class="num">{{ s.rows_scored }}</td>
<td class="num">{{ s.rows_quarantined }}</td>
<td>{{ s.rows_in }} = {{ s.rows_scored }} + {{ s.rows_quarantined }}
{% if s.rows_in == s.rows_scored + s.rows_quarantined %}<span class="ok">holds</span>
{% else %}<span class="bad">BROKEN</span>{% endif %}</td>
<td class="num">{{ s.rows_flagged }}</td></tr>
</table>
<p>Shards done {{ s.shards_done }}, failed {{ s.shards_failed }}. Audited on one side only:
<span id="rows-text-only">{{ s.rows_text_only }}</span> text-only (no usable image),
<span id="rows-image-only">{{ s.rows_image_only }}</span> image-only (no usable caption).</p>
<p id="repeated-keys">Dataset keys that repeat: {{ s.keys_repeated }} rows repeat an earlier row's key;
{{ s.keys_in_several_shards }} keys appear in more than one shard. Rows are identified by row id
(shard:row), never by key.</p>

<h2>Flags by reason</h2>
<table id="flags-by-reason"><tr><th>reason</th><th>flags</th></tr>
{% for reason, n in s.flags_by_reason.items() %}<tr><td>{{ reason }}</td><td class="num">{{ n }}</td></tr>
{% else %}<tr><td colspan="2">no flags</td></tr>{% endfor %}
</table>

<h2>Flags by severity</h2>
<table id="flags-by-severity"><tr><th>severity</th><th>flags</th></tr>
{% for sev, n in by_severity %}<tr><td class="sev-{{ sev }}">{{ sev }}</td><td class="num">{{ n }}</td></tr>
{% endfor %}
</table>

<h2>Quarantine by reason</h2>
<table id="quarantine-by-reason"><tr><th>reason</th><th>meaning</th><th>rows</th></tr>
{% for reason, n in s.quarantine_by_reason.items() %}
<tr><td>{{ reason }}</td><td>{{ quarantine_reasons.get(reason, "") }}</td><td class="num">{{ n }}</td></tr>
{% else %}<tr><td colspan="3">no rows quarantined</td></tr>{% endfor %}
</table>
{% if s.skipped_rules %}
<h3>Rules not applied</h3>
<ul>{% for rule, why in s.skipped_rules.items() %}<li><code>{{ rule }}</code>: {{ why }}</li>{% endfor %}</ul>
{% endif %}

<h2>Flagged pairs</h2>
<p>{{ flags|length }} flagged pairs{% if truncated %}; the table shows the first {{ rows|length }}, flags.csv
 and flags.jsonl hold all{% endif %}. {{ removal_count }} rows are on the removal list
 (severity ≥ {{ removal_min }} unless a reviewer marked them false_positive, plus any a reviewer
 confirmed harmful).
 URLs are shown as text, not links.</p>
<p id="never-rendered">{{ blocked_count }} flagged rows are never shown (known-bad hash matches and
 never-render rules): they are counted here and listed by row id, with their hashes, only in
 authority_report.csv.</p>
<table id="flagged-pairs">
<tr><th>row id</th><th>key</th><th>url</th><th>caption</th><th>reasons</th><th>severity</th><th>scores</th>
<th>decision</th><th>removal</th></tr>
{% for r in rows %}
<tr><td class="key"><code>{{ r.row_id }}</code></td><td class="key"><code>{{ r.key }}</code></td>
<td class="url">{{ r.url or "" }}</td>
<td class="caption">{{ r.caption or "" }}</td>
<td>{{ r.reasons|join(", ") }}</td><td class="sev-{{ r.severity }}">{{ r.severity }}</td>
<td>{{ r.scores_text }}</td><td>{{ r.decision or "" }}</td><td>{{ "yes" if r.removal else "no" }}</td></tr>
{% endfor %}
</table>

<h2>Models and provenance</h2>
<table id="models">
<tr><th>role</th><th>model</th><th>weights</th><th>source</th><th>sha256</th><th>version</th></tr>
{% for role, rec in m.models.items() %}
<tr><td>{{ role }}</td><td>{{ rec.name }}</td>
<td{% if rec.weights == "random" %} class="bad"{% endif %}>{{ rec.weights }}</td>
<td>{{ rec.source }}</td><td><code>{{ rec.sha256 or "" }}</code></td><td>{{ rec.version or "" }}</td></tr>
{% endfor %}
</table>
<table id="provenance">
<tr><th>config hash</th><td><code>{{ m.config_hash }}</code></td></tr>
<tr><th>rules hash</th><td><code>{{ m.rules_hash }}</code></td></tr>
<tr><th>device</th><td>{{ m.device }}</td></tr>
<tr><th>scheduler</th><td>{{ m.scheduler }}</td></tr>
<tr><th>kernel backends</th>
<td>{% for k, v in m.kernel_backends.items() %}{{ k }}: {{ v }}{{ ", " if not loop.last }}
{% endfor %}</td></tr>
<tr><th>versions</th>
<td>{% for k, v in m.versions.items() %}{{ k }} {{ v }}{{ ", " if not loop.last }}{% endfor %}</td></tr>
</table>
<h3>Energy and emissions (estimate)</h3>
{% if m.energy %}
<table id="energy">
<tr><th>energy</th><td>{{ "%.6f"|format(m.energy.energy_kwh) }} kWh</td></tr>
<tr><th>CO2e</th><td>{{ "%.3f"|format(m.energy.co2e_grams) }} g
 at {{ m.energy.grid_gco2e_per_kwh }} gCO2e/kWh</td></tr>
<tr><th>wall / CPU time</th><td>{{ m.energy.wall_seconds }} s / {{ m.energy.cpu_seconds }} s</td></tr>
<tr><th>method</th><td>{{ m.energy.method }}</td></tr>
</table>
{% else %}<p>No energy estimate in this run's manifest.</p>{% endif %}
<h3>Input shards</h3>
<table id="shards">
<tr><th>shard</th><th>format</th><th>path</th><th>status</th><th>rows in</th><th>flagged</th>
<th>sha256</th></tr>
{% for sh in m.shards %}
<tr><td>{{ sh.shard_id }}</td><td>{{ sh.format }}</td><td>{{ sh.path }}</td><td>{{ sh.status }}
{% if sh.error %}({{ sh.error }}){% endif %}</td><td class="num">{{ sh.rows_in }}</td>
<td class="num">{{ sh.rows_flagged }}</td><td><code>{{ sh.sha256[:16] }}</code></td></tr>
{% endfor %}
</table>
</body>
</html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _clean(text: str | None) -> str:
    """One field of a tab-separated line: tabs and line breaks in web text would split it."""
    return " ".join((text or "").split())


def on_removal_list(flag: Mapping, decision: DecisionRow | None) -> bool:
    """The latest reviewer decision overrides severity; needs_escalation leaves severity in charge."""
    if decision is not None and decision.decision == "false_positive":
        return False
    if decision is not None and decision.decision == "confirm_harmful":
        return True
    return flag["severity_rank"] >= severity_rank(REMOVAL_MIN_SEVERITY)


def _records(run: ReviewRun, decisions: Mapping[str, DecisionRow]) -> list[dict]:
    out = []
    for flag in run.flags.to_pylist():
        d = decisions.get(flag["row_id"])
        out.append(
            {
                **flag,
                "scores": dict(flag["scores"]),
                "thresholds": dict(flag["thresholds"]),
                "scores_text": format_scores(flag["scores"]),
                "decision": d.decision if d else None,
                "reviewer": d.reviewer if d else None,
                "decided_at": d.decided_at if d else None,
                "removal": on_removal_list(flag, d),
            }
        )
    return out


def render_html(run: ReviewRun, records: list[dict]) -> str:
    s = run.summary
    shown = [r for r in records if not render_blocked(r)]  # never-render rows: a count only
    return _ENV.from_string(REPORT_TEMPLATE).render(
        s=s,
        m=run.manifest,
        generated_at=now(),
        clip_warning=CLIP_RANDOM_WARNING,
        other_warnings=[w for w in s.warnings if w != CLIP_RANDOM_WARNING],
        by_severity=[
            (sev, s.flags_by_severity[sev]) for sev in reversed(SEVERITIES) if sev in s.flags_by_severity
        ],
        quarantine_reasons=QUARANTINE_REASONS,
        flags=records,
        rows=shown[:MAX_HTML_ROWS],
        truncated=len(shown) > MAX_HTML_ROWS,
        blocked_count=len(records) - len(shown),
        removal_count=sum(r["removal"] for r in records),
        removal_min=REMOVAL_MIN_SEVERITY,
    )


CSV_COLUMNS = (
    "row_id",
    "key",
    "shard_id",
    "row_index",
    "url",
    "caption",
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
)
JSONL_COLUMNS = (*(c for c in CSV_COLUMNS if c != "removal"), "severity_rank", "removal")


def _cell(value: object) -> object:
    """Web text that starts like a formula is prefixed with ' so a spreadsheet shows it as text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def render_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = {
            **r,
            "reasons": ";".join(r["reasons"]),
            "rules": ";".join(r["rules"]),
            "scores": json.dumps(r["scores"], sort_keys=True),
            "thresholds": json.dumps(r["thresholds"], sort_keys=True),
        }
        writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS})
    return buf.getvalue()


AUTHORITY_COLUMNS = ("row_id", "key", "url", "reasons", "severity", "sha256", "image_phash", "known_bad_list",
                     "known_bad_distance", "shard_id", "row_index")  # fmt: skip


def render_authority_report(run: ReviewRun, records: list[dict]) -> str:
    """The flagged rows no one may view (audit.render_policy: known-bad matches, never-render rules),
    with the hashes and locations an authority needs to act; never the image bytes. Flags carry
    their hash-list columns, quarantined known-bad rows included, so no shard is read."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=AUTHORITY_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in records:
        if render_blocked(r):
            row = {c: r.get(c) for c in AUTHORITY_COLUMNS} | {"reasons": ";".join(r["reasons"])}
            writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


def render_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps({c: r[c] for c in JSONL_COLUMNS}, ensure_ascii=False) + "\n" for r in records)


def render_removal_list(records: list[dict]) -> str:
    """row_id<TAB>key<TAB>url<TAB>severity<TAB>reasons, one line per row to remove, in the run's order.
    Rows are named by row id: two rows sharing a dataset key are decided and removed separately."""
    lines, seen = [], set()
    for r in records:
        if not r["removal"] or r["row_id"] in seen:
            continue
        seen.add(r["row_id"])
        fields = (r["row_id"], _clean(r["key"]), _clean(r["url"]), r["severity"], ",".join(r["reasons"]))
        lines.append("\t".join(fields))
    return "".join(line + "\n" for line in lines)


def write_report(run_url: str) -> list[str]:
    """Write RUN/report/* atomically and return the written paths."""
    run = load_run(run_url)
    records = _records(run, load_decisions(run))
    folder = run.folder
    outputs = {
        "report.html": render_html(run, records),
        "flags.csv": render_csv(records),
        "flags.jsonl": render_jsonl(records),
        "removal_list.txt": render_removal_list(records),
        "authority_report.csv": render_authority_report(run, records),
    }
    written = []
    for name, text in outputs.items():
        path = folder.report(name)
        folder.write_bytes(path, text.encode("utf-8"))
        written.append(path)
    return written
