"""Plotly figures of the dashboard, built as plain dicts.

A replay frame rebuilds the floor plan every tick; building dicts instead of validated
`go.Figure` objects keeps that to a fraction of a millisecond. Static parts (site outline,
the timeline backdrop) are built once per run and cached by the app.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from cangtwin.dash_app.access import OPERATOR
from cangtwin.dash_app.i18n import tr
from cangtwin.dash_app.replay import Replay
from cangtwin.twin.site import Site
from cangtwin.scenarios.html_report import COUNTERS

BAY_COLOURS = {"empty": "#eeeeee", "free": "#b0bec5", "pledged": "#4caf50", "released": "#ffca28",
               "alert": "#e53935", "other": "#d7ccc8"}
DEVICE_COLOURS = {"ok": "#2e7d32", "silent": "#fb8c00", "failed": "#c62828", "waiting": "#9e9e9e"}
DEVICE_SYMBOLS = {"camera": "triangle-up", "lidar": "star", "weighbridge": "square", "rfid-reader": "diamond",
                  "gate-sensor": "diamond-open", "positioning-tag": "circle-open", "climate-sensor": "circle"}
STAGES = ("sensing", "edge", "transport", "cloud")
GAP_S = 2.0  # weighbridge readings further apart than this are separate weighings
STAGE_COLOURS = {"sensing": "#42a5f5", "edge": "#66bb6a", "transport": "#ffa726", "cloud": "#ab47bc"}


def clock(t: float, timezone: str, with_date: bool = False) -> str:
    moment = datetime.fromtimestamp(t, ZoneInfo(timezone))
    return moment.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def _rect_path(r) -> tuple[list[float], list[float]]:
    return [r.x0, r.x1, r.x1, r.x0, r.x0], [r.y0, r.y0, r.y1, r.y1, r.y0]


def _status(state, pledged: dict) -> str:
    if state.alerted and pledged:
        return "alert"
    if state.released and pledged:
        return "released"
    return "pledged" if pledged else "free"


def floor_plan(replay: Replay, t: float, lang: str, viewer: str | None, warehouse: Site | None = None) -> dict:
    """The site at time `t`: bays by collateral status, vehicles, devices by health.

    For a multi-warehouse run, `warehouse` is the one drawn (its own plan and coordinates; the
    replay holds every warehouse's names, prefixed `w2.`)."""
    spec = (warehouse or replay.site).spec
    bays = replay.bays_at(t)
    health = replay.device_health(t)
    forks, trucks = replay.vehicles_at(t)
    short = (lambda name: name.split(".", 1)[1]) if warehouse is not None else (lambda name: name)
    if warehouse is not None:
        own = {f.id for f in spec.forklifts}
        forks = {short(f): xy for f, xy in forks.items() if f in own}
        trucks = {short(tk): xy for tk, xy in trucks.items() if tk.startswith(spec.site + ".")}
    traces: list[dict] = []
    by_status: dict[str, list] = {}
    for bay in spec.bays:
        state = bays.get(bay.id)
        pledged = {}
        if state is not None:
            pledged = state.pledged if viewer == OPERATOR else {
                loan: n for loan, n in state.pledged.items() if replay.loan_bank.get(loan) == viewer}
        if state is None or state.lots == 0:
            status = "empty"
        elif viewer != OPERATOR and state.pledged and not pledged:
            status = "other"
        else:
            status = _status(state, pledged)
        by_status.setdefault(status, []).append((bay, state, pledged))
    for status, items in by_status.items():
        xs, ys, text = [], [], []
        for bay, state, pledged in items:
            x, y = _rect_path(bay.rect)
            xs += x + [None]
            ys += y + [None]
            lots = state.lots if state else 0
            loans = ", ".join(f"{loan}: {n}" for loan, n in sorted(pledged.items())) or "—"
            hover = f"{bay.id} · {bay.commodity} · {lots} lots · pledged {loans}"
            text += [hover] * 5 + [None]
        traces.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "fill": "toself",
                       "fillcolor": BAY_COLOURS[status], "line": {"color": "#616161", "width": 1},
                       "name": tr(f"bay_{status}", lang), "text": text, "hoverinfo": "text",
                       "legendgroup": "bays", "hoveron": "fills+points"})
    traces.append({"type": "scatter", "mode": "text", "x": [(b.rect.x0 + b.rect.x1) / 2 for b in spec.bays],
                   "y": [(b.rect.y0 + b.rect.y1) / 2 for b in spec.bays], "text": [short(b.id) for b in spec.bays],
                   "textfont": {"size": 9, "color": "#212121"}, "hoverinfo": "skip", "showlegend": False})
    for status in ("ok", "silent", "failed", "waiting"):
        devs = [d for d in spec.devices if health.get(d.id) == status and d.type != "positioning-tag"]
        if not devs:
            continue
        traces.append({"type": "scatter", "mode": "markers", "x": [d.position[0] for d in devs],
                       "y": [d.position[1] for d in devs], "text": [f"{d.id} ({d.type})" for d in devs],
                       "hoverinfo": "text", "name": tr(f"dev_{status}", lang),
                       "marker": {"color": DEVICE_COLOURS[status], "size": 8,
                                  "symbol": [DEVICE_SYMBOLS.get(d.type, "circle") for d in devs],
                                  "line": {"width": 1, "color": "#ffffff"}}})
    traces.append({"type": "scatter", "mode": "markers+text", "x": [p[0] for p in forks.values()],
                   "y": [p[1] for p in forks.values()], "text": list(forks), "textposition": "bottom center",
                   "name": tr("forklift", lang), "hoverinfo": "text",
                   "marker": {"color": "#1565c0", "size": 11, "symbol": "square"}})
    traces.append({"type": "scatter", "mode": "markers+text", "x": [p[0] for p in trucks.values()],
                   "y": [p[1] for p in trucks.values()], "text": list(trucks), "textposition": "bottom center",
                   "name": tr("truck", lang), "hoverinfo": "text",
                   "marker": {"color": "#6d4c41", "size": 16, "symbol": "hexagon"}})
    shapes = [{"type": "rect", "x0": 0, "y0": 0, "x1": spec.building.width_m, "y1": spec.building.depth_m,
               "line": {"color": "#424242", "width": 2}, "layer": "below"}]
    shapes += [{"type": "rect", "x0": z.x0, "y0": z.y0, "x1": z.x1, "y1": z.y1, "line": {"color": "#bdbdbd", "dash": "dot"},
                "layer": "below"} for z in spec.zones.values()]
    shapes += [{"type": "rect", "x0": w.rect.x0, "y0": w.rect.y0, "x1": w.rect.x1, "y1": w.rect.y1,
                "fillcolor": "#cfd8dc", "line": {"color": "#78909c"}, "layer": "below"} for w in spec.weighbridges]
    annotations = [{"x": g.position[0], "y": g.position[1], "text": short(g.id), "showarrow": False, "font": {"size": 10},
                    "yshift": -14}  # below its gate sensor marker, not on it
                   for g in spec.gates]
    in_window = [w for w in replay.windows if w.start <= t <= w.end]
    title = f"{tr('floor', lang)}{' · ' + spec.site if warehouse is not None else ''} · {clock(t, spec.timezone, with_date=True)}"
    if in_window:
        title += " · " + ", ".join(f"{tr(w.kind, lang)} ({w.label})" for w in in_window)
    return {"data": traces, "layout": {
        "title": {"text": title, "font": {"size": 14}}, "shapes": shapes, "annotations": annotations,
        "xaxis": {"range": [-8, spec.building.width_m + 8], "showgrid": False, "zeroline": False, "title": "x (m)",
                  "constrain": "domain"},  # the plan fills the width it needs, not a stretched range
        "yaxis": {"range": [-4, spec.building.depth_m + 4], "scaleanchor": "x", "constrain": "domain",
                  "showgrid": False, "zeroline": False,
                  "title": "y (m)"},
        "margin": {"l": 50, "r": 10, "t": 40, "b": 40}, "height": 520, "uirevision": "floor",
        "legend": {"orientation": "h", "y": -0.15}, "plot_bgcolor": "#fafafa",
    }}


