"""The Live tab: follow a running `cangtwin serve` through its bank API (see `live.py`).

The browser keeps only an unguessable connection id; the token stays on the server. A poll
every second reads the service's health, the collateral and receipts the token may see, and
the alerts so far; the page is redrawn only when something changed. Clicking an alert reads it
again (status and history), its evidence package as the API serves it, and *Verify* runs the
ledger's own check on that package.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import traceback
from dataclasses import dataclass
from datetime import datetime

import dash
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from cangtwin.dash_app.access import OPERATOR, Access
from cangtwin.dash_app.evidence import package_entries
from cangtwin.dash_app.i18n import tr
from cangtwin.dash_app.live import Connections, EvidencePending, LiveClient, LiveError, Snapshot

POLL_MS = 1000
log = logging.getLogger("cangtwin.dash")
CLI = "cli"  # the connection given on the command line
PANEL = {"padding": "8px 12px", "border": "1px solid #e0e0e0", "borderRadius": "6px", "marginBottom": "10px"}
ENTRY_STYLE = {"fontSize": "11px", "whiteSpace": "pre-wrap", "wordBreak": "break-all"}  # hashes wrap too
ERROR_STYLE = {"background": "#ffebee", "color": "#b71c1c", "padding": "8px 12px", "borderRadius": "6px",
               "margin": "6px 0", "fontWeight": "bold"}
BAND_COLOURS = {"ok": "#2e7d32", "warning": "#f9a825", "margin-call": "#ef6c00", "disposal": "#c62828"}
SEVERITY_COLOURS = {"critical": "#c62828", "major": "#ef6c00"}
CELL = {"padding": "2px 12px 2px 0", "textAlign": "left", "verticalAlign": "top"}


@dataclass(frozen=True)
class LiveConfig:
    """`cangtwin dash --live URL --token T [--keys parties.json]`."""

    url: str
    token: str
    keys: dict[str, bytes] | None = None


def live_panel(config: LiveConfig | None) -> html.Div:
    def label(key: str) -> html.Span:
        return html.Span(tr(key, "en"), id={"type": "i18n", "key": key})

    return html.Div([
        html.Div([
            label("live_url"),
            dcc.Input(id="live-url", type="text", value=config.url if config else "", placeholder="http://127.0.0.1:8080",
                      style={"width": "280px", "margin": "0 6px"}),
            label("live_token"),
            dcc.Input(id="live-token", type="password", value="", style={"width": "260px", "margin": "0 6px"},
                      placeholder=tr("live_token_cli", "en") if config else "ctw_…"),
            html.Button(label("live_connect"), id="live-connect", n_clicks=0),
        ], style={"display": "flex", "alignItems": "center", "flexWrap": "wrap", "gap": "4px"}),
        html.Div(id="live-error"),
        html.Div(tr("live_not_connected", "en"), id="live-status", style={"fontSize": "13px", "margin": "6px 0"}),
        dcc.Interval(id="live-tick", interval=POLL_MS, disabled=True),
        dcc.Store(id="live-conn", storage_type="session"),
        dcc.Store(id="live-digest"),
        dcc.Store(id="live-selected"),
        html.Div([
            html.Div([html.H4(label("live_alerts")), html.Div(id="live-alert-count", style={"fontSize": "12px"}),
                      html.Div(id="live-alerts")],
                     style={**PANEL, "flex": "1", "maxHeight": "520px", "overflowY": "auto"}),
            html.Div([html.Button(label("live_verify"), id="live-verify", n_clicks=0, style={"float": "right"}),
                      html.Div(id="live-verify-result", style={"marginBottom": "8px"}),
                      html.Div(id="live-alert-detail")], style={**PANEL, "flex": "2"}),
        ], style={"display": "flex", "gap": "10px"}),
        html.Div([html.H4(label("live_loans")), html.Div(id="live-loans")], style=PANEL),
        html.Div([html.H4(label("live_receipts")), html.Div(id="live-receipts")], style=PANEL),
    ], id="panel-live", style={"display": "none"})


def _error(text: str) -> html.Div:
    return html.Div(text, className="error", style=ERROR_STYLE)


def _time(t: float | None, lang: str) -> str:
    """Platform time (Unix seconds) in the dashboard host's own time zone: the API names no zone."""
    return "—" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _failure(exc: Exception) -> str:
    """A one-line message for the page; the traceback of anything unexpected goes to the server log."""
    if isinstance(exc, LiveError):
        return str(exc)
    log.error("live view callback failed:\n%s", traceback.format_exc())
    return f"internal error ({type(exc).__name__}): {exc}"


