"""inventory-mismatch and lidar-tamper, on scans perceived from the twin's own LiDAR."""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.devices.lidar import LidarDevice
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.perception.lidar_volume import BayScan, estimate_bays, mount_from_attrs
from cangtwin.platform.rules import inventory_mismatch, lidar_tamper, ruleset
from cangtwin.platform.rules.base import BookView
from cangtwin.platform.rules.context import EdgeContext
from cangtwin.platform.rules.engine import RuleEngine
from cangtwin.platform.rules.ruleset import RuleSet
from cangtwin.platform.site_geometry import SiteGeometry
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import load_site
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import PhysicalWorld, Shape

SITE = load_site("small")
ATTRS = {"position": "54.0,33.0,11.0", "bays": ",".join(b.id for b in SITE.spec.bays)}
MOUNT = mount_from_attrs("lidar-1", ATTRS)
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
COMMON = dict(category="physical", severity="major", section="4.4 质物监管")
GEOMETRY = SiteGeometry.model_validate({
    "site": "small", "timezone": SITE.spec.timezone, "working_hours": SITE.spec.working_hours.model_dump(),
    "zones": {k: r.model_dump() for k, r in SITE.spec.zones.items()},
    "bays": [{"id": b.id, "zone": b.zone, "rect": b.rect.model_dump()} for b in SITE.spec.bays],
})


class Rig:
    """The twin, its LiDAR, and an edge context whose book matches the twin's initial stock."""

    def __init__(self) -> None:
        self.world = PhysicalWorld(SITE)
        env = simpy.Environment()
        self.warehouse = Warehouse(env, SITE, self.world, RandomStreams(5), lambda kind, data: None)
        self.lidar = LidarDevice(
            env=env, device_id="lidar-1", device_type="lidar", key=b"k" * 32, rng=np.random.default_rng(2),
            send=lambda b: None, tap=lambda kind, data: None, heartbeat_s=10.0, warehouse=self.warehouse, period_s=60.0,
        )
        book = BookView()
        for lot in self.warehouse.lots.values():
            book.bay_by_lot[lot.id] = lot.bay
            book.volume_by_lot[lot.id] = round(lot.shape.envelope_volume_m3, 4)  # from the receipt
            book.pledged[lot.id] = "L-1"
        self.ctx = EdgeContext("small", book, {"lidar-1": DeviceRecord("lidar-1", "lidar", b"k" * 32, ATTRS)},
                               extra={"geometry": GEOMETRY})
        self.t = 0.0

    def scans(self) -> list[BayScan]:
        self.t += 60.0
        return list(estimate_bays(self.lidar.measure(), MOUNT, GEOMETRY, at=self.t, received_at=self.t + 0.2))


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.world.close()


def mismatch_rule(**params) -> inventory_mismatch.InventoryMismatch:
    entry = inventory_mismatch.Entry(id="inventory-mismatch", kind="inventory-mismatch", **COMMON,
                                     params=inventory_mismatch.Params(**params))
    return inventory_mismatch.InventoryMismatch(entry)


def tamper_rule(**params) -> lidar_tamper.LidarTamper:
    entry = lidar_tamper.Entry(id="lidar-tamper", kind="lidar-tamper", **COMMON, params=lidar_tamper.Params(**params))
    return lidar_tamper.LidarTamper(entry)


def run(rule, rig: Rig, scans: int) -> list:
    return [f for _ in range(scans) for s in rig.scans() for f in rule.evaluate(s, rig.ctx)]


# --- inventory-mismatch --------------------------------------------------------------------------

def test_honest_noisy_scans_raise_nothing(rig):
    assert run(mismatch_rule(), rig, 4) == []
    assert run(tamper_rule(), rig, 0) == []