def parse_clock(text: str, timezone: str) -> float:
    """Epoch seconds of a timeline x value ("YYYY-MM-DD HH:MM:SS[.ffffff]" at the site)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(timezone)).timestamp()


def timeline(replay: Replay, lang: str, alerts: list[dict], t: float) -> dict:
    """The run's timeline; shape 0 is the cursor, so a frame moves it with a two-value patch."""
    tz = replay.site.spec.timezone
    xs = [clock(x, tz, True) for x in replay.rate_t]
    traces = [{"type": "bar", "x": xs, "y": replay.rate_n, "name": tr("msgs_per_min", lang),
               "marker": {"color": "#90caf9"}, "hoverinfo": "x+y"}]
    top = max(replay.rate_n, default=1) or 1
    traces.append({"type": "scatter", "mode": "markers", "name": tr("injection", lang),
                   "x": [clock(at, tz, True) for at, _, _ in replay.injections], "y": [top * 1.05] * len(replay.injections),
                   "text": [f"{lid} ({kind})" for _, lid, kind in replay.injections], "hoverinfo": "text+x",
                   "marker": {"symbol": "triangle-down", "size": 12, "color": "#6a1b9a"}})
    traces.append({"type": "scatter", "mode": "markers", "name": tr("alert", lang),
                   "x": [clock(a["raised_at"], tz, True) for a in alerts], "y": [top * 1.12] * len(alerts),
                   "text": [f"{a['id']} {a['rule']}" for a in alerts], "hoverinfo": "text+x",
                   "marker": {"symbol": "x", "size": 10, "color": "#e53935"}})
    cursor = clock(t, tz, True)
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": cursor, "x1": cursor, "y0": 0, "y1": 1,
               "line": {"color": "#212121", "width": 2}}]
    shapes += [{"type": "rect", "xref": "x", "yref": "paper", "x0": clock(w.start, tz, True), "x1": clock(w.end, tz, True),
               "y0": 0, "y1": 1, "fillcolor": "#ffcdd2" if w.kind == "outage" else "#ffe0b2", "opacity": 0.6,
               "line": {"width": 0}, "layer": "below"} for w in replay.windows]
    annotations = [{"x": clock(w.start, tz, True), "y": 1, "yref": "paper", "yanchor": "bottom",
                    "text": f"{tr(w.kind, lang)}: {w.label}",  # above the plot, clear of the markers
                    "showarrow": False, "xanchor": "left", "font": {"size": 10, "color": "#b71c1c"}}
                   for w in replay.windows]
    return {"data": traces, "layout": {
        "title": {"text": tr("timeline", lang), "font": {"size": 13}}, "shapes": shapes, "annotations": annotations,
        "height": 220, "margin": {"l": 50, "r": 10, "t": 35, "b": 30}, "bargap": 0,
        "xaxis": {"type": "date"}, "yaxis": {"title": tr("msgs_per_min", lang)}, "showlegend": True,
        "legend": {"orientation": "h", "y": -0.3},
    }}


