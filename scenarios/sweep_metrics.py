"""One replication's summary for a sweep: recall, precision, false alarms, latencies and money at risk.

Money at risk comes from the result (`scenarios/money_at_risk.py`): `money_at_risk_cny` is the
value the bank still had not seen at the end of the run (frauds with no bank-visible alert);
`exposure_cny_h` weighs every fraud's value by the hours from its onset to its bank-visible alert
(to the end of the run when there was none).
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean
from typing import Any

from cangtwin.scenarios.spec import Scenario
from cangtwin.scenarios.suite import _rule_counts


def summarize(result: dict, run_folder: Path, scenario: Scenario) -> dict[str, Any]:
    """The per-replication figures a sweep aggregates (None where a figure has no samples)."""
    labels = [label for label in result["labels"] if label["primary_rules"]]
    detections = result["detections"]
    edge = [d["edge_latency_s"] for d in detections.values()]
    bank = [d["bank_latency_s"] for d in detections.values() if d["bank_latency_s"] is not None]
    alerts = len(result["alerts"])
    days = scenario.spec.duration / 86400
    at_risk = result["money_at_risk"].values()
    undetected = sum(m["value_cny"] for m in at_risk if not m["bank_visible"])
    exposure = sum(m["exposure_cny_h"] for m in at_risk)
    return {
        "recall": round(sum(label["id"] in detections for label in labels) / len(labels), 6) if labels else None,
        "precision": round(len(result["explained_by"]) / alerts, 6) if alerts else None,
        "alerts": alerts,
        "misses": len(result["missed"]),
        "false_alarms": len(result["false_alarms"]),
        "false_alarms_per_site_day": round(len(result["false_alarms"]) / days, 6) if days else None,
        "edge_latency_s": round(fmean(edge), 6) if edge else None,
        "bank_latency_s": round(fmean(bank), 6) if bank else None,
        "money_at_risk_cny": round(undetected, 2),
        "exposure_cny_h": round(exposure, 2),
        "rules": _rule_counts([result]),
        "labels": {label["id"]: {"detected": label["id"] in detections,
                                 "edge_latency_s": (detections.get(label["id"]) or {}).get("edge_latency_s"),
                                 "bank_latency_s": (detections.get(label["id"]) or {}).get("bank_latency_s")}
                   for label in labels},
    }


METRICS = ("recall", "precision", "false_alarms_per_site_day", "edge_latency_s", "bank_latency_s",
           "money_at_risk_cny", "exposure_cny_h")
