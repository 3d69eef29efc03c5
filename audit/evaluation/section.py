# ruff: noqa: E501 - HTML lines are as long as their markup
"""The report's "Flagger evaluation" section: tables and plots of RUN/evaluation/evaluation.json.

Rendered with an autoescaping Jinja environment: the document holds rule ids, score names and numbers
(no captions, keys or URLs), and each is escaped text; the only markup inserted is the charts' SVG,
drawn and checked by audit.report_charts. Used by report.html (audit.report) and, on its own page, by
RUN/evaluation/evaluation.html.
"""

from __future__ import annotations

import json

import jinja2
from markupsafe import Markup

from audit.report_charts import WIDTH, Chart, draw
from audit.runfolder import RunFolder

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_ENV.filters["pct"] = lambda v: "–" if v is None else f"{v:.1%}"
_ENV.filters["num"] = lambda v: "–" if v is None else f"{v:.3g}"


def evaluation_figure(folder: RunFolder) -> dict:
    """evaluation.json with ``shown: true``, or why the section is absent."""
    path = folder.path("evaluation", "evaluation.json")
    if not folder.exists(path):
        return {"shown": False, "absent_reason": "no flagger evaluation yet (`mmaudit evaluate sample`, label "
                "the sample in the dashboard's Labelling page, then `mmaudit evaluate report`)"}  # fmt: skip
    try:
        doc = folder.read_json(path)
    except (OSError, ValueError) as e:
        return {"shown": False, "absent_reason": f"{path} cannot be read ({type(e).__name__})"}
    return {"shown": True, **doc}


# --- charts ---------------------------------------------------------------------------------------


def _estimates_chart(ev: dict) -> Chart:
    points = []
    for r in ev["rules"]:
        for what in ("precision", "recall"):
            p = r["test"][what]
            if p["estimate"] is not None:
                points.append({"rule": r["rule"], "measure": what, "estimate": p["estimate"], "low": p["low"],
                               "high": p["high"]})  # fmt: skip
    enc_y = {"field": "rule", "type": "nominal", "title": None}
    colour = {"field": "measure", "type": "nominal", "title": None, "legend": {"orient": "bottom"}}
    x = {"type": "quantitative", "scale": {"domain": [0, 1]}, "axis": {"format": "%"}}
    spec = {
        "width": WIDTH, "data": {"values": points},
        "encoding": {"y": enc_y, "yOffset": {"field": "measure"}, "color": colour},
        "layer": [
            {"mark": {"type": "rule"}, "encoding": {"x": {"field": "low", **x, "title": "test estimate and 95% interval"},
                                                    "x2": {"field": "high"}}},
            {"mark": {"type": "point", "filled": True, "size": 50}, "encoding": {"x": {"field": "estimate", **x}}},
        ],
    }  # fmt: skip
    return draw("chart-evaluation-estimates", "Precision and recall per rule (test labels)", spec)


def _curve_chart(c: dict) -> Chart:
    points = [
        {"threshold": p["threshold"], "value": p[what], "measure": what, "split": split}
        for split in ("dev", "test")
        for p in c[split]
        for what in ("precision", "recall")
        if p[what] is not None
    ]
    marks = [{"threshold": c["configured"], "line": "configured"}]
    if c.get("suggested") is not None:
        marks.append({"threshold": c["suggested"], "line": "suggested (dev)"})
    spec = {
        "width": WIDTH, "height": 200,
        "layer": [
            {"data": {"values": points}, "mark": {"type": "line", "point": True, "interpolate": "step-after"},
             "encoding": {
                 "x": {"field": "threshold", "type": "quantitative", "title": f"{c['score']} threshold ({c['op']})"},
                 "y": {"field": "value", "type": "quantitative", "scale": {"domain": [0, 1]}, "axis": {"format": "%"},
                       "title": None},
                 "color": {"field": "measure", "type": "nominal", "title": None, "legend": {"orient": "bottom"}},
                 "strokeDash": {"field": "split", "type": "nominal", "title": "labels",
                                "legend": {"orient": "bottom"}}}},
            {"data": {"values": marks}, "mark": {"type": "rule", "strokeDash": [4, 3]},
             "encoding": {"x": {"field": "threshold", "type": "quantitative"},
                          "color": {"field": "line", "type": "nominal", "scale": {"range": ["#888888", "#1b7f3b"]},
                                    "title": None, "legend": {"orient": "bottom"}}}},
        ],
        "resolve": {"scale": {"color": "independent"}},
    }  # fmt: skip
    return draw(
        f"chart-evaluation-curve-{c['rule']}",
        f"{c['rule']}: precision and recall against the threshold",
        spec,
    )