def point_cloud(points: np.ndarray, title: str) -> dict:
    z = points[:, 2] if len(points) else []
    return {"data": [{"type": "scatter3d", "mode": "markers", "x": points[:, 0].round(3).tolist(),
                      "y": points[:, 1].round(3).tolist(), "z": points[:, 2].round(3).tolist(),
                      "marker": {"size": 1.5, "color": z.round(3).tolist() if len(z) else [], "colorscale": "Viridis",
                                 "colorbar": {"title": "z (m)"}}, "hoverinfo": "skip"}],
            "layout": {"title": {"text": title, "font": {"size": 13}, "x": 0.01, "xanchor": "left"}, "height": 480,
                       "margin": {"l": 0, "r": 0, "t": 40, "b": 0},
                       "scene": {"aspectmode": "data", "xaxis": {"title": "x (m)"}, "yaxis": {"title": "y (m)"},
                                 "zaxis": {"title": "z (m)"}}}}


def weighbridge_trace(scale: dict, timezone: str, lang: str, t: float | None) -> dict:
    traces = []
    for device, (times, kg, stable) in sorted(scale.items()):
        x = [clock(v, timezone, True) for v in times]
        line_x, line_y = [], []
        for i, (xi, yi) in enumerate(zip(x, kg.tolist())):
            if i and times[i] - times[i - 1] > GAP_S:  # the scale sends only while loaded: no line across gaps
                line_x.append(None)
                line_y.append(None)
            line_x.append(xi)
            line_y.append(yi)
        traces.append({"type": "scattergl", "mode": "lines", "x": line_x, "y": line_y, "name": device,
                       "line": {"width": 1}})
        s = stable.astype(bool)
        traces.append({"type": "scattergl", "mode": "markers", "x": [x[i] for i in np.flatnonzero(s)],
                       "y": kg[s].tolist(), "name": f"{device} {tr('stable', lang)}", "marker": {"size": 4}})
    shapes = []
    if t is not None:
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": clock(t, timezone, True),
                       "x1": clock(t, timezone, True), "y0": 0, "y1": 1, "line": {"color": "#212121"}})
    return {"data": traces, "layout": {"title": {"text": tr("weighbridge", lang), "font": {"size": 13}},
                                       "height": 300, "shapes": shapes, "xaxis": {"type": "date"},
                                       "yaxis": {"title": tr("mass_kg", lang)},
                                       "margin": {"l": 60, "r": 10, "t": 40, "b": 30}}}


