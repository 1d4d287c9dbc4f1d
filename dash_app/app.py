"""The Dash app: run picker, replay, sensors, alerts with evidence, KPIs, compare and sweep.

Every callback that reads results goes through `_safely`, which turns bad input into a
readable message on the page (and anything unexpected into a one-line message, with the
traceback only in the server log), so the page never shows a stack trace.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import traceback
from pathlib import Path

import dash
from dash import ALL, Dash, Input, Output, Patch, State, ctx, dcc, html, no_update

from cangtwin.dash_app import evidence as ev
from cangtwin.dash_app import figures, kpis, live_view
from cangtwin.dash_app.access import OPERATOR, Access, may_see
from cangtwin.dash_app.i18n import tr
from cangtwin.dash_app.live import Connections, LiveClient
from cangtwin.dash_app.live_view import LiveConfig, live_panel
from cangtwin.dash_app.results import ResultsError, open_folder
from cangtwin.dash_app.sensors import downsample, png_data_url
from cangtwin.dash_app.store import RunCache, RunView
from cangtwin.dash_app.sweep import sweep_figures
from cangtwin.platform.config_file import InputError

log = logging.getLogger("cangtwin.dash")
TICK_MS = 500
SPEEDS = [1, 10, 60, 600, 3600]
TABS = ("replay", "sensors", "alerts", "kpis", "compare", "sweep", "live")
PANELS = {"replay": "panel-replay", "sensors": "panel-sensors", "alerts": "panel-alerts", "kpis": "kpis",
          "compare": "panel-compare", "sweep": "sweep-body", "live": "panel-live"}
PANEL = {"padding": "8px 12px", "border": "1px solid #e0e0e0", "borderRadius": "6px", "marginBottom": "10px"}
EMPTY = {"data": [], "layout": {"xaxis": {"visible": False}, "yaxis": {"visible": False}}}
ENTRY_STYLE = {"fontSize": "11px", "whiteSpace": "pre-wrap", "wordBreak": "break-all"}  # hashes wrap too
ERROR_STYLE = {"background": "#ffebee", "color": "#b71c1c", "padding": "8px 12px", "borderRadius": "6px",
               "margin": "6px 0", "fontWeight": "bold"}


def _message(exc: Exception) -> str:
    if isinstance(exc, (ResultsError, InputError)):
        return str(exc)
    log.error("dashboard callback failed:\n%s", traceback.format_exc())
    return f"internal error ({type(exc).__name__}): {exc}"


def _error_box(text: str) -> html.Div:
    return html.Div(text, className="error", style=ERROR_STYLE)


def _safely(fallback):
    """Run a callback; on failure return `fallback(message)` (the same outputs, with the message)."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args):
            try:
                return fn(*args)
            except dash.exceptions.PreventUpdate:
                raise
            except Exception as exc:  # noqa: BLE001 - the page must get a message, never a traceback
                return fallback(_message(exc))
        return inner
    return wrap


def _i18n(key: str, lang: str = "en", tag=html.Span, **style) -> html.Span:
    return tag(tr(key, lang), id={"type": "i18n", "key": key}, style=style or None)


def _graph(id_: str, height: int | None = None) -> dcc.Graph:
    return dcc.Graph(id=id_, config={"displaylogo": False}, style={"height": f"{height}px"} if height else None,
                     figure={"data": [], "layout": {"height": height or 300}})


