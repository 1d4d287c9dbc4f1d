"""KPIs as one viewer may see them: a bank's share of a result, and figures over runs.

A bank viewer's KPIs are computed on the part of the result that concerns its own pledges
(its alerts, the labels on its loans), with the harness's own precision/recall counting
(`scenarios.suite`), so a bank never learns another bank's alerts through a count.
"""

from __future__ import annotations

from statistics import mean

from cangtwin.dash_app.access import OPERATOR, may_see
from cangtwin.dash_app.replay import Replay
from cangtwin.scenarios.suite import _rule_counts


def visible_alerts(result: dict, replay: Replay, viewer: str | None) -> list[dict]:
    if viewer == OPERATOR:
        return list(result["alerts"])
    return [a for a in result["alerts"] if may_see(viewer, replay.banks_of(a))]


def view_of(result: dict, replay: Replay, viewer: str | None) -> dict:
    """The result restricted to what `viewer` may see (the whole result for the operator)."""
    if viewer == OPERATOR:
        return result
    alerts = visible_alerts(result, replay, viewer)
    ids = {a["id"] for a in alerts}
    labels = [lab for lab in result["labels"] if may_see(viewer, replay.banks_of({"targets": lab["targets"]}))]
    label_ids = {lab["id"] for lab in labels}
    return {**result, "alerts": alerts, "labels": labels,
            "detections": {k: d for k, d in result["detections"].items() if k in label_ids and d["alert"] in ids},
            "missed": [m for m in result["missed"] if m in label_ids],
            "false_alarms": [a for a in result["false_alarms"] if a in ids],
            "explained_by": {a: labs for a, labs in result["explained_by"].items() if a in ids}}


def rule_counts(results: list[dict]) -> dict[str, dict]:
    return _rule_counts(results)


def latency_samples(results: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per rule, detection latencies over the given results: {"edge": [...], "bank": [...]}."""
    samples: dict[str, dict[str, list[float]]] = {}
    for result in results:
        for d in result["detections"].values():
            by_view = samples.setdefault(d["rule"], {"edge": [], "bank": []})
            by_view["edge"].append(d["edge_latency_s"])
            if d["bank_latency_s"] is not None:
                by_view["bank"].append(d["bank_latency_s"])
    return samples


def summary(results: list[dict], site_days: float) -> dict[str, float | int | None]:
    """The figures the compare view puts side by side, over one run or all runs of a suite."""
    bank = [d["bank_latency_s"] for r in results for d in r["detections"].values() if d["bank_latency_s"] is not None]
    false_alarms = sum(len(r["false_alarms"]) for r in results)
    return {
        "runs": len(results),
        "alerts_count": sum(len(r["alerts"]) for r in results),
        "detections": sum(len(r["detections"]) for r in results),
        "missed": sum(len(r["missed"]) for r in results),
        "false_alarms": false_alarms,
        "fa_day": round(false_alarms / site_days, 3) if site_days else None,
        "bank_latency_mean": round(mean(bank), 3) if bank else None,
        "emitted": sum(r["messages"].get("emitted", 0) for r in results),
    }