def status_line(client: LiveClient, snap: Snapshot, lang: str) -> str:
    me, health = snap.me, snap.health
    return tr("live_status", lang, url=client.base, name=me["name"], role=me["role"],
              bank=f" · {me['bank']}" if me.get("bank") else "", time=_time(health["platform_time"], lang),
              size=health["ledger_size"], signed=health["signed_size"], ruleset=health["ruleset"])


def alert_rows(alerts: list[dict], new: set[str], lang: str) -> html.Div:
    if not alerts:
        return html.Div(tr("no_live_alerts", lang), id="no-live-alerts")
    rows = []
    for a in reversed(alerts):  # newest first: a feed to watch
        rows.append(html.Div([
            html.Span(_time(a["visible_at"], lang)[11:], style={"fontFamily": "monospace", "marginRight": "6px"}),
            html.Span(a["severity"], style={"color": SEVERITY_COLOURS.get(a["severity"], "#546e7a"),
                                            "fontWeight": "bold", "marginRight": "6px"}),
            html.Span(a["rule"], className="live-rule", style={"marginRight": "6px"}),
            html.Span(a["id"], className="live-alert-id", style={"color": "#616161", "marginRight": "6px"}),
            html.Span(a["site"], style={"color": "#616161", "marginRight": "6px"}),
            html.Span(a["status"], className="live-alert-status", style={"fontSize": "11px"}),
            html.Div(a["summary"], style={"fontSize": "12px"}),
        ], id={"type": "live-alert-row", "index": a["id"]}, n_clicks=0, className="live-alert-row",
            style={"padding": "6px", "borderBottom": "1px solid #eeeeee", "cursor": "pointer",
                   "background": "#fff8e1" if a["id"] in new else None}))
    return html.Div(rows)


def loans_table(loans: list[dict], lang: str):
    if not loans:
        return html.Div(tr("no_live_loans", lang), id="no-live-loans")
    head = html.Tr([html.Th(tr(k, lang), style=CELL) for k in ("loan", "bank", "borrower", "amount", "value", "ltv",
                                                                 "band", "present", "absent")])
    rows = []
    for loan in loans:
        present = sum(1 for lot in loan["lots"] if lot["present"])
        band = loan["band"] or "—"
        rows.append(html.Tr([html.Td(v, style=CELL) for v in (
            loan["loan"], loan["bank"], loan["borrower"], f"{loan['amount_cny']:,.0f}",
            f"{loan['value_cny']:,.0f}" + (f" ({tr('unpriced', lang)}: {', '.join(loan['unpriced'])})" if loan["unpriced"] else ""),
            "—" if loan["ltv"] is None else f"{loan['ltv']:.2f}")] + [
            html.Td(band, className="live-band", style={**CELL, "color": BAND_COLOURS.get(band, "#212121"),
                                                         "fontWeight": "bold"}),
            html.Td(f"{present} / {len(loan['lots'])}", style=CELL),
            html.Td(", ".join(loan["absent"]) or "—", className="live-absent", style=CELL)],
            className="live-loan-row"))
    return html.Table([head, *rows], id="live-loans-table")


def receipts_table(receipts: list[dict], lang: str):
    if not receipts:
        return html.Div(tr("no_live_receipts", lang), id="no-live-receipts")
    head = html.Tr([html.Th(tr(k, lang), style=CELL) for k in ("receipt", "loan", "bank", "present", "absent")])
    rows = []
    for r in receipts:
        gone = [lot["id"] for lot in r["lots"] if not lot["present"]]
        rows.append(html.Tr([html.Td(v, style=CELL) for v in (
            r["receipt"], r["loan"], r["bank"], f"{len(r['lots']) - len(gone)} / {len(r['lots'])}", ", ".join(gone) or "—")],
            className="live-receipt-row"))
    return html.Table([head, *rows], id="live-receipts-table")