def build_layout(initial: str, access: Access, live: LiveConfig | None = None) -> html.Div:
    header = html.Div([
        html.H2(_i18n("title"), style={"margin": "0 16px 0 0"}),
        dcc.RadioItems(id="lang", options=[{"label": "English", "value": "en"}, {"label": "中文", "value": "zh"}],
                       value="en", inline=True, style={"marginRight": "16px"}),
        _i18n("folder"), dcc.Input(id="folder", value=initial, type="text", debounce=True,
                                   style={"width": "300px", "margin": "0 6px"}),
        html.Button(_i18n("open"), id="open-folder", n_clicks=0),
        html.Span(" ", style={"width": "12px"}), _i18n("run"),
        dcc.Dropdown(id="run", options=[], style={"width": "300px", "margin": "0 6px"}, clearable=False),
    ], style={"display": "flex", "alignItems": "center", "flexWrap": "wrap", "gap": "4px"})
    login = html.Div([
        _i18n("user"), dcc.Dropdown(id="login-user", options=[], style={"width": "200px", "margin": "0 6px"}),
        _i18n("password"), dcc.Input(id="login-password", type="password", style={"width": "120px", "margin": "0 6px"},
                                     disabled=access.open_mode),
        html.Button(_i18n("login"), id="login-button", n_clicks=0),
        html.Span(id="viewer-label", style={"marginLeft": "12px", "fontWeight": "bold"}),
        html.Span(id="login-status", style={"marginLeft": "12px", "color": "#c62828"}),
        html.Span(tr("open_mode", "en") if access.open_mode else "", id="login-note",
                  style={"marginLeft": "12px", "color": "#757575", "fontSize": "12px"}),
    ], style={"display": "flex", "alignItems": "center", "flexWrap": "wrap", "gap": "4px", "marginTop": "6px"})
    replay = html.Div([
        html.Div([
            html.Button(html.Span(tr("play", "en"), id="play-label"), id="play", n_clicks=0, style={"width": "80px"}),
            _i18n("speed", marginLeft="12px"),
            dcc.Dropdown(id="speed", options=[{"label": f"{s}×", "value": s} for s in SPEEDS], value=60,
                         clearable=False, style={"width": "100px", "margin": "0 6px"}),
            html.Span(id="cursor-label", style={"fontFamily": "monospace", "marginLeft": "12px"}),
            html.Div([_i18n("warehouse", marginLeft="16px"),
                      dcc.Dropdown(id="warehouse", options=[], clearable=False, style={"width": "140px", "margin": "0 6px"})],
                     id="warehouse-picker", style={"display": "none"}),
        ], style={"display": "flex", "alignItems": "center"}),
        dcc.Slider(id="cursor", min=0, max=1, step=1, value=0, marks=None, updatemode="mouseup",
                   tooltip={"always_visible": False}, allow_direct_input=False),  # raw seconds read as noise
        dcc.Interval(id="tick", interval=TICK_MS, disabled=True),
        html.Div([_graph("floor", 540)], style=PANEL),
        html.Div(id="positions-note", style={"fontSize": "12px", "color": "#616161"}),
        html.Div([_graph("timeline", 230)], style=PANEL),
    ], id="panel-replay")
    sensors = html.Div([
        html.Div(id="sensors-note"),
        html.Div([html.Div([
            html.Div([
                html.Div([dcc.Dropdown(id="lidar-device", options=[], style={"width": "200px"}, clearable=False),
                          dcc.Dropdown(id="lidar-bay", options=[], placeholder="whole scan",
                                       style={"width": "200px", "marginLeft": "6px"})], style={"display": "flex"}),
                dcc.Loading(_graph("lidar", 480)), html.Div(id="lidar-caption", style={"fontSize": "12px"}),
            ], style={**PANEL, "flex": "1"}),
            html.Div([
                _i18n("camera", tag=html.H4),
                dcc.Dropdown(id="camera-device", options=[], style={"width": "220px"}, clearable=False),
                html.Img(id="camera-img", style={"width": "100%", "maxWidth": "640px", "imageRendering": "pixelated",
                                                 "marginTop": "6px"}),
                html.Div(id="camera-caption", style={"fontSize": "12px"}),
            ], style={**PANEL, "flex": "1"}),
        ], style={"display": "flex", "gap": "10px"}),
        html.Div([_graph("scale", 300)], style=PANEL)], id="sensor-panels"),
    ], id="panel-sensors", style={"display": "none"})
    alerts = html.Div([
        html.Div([_i18n("feed", tag=html.H4), html.Div(id="alert-feed")], style={**PANEL, "flex": "1", "maxHeight": "640px",
                                                                                 "overflowY": "auto"}),
        html.Div([html.Button(_i18n("verify"), id="verify", n_clicks=0, style={"float": "right"}),
                  html.Div(id="verify-result", style={"marginBottom": "8px"}),
                  html.Div(id="alert-detail")], style={**PANEL, "flex": "2"}),
    ], id="panel-alerts", style={"display": "none", "gap": "10px"})
    kpi = html.Div(id="kpis", style={"display": "none"})
    compare = html.Div([
        html.Div([_i18n("compare_with"),
                  dcc.Input(id="compare-folder", type="text", debounce=True, placeholder="/path/to/results",
                            style={"width": "360px", "margin": "0 6px"}),
                  dcc.Dropdown(id="compare-a", options=[], style={"width": "320px"}, clearable=False),
                  dcc.Dropdown(id="compare-b", options=[], style={"width": "320px", "marginLeft": "6px"}, clearable=False)],
                 style={"display": "flex", "alignItems": "center", "flexWrap": "wrap", "gap": "4px"}),
        html.Div(id="compare-body"),
    ], id="panel-compare", style={"display": "none"})
    sweep = html.Div(id="sweep-body", style={"display": "none"})
    return html.Div([
        dcc.Store(id="viewer-token", storage_type="session"),
        dcc.Store(id="folder-state"),
        dcc.Store(id="selected-alert"),
        dcc.Store(id="lidar-key"),
        header, login,
        html.Div(id="folder-error"), html.Div(id="run-error"), html.Div(id="folder-summary",
                                                                          style={"fontSize": "13px", "margin": "4px 0"}),
        dcc.Tabs(id="tabs", value="replay", children=[dcc.Tab(label=tr(f"tab_{t}", "en"), value=t, id=f"tab-{t}")
                                                      for t in TABS]),
        html.Div([replay, sensors, alerts, kpi, compare, sweep, live_panel(live)], style={"marginTop": "8px"}),
    ], style={"fontFamily": "system-ui, 'Noto Sans CJK SC', sans-serif", "padding": "10px 16px"})


