"""Money at risk: registered masses at the last price before onset, weighted by the hours unseen."""

from __future__ import annotations

import msgspec
import pytest

from cangtwin.scenarios.money_at_risk import money_at_risk


def _line(t: float, ev: str, data: dict) -> bytes:
    return msgspec.json.encode({"t": t, "ev": ev, "data": data})


LINES = [
    _line(0.0, "cloud.registry", {"fingerprint": {"receipt": "WR-1", "lots": [
        {"lot": "B01-01", "commodity": "steel-coil", "mass_kg": 20000.0},
        {"lot": "B09-01", "commodity": "copper-cathode", "mass_kg": 2500.0}]}}),
    _line(10.0, "market.tick", {"commodity": "copper-cathode", "at": 10.0, "price_cny_per_t": 70000.0}),
    _line(500.0, "market.tick", {"commodity": "copper-cathode", "at": 500.0, "price_cny_per_t": 50000.0}),
]
PRICES = {"steel-coil": 3800.0, "copper-cathode": 76000.0}


def _label(id_: str, kind: str, lots: list[str], onset: float, magnitude: float = 1.0, fault: bool = False) -> dict:
    return {"id": id_, "kind": kind, "targets": [f"lot:{lot}" for lot in lots], "onset": onset,
            "magnitude": magnitude, "fault": fault, "detail": {}}


def test_theft_is_valued_at_the_last_price_before_onset_and_weighted_by_the_hours_unseen() -> None:
    labels = [_label("theft", "unauthorized-outbound", ["B01-01", "B09-01"], onset=100.0),
              _label("hollow", "hollow-stack", ["B09-01"], onset=600.0, magnitude=0.12),
              _label("outage", "uplink-outage", [], onset=50.0, fault=True)]
    detections = {"theft": {"bank_latency_s": 1800.0}}
    risk = money_at_risk(labels, detections, LINES, PRICES, end=600.0 + 7200.0)
    theft = 20 * 3800.0 + 2.5 * 70000.0  # steel at list price (no tick), copper at the 10 s tick
    assert risk["theft"] == {"value_cny": pytest.approx(theft), "exposure_cny_h": pytest.approx(theft * 0.5),
                             "bank_visible": True}
    hollow = 2.5 * 50000.0 * 0.12  # the later tick, the deficit share; never seen: exposed to the end
    assert risk["hollow"] == {"value_cny": pytest.approx(hollow), "exposure_cny_h": pytest.approx(hollow * 2.0),
                              "bank_visible": False}
    assert "outage" not in risk  # a fault is not money at risk


def test_goods_no_pledge_covers_are_worth_nothing_to_the_bank() -> None:
    risk = money_at_risk([_label("t", "unauthorized-outbound", ["B07-01"], onset=5.0)], {}, LINES, PRICES, end=10.0)
    assert risk["t"]["value_cny"] == 0.0