def test_a_coil_taken_without_the_book_knowing_fires_on_the_bay_and_its_pledged_lots(rig):
    rule = mismatch_rule()
    assert run(rule, rig, 1) == []
    taken = rig.warehouse.lots["B02-03"]
    rig.world.remove(taken.body)
    first = run(rule, rig, 1)
    assert first == []  # one scan is not yet confirmed
    findings = run(rule, rig, 2)
    assert len(findings) == 1  # confirmed once, not re-raised while it lasts
    f = findings[0]
    assert f.targets[0] == "bay:B02" and {f"lot:B02-{n:02d}" for n in range(1, 6)} == set(f.targets[1:])
    assert f.detail["measured_m3"] < f.detail["expected_m3"] - 0.7 * taken.shape.envelope_volume_m3
    assert f.event_time == 180.0 and f.observed_at == 180.2


def test_an_authorized_move_between_bays_raises_nothing(rig):
    rule = mismatch_rule()
    run(rule, rig, 1)
    lot = rig.warehouse.lots["B01-02"]
    x, y, _ = rig.world.position(lot.body)
    rig.world.place(lot.body, (45.0, 25.5, 0.0))  # into a free spot of B02
    rig.ctx.book.bay_by_lot[lot.id] = "B02"  # the move was booked
    assert run(rule, rig, 3) == []


def test_a_scan_racing_a_booked_move_is_not_confirmed(rig):
    """The book updates a scan later than the goods moved: the old book never sees two scans."""
    rule = mismatch_rule()
    lot = rig.warehouse.lots["B01-02"]
    rig.world.place(lot.body, (45.0, 25.5, 0.0))
    raced = run(rule, rig, 1)
    rig.ctx.book.bay_by_lot[lot.id] = "B02"
    assert raced == [] and run(rule, rig, 2) == []


def test_a_move_booked_before_the_forklift_goes_is_not_confirmed_while_under_way(rig):
    """Scans confirm within seconds now (a commanded rescan), so a move in progress must be
    allowed for: the lot may stand in its old bay, or be missing from its new one, for a grace."""
    rule = mismatch_rule()
    run(rule, rig, 1)
    lot = rig.warehouse.lots["B01-02"]
    rig.ctx.book.bay_by_lot[lot.id] = "B02"  # the move order is booked first
    assert run(rule, rig, 2) == []  # still in B01: B01 more, B02 less than the book, twice
    rig.world.place(lot.body, (45.0, 25.5, 0.0))  # the forklift sets it down in B02
    assert run(rule, rig, 4) == []  # and after the grace, as booked


def test_a_lot_booked_to_move_that_never_arrives_is_found_after_the_grace(rig):
    rule = mismatch_rule(move_grace_s=100.0)
    run(rule, rig, 1)
    lot = rig.warehouse.lots["B01-02"]
    rig.ctx.book.bay_by_lot[lot.id] = "B02"
    rig.world.remove(lot.body)  # lifted for the move, and taken away instead
    assert run(rule, rig, 2) == []  # the first scan sees the move on the book at t = 120; grace to 220
    findings = run(rule, rig, 2)  # 240 and 300: B02 is short of it, confirmed
    assert [f.targets[0] for f in findings] == ["bay:B02"] and findings[0].event_time == 300.0


def test_a_forklift_through_a_bay_for_one_scan_raises_nothing(rig):
    rules = [mismatch_rule(), tamper_rule()]
    for _ in range(3):
        for s in rig.scans():
            assert [f for r in rules for f in r.evaluate(s, rig.ctx)] == []
    forklift = rig.world.add_goods(Shape("box", (2.5, 1.2, 2.2)), 4000.0, (47.0, 25.5, 0.0))
    transient = [f for s in rig.scans() for r in rules for f in r.evaluate(s, rig.ctx)]
    rig.world.remove(forklift)
    after = [f for _ in range(2) for s in rig.scans() for r in rules for f in r.evaluate(s, rig.ctx)]
    assert transient == [] and after == []


def scan(bay: str, at: float, volume: float, points: int = 5000, top: float = 1.5, occluded: float = 0.0) -> BayScan:
    return BayScan(device="lidar-1", bay=bay, at=at, received_at=at + 0.1, volume_m3=volume, count_estimate=5,
                   points=points, occluded_fraction=occluded, top_m=top, top_points=300)