def alert_detail(client: LiveClient, alert_id: str, lang: str) -> html.Div:
    alert = client.alert(alert_id)
    rows = [
        (tr("rule", lang), f"{alert['rule']} · {alert['category']} · {alert['severity']}"),
        (tr("section", lang), alert["section"]),
        (tr("site", lang), alert["site"]),
        (tr("targets", lang), ", ".join(alert["targets"])),
        (tr("times", lang), f"{_time(alert['raised_at'], lang)} / {_time(alert['visible_at'], lang)}"),
        (tr("alert_status", lang), f"{alert['status']} (repeats {alert['repeats']})"),
        (tr("history", lang), "; ".join(f"{_time(h['at'], lang)[11:]} {h['status']} ({h['actor']})"
                                        for h in alert["history"])),
        (tr("detail", lang), json.dumps(alert["detail"], ensure_ascii=False)[:600]),
    ]
    table = html.Table([html.Tr([html.Th(k, style={**CELL, "paddingRight": "12px"}), html.Td(v)]) for k, v in rows])
    try:
        entries = package_entries(client.evidence(alert_id), f"{client.base}/v1/alerts/{alert_id}/evidence")
        evidence = html.Ul([html.Li([html.Div(tr("entry", lang, index=e.index, size=e.tree_size, n=e.proof_hashes)),
                                     html.Code(e.text[:400], style=ENTRY_STYLE)],
                                    className="live-evidence-entry") for e in entries],
                           style={"maxHeight": "300px", "overflowY": "auto"})
    except EvidencePending:
        evidence = html.Div(tr("evidence_pending", lang), id="live-evidence-pending")
    return html.Div([html.H4(f"{alert['id']}: {alert['summary']}", id="live-alert-title"), table,
                     html.H5(tr("evidence", lang)), evidence])


def verify_result(client: LiveClient, alert_id: str, lang: str) -> html.Div:
    try:
        report = client.verify(alert_id)
    except EvidencePending:
        return html.Div(tr("evidence_pending", lang), id="live-verify-status", style={"color": "#ef6c00"})
    if report.ok and report.keys_pinned:
        verdict, colour = tr("proof_valid", lang), "#2e7d32"
    elif report.ok:
        verdict, colour = tr("proof_unpinned", lang), "#ef6c00"
    else:
        verdict, colour = tr("proof_invalid", lang), "#c62828"
    checks = html.Ul([html.Li(f"{'✔' if c.ok else '✘'} {c.name} {c.detail}", style={"color": "#2e7d32" if c.ok else "#c62828"})
                      for c in report.checks], style={"maxHeight": "160px", "overflowY": "auto", "fontSize": "12px"})
    return html.Div([html.Div(verdict, id="live-verify-status", style={"fontWeight": "bold", "fontSize": "18px",
                                                                       "color": colour}), checks])


