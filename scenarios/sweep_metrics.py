"""One replication's summary for a sweep: recall, precision, false alarms, latencies and money at risk.

Money at risk is read from the run's kept folder (result.json and events.jsonl), never from
the twin: the collateral a fraud takes or misstates is valued with the masses the pledges were
registered with (the registry filings) at the last market price before the onset.

- unauthorized outbound (gate or blind spot): the lots that left;
- substitution / hollow stack: the lot's registered mass × the mass deficit;
- duplicate pledge: the lots of the receipt pledged a second time;
- other frauds (tampered devices, forged or replayed messages) move no collateral by
  themselves and count 0; faults are not money at risk.

`money_at_risk_cny` is the value the bank still had not seen at the end of the run (frauds
with no bank-visible alert); `exposure_cny_h` weighs every fraud's value by the hours from its
onset to its bank-visible alert (to the end of the run when there was none).
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean
from typing import Any

import msgspec

from cangtwin.scenarios.spec import Scenario
from cangtwin.scenarios.suite import _rule_counts

_REGISTRY = b'"ev":"cloud.registry"'
_TICK = b'"ev":"market.tick"'


class _Collateral:
    """Registered lots and price ticks of one run, from its event log."""

    def __init__(self, log: Path, scenario: Scenario) -> None:
        self.lots: dict[str, tuple[str, float]] = {}  # lot → (commodity, registered mass kg)
        self.receipts: dict[str, list[str]] = {}  # receipt → its lots, as first registered
        self.ticks: dict[str, list[tuple[float, float]]] = {}  # commodity → [(at, CNY per t)]
        self.list_price = {name: c.value_cny_per_t for name, c in scenario.site.spec.commodities.items()}
        with log.open("rb") as lines:
            for line in lines:
                if _REGISTRY in line:
                    data = msgspec.json.decode(line)["data"]
                    prints = data.get("fingerprint") or {}
                    receipt = prints.get("receipt") or data.get("receipt")
                    lots = prints.get("lots") or []
                    self.receipts.setdefault(receipt, [lot["lot"] for lot in lots])
                    for lot in lots:
                        self.lots.setdefault(lot["lot"], (lot["commodity"], float(lot["mass_kg"])))
                elif _TICK in line:
                    data = msgspec.json.decode(line)["data"]
                    self.ticks.setdefault(data["commodity"], []).append((data["at"], data["price_cny_per_t"]))

    def value(self, lot: str, at: float) -> float:
        """CNY of a registered lot at time `at`; 0 for a lot no pledge covers."""
        if lot not in self.lots:
            return 0.0
        commodity, mass_kg = self.lots[lot]
        before = [price for t, price in self.ticks.get(commodity, []) if t <= at]
        price = before[-1] if before else self.list_price.get(commodity, 0.0)
        return mass_kg / 1000 * price

    def at_risk(self, label: dict) -> float:
        kind, onset = label["kind"], label["onset"]
        lots = [t.removeprefix("lot:") for t in label["targets"] if t.startswith("lot:")]
        if kind.startswith("unauthorized-outbound"):
            return sum(self.value(lot, onset) for lot in label["detail"].get("lots_left", lots))
        if kind in ("substitution", "hollow-stack"):
            return sum(self.value(lot, onset) for lot in lots) * label["magnitude"]
        if kind == "duplicate-pledge":
            return sum(self.value(lot, onset) for lot in self.receipts.get(label["detail"].get("copies"), []))
        return 0.0


def summarize(result: dict, run_folder: Path, scenario: Scenario) -> dict[str, Any]:
    """The per-replication figures a sweep aggregates (None where a figure has no samples)."""
    labels = [label for label in result["labels"] if label["primary_rules"]]
    detections = result["detections"]
    edge = [d["edge_latency_s"] for d in detections.values()]
    bank = [d["bank_latency_s"] for d in detections.values() if d["bank_latency_s"] is not None]
    alerts = len(result["alerts"])
    days = scenario.spec.duration / 86400
    collateral = _Collateral(run_folder / "events.jsonl", scenario)
    undetected = exposure = 0.0
    for label in result["labels"]:
        if label["fault"] or label["onset"] is None:
            continue
        value = collateral.at_risk(label)
        latency = (detections.get(label["id"]) or {}).get("bank_latency_s")
        if latency is None:
            undetected += value
            latency = scenario.end_epoch - label["onset"]
        exposure += value * latency / 3600
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
