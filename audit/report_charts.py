"""The report's plots: Vega-Lite specs drawn to SVG at report time by vl-convert (Vega's own
renderer, bundled in the wheel), so report.html embeds finished pictures: no JavaScript, no
network request, and they print.

The SVG is markup placed in the page unescaped, so it is checked first: parsed, and refused unless
every element and attribute is one Vega's SVG renderer writes for these charts, no attribute is an
event handler, a link or a style, and every ``url(...)`` points inside the picture. The data drawn
is the figures' (already masked); Vega escapes it as XML text.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from markupsafe import Markup

log = logging.getLogger(__name__)

SEVERITY_COLOURS = {"critical": "#7f0000", "high": "#b00020", "medium": "#e07000", "low": "#e0b000",
                    "info": "#7a8a99"}  # fmt: skip
FONT = "DejaVu Sans, Verdana, sans-serif"  # wide fonts: labels measured here fit where shown
WIDTH = 520
SIZE_BUCKETS = ["2", "3", "4", "5-9", "10-99", "100+"]  # audit.report_queries.duplicate_stats

_SVG_NS = "{http://www.w3.org/2000/svg}"
ALLOWED_TAGS = frozenset({"svg", "g", "path", "rect", "line", "text", "tspan", "circle", "title", "desc",
                          "defs", "clipPath", "ellipse", "polygon", "polyline", "linearGradient",
                          "stop"})  # fmt: skip
ALLOWED_ATTRIBUTES = frozenset({
    "xmlns", "version", "class", "width", "height", "viewBox", "transform", "fill", "fill-opacity", "stroke",
    "stroke-width", "stroke-opacity", "stroke-miterlimit", "stroke-dasharray", "stroke-dashoffset",
    "stroke-linecap", "stroke-linejoin", "opacity", "d", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r",
    "rx", "ry", "dx", "dy", "points", "font-family", "font-size", "font-weight", "font-style", "text-anchor",
    "dominant-baseline", "pointer-events", "display", "role", "aria-label", "aria-roledescription",
    "aria-hidden", "id", "clip-path", "offset", "stop-color", "stop-opacity", "gradientUnits",
    "shape-rendering", "text-rendering", "paint-order", "letter-spacing",
})  # fmt: skip


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    svg: Markup | None  # None: it could not be drawn (the tables beside it hold the same numbers)


def _url_ok(value: str) -> bool:
    rest = value
    while "url(" in rest:
        rest = rest.split("url(", 1)[1]
        if not rest.startswith("#"):
            return False
    return True


def check_svg(svg: str) -> Markup:
    """``svg`` as Markup if it holds only what the allow-lists permit; ValueError naming the first
    thing that is not."""
    root = ET.fromstring(svg)
    for el in root.iter():
        tag = el.tag.removeprefix(_SVG_NS)
        if tag not in ALLOWED_TAGS:
            raise ValueError(f"element <{tag}>")
        for name, value in el.attrib.items():
            local = name.split("}")[-1]
            if "}" in name and not name.startswith("{http://www.w3.org/2000/xmlns/"):
                raise ValueError(f"attribute {name}")
            if local not in ALLOWED_ATTRIBUTES or local.lower().startswith("on"):
                raise ValueError(f"attribute {local!r} on <{tag}>")
            if not _url_ok(value):
                raise ValueError(f"attribute {local!r} points outside the picture")
    if "<!" in svg or "<?" in svg.lstrip()[2:]:
        raise ValueError("markup declaration")
    return Markup(svg)


def draw(chart_id: str, title: str, spec: dict) -> Chart:
    import vl_convert as vlc

    full = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "config": {"font": FONT, "view": {"stroke": "#ddd"}, "axis": {"labelLimit": 260}},
        "background": "white",
        **spec,
    }
    try:
        return Chart(chart_id, title, check_svg(vlc.vegalite_to_svg(full)))
    except (ValueError, ET.ParseError) as e:
        log.warning("report chart %s not drawn: %s", chart_id, e)
        return Chart(chart_id, title, None)


# --- specs ---------------------------------------------------------------------------------------


def _data(values: list[dict]) -> dict:
    return {"values": values}


def _bar_h(values: list[dict], y: str, x: str, *, colour: dict | None = None, x_title: str = "",
           x_format: str | None = None) -> dict:  # fmt: skip
    enc: dict = {
        "y": {"field": y, "type": "nominal", "sort": "-x", "title": None},
        "x": {"field": x, "type": "quantitative", "title": x_title,
              **({"axis": {"format": x_format}} if x_format else {})},
    }  # fmt: skip
    if colour:
        enc["color"] = colour
    return {"width": WIDTH, "data": _data(values), "mark": {"type": "bar"}, "encoding": enc}


def _severity_colour() -> dict:
    present = list(SEVERITY_COLOURS)
    return {
        "field": "severity",
        "type": "nominal",
        "scale": {"domain": present, "range": [SEVERITY_COLOURS[s] for s in present]},
        "sort": present,
        "title": "severity",
    }


def charts_for(figures: dict) -> dict[str, list[Chart]]:
    """Section -> its charts, for the sections that are shown."""
    out: dict[str, list[Chart]] = {}
    flags = figures["flags"]["by_reason_and_severity"]
    if flags:
        out["flags"] = [
            draw("chart-flags-by-reason", "Flags by reason and severity",
                 _bar_h(flags, "reason", "flags", colour=_severity_colour(), x_title="flagged rows")),
        ]  # fmt: skip
    dist = figures.get("score_distributions", {})
    if dist.get("shown"):
        out["score_distributions"] = [_histogram(h) for h in dist["scores"]]
    sweep = figures.get("similarity_sweep", {})
    if sweep.get("shown"):
        out["similarity_sweep"] = _sweep_charts(sweep)
    cross = figures.get("nsfw_crosstab", {})
    if cross.get("shown"):
        out["nsfw_crosstab"] = [_crosstab(cross)]
    rates = figures.get("shard_rates", {})
    if rates.get("shown"):
        out["shard_rates"] = [_box(rates)]
    clusters = figures.get("cluster_hotspots", {})
    if clusters.get("shown"):
        out["cluster_hotspots"] = [_clusters(clusters)]
    dups = figures.get("duplicates", {})
    if dups.get("shown"):
        out["duplicates"] = [_duplicates(dups)]
    decided = figures["decisions"]["by_decision"]
    out["decisions"] = [
        draw("chart-decisions", "Latest decision per flagged row",
             _bar_h([{"decision": k, "rows": v} for k, v in decided.items()], "decision", "rows",
                    x_title="flagged rows")),
    ]  # fmt: skip
    return out


def _histogram(h: dict) -> Chart:
    title = h["score"] + ("" if h["meaningful"] else " (NOT meaningful: random CLIP weights)")
    spec = {
        "width": WIDTH,
        "height": 120,
        "title": {"text": title, "anchor": "start", "fontSize": 12},
        "data": _data(h["bins"]),
        "mark": {"type": "bar", "color": "#4a6fa5" if h["meaningful"] else "#aaaaaa"},
        "encoding": {
            "x": {"field": "lo", "type": "quantitative", "bin": {"binned": True}, "title": h["score"]},
            "x2": {"field": "hi"},
            "y": {"field": "rows", "type": "quantitative", "title": "rows"},
        },
    }
    return draw(f"chart-score-{h['score']}", title, spec)


def _sweep_charts(sweep: dict) -> list[Chart]:
    overall = [
        {**p, "series": s["label"]}
        for s in sweep["series"]
        for p in s["points"]
        if p["share_kept"] is not None
    ]
    rules = [{"threshold": t} for t in sweep["laion_thresholds"]]
    line = {
        "width": WIDTH,
        "height": 220,
        "layer": [
            {"data": _data(overall), "mark": {"type": "line", "point": True},
             "encoding": {
                 "x": {"field": "threshold", "type": "quantitative", "scale": {"domain": [0.25, 0.35]},
                       "title": "similarity threshold (pairs at or above it are kept)"},
                 "y": {"field": "share_kept", "type": "quantitative", "axis": {"format": "%"},
                       "scale": {"domain": [0, 1]}, "title": "flagged pairs the filter keeps"},
                 "color": {"field": "series", "type": "nominal", "title": None,
                           "legend": {"orient": "bottom", "labelLimit": 480}}}},
            {"data": _data(rules), "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#888"},
             "encoding": {"x": {"field": "threshold", "type": "quantitative"}}},
        ],
    }  # fmt: skip
    charts = [draw("chart-sweep", "Share of flagged pairs a similarity filter keeps", line)]
    first = sweep["series"][0]
    per_reason = [{**p, "reason": r["reason"]} for r in first["by_reason"] for p in r["points"]]
    if per_reason:
        spec = {
            "width": WIDTH, "height": 220, "data": _data(per_reason), "mark": {"type": "line", "point": True},
            "encoding": {
                "x": {"field": "threshold", "type": "quantitative", "scale": {"domain": [0.25, 0.35]},
                      "title": "similarity threshold"},
                "y": {"field": "share_kept", "type": "quantitative", "axis": {"format": "%"},
                      "scale": {"domain": [0, 1]}, "title": "kept"},
                "color": {"field": "reason", "type": "nominal", "title": "reason"},
            },
        }  # fmt: skip
        charts.append(draw("chart-sweep-by-reason", f"By reason ({first['label']})", spec))
    return charts


def _crosstab(cross: dict) -> Chart:
    cells = [
        {"group": f"{r['source']}: {r['value']}", "measure": label, "rate": r.get(f"{k}_rate"),
         "text": f"{r[k]}/{r['rows']}"}
        for r in cross["rows"] for k, label in cross["measures"].items()
    ]  # fmt: skip
    spec = {
        "data": _data(cells),
        "width": {"step": 110},
        "height": {"step": 28},
        "encoding": {
            "x": {"field": "measure", "type": "nominal", "title": None,
                  "axis": {"labelAngle": -20, "labelLimit": 200}},
            "y": {"field": "group", "type": "nominal", "title": None, "sort": None},
        },
        "layer": [
            {"mark": "rect", "encoding": {"color": {"field": "rate", "type": "quantitative", "title": "share",
                                                    "scale": {"domain": [0, 1], "scheme": "reds"},
                                                    "legend": {"format": "%"}}}},
            {"mark": {"type": "text", "fontSize": 10}, "encoding": {"text": {"field": "text"}}},
        ],
    }  # fmt: skip
    return draw("chart-nsfw-crosstab", "The dataset's NSFW tag and punsafe against caption harms", spec)


def _box(rates: dict) -> Chart:
    boxes = [d for d in rates["distribution"] if d.get("shards")]
    points = []
    if len(rates["shards"]) <= 2000:
        for s in rates["shards"]:
            if s["rate"] is not None:
                points.append({"reason": "any reason", "rate": s["rate"]})
                points += [{"reason": r, "rate": v} for r, v in s["by_reason"].items() if v is not None]
    y = {"field": "reason", "type": "nominal", "title": None, "sort": [b["reason"] for b in boxes]}
    spec = {
        "width": WIDTH,
        "height": {"step": 26},
        "layer": [
            {"data": _data(boxes), "mark": {"type": "rule", "color": "#555"},
             "encoding": {"y": y, "x": {"field": "min", "type": "quantitative", "axis": {"format": "%"},
                                        "title": "share of a shard's rows flagged"}, "x2": {"field": "max"}}},
            {"data": _data(boxes), "mark": {"type": "bar", "size": 14, "color": "#9db4d3"},
             "encoding": {"y": y, "x": {"field": "q1", "type": "quantitative"}, "x2": {"field": "q3"}}},
            {"data": _data(boxes), "mark": {"type": "tick", "color": "#222", "thickness": 2, "size": 14},
             "encoding": {"y": y, "x": {"field": "median", "type": "quantitative"}}},
            {"data": _data(points),
             "mark": {"type": "circle", "size": 14, "opacity": 0.5, "color": "#b00020"},
             "encoding": {"y": y, "x": {"field": "rate", "type": "quantitative"}}},
        ],
    }  # fmt: skip
    return draw(
        "chart-shard-rates", "Per-shard flag rates (box: quartiles; line: min to max; dots: shards)", spec
    )


def _clusters(c: dict) -> Chart:
    values = [{"cluster": f"cluster {d['cluster']} ({d['rows']} rows)", "flag_rate": d["flag_rate"]}
              for d in c["hot_spots"]]  # fmt: skip
    spec = {
        "width": WIDTH,
        "layer": [
            _bar_h(
                values, "cluster", "flag_rate", x_title="share of the cluster's rows flagged", x_format="%"
            )
            | {"width": None},
            {
                "data": _data([{"rate": c["overall_flag_rate"]}]),
                "mark": {"type": "rule", "strokeDash": [4, 3]},
                "encoding": {"x": {"field": "rate", "type": "quantitative"}},
            },
        ],
    }
    spec["layer"][0].pop("width")
    return draw("chart-clusters", "Clusters with the highest flag rate (dashed: the corpus' rate)", spec)


def _duplicates(d: dict) -> Chart:
    spec = {
        "width": WIDTH,
        "height": 160,
        "data": _data(d["group_sizes"]),
        "mark": "bar",
        "encoding": {
            "x": {"field": "size", "type": "ordinal", "title": "group size (rows)", "sort": SIZE_BUCKETS},
            "xOffset": {"field": "kind"},
            "y": {"field": "groups", "type": "quantitative", "title": "groups"},
            "color": {"field": "kind", "type": "nominal", "title": "kind"},
        },
    }
    return draw("chart-duplicates", "Duplicate groups by size", spec)