def _stability_chart(ev: dict) -> Chart:
    points = []
    for r in ev["rules"]:
        for what in ("precision", "recall"):
            for k, v in enumerate((r.get("stability") or {}).get(what, {}).get("values", [])):
                if v is not None:
                    points.append(
                        {"rule": r["rule"], "measure": what, "value": v, "seed": ev["stability"]["seeds"][k]}
                    )
    spec = {
        "width": WIDTH, "data": {"values": points}, "mark": {"type": "tick", "thickness": 2},
        "encoding": {
            "y": {"field": "rule", "type": "nominal", "title": None}, "yOffset": {"field": "measure"},
            "x": {"field": "value", "type": "quantitative", "scale": {"domain": [0, 1]}, "axis": {"format": "%"},
                  "title": "test estimate under each re-drawn dev/test split"},
            "color": {"field": "measure", "type": "nominal", "title": None, "legend": {"orient": "bottom"}},
        },
    }  # fmt: skip
    return draw("chart-evaluation-stability", "Stability across resampling seeds", spec)


def evaluation_charts(ev: dict) -> list[Chart]:
    if not ev.get("shown") or not ev.get("rules"):
        return []
    return [_estimates_chart(ev), *(_curve_chart(c) for c in ev["curves"]), _stability_chart(ev)]


# --- markup ---------------------------------------------------------------------------------------