def create_app(results_dir: str | Path | None, access: Access | None = None, live: LiveConfig | None = None) -> Dash:
    """The app; with `live`, it connects to that bank API at once (a LiveError if it cannot)."""
    access = access or Access()
    runs = RunCache()
    connections = Connections()
    if live is not None:
        connections.add(live_view.CLI, LiveClient(live.url, live.token, live.keys))
    app = Dash(__name__, title="cangtwin", update_title=None, suppress_callback_exceptions=True)
    app.layout = build_layout(str(results_dir or ""), access, live)
    app.server.config["runs"] = runs
    live_view.register(app, access, live, connections)

    def viewer_of(token):
        return access.viewer(token)

    def run_of(path: str | None) -> RunView:
        if not path:
            raise dash.exceptions.PreventUpdate
        return runs.get(path)

    # --- language -------------------------------------------------------------------------
    @app.callback(Output({"type": "i18n", "key": ALL}, "children"),
                  *[Output(f"tab-{t}", "label") for t in TABS], Output("login-note", "children"),
                  Input("lang", "value"), State({"type": "i18n", "key": ALL}, "id"))
    def relabel(lang, ids):
        return ([tr(i["key"], lang) for i in ids], *[tr(f"tab_{t}", lang) for t in TABS],
                tr("open_mode", lang) if access.open_mode else "")

    # --- tabs ---------------------------------------------------------------------------------
    @app.callback(*[Output(PANELS[t], "style") for t in TABS], Input("tabs", "value"))
    def show_tab(tab):
        styles = []
        for t in TABS:
            shown = {"display": "flex", "gap": "10px"} if t == "alerts" else {"display": "block"}
            styles.append(shown if t == tab else {"display": "none"})
        return styles

    # --- folders and runs ------------------------------------------------------------------------
    def folder_failed(message):
        return None, [], None, _error_box(message)

    @app.callback(Output("folder-state", "data"), Output("run", "options"), Output("run", "value"),
                  Output("folder-error", "children"),
                  Input("open-folder", "n_clicks"), Input("folder", "value"))
    @_safely(folder_failed)
    def open_results(_n, path):
        if not path:
            return None, [], None, ""
        folder = open_folder(path)
        options = [{"label": name, "value": str(p)} for name, p in folder.runs.items()]
        if not options and folder.kind != "sweep":
            raise ResultsError(f"{folder.path}: holds no finished run")
        state = {"path": str(folder.path), "kind": folder.kind, "runs": {o["label"]: o["value"] for o in options},
                 "document": folder.document if folder.kind != "run" else {}}
        return state, options, options[0]["value"] if options else None, ""

    @app.callback(Output("folder-summary", "children"), Input("folder-state", "data"), Input("lang", "value"))
    def folder_summary(folder, lang):
        if not folder:
            return ""
        if folder["kind"] == "suite":
            return tr("suite_summary", lang, n=len(folder["runs"]), status=folder["document"].get("status"))
        return f"{tr('kind_' + folder['kind'], lang)}: {folder['path']}"

    def run_failed(message):
        return _error_box(message), 1, 0, {}, no_update, [], None, {"display": "none"}

    @app.callback(Output("run-error", "children"), Output("cursor", "max"), Output("cursor", "value"),
                  Output("cursor", "marks"), Output("login-user", "options"),
                  Output("warehouse", "options"), Output("warehouse", "value"), Output("warehouse-picker", "style"),
                  Input("run", "value"))
    @_safely(run_failed)
    def load(path):
        run = run_of(path)
        span = max(math.ceil(run.replay.end - run.replay.start), 1)
        step = next((s for s in (60, 300, 600, 1800, 3600, 7200) if span / s <= 12), 14400)
        marks = {int(s): figures.clock(run.replay.start + s, run.timezone)[:5] for s in range(0, span + 1, step)}
        if access.open_mode:
            users = [{"label": tr("operator", "en"), "value": OPERATOR}] + [
                {"label": bank, "value": bank} for bank in sorted(set(run.replay.loan_bank.values())
                                                                  | set(run.replay.filing_bank.values()))]
        else:
            users = [{"label": name, "value": name} for name in sorted(access.users)]
        warehouses = list(run.warehouses)
        picker = {"display": "flex", "alignItems": "center"} if warehouses else {"display": "none"}
        return "", span, 0, marks, users, warehouses, warehouses[0] if warehouses else None, picker

    # --- login ----------------------------------------------------------------------------------
    @app.callback(Output("viewer-token", "data"), Output("login-status", "children"),
                  Input("login-button", "n_clicks"), State("login-user", "value"), State("login-password", "value"),
                  State("lang", "value"), prevent_initial_call=True)
    def login(_n, user, password, lang):
        token = access.login(user, password)
        return token, "" if token else tr("bad_login", lang)

    @app.callback(Output("viewer-label", "children"), Input("viewer-token", "data"), Input("lang", "value"))
    def viewer_label(token, lang):
        viewer = access.viewer(token)
        shown = tr("operator", lang) if viewer == OPERATOR else viewer
        return f"{tr('logged_in_as', lang)}: {shown}" if viewer else tr("not_logged_in", lang)

    # --- replay -----------------------------------------------------------------------------------
    @app.callback(Output("tick", "disabled"), Input("play", "n_clicks"), State("tick", "disabled"),
                  prevent_initial_call=True)
    def play_pause(_n, disabled):
        return not disabled  # a click flips it

    @app.callback(Output("play-label", "children"), Input("tick", "disabled"), Input("lang", "value"))
    def play_label(disabled, lang):
        return tr("play" if disabled else "pause", lang)

    @app.callback(Output("cursor", "value", allow_duplicate=True), Output("tick", "disabled", allow_duplicate=True),
                  Input("tick", "n_intervals"), Input("timeline", "clickData"),
                  State("cursor", "value"), State("cursor", "max"), State("speed", "value"), State("run", "value"),
                  prevent_initial_call=True)
    def advance(_n, click, value, top, speed, path):
        if ctx.triggered_id == "timeline":
            if not click or not path:
                raise dash.exceptions.PreventUpdate
            run = run_of(path)
            x = click["points"][0]["x"]
            return min(max(figures.parse_clock(x, run.timezone) - run.replay.start, 0), top), no_update
        nxt = (value or 0) + speed * TICK_MS / 1000
        if nxt >= top:
            return top, True  # the end: stop playing
        return nxt, no_update

    def frame_failed(message):
        return EMPTY, "", message, EMPTY

    @app.callback(Output("floor", "figure"), Output("cursor-label", "children"), Output("positions-note", "children"),
                  Output("timeline", "figure"),
                  Input("cursor", "value"), Input("run", "value"), Input("lang", "value"), Input("viewer-token", "data"),
                  Input("warehouse", "value"))
    @_safely(frame_failed)
    def frame(value, path, lang, token, warehouse):
        if not path:
            return EMPTY, "", "", EMPTY  # no run open (a bad folder's message is above)
        run = run_of(path)
        return replay_frame(run, value or 0, lang, viewer_of(token), ctx.triggered_id, warehouse)

    # --- sensors ------------------------------------------------------------------------------------
    def sensors_failed(message):
        return _error_box(message), [], None, [], None, [], no_update, {"display": "none"}

    @app.callback(Output("sensors-note", "children"), Output("lidar-device", "options"), Output("lidar-device", "value"),
                  Output("camera-device", "options"), Output("camera-device", "value"), Output("lidar-bay", "options"),
                  Output("scale", "figure"), Output("sensor-panels", "style"),
                  Input("run", "value"), Input("lang", "value"), Input("tabs", "value"))
    @_safely(sensors_failed)
    def sensor_sources(path, lang, tab):
        if tab != "sensors":
            raise dash.exceptions.PreventUpdate  # computed when the tab is shown
        run = run_of(path)
        s = run.sensors
        if s is None:
            return (html.Div(tr("no_sensors", lang), id="no-sensors", style=PANEL), [], None, [], None, [], no_update,
                    {"display": "none"})
        lidars = sorted(s.scans)
        cameras = sorted(s.frames)
        bays = [{"label": b.id, "value": b.id} for b in run.site.spec.bays]
        return ("", lidars, lidars[0] if lidars else None, cameras, cameras[0] if cameras else None, bays,
                figures.weighbridge_trace(s.scale, run.timezone, lang, None), {"display": "block"})

    @app.callback(Output("lidar", "figure"), Output("lidar-caption", "children"), Output("lidar-key", "data"),
                  Input("lidar-device", "value"), Input("lidar-bay", "value"), Input("cursor", "value"),
                  Input("tabs", "value"), State("run", "value"), State("lang", "value"), State("lidar-key", "data"))
    @_safely(lambda m: ({"data": [], "layout": {"title": {"text": m}}}, m, None))
    def lidar(device, bay, value, tab, path, lang, shown):
        run = run_of(path)
        if tab != "sensors" or run.sensors is None or not device:
            raise dash.exceptions.PreventUpdate
        return lidar_view(run, device, bay, value or 0, lang, shown)

    @app.callback(Output("camera-img", "src"), Output("camera-caption", "children"),
                  Input("camera-device", "value"), Input("cursor", "value"), Input("tabs", "value"),
                  State("run", "value"), State("lang", "value"))
    @_safely(lambda m: (None, m))
    def camera(device, value, tab, path, lang):
        run = run_of(path)
        if tab != "sensors" or run.sensors is None or not device:
            raise dash.exceptions.PreventUpdate
        return camera_view(run, device, value or 0, lang)

    # --- alerts -------------------------------------------------------------------------------------
    @app.callback(Output("alert-feed", "children"), Input("run", "value"), Input("viewer-token", "data"),
                  Input("lang", "value"))
    @_safely(_error_box)
    def feed(path, token, lang):
        if not path:
            return ""
        run = run_of(path)
        return alert_feed(run, viewer_of(token), lang)

    @app.callback(Output("selected-alert", "data"), Input({"type": "alert-row", "index": ALL}, "n_clicks"),
                  prevent_initial_call=True)
    def select(clicks):
        if not ctx.triggered_id or not any(clicks):
            raise dash.exceptions.PreventUpdate
        return ctx.triggered_id["index"]

    @app.callback(Output("alert-detail", "children"), Output("verify-result", "children"),
                  Input("selected-alert", "data"), Input("viewer-token", "data"), Input("lang", "value"),
                  State("run", "value"))
    @_safely(lambda m: (_error_box(m), ""))
    def detail(alert_id, token, lang, path):
        run = run_of(path)
        if not alert_id:
            return html.Div(tr("pick_alert", lang)), ""
        return alert_detail(run, alert_id, viewer_of(token), lang), ""

    @app.callback(Output("verify-result", "children", allow_duplicate=True), Input("verify", "n_clicks"),
                  State("selected-alert", "data"), State("viewer-token", "data"), State("run", "value"),
                  State("lang", "value"), prevent_initial_call=True)
    @_safely(_error_box)
    def verify(_n, alert_id, token, path, lang):
        run = run_of(path)
        if not alert_id:
            return tr("pick_alert", lang)
        return verify_view(run, alert_id, viewer_of(token), lang)

    # --- KPIs, compare, sweep ----------------------------------------------------------------------
    @app.callback(Output("kpis", "children"), Input("run", "value"), Input("folder-state", "data"),
                  Input("viewer-token", "data"), Input("lang", "value"), Input("tabs", "value"))
    @_safely(_error_box)
    def kpi(path, folder, token, lang, tab):
        if tab != "kpis":
            raise dash.exceptions.PreventUpdate
        run = run_of(path)
        return kpi_view(run, folder, runs, viewer_of(token), lang)

    @app.callback(Output("compare-a", "options"), Output("compare-a", "value"), Output("compare-b", "options"),
                  Output("compare-b", "value"), Output("compare-body", "children", allow_duplicate=True),
                  Input("folder-state", "data"), Input("compare-folder", "value"), prevent_initial_call="initial_duplicate")
    @_safely(lambda m: (no_update, no_update, no_update, no_update, _error_box(m)))
    def compare_choices(folder, other):
        options_a = _compare_options(folder["path"], folder["kind"], folder["runs"]) if folder else []
        options_b = list(options_a)
        if other:
            extra = open_folder(other)
            options_b = _compare_options(str(extra.path), extra.kind, {k: str(v) for k, v in extra.runs.items()},
                                         prefix=f"{extra.path.name}: ") + options_b
        a = options_a[0]["value"] if options_a else None
        b = options_b[0]["value"] if other and options_b else (options_a[1]["value"] if len(options_a) > 1 else a)
        return options_a, a, options_b, b, ""

    @app.callback(Output("compare-body", "children"), Input("compare-a", "value"), Input("compare-b", "value"),
                  Input("viewer-token", "data"), Input("lang", "value"), Input("tabs", "value"))
    @_safely(_error_box)
    def compare(a, b, token, lang, tab):
        if tab != "compare" or not a or not b:
            raise dash.exceptions.PreventUpdate
        return compare_view(_side(a, runs), _side(b, runs), viewer_of(token), lang)

    @app.callback(Output("sweep-body", "children"), Input("folder-state", "data"), Input("lang", "value"))
    @_safely(_error_box)
    def sweep(folder, lang):
        if not folder or folder.get("kind") != "sweep":
            return html.Div(tr("not_a_sweep", lang))
        return [dcc.Graph(figure=f, config={"displaylogo": False}) for f in sweep_figures(folder["document"], lang)]

    return app


