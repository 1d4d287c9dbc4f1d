"""The terminal summary of a run (rich tables): what was caught, how fast, and what it cost."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from cangtwin.scenarios.result import all_criteria

_STYLE = {"SUCCESS": "green", "ACCEPTABLE": "yellow", "FAILURE": "bold red"}


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f} s"


def print_summary(console: Console, result: dict, timezone: str) -> None:
    prov = result["provenance"]
    tz = ZoneInfo(timezone)
    console.rule(f"[bold]{prov['scenario']}[/] · site {prov['site']} · seed {prov['seed']} · {prov['ruleset']}")

    detections = Table(title="Injected frauds and their detection (simulated time)", title_justify="left")
    for col in ("label", "kind", "targets", "onset", "caught by", "alert", "edge latency", "bank-visible latency",
                "money at risk"):
        detections.add_column(col)
    for label in result["labels"]:
        d = result["detections"].get(label["id"])
        risk = result.get("money_at_risk", {}).get(label["id"])
        missed = "[bold red]MISSED[/]" if label["primary_rules"] else "[dim]—[/]"
        onset = "—" if label["onset"] is None else datetime.fromtimestamp(label["onset"], tz).strftime("%H:%M:%S.%f")[:-3]
        detections.add_row(
            label["id"], label["kind"], ", ".join(label["targets"]), onset,
            d["rule"] if d else missed, d["alert"] if d else "—",
            _seconds(d["edge_latency_s"]) if d else "—", _seconds(d["bank_latency_s"]) if d else "—",
            f"¥{risk['value_cny']:,.0f} ({risk['exposure_cny_h']:,.0f} ¥·h)" if risk and risk["value_cny"] else "—",
        )
    console.print(detections)
    for label_id, d in result["detections"].items():
        split = ", ".join(f"{stage} {_seconds(v)}" for stage, v in d["stages_s"].items())
        console.print(f"  {label_id} latency split (bank-visible): {split}")

    if result["alerts"]:
        alerts = Table(title="Alerts", title_justify="left")
        for col in ("alert", "rule", "severity", "targets", "summary", "explained by"):
            alerts.add_column(col)
        detections = {d["alert"] for d in result["detections"].values()}
        for a in result["alerts"]:
            labels = ", ".join(result["explained_by"].get(a["id"], []))
            why = labels if a["id"] in detections else (f"{labels} (expected)" if labels else "[bold red]false alarm[/]")
            alerts.add_row(a["id"], a["rule"], a["severity"], ", ".join(a["targets"]), a["summary"], why)
        console.print(alerts)

    criteria = Table(title="Criteria", title_justify="left")
    for col in ("criterion", "expected", "acceptable", "actual", "status"):
        criteria.add_column(col)
    for c in all_criteria(result):
        unit = f" {c['unit']}" if c["unit"] else ""
        actual = "never" if c["actual"] is None else f"{c['actual']}{unit}"
        criteria.add_row(c["name"], f"{c['expected']}{unit}", f"{c['acceptable']}{unit}", actual,
                         f"[{_STYLE[c['status']]}]{c['status']}[/]")
    console.print(criteria)

    m = result["messages"]
    rejected = ", ".join(f"{k}: {v}" for k, v in result["edge_rejections"].items()) or "none"
    console.print(
        f"messages: emitted {m['emitted']}, accepted {m['edge_accepted']}, rejected {m['edge_rejected']} ({rejected}), "
        f"cloud duplicates {m['cloud_duplicates']}, lost on links {m['lost_on_links']}"
    )
    w = result["wall"]
    console.print(f"wall clock: {w['run_s']} s, {w['sim_speed_x']}× real time, {w['messages_per_s']} device msg/s")
    console.print(f"status: [{_STYLE[result['status']]}]{result['status']}[/]")
