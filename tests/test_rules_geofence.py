"""geofence's out-of-zone finding: pledged goods carried out of their zone at any hour.

Unit tests feed the rule forklift tracks as the UWB tag reports them (1 Hz while driving, x first
then y, silent while the forklift stands to lift or set down) through the positioning tag's real
thing-model decoder; the library scenarios run the twin, devices, edge and cloud end to end.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import msgspec
import pytest
from injector_runs import latency, run_library

from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.rules import geofence
from cangtwin.platform.rules.base import BookView
from cangtwin.platform.rules.context import DeviceMessage, EdgeContext
from cangtwin.platform.site_geometry import SiteGeometry
from cangtwin.platform.thing_model import ThingModel

TAG = ThingModel(thing_descriptions()["positioning-tag"])
GEOMETRY = SiteGeometry.model_validate({
    "site": "small",
    "timezone": "Asia/Shanghai",
    "working_hours": {"start_hour": 8, "end_hour": 18, "days": ["mon", "tue", "wed", "thu", "fri", "sat"]},
    "zones": {"yard": {"x0": 0, "y0": 0, "x1": 80, "y1": 16}, "storage": {"x0": 30, "y0": 18, "x1": 78, "y1": 48},
              "cold": {"x0": 82, "y0": 18, "x1": 100, "y1": 48}},
    "bays": [
        {"id": "B01", "zone": "storage", "rect": {"x0": 31, "y0": 19, "x1": 41, "y1": 27}},
        {"id": "B02", "zone": "storage", "rect": {"x0": 43, "y0": 19, "x1": 53, "y1": 27}},
        {"id": "C01", "zone": "cold", "rect": {"x0": 83, "y0": 19, "x1": 93, "y1": 27}},
    ],
})
MONDAY_10 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
HOME, DOCK = (36.0, 16.0), (32.0, 12.0)
IN_B01, IN_B02, IN_C01, YARD = (32.0, 19.75), (44.0, 19.75), (84.0, 19.75), (60.0, 8.0)
HANDLING_S = 25.0


class Forklift:
    """Emits what a forklift's tag would: positions at 1 Hz along each drive, nothing while it stands."""

    def __init__(self, at: tuple[float, float], clock: float = MONDAY_10, speed: float = 2.5) -> None:
        self.at, self.clock, self.speed = at, clock, speed

    def drive(self, to: tuple[float, float]) -> list[DeviceMessage]:
        (x0, y0), (x1, y1) = self.at, to
        dx, dy = x1 - x0, y1 - y0
        length = abs(dx) + abs(dy)
        messages, t = [], 0.0
        while t < length / self.speed:
            travelled = t * self.speed
            if travelled <= abs(dx):
                x, y = x0 + travelled * (1 if dx >= 0 else -1), y0
            else:
                x, y = x1, y0 + (travelled - abs(dx)) * (1 if dy >= 0 else -1)
            messages.append(position(self.clock + t, x, y, self.speed))
            t += 1.0
        self.clock += length / self.speed
        self.at = to
        return messages

    def stand(self, seconds: float = HANDLING_S) -> list[DeviceMessage]:
        self.clock += seconds
        return []


def position(clock: float, x: float, y: float, speed: float) -> DeviceMessage:
    payload = TAG.decode("position", msgspec.msgpack.encode({"x_m": round(x, 2), "y_m": round(y, 2), "speed_mps": speed}))
    return DeviceMessage("uwb-fl1", "positioning-tag", "position", 0, clock, clock + 0.05, payload)


def context(bays: dict[str, str] | None = None, pledged: set[str] = frozenset({"B01-01", "B01-02", "C01-01"}),
            released: set[str] = frozenset()) -> EdgeContext:
    book = BookView()
    book.bay_by_lot = {"B01-01": "B01", "B01-02": "B01", "B02-01": "B02", "C01-01": "C01"} if bays is None else bays
    book.pledged = {lot: "LN-1" for lot in pledged}
    book.released = set(released)
    device = DeviceRecord("uwb-fl1", "positioning-tag", b"k" * 32, {"forklift": "FL1"})
    return EdgeContext("small", book, {"uwb-fl1": device}, extra={"geometry": GEOMETRY})


def run(messages: list[DeviceMessage], ctx: EdgeContext | None = None, **params) -> list:
    rule = geofence.Geofence(geofence.Entry(id="geofence", kind="geofence", category="physical", severity="major",
                                            section="4.4 质物监管", params=geofence.Params(**params)))
    ctx = context() if ctx is None else ctx
    return [f for m in messages for f in rule.evaluate(m, ctx)]


def steal_to(destination: tuple[float, float], fork: Forklift | None = None) -> list[DeviceMessage]:
    """Drive to a pledged lot in B01, lift it, carry it to `destination` and set it down."""
    fork = Forklift(HOME) if fork is None else fork
    return fork.drive(IN_B01) + fork.stand() + fork.drive(destination) + fork.stand()


def test_a_pledged_lot_carried_to_the_yard_in_working_hours_alerts_once_as_it_leaves_the_zone() -> None:
    fork = Forklift(HOME)
    to_lot = fork.drive(IN_B01) + fork.stand()
    carry = fork.drive(YARD) + fork.stand()
    (finding,) = run(to_lot + carry)
    # The load is one of the lots the book has in B01: the finding names them all.
    assert finding.targets == ("bay:B01", "zone:storage", "device:uwb-fl1", "lot:B01-01", "lot:B01-02")
    assert finding.detail["why"] == "out-of-zone" and "out of zone storage" in finding.summary
    # The carry's first position 0.3 m (the margin) below the storage zone's edge at y = 18.
    first_out = next(m for m in carry if m.payload.y_m < 17.7)
    assert finding.event_time == first_out.clock and GEOMETRY.in_working_hours(finding.event_time)
    # Driving from home (in the yard) to the lot, the forklift was out of the zone empty: no finding.
    assert any(m.payload.y_m < 17.7 for m in to_lot)