# --- views (plain functions, so tests and the benchmark call them without a browser) -----------

def replay_frame(run: RunView, offset: float, lang: str, viewer: str | None, trigger=None, warehouse: str | None = None):
    """One replay frame: the floor plan and clock at `offset` s into the run (the timed callback).

    A multi-warehouse run draws one warehouse's plan (`warehouse`, else its first)."""
    t = run.replay.start + offset
    plan = run.warehouses.get(warehouse) or next(iter(run.warehouses.values())) if run.warehouses else None
    floor = figures.floor_plan(run.replay, t, lang, viewer, plan)
    label = figures.clock(t, run.timezone, with_date=True)
    note = tr("positions_recorded" if run.replay.positions_recorded else "positions_derived", lang)
    if trigger == "cursor":
        timeline = Patch()
        timeline["layout"]["shapes"][0]["x0"] = figures.clock(t, run.timezone, True)
        timeline["layout"]["shapes"][0]["x1"] = figures.clock(t, run.timezone, True)
    else:
        timeline = figures.timeline(run.replay, lang, kpis.visible_alerts(run.result, run.replay, viewer), t)
    return floor, label, note, timeline


def lidar_view(run: RunView, device: str, bay: str | None, offset: float, lang: str, shown):
    found = run.sensors.scan_at(device, run.replay.start + offset)
    if found is None:
        raise dash.exceptions.PreventUpdate
    at, points = found
    key = [device, at, bay]
    if shown == key:
        raise dash.exceptions.PreventUpdate  # same scan already on the page
    if bay:
        rect = next(b.rect for b in run.site.spec.bays if b.id == bay)
        inside = ((points[:, 0] >= rect.x0 - 0.5) & (points[:, 0] <= rect.x1 + 0.5)
                  & (points[:, 1] >= rect.y0 - 0.5) & (points[:, 1] <= rect.y1 + 0.5))
        points = points[inside]
    thin = downsample(points)
    caption = tr("points_shown", lang, shown=f"{len(thin):,}", total=f"{len(points):,}",
                 at=figures.clock(at, run.timezone))
    title = f"{tr('lidar', lang)} · {device}" + (f" · {bay}" if bay else "")
    return figures.point_cloud(thin, title), caption, key