def book_ctx(volumes: dict[str, float], bay: str = "B01") -> EdgeContext:
    book = BookView()
    for lot, v in volumes.items():
        book.bay_by_lot[lot], book.volume_by_lot[lot], book.pledged[lot] = bay, v, "L-1"
    return EdgeContext("small", book, {})


@SETTINGS
@given(st.lists(st.floats(0.0, 20.0), min_size=1, max_size=12), st.integers(1, 4))
def test_fires_exactly_when_a_run_of_confirm_scans_is_out_of_tolerance(volumes, confirm):
    rule = mismatch_rule(confirm_scans=confirm, rel_tolerance=0.08, abs_tolerance_m3=0.3)
    ctx = book_ctx({"B01-01": 6.0, "B01-02": 4.0})
    fired = [bool(rule.evaluate(scan("B01", float(i), v), ctx)) for i, v in enumerate(volumes)]
    out = [abs(v - 10.0) > 0.8 for v in volumes]
    runs, expected = 0, []
    for o in out:
        runs = runs + 1 if o else 0
        expected.append(runs == confirm)
    assert fired == expected


@SETTINGS
@given(st.lists(st.floats(0.0, 20.0), min_size=2, max_size=10), st.data())
def test_late_or_repeated_scans_never_change_the_verdict(volumes, data):
    """A scan older than the bay's last is ignored: delayed copies cannot confirm or clear a run."""
    ctx = book_ctx({"B01-01": 10.0})
    in_order, with_late = mismatch_rule(confirm_scans=2), mismatch_rule(confirm_scans=2)
    expected = [bool(in_order.evaluate(scan("B01", float(i), v), ctx)) for i, v in enumerate(volumes)]
    got = []
    for i, v in enumerate(volumes):
        got.append(bool(with_late.evaluate(scan("B01", float(i), v), ctx)))
        for j in data.draw(st.lists(st.integers(0, i), max_size=3)):  # stale copies arrive late
            late = data.draw(st.floats(0.0, 20.0))
            assert with_late.evaluate(scan("B01", float(j), late), ctx) == []
    assert got == expected


def test_small_bays_need_the_absolute_tolerance_too_and_occluded_scans_do_not_count():
    rule = mismatch_rule(confirm_scans=2, rel_tolerance=0.05, abs_tolerance_m3=0.3)
    ctx = book_ctx({"B09-01": 2.0})
    assert [f for i in range(3) for f in rule.evaluate(scan("B01", float(i), 2.25), ctx)] == []  # 12 % but 0.25 m³
    assert rule.evaluate(scan("B01", 10.0, 0.5), ctx) == []
    assert rule.evaluate(scan("B01", 11.0, 0.0, occluded=0.9), ctx) == []  # neither counts nor clears
    assert len(rule.evaluate(scan("B01", 12.0, 0.5), ctx)) == 1


def test_a_bay_without_pledged_goods_is_not_the_banks_business():
    rule = mismatch_rule(confirm_scans=1)
    ctx = book_ctx({"B01-01": 5.0})
    del ctx.book.pledged["B01-01"]
    assert rule.evaluate(scan("B01", 1.0, 0.0), ctx) == []
    assert len(mismatch_rule(confirm_scans=1, only_pledged_bays=False).evaluate(scan("B01", 1.0, 0.0), ctx)) == 1


