"""Money at risk: what each fraud put in play, and for how long the bank did not know.

Read from the run's event log, never from the twin: the collateral a fraud takes or misstates is
valued with the masses the pledges were registered with (the registry filings) at the last market
price before the onset (the site's list price before the first tick).

- unauthorized outbound (gate or blind spot): the lots that left;
- substitution / hollow stack: the lot's registered mass × the mass deficit;
- duplicate pledge: the lots of the receipt pledged a second time;
- other frauds (tampered devices, forged or replayed messages) move no collateral by themselves
  and count 0; faults are not money at risk.

Per label: `value_cny`, and `exposure_cny_h`, the value weighted by the hours from onset to the
bank-visible alert (to the end of the run when there was none).
"""

from __future__ import annotations

from typing import Any, Iterable

import msgspec

_REGISTRY = b'"ev":"cloud.registry"'
_TICK = b'"ev":"market.tick"'


class Collateral:
    """Registered lots and price ticks of one run, from its event log."""

    def __init__(self, lines: Iterable[bytes], list_price: dict[str, float]) -> None:
        self.lots: dict[str, tuple[str, float]] = {}  # lot → (commodity, registered mass kg)
        self.receipts: dict[str, list[str]] = {}  # receipt → its lots, as first registered
        self.ticks: dict[str, list[tuple[float, float]]] = {}  # commodity → [(at, CNY per t)]
        self.list_price = list_price
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


def money_at_risk(labels: list[dict], detections: dict[str, dict], lines: Iterable[bytes],
                  list_price: dict[str, float], end: float) -> dict[str, dict[str, Any]]:
    """label id → {value_cny, exposure_cny_h, bank_visible} for every fraud (not fault) label."""
    collateral = Collateral(lines, list_price)
    out = {}
    for label in labels:
        if label["fault"] or label["onset"] is None:
            continue
        value = collateral.at_risk(label)
        latency = (detections.get(label["id"]) or {}).get("bank_latency_s")
        hours = (latency if latency is not None else end - label["onset"]) / 3600
        out[label["id"]] = {"value_cny": round(value, 2), "exposure_cny_h": round(value * hours, 2),
                            "bank_visible": latency is not None}
    return out