def camera_view(run: RunView, device: str, offset: float, lang: str):
    found = run.sensors.frame_at(device, run.replay.start + offset)
    if found is None:
        return None, tr("no_frame", lang)
    at, kind, png = found
    return png_data_url(png), tr("frame_at", lang, kind=kind, camera=device, at=figures.clock(at, run.timezone))


def _fmt_time(run: RunView, t: float | None) -> str:
    return "—" if t is None else figures.clock(t, run.timezone, with_date=True)


def alert_feed(run: RunView, viewer: str | None, lang: str):
    alerts = kpis.visible_alerts(run.result, run.replay, viewer)
    mark = {"data-viewer": viewer or ""}  # which viewer this list was made for (tests wait on it)
    if not alerts:
        return html.Div(tr("no_alerts", lang), id="no-alerts", **mark)
    explained = run.result["explained_by"]
    rows = []
    for a in sorted(alerts, key=lambda a: a["raised_at"]):
        why = ", ".join(explained.get(a["id"], [])) or tr("false_alarm", lang)
        colour = {"critical": "#c62828", "major": "#ef6c00"}.get(a["severity"], "#546e7a")
        rows.append(html.Div([
            html.Span(figures.clock(a["raised_at"], run.timezone), style={"fontFamily": "monospace", "marginRight": "6px"}),
            html.Span(a["severity"], style={"color": colour, "fontWeight": "bold", "marginRight": "6px"}),
            html.Span(a["rule"], style={"marginRight": "6px"}),
            html.Span(a["id"], className="alert-id", style={"color": "#616161", "marginRight": "6px"}),
            html.Span(a["site"], className="alert-site", style={"color": "#616161"}) if run.warehouses else None,
            html.Div(a["summary"], style={"fontSize": "12px"}),
            html.Div(f"{tr('explained_by', lang)}: {why}", style={"fontSize": "11px", "color": "#757575"}),
        ], id={"type": "alert-row", "index": a["id"]}, n_clicks=0, className="alert-row",
            style={"padding": "6px", "borderBottom": "1px solid #eeeeee", "cursor": "pointer"}))
    return html.Div(rows, id="feed-list", **mark)