def test_released_lots_may_leave_before_the_gate_tells_the_book():
    """A released lot is loaded onto the truck before its gate event drops it from the book; a bay
    short of no more than its free lots (released; never pledged) is as booked, and the release
    itself restarts the count."""
    rule = mismatch_rule(confirm_scans=2)
    ctx = book_ctx({"B01-01": 2.0, "B01-02": 2.0, "B01-03": 2.0, "B01-04": 2.0})
    assert rule.evaluate(scan("B01", 1.0, 6.0), ctx) == []  # one lot short: suspect
    ctx.book.released.update({"B01-03", "B01-04"})  # the bank releases two; they are being loaded
    assert [f for t in (2.0, 3.0, 4.0) for f in rule.evaluate(scan("B01", t, 6.0), ctx)] == []
    assert [f for t in (5.0, 6.0) for f in rule.evaluate(scan("B01", t, 4.0), ctx)] == []  # both on the truck
    findings = [f for t in (7.0, 8.0) for f in rule.evaluate(scan("B01", t, 2.0), ctx)]  # and a pledged one
    assert len(findings) == 1 and findings[0].targets == ("bay:B01", "lot:B01-01", "lot:B01-02")
    assert findings[0].detail["free_m3"] == 4.0 and "less than the 4.00 m³ the book allows" in findings[0].summary
    more = mismatch_rule(confirm_scans=1).evaluate(scan("B01", 9.0, 9.0), ctx)  # more than booked is never excused
    assert len(more) == 1
    mixed = book_ctx({"B01-01": 2.0, "B01-02": 2.0, "B01-03": 2.0})
    del mixed.book.pledged["B01-03"]  # a lot never pledged, shipped from a pledged bay
    assert mismatch_rule(confirm_scans=1).evaluate(scan("B01", 1.0, 4.0), mixed) == []
    assert len(mismatch_rule(confirm_scans=1, only_pledged_bays=False).evaluate(scan("B01", 1.0, 4.0), mixed)) == 1


def test_a_suspect_scan_asks_for_a_rescan_until_confirmed_or_cleared():
    """`wants_rescan` is what the edge reads to command the LiDAR's scan action after each scan."""
    rule = mismatch_rule(confirm_scans=3)
    ctx = book_ctx({"B01-01": 10.0})
    rule.evaluate(scan("B01", 1.0, 10.0), ctx)
    assert not rule.wants_rescan("lidar-1")  # as booked
    assert rule.evaluate(scan("B01", 2.0, 5.0), ctx) == [] and rule.wants_rescan("lidar-1")
    assert not rule.wants_rescan("lidar-2")  # another sensor's bays
    assert rule.evaluate(scan("B01", 3.0, 5.0), ctx) == [] and rule.wants_rescan("lidar-1")  # 2 of 3
    assert len(rule.evaluate(scan("B01", 4.0, 5.0), ctx)) == 1 and not rule.wants_rescan("lidar-1")  # confirmed
    assert rule.evaluate(scan("B01", 5.0, 5.0), ctx) == [] and not rule.wants_rescan("lidar-1")  # already alerted
    cleared = mismatch_rule(confirm_scans=2)
    cleared.evaluate(scan("B01", 1.0, 5.0), ctx)
    cleared.evaluate(scan("B01", 2.0, 10.0), ctx)
    assert not cleared.wants_rescan("lidar-1")
    occluded = mismatch_rule(confirm_scans=2)  # an occluded rescan neither counts nor asks again
    occluded.evaluate(scan("B01", 1.0, 5.0), ctx)
    occluded.evaluate(scan("B01", 2.0, 0.0, occluded=0.9), ctx)
    assert not occluded.wants_rescan("lidar-1")
    unpledged = book_ctx({"B01-01": 10.0})
    unpledged.book.pledged.clear()  # the bank does not care: no scan is spent on it
    idle = mismatch_rule(confirm_scans=2)
    idle.evaluate(scan("B01", 1.0, 5.0), unpledged)
    assert not idle.wants_rescan("lidar-1")


# --- lidar-tamper --------------------------------------------------------------------------------

def test_an_occluder_hung_over_a_bay_fires(rig):
    rule = tamper_rule()
    assert run(rule, rig, 3) == []
    rig.world.add_goods(Shape("box", (6.0, 5.0, 0.05)), 50.0, (48.0, 23.0, 7.0))
    findings = run(rule, rig, 2)
    occluder = [f for f in findings if f.detail["sign"] == "occluder"]
    assert len(occluder) == 1 and occluder[0].targets == ("device:lidar-1", "bay:B02")
    assert occluder[0].detail["top_m"] > 6.5