def register(app: Dash, access: Access, config: LiveConfig | None, connections: Connections) -> None:
    """The Live tab's callbacks; `config` is the command line's connection, made at start."""

    def client_for(key: str | None, token: str | None) -> LiveClient:
        """The connection a page holds; the command line's only for viewers allowed to use it."""
        if key == CLI and not access.open_mode and access.viewer(token) != OPERATOR:
            raise LiveError(tr("live_cli_operator_only", "en"))
        client = connections.get(key)
        if client is None:
            raise dash.exceptions.PreventUpdate
        return client

    @app.callback(Output("live-conn", "data"), Output("live-tick", "disabled"), Output("live-error", "children"),
                  Output("live-digest", "data", allow_duplicate=True), Output("live-selected", "data", allow_duplicate=True),
                  Output("live-alert-detail", "children", allow_duplicate=True),
                  Output("live-verify-result", "children", allow_duplicate=True),
                  Input("live-connect", "n_clicks"), State("live-url", "value"), State("live-token", "value"),
                  State("live-conn", "data"), State("viewer-token", "data"), State("lang", "value"),
                  prevent_initial_call="initial_duplicate")
    def connect(n, url, token, held, viewer_token, lang):
        cleared = (None, None, "", "")  # nothing of the previous connection stays on the page
        try:
            if not n:  # page load: resume this tab's connection, or the command line's
                key = held if connections.get(held) else (CLI if connections.get(CLI) else None)
                if key == CLI and not access.open_mode and access.viewer(viewer_token) != OPERATOR:
                    key = None
                return key, key is None, "", *cleared
            if not token and config is not None and (url or "").rstrip("/") == config.url.rstrip("/"):
                client_for(CLI, viewer_token)
                return CLI, False, "", *cleared
            key = secrets.token_urlsafe(24)
            connections.add(key, LiveClient(url, token or "", config.keys if config else None))
            return key, False, "", *cleared
        except Exception as exc:  # noqa: BLE001 - the page gets a message, never a traceback
            return None, True, _error(_failure(exc)), *cleared

    @app.callback(Output("live-status", "children"), Output("live-alerts", "children"),
                  Output("live-alert-count", "children"), Output("live-loans", "children"),
                  Output("live-receipts", "children"), Output("live-digest", "data"),
                  Output("live-error", "children", allow_duplicate=True),
                  Input("live-tick", "n_intervals"), Input("live-conn", "data"), Input("lang", "value"),
                  State("live-digest", "data"), State("viewer-token", "data"), prevent_initial_call=True)
    def poll(_n, key, lang, digest, viewer_token):
        if not key:  # not connected (or the connection failed): nothing of an earlier one stays
            return tr("live_not_connected", lang), "", "", "", "", None, no_update
        try:
            client = client_for(key, viewer_token)
            snap = client.poll()
        except dash.exceptions.PreventUpdate:
            raise
        except Exception as exc:  # noqa: BLE001
            return (no_update,) * 6 + (_error(_failure(exc)),)
        shown = {"alerts": [(a["id"], a["status"]) for a in snap.alerts], "loans": snap.loans,
                 "receipts": snap.receipts, "lang": lang, "key": key}
        new_digest = hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()
        status = status_line(client, snap, lang)
        if new_digest == digest and ctx.triggered_id == "live-tick":
            return status, no_update, no_update, no_update, no_update, no_update, ""
        return (status, alert_rows(snap.alerts, set(snap.new_alerts), lang),
                tr("live_alert_count", lang, n=len(snap.alerts), new=len(snap.new_alerts)),
                loans_table(snap.loans, lang), receipts_table(snap.receipts, lang), new_digest, "")

    @app.callback(Output("live-selected", "data"), Input({"type": "live-alert-row", "index": ALL}, "n_clicks"),
                  prevent_initial_call=True)
    def select(clicks):
        if not ctx.triggered_id or not any(clicks):
            raise dash.exceptions.PreventUpdate
        return ctx.triggered_id["index"]

    @app.callback(Output("live-alert-detail", "children"), Output("live-verify-result", "children"),
                  Input("live-selected", "data"), Input("lang", "value"), State("live-conn", "data"),
                  State("viewer-token", "data"), prevent_initial_call=True)
    def detail(alert_id, lang, key, viewer_token):
        if not alert_id:
            raise dash.exceptions.PreventUpdate
        try:
            return alert_detail(client_for(key, viewer_token), alert_id, lang), ""
        except dash.exceptions.PreventUpdate:
            raise
        except Exception as exc:  # noqa: BLE001
            return _error(_failure(exc)), ""

    @app.callback(Output("live-verify-result", "children", allow_duplicate=True), Input("live-verify", "n_clicks"),
                  State("live-selected", "data"), State("live-conn", "data"), State("viewer-token", "data"),
                  State("lang", "value"), prevent_initial_call=True)
    def verify(_n, alert_id, key, viewer_token, lang):
        if not alert_id:
            return tr("pick_alert", lang)
        try:
            return verify_result(client_for(key, viewer_token), alert_id, lang)
        except dash.exceptions.PreventUpdate:
            raise
        except Exception as exc:  # noqa: BLE001
            return _error(_failure(exc))