def _alert(run: RunView, alert_id: str, viewer: str | None) -> dict:
    alert = next((a for a in run.result["alerts"] if a["id"] == alert_id), None)
    if alert is None or not (viewer == OPERATOR or may_see(viewer, run.replay.banks_of(alert))):
        raise ResultsError(f"alert {alert_id}: not in this run or not visible to {viewer}")
    return alert


def alert_detail(run: RunView, alert_id: str, viewer: str | None, lang: str):
    alert = _alert(run, alert_id, viewer)
    entry = ev.rule_entry(alert, run.rulesets)
    money = ev.money_at_risk(alert, run.replay.lot_mass, {**run.prices.commodity, **_lot_commodities(run)}, run.prices)
    rows = [
        (tr("rule", lang), f"{alert['rule']} · {alert['category']} · {alert['severity']}"),
        (tr("section", lang), alert.get("section", "—")),
        (tr("site", lang), alert.get("site", "—")),
        (tr("params", lang), json.dumps(entry["params"], ensure_ascii=False) if entry
         else tr("rule_file_unknown", lang, ruleset=alert.get("ruleset"))),
        (tr("money", lang), "—" if money is None else f"¥{money:,.0f}"),
        (tr("banks", lang), ", ".join(sorted(run.replay.banks_of(alert))) or "—"),
        (tr("times", lang), f"{_fmt_time(run, alert['raised_at'])} / {_fmt_time(run, alert.get('visible_at'))}"),
    ]
    table = html.Table([html.Tr([html.Th(k, style={"textAlign": "left", "paddingRight": "12px", "verticalAlign": "top"}),
                                 html.Td(v)]) for k, v in rows])
    path = ev.package_path(run.path, run.result, alert_id)
    if path is None:
        entries = html.Div(tr("no_package", lang))
    else:
        entries = html.Ul([html.Li([html.Div(tr("entry", lang, index=e.index, size=e.tree_size, n=e.proof_hashes)),
                                    html.Code(e.text[:400], style=ENTRY_STYLE)],
                                   className="evidence-entry") for e in ev.evidence_entries(path)],
                          style={"maxHeight": "360px", "overflowY": "auto"})
    return html.Div([html.H4(f"{alert['id']}: {alert['summary']}", id="alert-title"), table,
                     html.H5(tr("evidence", lang)), entries])