def test_a_covered_sensor_fires_once_for_all_its_bays(rig):
    rule = tamper_rule()
    assert run(rule, rig, 3) == []
    x, y, z = rig.lidar.position
    rig.world.add_goods(Shape("box", (2.5, 2.5, 0.02)), 5.0, (x, y, z - 0.2))  # a board under the window
    findings = run(rule, rig, 2)
    assert len(findings) == 1 and findings[0].detail["sign"] == "blocked"
    assert findings[0].detail["points"] == 0 and findings[0].detail["baseline_points"] > 1000


@SETTINGS
@given(st.lists(st.integers(0, 10_000), min_size=4, max_size=15))
def test_blocked_fires_only_after_confirm_scans_below_the_baseline(counts):
    rule = tamper_rule(confirm_scans=2, min_baseline_scans=3, realert_after_s=0.0)
    ctx = EdgeContext("small", BookView(), {})
    baseline, streak, expected, fired = [], 0, [], []
    for i, n in enumerate(counts):
        usual = float(np.median(baseline[-10:])) if len(baseline) >= 3 else None
        low = usual is not None and n < 0.5 * usual
        streak = streak + 1 if low else 0
        expected.append(streak >= 2)
        if not low:
            baseline.append(n)
        fired.append(any(f.detail["sign"] == "blocked" for f in rule.evaluate(scan("B01", float(i), 1.0, points=n), ctx)))
    assert fired == expected


def test_tamper_asks_for_a_rescan_until_confirmed_or_the_incident_is_known():
    rule = tamper_rule(confirm_scans=2, realert_after_s=600.0)
    ctx = EdgeContext("small", BookView(), {})
    rule.evaluate(scan("B01", 1.0, 1.0), ctx)
    assert not rule.wants_rescan("lidar-1")
    assert rule.evaluate(scan("B01", 2.0, 1.0, top=8.0), ctx) == [] and rule.wants_rescan("lidar-1")
    assert len(rule.evaluate(scan("B01", 3.0, 1.0, top=8.0), ctx)) == 1 and not rule.wants_rescan("lidar-1")
    rule.evaluate(scan("B02", 4.0, 1.0, top=8.0), ctx)  # the same incident seen in another bay
    assert not rule.wants_rescan("lidar-1")


def test_engine_runs_both_rules_on_bay_scans(monkeypatch):
    entries = (
        inventory_mismatch.Entry(id="inventory-mismatch", kind="inventory-mismatch", **COMMON),
        lidar_tamper.Entry(id="lidar-tamper", kind="lidar-tamper", **COMMON),
    )
    monkeypatch.setitem(ruleset.KINDS, "inventory-mismatch", (inventory_mismatch.Entry, inventory_mismatch.InventoryMismatch))
    monkeypatch.setitem(ruleset.KINDS, "lidar-tamper", (lidar_tamper.Entry, lidar_tamper.LidarTamper))
    engine = RuleEngine(RuleSet("test", 1, "0" * 64, "<test>", entries), "small", where="edge")
    ctx = book_ctx({"B01-01": 10.0})
    alerts = [a for i in range(3) for a in engine.evaluate(scan("B01", float(i), 2.0, top=8.0), ctx, raised_at=float(i))]
    assert sorted(a.rule for a in alerts) == ["inventory-mismatch", "lidar-tamper"]
    assert all(a.event_time == 1.0 for a in alerts)


def test_params_are_checked():
    with pytest.raises(ValueError, match="min_baseline_scans"):
        lidar_tamper.Params(baseline_scans=2, min_baseline_scans=5)
    with pytest.raises(ValueError, match="rel_tolerance"):
        inventory_mismatch.Params(rel_tolerance=0.0)
