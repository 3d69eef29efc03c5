# ruff: noqa: E501 - HTML lines are as long as their markup; wrapping would change the page text
"""The Jinja template of report.html (autoescaped: every value from the data is escaped text; the
only markup inserted is the charts' checked SVG, audit.report_charts)."""

REPORT_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src 'none'">
<title>mmaudit report: {{ s.run_name }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem;
       color: #222; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.muted { color: #666; }
.banner { background: #b00020; color: #fff; padding: 1rem 1.2rem; border-radius: 6px; font-size: 1.1rem;
          font-weight: 600; margin: 1rem 0; }
.warn { background: #fff4d6; border-left: 4px solid #e0a800; padding: .5rem .8rem; margin: .3rem 0; }
.absent { background: #f3f3f3; border-left: 4px solid #999; padding: .5rem .8rem; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; width: 100%; }
th, td { border: 1px solid #ddd; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.caption { max-width: 28rem; overflow-wrap: anywhere; }
td.url { max-width: 18rem; overflow-wrap: anywhere; } td.key { white-space: nowrap; }
.sev-critical, .sev-high { color: #b00020; font-weight: 600; } .sev-medium { color: #b35c00; }
.ok { color: #1b7f3b; font-weight: 600; } .bad { color: #b00020; font-weight: 600; }
figure.chart { margin: .8rem 0; break-inside: avoid; } figure.chart svg { max-width: 100%; height: auto; }
figure.chart figcaption { font-weight: 600; margin-bottom: .3rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: .5rem 1.5rem; }
nav ol { columns: 3; }
@media print {
  body { margin: 0; max-width: none; font-size: 11px; } nav { display: none; }
  h2 { break-after: avoid; } table, figure.chart { break-inside: avoid; }
  .banner { border: 3px solid #b00020; color: #b00020; background: none; }
}
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
{% for n in f.notes %}<div class="warn">{{ n }}</div>{% endfor %}
<p class="muted">Offensive terms from the lexicon are masked in this report (first letter kept). Images are
never shown. Rows that must never be rendered (known-bad hash matches, never-render rules) are only
counted here. Every number below is also in figures.json.</p>

<nav><ol>
<li><a href="#sec-rows">Rows</a></li><li><a href="#sec-flags">Flags by reason and severity</a></li>
<li><a href="#sec-languages">Languages</a></li><li><a href="#sec-scores">Score distributions</a></li><li><a href="#sec-sweep">CLIP-similarity threshold sweep</a></li>
<li><a href="#sec-crosstab">NSFW tag against caption harms</a></li><li><a href="#sec-terms">Lexicon terms</a></li>
<li><a href="#sec-shards">Per-shard rates</a></li><li><a href="#sec-clusters">Cluster hot spots</a></li>
<li><a href="#sec-duplicates">Duplicates</a></li><li><a href="#sec-decisions">Reviewer decisions</a></li>
<li><a href="#sec-removal">Removal list</a></li><li><a href="#sec-pairs">Flagged pairs</a></li>
<li><a href="#sec-evaluation">Flagger evaluation</a></li>
<li><a href="#sec-provenance">Models and provenance</a></li>
</ol></nav>

{% macro chart(c) %}<figure class="chart" id="{{ c.id }}"><figcaption>{{ c.title }}</figcaption>
{% if c.svg %}{{ c.svg }}{% else %}<p class="absent">This chart could not be drawn; the table holds its numbers.</p>{% endif %}
</figure>{% endmacro %}
{% macro absent(section, id) %}<p class="absent" id="{{ id }}">Not shown: {{ section.absent_reason }}.</p>{% endmacro %}

<h2 id="sec-rows">Rows</h2>
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

<h2 id="sec-flags">Flags by reason and severity</h2>
{% for c in charts.get("flags", []) %}{{ chart(c) }}{% endfor %}
<div class="grid"><div>
<table id="flags-by-reason"><tr><th>reason</th><th>flags</th></tr>
{% for reason, n in f.flags.by_reason.items() %}<tr><td>{{ reason }}</td><td class="num">{{ n }}</td></tr>
{% else %}<tr><td colspan="2">no flags</td></tr>{% endfor %}
</table></div><div>
<table id="flags-by-severity"><tr><th>severity</th><th>flags</th></tr>
{% for sev, n in f.flags.by_severity.items() %}<tr><td class="sev-{{ sev }}">{{ sev }}</td><td class="num">{{ n }}</td></tr>
{% endfor %}
</table></div></div>
<h3>Quarantine by reason</h3>
<table id="quarantine-by-reason"><tr><th>reason</th><th>meaning</th><th>rows</th></tr>
{% for reason, n in s.quarantine_by_reason.items() %}
<tr><td>{{ reason }}</td><td>{{ quarantine_reasons.get(reason, "") }}</td><td class="num">{{ n }}</td></tr>
{% else %}<tr><td colspan="3">no rows quarantined</td></tr>{% endfor %}
</table>
{% if s.skipped_rules %}
<h3>Rules not applied</h3>
<ul>{% for rule, why in s.skipped_rules.items() %}<li><code>{{ rule }}</code>: {{ why }}</li>{% endfor %}</ul>
{% endif %}
{% if s.analyses_not_run %}
<h3>Analyses that did not run</h3>
<ul id="analyses-not-run">{% for name, why in s.analyses_not_run.items() %}<li><code>{{ name }}</code>: {{ why }}</li>{% endfor %}</ul>
{% endif %}
{% if s.cascade %}
<h3 id="sec-cascade">Cascade scoring was on</h3>
<p>The expensive scorers ({{ s.cascade.expensive_tier|join(", ") }}) ran only on {{ s.cascade.rows.candidate }} candidate
rows (a cheap score reached its candidate threshold) and {{ s.cascade.rows.audit_sample }} more rows of a seeded
uniform audit sample ({{ "%.1f"|format(100 * s.cascade.audit_fraction) }}%, seed {{ s.cascade.seed }}); on
{{ s.cascade.rows.skipped_by_cascade }} rows (<code>cascade_status = skipped_by_cascade</code>) they did not run and
rules reading their scores could not fire. From the audit sample, where every scorer ran, the flags each such rule
would have raised on skipped rows ({{ s.cascade.interval }}):</p>
<table id="cascade-misses"><tr><th>rule</th><th>flags found</th><th>flags in the audit sample</th>
<th>of them on non-candidates</th><th>estimated missed flags (95% interval)</th></tr>
{% for rule, e in s.cascade.rules.items() %}<tr><td><code>{{ rule }}</code></td><td class="num">{{ e.flags_found }}</td>
<td class="num">{{ e.flags_in_sample }}</td><td class="num">{{ e.missed_in_sample }}</td>
<td class="num">{% if e.estimated_missed_flags is not none %}{{ "%.0f"|format(e.estimated_missed_flags) }}{% else %}unknown{% endif %}
({{ "%.0f"|format(e.estimated_missed_flags_ci95[0]) }} to {{ "%.0f"|format(e.estimated_missed_flags_ci95[1]) }})</td></tr>
{% endfor %}</table>
{% endif %}

<h2 id="sec-languages">Languages</h2>
<p>Scored rows by caption language (fastText lid.176; <code>und</code>: too short or mixed to tell,
every scorer ran; <code>none</code>: no caption scored; <code>not-detected</code>: cascade scoring
skipped the row and no rule fired on it, so its language was not detected). A scorer outside its languages gives no score on
a row (null, never a clean value) and is counted under "not applicable".</p>
<table id="languages"><tr><th>language</th><th>rows</th><th>flagged</th><th>flag reasons</th>
<th>not applicable (scorer: rows)</th></tr>
{% for lang, c in s.languages.items() %}<tr><td><code>{{ lang }}</code></td><td class="num">{{ c.rows }}</td>
<td class="num">{{ c.rows_flagged }}</td>
<td>{% for r, n in c.flags_by_reason.items() %}{{ r }}: {{ n }}{% if not loop.last %}; {% endif %}{% endfor %}</td>
<td>{% for name, n in c.not_applicable.items() %}{{ name }}: {{ n }}{% if not loop.last %}; {% endif %}{% endfor %}</td></tr>
{% else %}<tr><td colspan="5">no language detected (no caption scored)</td></tr>{% endfor %}
</table>
<h3>Text read from images, by its language</h3>
<table id="image-text-languages"><tr><th>language</th><th>rows with text</th><th>flagged</th><th>flag reasons</th>
<th>not applicable (scorer: rows)</th></tr>
{% for lang, c in s.image_text_languages.items() %}<tr><td><code>{{ lang }}</code></td><td class="num">{{ c.rows }}</td>
<td class="num">{{ c.rows_flagged }}</td>
<td>{% for r, n in c.flags_by_reason.items() %}{{ r }}: {{ n }}{% if not loop.last %}; {% endif %}{% endfor %}</td>
<td>{% for name, n in c.not_applicable.items() %}{{ name }}: {{ n }}{% if not loop.last %}; {% endif %}{% endfor %}</td></tr>
{% else %}<tr><td colspan="5">no text read from any image (OCR off, or none found)</td></tr>{% endfor %}
</table>

<h2 id="sec-scores">Score distributions</h2>
{% set d = f.score_distributions %}
{% if d.shown %}
<p>Rows per score value over every scored row ({{ d.bins }} bins; probabilities over 0 to 1, similarities over
their observed range). Grey: CLIP-based scores of a run whose CLIP weights are random.</p>
<div class="grid">{% for c in charts.get("score_distributions", []) %}{{ chart(c) }}{% endfor %}</div>
<table id="score-summary"><tr><th>score</th><th>what</th><th>rows with a value</th><th>min</th><th>mean</th>
<th>max</th><th>meaningful</th></tr>
{% for h in d.scores %}<tr><td><code>{{ h.score }}</code></td><td>{{ h.description }}</td>
<td class="num">{{ h.rows }}</td><td class="num">{{ h.min|num }}</td><td class="num">{{ h.mean|num }}</td>
<td class="num">{{ h.max|num }}</td><td{% if not h.meaningful %} class="bad"{% endif %}>{{ "yes" if h.meaningful else "NO" }}</td></tr>
{% endfor %}</table>
{% if d.without_values %}<p class="muted">No values (scorer not run or not applicable):
{{ d.without_values|join(", ") }}.</p>{% endif %}
{% else %}{{ absent(d, "scores-absent") }}{% endif %}

<h2 id="sec-sweep">CLIP-similarity threshold sweep</h2>
{% set w = f.similarity_sweep %}
<p>LAION kept image-text pairs whose CLIP similarity reached a threshold (0.3 for LAION-400M, 0.28 for
LAION-5B's English part). Birhane et al. showed that such a filter keeps harmful pairs: for each
threshold, the share of this audit's flagged pairs that a filter at that threshold would keep.</p>
{% if w.shown %}
<div id="similarity-sweep">
{% for c in charts.get("similarity_sweep", []) %}{{ chart(c) }}{% endfor %}
<table id="sweep-table"><tr><th>threshold</th>{% for sr in w.series %}<th>{{ sr.label }}: kept of {{ sr.pairs }}</th>{% endfor %}</tr>
{% for t in w.thresholds %}{% set i = loop.index0 %}<tr><td class="num">{{ "%.2f"|format(t) }}</td>
{% for sr in w.series %}<td class="num">{{ sr.points[i].kept }} ({{ sr.points[i].share_kept|pct }})</td>{% endfor %}</tr>
{% endfor %}</table>
<p class="muted">Pairs flagged only for {{ w.excluded_reasons|join(", ") or "(none)" }} are left out: those rules
are defined by the similarity itself.{% for n in w.not_shown %} Not shown: {{ n }}.{% endfor %}</p>
</div>
{% else %}{{ absent(w, "sweep-absent") }}{% endif %}

<h2 id="sec-crosstab">The dataset's NSFW tag and punsafe against caption harms</h2>
{% set x = f.nsfw_crosstab %}
{% if x.shown %}
<p>As in "Into the LAION's Den": how often captions are hateful, offensive or carry lexicon terms, by the
NSFW label the dataset itself gives the image. Over {{ x.population }}.</p>
{% for c in charts.get("nsfw_crosstab", []) %}{{ chart(c) }}{% endfor %}
<table id="nsfw-crosstab"><tr><th>dataset's own</th><th>value</th><th>rows</th>
{% for k, label in x.measures.items() %}<th>{{ label }}</th>{% endfor %}</tr>
{% for r in x.rows %}<tr><td>{{ r.source }}</td><td>{{ r.value }}</td><td class="num">{{ r.rows }}</td>
{% for k in x.measures %}<td class="num">{{ r[k] }} ({{ r[k ~ "_rate"]|pct }})</td>{% endfor %}</tr>
{% endfor %}</table>
{% else %}{{ absent(x, "crosstab-absent") }}{% endif %}

<h2 id="sec-terms">Lexicon terms most often matched</h2>
{% set t = f.lexicon_terms %}
{% if t.shown %}
<table id="lexicon-terms"><tr><th>category</th><th>term (masked)</th><th>group</th><th>rows</th></tr>
{% for r in t.terms %}<tr><td>{{ r.category }}</td><td>{{ r.term }}</td><td>{{ r.group or "" }}</td>
<td class="num">{{ r.rows }}</td></tr>{% endfor %}</table>
{% else %}{{ absent(t, "terms-absent") }}{% endif %}

<h2 id="sec-shards">Per-shard rates</h2>
{% set r = f.shard_rates %}
{% if r.shown %}
<p>The share of each shard's rows flagged, as a distribution over the {{ r.shards|length }} shards: a harm
concentrated in a few files shows as outliers.</p>
{% for c in charts.get("shard_rates", []) %}{{ chart(c) }}{% endfor %}
<table id="shard-rates"><tr><th>reason</th><th>shards</th><th>min</th><th>q1</th><th>median</th><th>q3</th>
<th>max</th><th>mean</th></tr>
{% for q in r.distribution %}<tr><td>{{ q.reason }}</td><td class="num">{{ q.shards }}</td>
{% for k in ("min", "q1", "median", "q3", "max", "mean") %}<td class="num">{{ q.get(k)|pct }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% else %}{{ absent(r, "shards-absent") }}{% endif %}

<h2 id="sec-clusters">Cluster hot spots</h2>
{% set c = f.cluster_hotspots %}
{% if c.shown %}
<p>{{ c.clusters }} k-means clusters of the image embeddings; the corpus' flag rate is
{{ c.overall_flag_rate|pct }}. The clusters with the highest rate (at least {{ c.min_cluster_rows }} rows):</p>
{% for ch in charts.get("cluster_hotspots", []) %}{{ chart(ch) }}{% endfor %}
<table id="cluster-hotspots"><tr><th>cluster</th><th>rows</th><th>flagged</th><th>rate</th><th>× corpus rate</th>
<th>top reasons</th><th>top concepts</th></tr>
{% for h in c.hot_spots %}<tr><td class="num">{{ h.cluster }}</td><td class="num">{{ h.rows }}</td>
<td class="num">{{ h.flagged }}</td><td class="num">{{ h.flag_rate|pct }}</td><td class="num">{{ h.lift|num }}</td>
<td>{% for tr in h.top_reasons %}{{ tr.reason }} ({{ tr.flags }}){{ ", " if not loop.last }}{% endfor %}</td>
<td>{{ h.top_concepts|join(", ") }}</td></tr>{% endfor %}</table>
{% else %}{{ absent(c, "clusters-absent") }}{% endif %}

<h2 id="sec-duplicates">Duplicates</h2>
{% set u = f.duplicates %}
{% if u.shown %}
{% for ch in charts.get("duplicates", []) %}{{ chart(ch) }}{% endfor %}
<table id="duplicates"><tr><th>kind</th><th>groups</th><th>rows in groups</th><th>rows beyond one per group</th>
<th>largest group</th><th>flagged rows in groups</th><th>copies of removed rows not on the removal list</th></tr>
{% for k in u.by_kind %}<tr><td>{{ k.kind }}</td><td class="num">{{ k.groups }}</td><td class="num">{{ k.rows }}</td>
<td class="num">{{ k.redundant_rows }}</td><td class="num">{{ k.largest_group }}</td>
<td class="num">{{ k.flagged_rows }}</td><td class="num">{{ k.copies_of_removed_rows_left }}</td></tr>{% endfor %}
</table>
{% else %}{{ absent(u, "duplicates-absent") }}{% endif %}

<h2 id="sec-decisions">Reviewer decisions</h2>
{% set dd = f.decisions %}
{% for ch in charts.get("decisions", []) %}{{ chart(ch) }}{% endfor %}
<table id="decisions"><tr><th>latest decision</th><th>flagged rows</th></tr>
{% for k, n in dd.by_decision.items() %}<tr><td>{{ k }}</td><td class="num">{{ n }}</td></tr>{% endfor %}
</table>
{% if dd.by_reviewer %}<p>By reviewer (latest decisions): {% for r in dd.by_reviewer %}{{ r.reviewer }}
({{ r.rows }}){{ ", " if not loop.last }}{% endfor %}.</p>{% endif %}
<h3>Pending escalations</h3>
<p id="pending-escalations-count">{{ dd.pending_escalations }} flagged rows wait on an escalation
({{ dd.pending_escalations_never_rendered }} of them never rendered, counted only).</p>
{% if dd.pending_escalations_listed %}
<table id="pending-escalations"><tr><th>row id</th><th>key</th><th>severity</th><th>reasons</th><th>reviewer</th>
<th>note</th><th>since</th></tr>
{% for e in dd.pending_escalations_listed %}<tr><td class="key"><code>{{ e.row_id }}</code></td>
<td class="key"><code>{{ e.key }}</code></td><td class="sev-{{ e.severity }}">{{ e.severity }}</td>
<td>{{ e.reasons|join(", ") }}</td><td>{{ e.reviewer }}</td><td>{{ e.note or "" }}</td><td>{{ e.decided_at }}</td></tr>
{% endfor %}</table>{% endif %}

<h2 id="sec-removal">Removal list</h2>
{% set rm = f.removal %}
<p id="removal-summary">{{ removal_count }} rows are on the removal list (removal_list.txt, removal_list.parquet,
removed_urls.parquet{% if rm.datacomp_uids or rm.datacomp_uids_skipped %}, datacomp_removed_uids.npy{% endif %};
format: docs/removal-lists.md). Policy: never-render rows always;
{% if policy.confirmed %}rows a reviewer confirmed harmful; {% endif %}
{% if policy.min_severity %}severity ≥ {{ policy.min_severity }}; {% endif %}
{% if policy.rules %}rules {{ policy.rules|join(", ") }}; {% endif %}
never a row whose latest decision is false_positive (unless never-render).</p>
<table id="removal-by-basis"><tr><th>basis</th><th>rows</th></tr>
{% for k, n in rm.by_basis.items() %}<tr><td>{{ k }}</td><td class="num">{{ n }}</td></tr>
{% else %}<tr><td colspan="2">no rows</td></tr>{% endfor %}</table>
{% if rm.datacomp_uids_skipped %}<p class="warn">{{ rm.datacomp_uids_skipped }} removed DataComp rows have a key
that is not a 32-hex-digit uid: they are not in datacomp_removed_uids.npy (they are in the other lists).</p>{% endif %}

<h2 id="sec-pairs">Flagged pairs</h2>
<p>{{ n_flags }} flagged pairs{% if truncated %}; the table shows the first {{ rows|length }}, flags.csv,
 flags.jsonl and flags.parquet hold all{% endif %}. {{ removal_count }} rows are on the removal list.
 URLs are shown as text, not links.</p>
<p id="never-rendered">{{ blocked_count }} flagged rows are never shown (known-bad hash matches and
 never-render rules): they are counted here and listed by row id, with their hashes, only in
 authority_report.csv.</p>
<table id="flagged-pairs">
<tr><th>row id</th><th>key</th><th>url</th><th>caption</th><th>text in image</th><th>reasons</th><th>severity</th><th>scores</th>
<th>decision</th><th>removal</th></tr>
{% for r in rows %}
<tr><td class="key"><code>{{ r.row_id }}</code></td><td class="key"><code>{{ r.key }}</code></td>
<td class="url">{{ r.url or "" }}</td>
<td class="caption">{{ r.caption or "" }}</td>
<td class="caption ocr-text">{{ r.ocr_text or "" }}</td>
<td>{{ r.reasons|join(", ") }}</td><td class="sev-{{ r.severity }}">{{ r.severity }}</td>
<td>{{ r.scores_text }}</td><td>{{ r.decision or "" }}</td><td>{{ r.removal_basis or "no" }}</td></tr>
{% endfor %}
</table>

{{ evaluation }}

<h2 id="sec-provenance">Models and provenance</h2>
{% if not s.clip_meaningful %}<p class="bad">{{ clip_warning }}</p>{% endif %}
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
{% for sh in shards %}
<tr><td>{{ sh.shard_id }}</td><td>{{ sh.format }}</td><td>{{ sh.path }}</td><td>{{ sh.status }}
{% if sh.error %}({{ sh.error }}){% endif %}</td><td class="num">{{ sh.rows_in }}</td>
<td class="num">{{ sh.rows_flagged }}</td><td><code>{{ sh.sha256[:16] }}</code></td></tr>
{% endfor %}
</table>
</body>
</html>
"""