def _lot_commodities(run: RunView) -> dict[str, str]:
    bays = {b.id: b.commodity for b in run.site.spec.bays}
    return {lot: bays[bay] for lot, bay in run.replay.lot_bay.items() if bay in bays}


def verify_view(run: RunView, alert_id: str, viewer: str | None, lang: str):
    _alert(run, alert_id, viewer)
    report = ev.verify(run.path, run.result, alert_id)
    if isinstance(report, str):
        return html.Div(f"{tr('no_package', lang)}: {report}", id="verify-status", style=ERROR_STYLE)
    ok = report.ok
    checks = html.Ul([html.Li(f"{'✔' if c.ok else '✘'} {c.name} {c.detail}", style={"color": "#2e7d32" if c.ok else "#c62828"})
                      for c in report.checks], style={"maxHeight": "160px", "overflowY": "auto", "fontSize": "12px"})
    return html.Div([html.Div(tr("proof_valid" if ok else "proof_invalid", lang), id="verify-status",
                              style={"fontWeight": "bold", "fontSize": "18px",
                                     "color": "#2e7d32" if ok else "#c62828"}), checks])


def _latency_panel(run: RunView, viewer: str | None, lang: str):
    found = sorted(kpis.view_of(run.result, run.replay, viewer)["detections"].items())
    if not found:
        return html.Div(f"{_run_name(run)}: {tr('no_detections', lang)}", className="no-detections")
    return dcc.Graph(figure=figures.latency_stages(found, lang), config={"displaylogo": False})


def _run_name(run: RunView) -> str:
    return f"{run.result['provenance']['scenario']} (seed {run.result['provenance']['seed']})"


def kpi_view(run: RunView, folder: dict | None, runs: RunCache, viewer: str | None, lang: str):
    suite = bool(folder and folder.get("kind") == "suite")
    members = [runs.get(p) for p in folder["runs"].values()] if suite else [run]
    views = [kpis.view_of(r.result, r.replay, viewer) for r in members]
    mine = kpis.view_of(run.result, run.replay, viewer)
    counts = kpis.rule_counts(views)
    rules = {r: {"precision": c["precision"] or 0.0, "recall": c["recall"] or 0.0} for r, c in counts.items()}
    fa = len(mine["false_alarms"]) / site_days(run)
    cell = {"padding": "2px 12px 2px 0", "textAlign": "left"}
    heads = [tr(k, lang) for k in ("rule_col", "alerts_col", "explained_col", "labels_col", "caught_col", "precision",
                                   "recall")]
    table = html.Table([html.Tr([html.Th(h, style=cell) for h in heads])] +
                       [html.Tr([html.Td("—" if v is None else v, style=cell)
                                 for v in (r, c["alerts"], c["explained"], c["labels"], c["caught"], c["precision"],
                                           c["recall"])]) for r, c in counts.items()], id="rule-table")
    scope = tr("scope_suite" if suite else "scope_run", lang, run=_run_name(run), n=len(members))
    return html.Div([
        html.Div(scope, id="kpi-scope", style={"fontSize": "13px", "color": "#616161", "marginBottom": "6px"}),
        html.Div([html.B(f"{tr('fa_day', lang)}: "), html.Span(f"{fa:.3f}", id="fa-per-day"),
                  html.Span(" · " + tr("speed_line", lang, **run.result["wall"]))], style=PANEL),
        html.Div([_latency_panel(run, viewer, lang)], style=PANEL),
        html.Div([dcc.Graph(figure=figures.latency_distribution(kpis.latency_samples(views), lang))], style=PANEL),
        html.Div([dcc.Graph(figure=figures.precision_recall(rules, lang)), table], style=PANEL),
        html.Div([dcc.Graph(figure=figures.message_accounting(run.result["messages"], lang))], style=PANEL),
        *([html.Div([html.H4(tr("per_warehouse", lang)), _per_warehouse(run, members, viewer, lang)], style=PANEL)]
          if run.warehouses else []),
    ])