def test_a_pledged_lot_carried_into_a_bay_of_another_zone_alerts() -> None:
    (finding,) = run(steal_to(IN_C01))
    assert finding.targets[:2] == ("bay:B01", "zone:storage") and finding.detail["x_m"] > 78.3


def test_moving_a_pledged_lot_between_bays_of_its_zone_in_working_hours_is_silent() -> None:
    """The honest near-miss: B01 → B02, then the forklift drives empty back to its home in the yard."""
    fork = Forklift(HOME)
    messages = steal_to(IN_B02, fork) + fork.drive(HOME)
    assert any(not GEOMETRY.zones["storage"].contains(m.payload.x_m, m.payload.y_m) for m in messages)
    assert run(messages) == []


def test_a_pickup_where_the_book_has_released_goods_is_an_outbound_not_an_alert() -> None:
    assert run(steal_to(DOCK), context(released={"B01-02"})) == []
    assert run(steal_to(DOCK), context(pledged={"B01-01"})) == []  # B01-02 was never pledged
    assert run(steal_to(DOCK), context(released={"B01-01", "B01-02"})) == []
    assert len(run(steal_to(DOCK))) == 1  # the same drive with nothing released is caught


def test_an_inbound_set_down_in_a_pledged_bay_is_a_drop_and_the_empty_drive_back_is_silent() -> None:
    """Lift at the dock, set down in B01, drive back to the dock for the next lot (twice)."""
    fork = Forklift(HOME)
    messages = fork.drive(DOCK) + fork.stand()
    for _ in range(2):
        messages += fork.drive(IN_B01) + fork.stand() + fork.drive(DOCK) + fork.stand()
    assert run(messages) == []


def test_lost_messages_are_not_a_stop_but_a_long_jump_forgets_the_load() -> None:
    fork = Forklift(HOME)
    loaded = fork.drive(IN_B01) + fork.stand() + fork.drive(YARD)
    first_out = next(i for i, m in enumerate(loaded) if m.payload.y_m < 17.7 and m.clock > MONDAY_10 + HANDLING_S)
    # 8 positions of the carry lost on the link (a 9 s silence, under min_stand_s): still a carry.
    gappy = loaded[: first_out - 8] + loaded[first_out:]
    assert len(run(gappy)) == 1
    # 12 lost (a 13 s silence, 30 m driven unseen): the rule cannot tell a stop, so it forgets the load.
    assert run(loaded[: first_out - 12] + loaded[first_out:]) == []


def test_stops_alternate_so_the_second_carry_out_is_caught_too() -> None:
    fork = Forklift(HOME)
    messages = steal_to(YARD, fork) + steal_to(YARD, fork)
    findings = run(messages, realert_after_s=0)
    assert [f.detail["why"] for f in findings] == ["out-of-zone", "out-of-zone"]
    assert findings[1].event_time - findings[0].event_time > 2 * HANDLING_S


def test_after_hours_the_move_in_the_bay_and_the_carry_out_are_two_findings() -> None:
    night = dt.datetime(2026, 3, 2, 19, 10, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    findings = run(steal_to(YARD, Forklift(HOME, clock=night)))
    assert [f.detail["why"] for f in findings] == ["after-hours", "out-of-zone"]
    assert findings[0].event_time < findings[1].event_time


def test_a_bank_can_switch_the_out_of_zone_finding_off_and_keep_the_hours() -> None:
    night = dt.datetime(2026, 3, 2, 19, 10, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    assert run(steal_to(YARD), out_of_zone=False) == []
    assert [f.detail["why"] for f in run(steal_to(YARD, Forklift(HOME, clock=night)), out_of_zone=False)] == ["after-hours"]


@pytest.mark.parametrize("params, field", [({"min_stand_s": 0}, "min_stand_s"), ({"stand_radius_m": -1}, "stand_radius_m"),
                                           ({"out_of_zone": "sometimes"}, "out_of_zone")])
def test_bad_parameters_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        geofence.Params(**params)


# --- end to end: twin → devices → edge → cloud -------------------------------------------------

def test_the_day_move_to_the_yard_is_caught_by_the_out_of_zone_finding_within_its_bound() -> None:
    outcome, result = run_library("geofence-zone")
    assert result["status"] == "SUCCESS", result["criteria"]
    (label,) = outcome.labels
    assert label.primary_rules == ["geofence"] and label.detail["out_of_zone"] and not label.detail["after_hours"]
    detection = result["detections"]["day-move"]
    assert detection["rule"] == "geofence" and 45.1 <= latency(result, "day-move") <= 48.0
    fence = [a for a in result["alerts"] if a["rule"] == "geofence"]
    assert [a["detail"]["why"] for a in fence] == ["out-of-zone"] and "bay:B09" in fence[0]["targets"]
    assert result["false_alarms"] == [] and result["missed"] == []


def test_the_same_forklift_moving_the_lot_within_its_zone_by_day_raises_nothing() -> None:
    outcome, result = run_library("geofence-near")
    assert result["status"] == "SUCCESS", result["criteria"]
    assert [a for a in result["alerts"] if a["rule"] == "geofence"] == [] and result["false_alarms"] == []
    assert outcome.labels[0].detail["from"] == {"B09-01": "B09"} and outcome.labels[0].detail["to"] == "B10"