SECTION_TEMPLATE = """<h2 id="sec-evaluation">Flagger evaluation</h2>
{% macro chart(c) %}<figure class="chart" id="{{ c.id }}"><figcaption>{{ c.title }}</figcaption>
{% if c.svg %}{{ c.svg }}{% else %}<p class="absent">This chart could not be drawn; the table holds its numbers.</p>{% endif %}
</figure>{% endmacro %}
{% macro ci(p) %}{{ p.estimate|pct }} <span class="muted">[{{ p.low|pct }}–{{ p.high|pct }}]</span>{% endmacro %}
{% if not ev.shown %}<p class="absent" id="evaluation-absent">Not shown: {{ ev.absent_reason }}.</p>
{% else %}{% set lb = ev.labels %}{% set pr = ev.protocol %}
<p id="evaluation-protocol">Measured on this corpus from a seeded stratified sample labelled blind (the labelling
queue shows no score or flag): {{ lb.sampled_rows }} rows drawn from {{ ev.design.frame.rows }} that may be shown
({{ ev.design.frame.rows_never_render_excluded }} never-render and {{ ev.design.frame.rows_quarantined_excluded }}
quarantined rows are not labelled); {{ lb.labelled_rows }} labelled ({{ lb.unsure_rows }} unsure, left out), by
{{ lb.reviewers|length }} reviewers. <strong>Held-out protocol:</strong> the dev labels ({{ pr.dev_rows }} rows)
{{ pr.dev }}; the test labels ({{ pr.test_rows }} rows) {{ pr.test }}. Weighted by the design (Horvitz–Thompson);
{{ (ev.confidence * 100)|round|int }}% intervals: {{ ev.methods.intervals }}.</p>
{% if ev.coverage.strata_without_test_labels %}<p class="warn" id="evaluation-coverage">{{ ev.coverage.frame_rows - ev.coverage.rows_represented }}
of {{ ev.coverage.frame_rows }} frame rows are in strata with no test label yet: no estimate below represents them
({{ ev.coverage.strata_without_test_labels|map(attribute="stratum")|join(", ") }}).</p>{% endif %}
{% for c in charts[:1] %}{{ chart(c) }}{% endfor %}
<table id="evaluation-rules"><tr><th>rule</th><th>harm</th><th>labelled flagged rows (test)</th><th>precision</th>
<th>recall</th><th>F1 (bootstrap)</th><th>precision across seeds</th><th>recall across seeds</th></tr>
{% for r in ev.rules %}{% set t = r.test %}<tr><td><code>{{ r.rule }}</code></td><td>{{ r.category }}</td>
<td class="num">{{ t.precision.rows }}</td><td class="num">{{ ci(t.precision) }}</td><td class="num">{{ ci(t.recall) }}</td>
<td class="num">{{ t.f1.estimate|pct }}{% if t.f1.low is not none %} <span class="muted">[{{ t.f1.low|pct }}–{{ t.f1.high|pct }}]</span>{% endif %}</td>
{% for what in ("precision", "recall") %}{% set st = r.stability.get(what, {}) %}<td class="num">{% if st.get("mean") is not none %}{{ st.mean|pct }} ± {{ st.std|pct }}
<span class="muted">({{ st.min|pct }}–{{ st.max|pct }}, {{ st.seeds_with_value }} seeds)</span>{% else %}–{% endif %}</td>{% endfor %}</tr>
{% else %}<tr><td colspan="8">no rule is measured</td></tr>{% endfor %}</table>

<h3>Suggested thresholds (target precision {{ ev.target_precision|pct }})</h3>
<table id="evaluation-thresholds"><tr><th>rule</th><th>condition varied</th><th>configured</th><th>suggested (chosen on dev)</th>
<th>bootstrap range of the choice</th><th>precision at it (test)</th><th>recall at it (test)</th><th>across seeds</th></tr>
{% for r in ev.rules %}{% set s = r.suggested %}<tr><td><code>{{ r.rule }}</code></td><td>{{ r.curve_condition or "–" }}</td>
<td>{{ r.conditions|join("; ") }}</td>
{% if s.threshold is not none %}<td class="num">{{ s.threshold|num }}</td>
<td class="num">{% if s.threshold_interval %}{{ s.threshold_interval[0]|num }}–{{ s.threshold_interval[1]|num }}{% else %}–{% endif %}</td>
<td class="num">{{ ci(s.test_precision) }}</td><td class="num">{{ ci(s.test_recall) }}</td>
{% else %}<td colspan="4">{{ s.why }}</td>{% endif %}
{% set st = r.stability.get("suggested_threshold", {}) %}<td class="num">{% if st.get("mean") is not none %}{{ st.min|num }}–{{ st.max|num }} ({{ st.seeds_with_value }} of {{ st["values"]|length }} seeds){% else %}–{% endif %}</td></tr>
{% endfor %}</table>
<div class="grid">{% for c in charts[1:-1] %}{{ chart(c) }}{% endfor %}</div>

<h3>Each scorer threshold alone</h3>
<table id="evaluation-conditions"><tr><th>rule</th><th>condition</th><th>harm</th><th>precision (test)</th><th>recall (test)</th>
<th>F1</th></tr>
{% for c in ev.conditions %}<tr><td><code>{{ c.rule }}</code></td><td><code>{{ c.condition }}</code></td><td>{{ c.category }}</td>
<td class="num">{{ ci(c.test.precision) }}</td><td class="num">{{ ci(c.test.recall) }}</td><td class="num">{{ c.test.f1.estimate|pct }}</td></tr>
{% endfor %}</table>

<h3>Prevalence in the corpus</h3>
<table id="evaluation-prevalence"><tr><th>harm</th><th>share of the frame (test labels)</th><th>labelled rows with it</th>
<th>across seeds</th></tr>
{% for p in ev.prevalence %}{% set st = ev.stability.prevalence.get(p.category, {}) %}<tr><td>{{ p.category }}</td>
<td class="num">{{ ci(p) }}</td><td class="num">{{ p.hits }} of {{ p.rows }}</td>
<td class="num">{% if st.get("mean") is not none %}{{ st.mean|pct }} ± {{ st.std|pct }}{% else %}–{% endif %}</td></tr>
{% endfor %}</table>
<p class="muted">{{ ev.methods.prevalence }}. The frame is the scored rows that may be shown; never-render rows
(known-bad matches) are not in it.</p>

<h3>Inter-annotator agreement</h3>
{% set ag = ev.agreement %}
{% if ag.rows %}<p id="evaluation-agreement">{{ ag.method }}: {{ ag.rows }} rows. Whole label: kappa
{{ ag.label.kappa|num }}, exact agreement {{ ag.label.agreement|pct }}.</p>
<table id="evaluation-kappa"><tr><th>category</th><th>Cohen's kappa</th><th>agreement</th><th>first says yes</th><th>second says yes</th></tr>
{% for c in ag.by_category %}<tr><td>{{ c.category }}</td><td class="num">{{ c.kappa|num }}</td><td class="num">{{ c.agreement|pct }}</td>
<td class="num">{{ c.first_yes }}</td><td class="num">{{ c.second_yes }}</td></tr>{% endfor %}</table>
{% else %}<p class="absent" id="evaluation-agreement">No agreement yet: {{ ag.why }}.</p>{% endif %}

<h3>Stability across resampling seeds</h3>
<p>The dev/test split re-drawn with seeds {{ ev.stability.seeds|join(", ") }} (the same stratified procedure); each
estimate's spread across them is in the tables above.</p>
{% for c in charts[-1:] %}{{ chart(c) }}{% endfor %}
{% if ev.not_measured %}<h3>Rules not measured</h3>
<ul id="evaluation-not-measured">{% for n in ev.not_measured %}<li><code>{{ n.rule }}</code>: {{ n.why }}</li>{% endfor %}</ul>{% endif %}
{% endif %}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src 'none'">
<title>mmaudit flagger evaluation: {{ name }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
.muted { color: #666; } .warn { background: #fff4d6; border-left: 4px solid #e0a800; padding: .5rem .8rem; }
.absent { background: #f3f3f3; border-left: 4px solid #999; padding: .5rem .8rem; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; width: 100%; }
th, td { border: 1px solid #ddd; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure.chart { margin: .8rem 0; break-inside: avoid; } figure.chart svg { max-width: 100%; height: auto; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: .5rem 1.5rem; }
</style></head><body>
<h1>mmaudit flagger evaluation: {{ name }}</h1>
{{ section }}
</body></html>
"""


def section_html(ev: dict, charts: list[Chart] | None = None) -> Markup:
    """The section's markup (``ev`` from evaluation_figure; charts drawn here when not given)."""
    charts = evaluation_charts(ev) if charts is None else charts
    return Markup(_ENV.from_string(SECTION_TEMPLATE).render(ev=ev, charts=charts))


def standalone_html(doc: dict) -> str:
    """RUN/evaluation/evaluation.html: the section on a page of its own."""
    ev = {"shown": True, **json.loads(json.dumps(doc))}
    return _ENV.from_string(_PAGE).render(name=doc["run_name"], section=section_html(ev))