def _per_warehouse(run: RunView, members: list[RunView], viewer: str | None, lang: str) -> html.Table:
    """Alerts per warehouse of a multi-warehouse run (cloud-side registry and value alerts are `cloud`)."""
    counts: dict[str, list[int]] = {w: [0, 0] for w in run.warehouses}
    for member in members:
        view = kpis.view_of(member.result, member.replay, viewer)
        false = set(view["false_alarms"])
        for a in view["alerts"]:
            row = counts.setdefault(a["site"], [0, 0])
            row[0] += 1
            row[1] += a["id"] in false
    cell = {"padding": "2px 12px 2px 0", "textAlign": "left"}
    return html.Table([html.Tr([html.Th(tr(k, lang), style=cell) for k in ("warehouse", "alerts_col", "false_alarms")])] +
                      [html.Tr([html.Td(v, style=cell) for v in (w, n, f)], className="warehouse-row")
                       for w, (n, f) in counts.items()], id="warehouse-table")


def site_days(run: RunView) -> float:
    """The run's length in site-days, as the harness counted it when it has false alarms to count."""
    per_day, count = run.result.get("false_alarms_per_site_day"), len(run.result["false_alarms"])
    if per_day and count:
        return count / per_day
    return max(run.replay.end - run.replay.start, 1.0) / 86400


WHOLE = "all:"  # a compare choice standing for every run of a suite folder


def _compare_options(path: str, kind: str, members: dict[str, str], prefix: str = "") -> list[dict]:
    options = [{"label": f"{prefix}{name}", "value": run} for name, run in members.items()]
    if kind == "suite":
        options.insert(0, {"label": f"{prefix}{tr('whole_suite', 'en')} ({len(members)})", "value": WHOLE + path})
    return options


def _side(choice: str, runs: RunCache) -> tuple[str, list[RunView]]:
    """(name, runs) of a compare choice: one run folder, or all runs of a suite."""
    if choice.startswith(WHOLE):
        folder = open_folder(choice[len(WHOLE):])
        return f"{folder.path.name} ({len(folder.runs)})", [runs.get(p) for p in folder.runs.values()]
    run = runs.get(choice)
    return _run_name(run), [run]


def compare_view(a: tuple[str, list[RunView]], b: tuple[str, list[RunView]], viewer: str | None, lang: str):
    def summary(members: list[RunView]) -> dict:
        return kpis.summary([kpis.view_of(r.result, r.replay, viewer) for r in members],
                            sum(site_days(r) for r in members))

    def status(members: list[RunView]) -> str:
        found = {r.result["status"] for r in members}
        return next((s for s in ("FAILURE", "ACCEPTABLE", "SUCCESS") if s in found), "—")

    sa, sb = summary(a[1]), summary(b[1])
    head = {"padding": "2px 14px 2px 0", "textAlign": "left"}
    header = html.Tr([html.Th(tr("metric", lang), style=head), html.Th(a[0], style=head), html.Th(b[0], style=head)])
    shown = lambda v: "—" if v is None else f"{v:,}" if isinstance(v, int) else str(v)  # noqa: E731
    cell = {"padding": "2px 14px 2px 0"}
    body = [html.Tr([html.Td(tr(k, lang), style=cell), html.Td(shown(sa[k]), style=cell), html.Td(shown(sb[k]), style=cell)],
                    className="compare-row") for k in sa]
    statuses = html.Tr([html.Td(tr("status", lang)), html.Td(status(a[1])), html.Td(status(b[1]))])

    def panel(members: list[RunView]):
        if len(members) == 1:
            return _latency_panel(members[0], viewer, lang)
        views = [kpis.view_of(r.result, r.replay, viewer) for r in members]
        return dcc.Graph(figure=figures.latency_distribution(kpis.latency_samples(views), lang),
                         config={"displaylogo": False})

    side = html.Div([html.Div([panel(m)], style={**PANEL, "flex": "1 1 0", "minWidth": "0"}) for m in (a[1], b[1])],
                    style={"display": "flex", "gap": "10px"})
    return html.Div([html.Table([header, statuses, *body], id="compare-table", style={"margin": "8px 0"}), side])