def latency_stages(detections: list[tuple[str, dict]], lang: str) -> dict:
    """Stacked bars: each detection's bank-visible latency split into stages, beside its edge latency."""
    names = [name for name, _ in detections]
    traces = [{"type": "bar", "orientation": "h", "y": names, "x": [d["stages_s"].get(st, 0.0) for _, d in detections],
               "name": tr(st, lang), "marker": {"color": STAGE_COLOURS[st]}} for st in STAGES]
    traces.append({"type": "scatter", "mode": "markers", "y": names, "x": [d["edge_latency_s"] for _, d in detections],
                   "name": tr("edge_view", lang), "marker": {"symbol": "line-ns-open", "size": 18, "color": "#000"}})
    return {"data": traces, "layout": {"barmode": "stack", "title": {"text": tr("latency", lang), "font": {"size": 13}, "x": 0.01, "xanchor": "left"},
                                       "xaxis": {"title": tr("latency_s", lang)}, "height": 140 + 40 * max(len(names), 1),
                                       "margin": {"l": 120, "r": 10, "t": 60, "b": 40}}}


def latency_distribution(samples: dict[str, dict[str, list[float]]], lang: str) -> dict:
    """Box plots of detection latency per rule, edge and bank-visible (over replications)."""
    traces = []
    for view, colour in (("edge", "#66bb6a"), ("bank", "#42a5f5")):
        ys, xs = [], []
        for rule, by_view in sorted(samples.items()):
            ys += [rule] * len(by_view[view])
            xs += by_view[view]
        traces.append({"type": "box", "orientation": "h", "y": ys, "x": xs, "boxpoints": "all",
                       "name": tr(f"{view}_view", lang), "marker": {"color": colour}})
    return {"data": traces, "layout": {"boxmode": "group", "height": 160 + 50 * max(len(samples), 1),
                                       "title": {"text": tr("latency_dist", lang), "font": {"size": 13}, "x": 0.01, "xanchor": "left"},
                                       "xaxis": {"title": tr("latency_s", lang)},
                                       "margin": {"l": 180, "r": 10, "t": 60, "b": 40}}}


def precision_recall(rules: dict[str, dict], lang: str) -> dict:
    names = sorted(rules)
    traces = [{"type": "bar", "x": names, "y": [rules[r][key] for r in names], "name": tr(key, lang)}
              for key in ("precision", "recall")]
    return {"data": traces, "layout": {"barmode": "group", "yaxis": {"range": [0, 1.05]}, "height": 300,
                                       "title": {"text": tr("pr", lang), "font": {"size": 13}},
                                       "margin": {"l": 50, "r": 10, "t": 60, "b": 80}}}


def message_accounting(messages: dict, lang: str) -> dict:
    keys = [k for k in messages if isinstance(messages[k], (int, float))]
    names = [COUNTERS[k][1 if lang == "zh" else 0] if k in COUNTERS else k for k in keys]
    return {"data": [{"type": "bar", "orientation": "h", "y": names, "x": [messages[k] for k in keys],
                      "text": [f"{messages[k]:,}" for k in keys], "textposition": "outside", "cliponaxis": False,
                      "marker": {"color": "#5c6bc0"}}],
            "layout": {"title": {"text": tr("messages", lang), "font": {"size": 13}}, "height": 360,
                       "xaxis": {"type": "log" if max((messages[k] for k in keys), default=0) > 1000 else "linear"},
                       "yaxis": {"automargin": True},  # long counter names stay whole
                       "margin": {"l": 160, "r": 60, "t": 60, "b": 40}}}


def heatmap(x: list, y: list, z: list[list[float]], title: str, x_title: str, y_title: str) -> dict:
    return {"data": [{"type": "heatmap", "x": x, "y": y, "z": z, "colorscale": "RdYlGn_r", "texttemplate": "%{z}"}],
            "layout": {"title": {"text": title, "font": {"size": 13}}, "height": 420,
                       "xaxis": {"title": x_title, "type": "category"}, "yaxis": {"title": y_title, "type": "category"}}}


def tradeoff(points: list[tuple[float, float, str]], x_title: str, y_title: str, title: str) -> dict:
    return {"data": [{"type": "scatter", "mode": "lines+markers+text", "x": [p[0] for p in points],
                      "y": [p[1] for p in points], "text": [p[2] for p in points], "textposition": "top center"}],
            "layout": {"title": {"text": title, "font": {"size": 13}}, "height": 420,
                       "xaxis": {"title": x_title}, "yaxis": {"title": y_title}}}
