"""Edge and cloud rules on device traffic: liveness, environment and geofence, with site geometry."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import msgspec
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.rules import device_offline, edge_offline, environment, geofence, ruleset
from cangtwin.platform.rules.base import BookView
from cangtwin.platform.rules.context import CloudContext, DeviceMessage, EdgeContext
from cangtwin.platform.rules.engine import RuleEngine
from cangtwin.platform.rules.ruleset import RuleSet
from cangtwin.platform.site_geometry import SiteGeometry
from cangtwin.platform.thing_model import ThingModel

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
MODELS = {name: ThingModel(td) for name, td in thing_descriptions().items()}
COMMON = dict(category="physical", severity="major", section="4.4 质物监管")


def message(device: str, device_type: str, kind: str, clock: float, received_at: float | None = None, **payload):
    """A DeviceMessage whose payload went through the device type's real thing-model decoder."""
    decoded = MODELS[device_type].decode(kind, msgspec.msgpack.encode(payload))
    return DeviceMessage(device, device_type, kind, 0, clock, clock if received_at is None else received_at, decoded)


def heartbeat(device: str, clock: float, received_at: float | None = None) -> DeviceMessage:
    return message(device, "climate-sensor", "heartbeat", clock, received_at, uptime_s=1.0, status="ok")


def edge_context(devices: dict[str, tuple[str, dict[str, str]]], **extra) -> EdgeContext:
    records = {d: DeviceRecord(d, dtype, b"k" * 32, attrs) for d, (dtype, attrs) in devices.items()}
    return EdgeContext("small", BookView(), records, extra=extra)


def engine_for(monkeypatch: pytest.MonkeyPatch, rule_class: type, entry, where: str) -> RuleEngine:
    """A real engine over a one-rule set, with the kind registered for this test only."""
    monkeypatch.setitem(ruleset.KINDS, entry.kind, (type(entry), rule_class))
    rules = RuleSet("test", 1, "0" * 64, "<test>", (entry,))
    return RuleEngine(rules, "small", where=where)


# --- device-offline -----------------------------------------------------------------------------

def offline_rule(**params) -> device_offline.DeviceOffline:
    params = device_offline.Params(**params)
    entry = device_offline.Entry(id="device-offline", kind="device-offline", **COMMON, params=params)
    return device_offline.DeviceOffline(entry)


def run_liveness(rule, ctx, messages: list[DeviceMessage], start: float, end: float) -> list:
    """Deliver messages in arrival order, interleaved with the rule's 1 s ticks from `start`."""
    findings = []
    pending = sorted(messages, key=lambda m: m.received_at)
    now = start
    while now <= end:
        while pending and pending[0].received_at <= now:
            findings += rule.evaluate(pending.pop(0), ctx)
        findings += rule.on_time(now, ctx)
        now += rule.tick_s
    return findings


def test_device_silent_for_k_periods_alerts_once_at_last_seen_plus_k_periods() -> None:
    rule, ctx = offline_rule(), edge_context({"th-1": ("climate-sensor", {})})
    findings = run_liveness(rule, ctx, [heartbeat("th-1", t) for t in (0.0, 10.0, 20.0)], 0.0, 200.0)
    assert [(f.targets, f.event_time, f.observed_at) for f in findings] == [(("device:th-1",), 50.0, 51.0)]


def test_late_heartbeat_within_k_periods_is_not_an_outage() -> None:
    rule, ctx = offline_rule(), edge_context({"th-1": ("climate-sensor", {})})
    clocks = [0.0, 10.0, 20.0, 49.0, 59.0, 69.0]  # 29 s between two heartbeats: late, not gone
    assert run_liveness(rule, ctx, [heartbeat("th-1", t) for t in clocks], 0.0, 75.0) == []


def test_any_admitted_message_counts_as_alive() -> None:
    rule, ctx = offline_rule(), edge_context({"th-1": ("climate-sensor", {})})
    readings = [
        message("th-1", "climate-sensor", "climate", t, temperature_c=20.0, humidity_pct=50.0) for t in (25.0, 50.0)
    ]
    assert run_liveness(rule, ctx, [heartbeat("th-1", 0.0), *readings], 0.0, 75.0) == []


def test_device_that_returns_and_goes_silent_again_alerts_again() -> None:
    rule, ctx = offline_rule(), edge_context({"th-1": ("climate-sensor", {})})
    clocks = [0.0, 10.0, 100.0, 110.0]
    findings = run_liveness(rule, ctx, [heartbeat("th-1", t) for t in clocks], 0.0, 200.0)
    assert [f.event_time for f in findings] == [40.0, 140.0]


def test_device_never_heard_counts_from_the_edge_start() -> None:
    rule, ctx = offline_rule(k=2), edge_context({"cam-1": ("camera", {}), "th-1": ("climate-sensor", {})})
    start = 1_700_000_000.0
    findings = run_liveness(rule, ctx, [heartbeat("th-1", start + t) for t in range(0, 60, 10)], start, start + 50)
    found = [(f.targets, f.event_time, f.detail["last_clock"]) for f in findings]
    assert found == [(("device:cam-1",), start + 20, None)]


def test_event_time_is_in_the_device_clock() -> None:
    rule, ctx = offline_rule(), edge_context({"th-1": ("climate-sensor", {})})
    # The device clock runs 3 s behind the edge: silence is timed on the edge, the alert in device time.
    messages = [heartbeat("th-1", t - 3.0, received_at=t) for t in (0.0, 10.0)]
    findings = run_liveness(rule, ctx, messages, 0.0, 60.0)
    assert [(f.event_time, f.observed_at) for f in findings] == [(37.0, 41.0)]


def test_device_offline_through_the_engine_raises_one_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = device_offline.Entry(
        id="dev-off", kind="device-offline", category="integrity", severity="major", section="5 数字化能力要求"
    )
    engine = engine_for(monkeypatch, device_offline.DeviceOffline, entry, "edge")
    ctx = edge_context({"th-1": ("climate-sensor", {})})
    assert engine.tick_s == 1.0
    engine.evaluate(heartbeat("th-1", 0.0), ctx, raised_at=0.0)
    alerts = [a for now in range(0, 60) for a in engine.tick(float(now), ctx)]
    found = [(a.rule, a.targets, a.event_time, a.raised_at) for a in alerts]
    assert found == [("dev-off", ("device:th-1",), 30.0, 31.0)]


# Gaps clear of the 30 s threshold by more than the delay; bursts shorter than the delay get reordered.
gap = st.one_of(st.floats(0.1, 2.0), st.floats(2.0, 25.0), st.floats(35.0, 120.0))


@SETTINGS
@given(
    gaps=st.lists(st.lists(gap, min_size=1, max_size=15), min_size=1, max_size=3),
    jitter=st.data(),
)
def test_device_offline_verdicts_do_not_depend_on_delivery_order(gaps: list[list[float]], jitter) -> None:
    """Delays up to 3 s reorder messages across devices and ticks; the verdicts stay the same."""
    devices = {f"d{i}": ("climate-sensor", {}) for i in range(len(gaps))}
    clocks = {}
    for i, device_gaps in enumerate(gaps):
        t, clocks[f"d{i}"] = 5.0, [5.0]
        for g in device_gaps:
            t += g
            clocks[f"d{i}"].append(t)
    last = max(c[-1] for c in clocks.values())
    for cs in clocks.values():  # every device keeps beating to the end, so no trailing silence
        while cs[-1] < last:
            cs.append(cs[-1] + 10.0)
    end = last + 10.0
    in_order = [heartbeat(d, t) for d, cs in clocks.items() for t in cs]
    delayed = [
        heartbeat(d, t, received_at=t + jitter.draw(st.floats(0.0, 3.0))) for d, cs in clocks.items() for t in cs
    ]

    def verdicts(messages):
        findings = run_liveness(offline_rule(), edge_context(devices), messages, 0.0, end)
        return sorted((f.targets, f.event_time) for f in findings)

    expected = sorted(
        ((f"device:{d}",), cs[i] + 30.0)
        for d, cs in clocks.items()
        for i in range(len(cs) - 1)
        if cs[i + 1] - cs[i] > 30.0
    )
    assert verdicts(in_order) == expected
    assert verdicts(delayed) == expected


# --- edge-offline -------------------------------------------------------------------------------

def edge_rule(**params) -> edge_offline.EdgeOffline:
    entry = edge_offline.Entry(id="edge-offline", kind="edge-offline", **COMMON, params=edge_offline.Params(**params))
    return edge_offline.EdgeOffline(entry)


def run_cloud(rule, heard_at: dict[float, float], end: float) -> list:
    """Cloud ticks each second; `heard_at[t]` is the newest heartbeat the cloud holds at time t."""
    ctx = CloudContext(book=None, shadows={}, edge_last_heard={})
    findings = []
    for now in range(int(end) + 1):
        if now in heard_at:
            ctx.edge_last_heard["small"] = heard_at[now]
        findings += rule.on_time(float(now), ctx)
    return findings


def test_edge_outage_alerts_once_even_while_the_backlog_drains() -> None:
    heard = {t: float(t) for t in range(0, 101, 10)}
    # Uplink down from 100 s to 400 s; then the outbox backlog replays heartbeats 110..400 in steps.
    heard.update({400 + i: 110.0 + 10 * i for i in range(30)})
    heard.update({t: float(t) for t in range(430, 600, 10)})
    findings = run_cloud(edge_rule(), heard, 600)
    assert [(f.targets, f.event_time, f.observed_at) for f in findings] == [(("edge:small",), 130.0, 131.0)]


def test_edge_heartbeat_late_within_k_periods_is_no_outage() -> None:
    heard = {0: 0.0, 10: 10.0, 39: 35.0, 45: 45.0, 55: 55.0}
    assert run_cloud(edge_rule(), heard, 60) == []


def test_a_second_edge_outage_alerts_again() -> None:
    heard = {0: 0.0, 100: 100.0, 110: 110.0, 300: 300.0}
    findings = run_cloud(edge_rule(k=2), heard, 310)
    assert [f.event_time for f in findings] == [20.0, 130.0]


def test_edge_offline_through_the_cloud_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = edge_offline.Entry(
        id="edge-off", kind="edge-offline", category="integrity", severity="critical", section="5 数字化能力要求"
    )
    engine = engine_for(monkeypatch, edge_offline.EdgeOffline, entry, "cloud")
    ctx = CloudContext(book=None, shadows={}, edge_last_heard={"small": 0.0, "medium": 25.0})
    alerts = [a for now in range(0, 60) for a in engine.tick(float(now), ctx)]
    assert [(a.targets, a.event_time) for a in alerts] == [(("edge:small",), 30.0), (("edge:medium",), 55.0)]
    assert RuleEngine(engine.ruleset, "small", where="edge").rules == []


# --- environment --------------------------------------------------------------------------------

def env_rule(**params) -> environment.Environment:
    entry = environment.Entry(id="environment", kind="environment", **COMMON, params=environment.Params(**params))
    return environment.Environment(entry)


def climate(clock: float, temperature: float, humidity: float = 50.0, device: str = "th-1") -> DeviceMessage:
    payload = {"temperature_c": temperature, "humidity_pct": humidity}
    return message(device, "climate-sensor", "climate", clock, clock + 0.01, **payload)


RUBBER = {"th-1": ("climate-sensor", {"commodities": "rubber-bale, steel-coil", "zone": "storage"})}


def test_sustained_heat_over_rubber_alerts_once() -> None:
    rule, ctx = env_rule(), edge_context(RUBBER)
    findings = [f for t in range(0, 601, 30) for f in rule.evaluate(climate(t, 38.0), ctx)]
    assert [(f.targets, f.event_time, f.detail["commodities"]) for f in findings] == [
        (("device:th-1", "zone:storage"), 300.0, ["rubber-bale"])
    ]
    assert findings[0].observed_at == 300.01


def test_brief_spike_shorter_than_the_debounce_is_ignored() -> None:
    rule, ctx = env_rule(), edge_context(RUBBER)
    temps = [25.0] * 5 + [38.0] * 9 + [25.0] * 5 + [38.0] * 9  # two excursions of 240 s each
    assert [f for i, v in enumerate(temps) for f in rule.evaluate(climate(30.0 * i, v), ctx)] == []


def test_heat_that_suits_the_stored_goods_is_not_an_excursion() -> None:
    rule, ctx = env_rule(), edge_context({"th-1": ("climate-sensor", {"commodities": "steel-coil"})})
    assert [f for t in range(0, 1201, 30) for f in rule.evaluate(climate(t, 45.0), ctx)] == []


def test_humidity_is_debounced_on_its_own() -> None:
    rule, ctx = env_rule(min_duration_s=60), edge_context(RUBBER)
    findings = [f for t in range(0, 181, 30) for f in rule.evaluate(climate(t, 20.0, humidity=90.0), ctx)]
    assert [(f.detail["quantity"], f.event_time, sorted(f.detail["commodities"])) for f in findings] == [
        ("humidity_pct", 60.0, ["rubber-bale", "steel-coil"])
    ]


def test_late_reading_does_not_restart_or_break_an_excursion() -> None:
    rule, ctx = env_rule(min_duration_s=60), edge_context(RUBBER)
    assert rule.evaluate(climate(0.0, 38.0), ctx) == []
    assert rule.evaluate(climate(30.0, 38.0), ctx) == []
    assert rule.evaluate(climate(15.0, 20.0), ctx) == []  # older than the newest: ignored
    assert [f.event_time for f in rule.evaluate(climate(60.0, 38.0), ctx)] == [60.0]


def test_bank_ranges_override_their_commodity_and_keep_the_other_defaults() -> None:
    cooler = {"rubber-bale": {"temperature_c": [0, 30], "humidity_pct": [0, 85]}}
    params = environment.Params.model_validate({"ranges": cooler})
    assert params.ranges["rubber-bale"].temperature_c == (0.0, 30.0)
    assert params.ranges["steel-coil"] == environment.DEFAULT_RANGES["steel-coil"]
    with pytest.raises(pydantic.ValidationError, match="temperature_c: low 30"):
        environment.Params.model_validate({"ranges": {"x": {"temperature_c": [30, 0], "humidity_pct": [0, 85]}}})


def test_unknown_commodity_on_a_sensor_is_a_clear_error() -> None:
    rule, ctx = env_rule(), edge_context({"th-9": ("climate-sensor", {"commodities": "bananas"})})
    with pytest.raises(ValueError, match="th-9.*bananas"):
        rule.evaluate(climate(0.0, 20.0, device="th-9"), ctx)


def test_sensor_without_commodities_watches_nothing() -> None:
    rule, ctx = env_rule(min_duration_s=0), edge_context({"th-1": ("climate-sensor", {})})
    assert rule.evaluate(climate(0.0, 80.0, humidity=100.0), ctx) == []


@SETTINGS
@given(
    outside=st.lists(st.booleans(), min_size=1, max_size=60),
    min_readings=st.integers(0, 12),
)
def test_environment_alerts_once_per_excursion_that_lasts_the_debounce(outside: list[bool], min_readings: int) -> None:
    """One alert for each run of out-of-range readings spanning at least min_duration_s."""
    rule, ctx = env_rule(min_duration_s=30.0 * min_readings), edge_context(RUBBER)
    readings = [climate(30.0 * i, 40.0 if hot else 20.0) for i, hot in enumerate(outside)]
    findings = [f for reading in readings for f in rule.evaluate(reading, ctx)]
    runs, length = [], 0
    for hot in outside + [False]:
        if hot:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    assert len(findings) == sum(1 for n in runs if n - 1 >= min_readings)


# --- site geometry and geofence -----------------------------------------------------------------

SHANGHAI = ZoneInfo("Asia/Shanghai")
GEOMETRY = SiteGeometry.model_validate(
    {
        "site": "small",
        "timezone": "Asia/Shanghai",
        "working_hours": {"start_hour": 8, "end_hour": 18, "days": ["mon", "tue", "wed", "thu", "fri", "sat"]},
        "zones": {"yard": {"x0": 0, "y0": 0, "x1": 80, "y1": 16}, "storage": {"x0": 30, "y0": 18, "x1": 78, "y1": 48}},
        "bays": [
            {"id": "B01", "zone": "storage", "rect": {"x0": 31, "y0": 19, "x1": 41, "y1": 27}},
            {"id": "B02", "zone": "storage", "rect": {"x0": 43, "y0": 19, "x1": 53, "y1": 27}},
        ],
    }
)


def local(*args: int) -> float:
    return dt.datetime(*args, tzinfo=SHANGHAI).timestamp()


MONDAY_NIGHT = local(2024, 1, 8, 22, 0)
MONDAY_MORNING = local(2024, 1, 8, 10, 0)
SUNDAY_MORNING = local(2024, 1, 7, 10, 0)


def test_working_hours_are_local_time_on_working_days() -> None:
    assert GEOMETRY.in_working_hours(MONDAY_MORNING)
    assert GEOMETRY.in_working_hours(local(2024, 1, 8, 8, 0))
    assert not GEOMETRY.in_working_hours(local(2024, 1, 8, 18, 0))
    assert not GEOMETRY.in_working_hours(MONDAY_NIGHT)
    assert not GEOMETRY.in_working_hours(SUNDAY_MORNING)
    # 09:00 in Shanghai is 01:00 UTC: the zone, not UTC, decides.
    assert GEOMETRY.in_working_hours(dt.datetime(2024, 1, 8, 1, 0, tzinfo=dt.timezone.utc).timestamp())


def test_working_hours_follow_daylight_saving() -> None:
    berlin = SiteGeometry.model_validate(GEOMETRY.model_dump(mode="json") | {"timezone": "Europe/Berlin"})
    # Berlin moved to summer time on 31 March 2024: 06:30 UTC is 07:30 before and 08:30 after.
    assert not berlin.in_working_hours(dt.datetime(2024, 3, 25, 6, 30, tzinfo=dt.timezone.utc).timestamp())
    assert berlin.in_working_hours(dt.datetime(2024, 4, 1, 6, 30, tzinfo=dt.timezone.utc).timestamp())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"working_hours": {"start_hour": 18, "end_hour": 8, "days": ["mon"]}}, "start_hour"),
        ({"bays": [{"id": "B9", "zone": "attic", "rect": {"x0": 0, "y0": 0, "x1": 1, "y1": 1}}]}, "B9→attic"),
        ({"zones": {"yard": {"x0": 5, "y0": 0, "x1": 1, "y1": 1}}, "bays": []}, "x0 < x1"),
    ],
)
def test_bad_geometry_is_refused_naming_the_problem(change: dict, message: str) -> None:
    data = GEOMETRY.model_dump(mode="json") | change
    with pytest.raises(pydantic.ValidationError, match=message):
        SiteGeometry.model_validate(data)


def fence_rule(**params) -> geofence.Geofence:
    entry = geofence.Entry(id="geofence", kind="geofence", **COMMON, params=geofence.Params(**params))
    return geofence.Geofence(entry)


def fence_context(pledged: dict[str, str] | None = None, released: set[str] = frozenset()) -> EdgeContext:
    ctx = edge_context({"uwb-fl1": ("positioning-tag", {"forklift": "FL1"})}, geometry=GEOMETRY)
    ctx.book.pledged = {"B01-01": "L1"} if pledged is None else pledged
    ctx.book.released = set(released)
    ctx.book.bay_by_lot = {"B01-01": "B01", "B02-01": "B02"}
    return ctx


def position(clock: float, x: float, y: float, speed: float) -> DeviceMessage:
    return message("uwb-fl1", "positioning-tag", "position", clock, clock + 0.01, x_m=x, y_m=y, speed_mps=speed)


def test_forklift_moving_in_a_pledged_bay_after_hours_alerts() -> None:
    findings = fence_rule().evaluate(position(MONDAY_NIGHT, 36.0, 23.0, 2.5), fence_context())
    assert [(f.targets, f.event_time, f.detail["forklift"]) for f in findings] == [
        (("bay:B01", "zone:storage", "device:uwb-fl1"), MONDAY_NIGHT, "FL1")
    ]


def test_forklift_moving_on_a_sunday_morning_alerts() -> None:
    assert len(fence_rule().evaluate(position(SUNDAY_MORNING, 36.0, 23.0, 2.5), fence_context())) == 1


@pytest.mark.parametrize(
    ("clock", "x", "y", "speed", "released"),
    [
        (MONDAY_MORNING, 36.0, 23.0, 2.5, set()),  # the same move in working hours
        (MONDAY_NIGHT, 36.0, 23.0, 0.0, set()),  # parked in the bay after hours
        (MONDAY_NIGHT, 48.0, 23.0, 2.5, set()),  # B02 holds no pledged goods
        (MONDAY_NIGHT, 36.0, 23.0, 2.5, {"B01-01"}),  # the pledge was released
        (MONDAY_NIGHT, 40.9, 23.0, 2.5, set()),  # aisle-side edge, within positioning noise
        (MONDAY_NIGHT, 36.0, 12.0, 2.5, set()),  # in the yard
    ],
)
def test_geofence_near_misses_stay_silent(clock: float, x: float, y: float, speed: float, released: set[str]) -> None:
    assert fence_rule().evaluate(position(clock, x, y, speed), fence_context(released=released)) == []


def test_one_alert_per_forklift_and_bay_per_realert_window() -> None:
    rule, ctx = fence_rule(realert_after_s=600), fence_context()
    findings = [f for s in range(0, 1200, 1) for f in rule.evaluate(position(MONDAY_NIGHT + s, 36.0, 23.0, 1.0), ctx)]
    assert [f.event_time - MONDAY_NIGHT for f in findings] == [0.0, 600.0]


def test_geofence_without_provisioned_geometry_is_a_clear_error() -> None:
    ctx = fence_context()
    ctx.extra.clear()
    with pytest.raises(LookupError, match="small.*SiteGeometry"):
        fence_rule().evaluate(position(MONDAY_NIGHT, 36.0, 23.0, 2.5), ctx)


@SETTINGS
@given(
    points=st.lists(st.tuples(st.floats(0, 80), st.floats(0, 48)), min_size=1, max_size=30),
    start=st.floats(1.6e9, 1.8e9),
)
def test_positions_outside_pledged_bays_never_alert(points: list[tuple[float, float]], start: float) -> None:
    """Anywhere but inside B01 (by the margin), at any hour, a moving forklift is no alert."""
    b01 = GEOMETRY.bays[0].rect
    rule, ctx = fence_rule(), fence_context()
    outside = [(x, y) for x, y in points if not b01.contains(x, y, 0.3)]
    assert [f for i, (x, y) in enumerate(outside) for f in rule.evaluate(position(start + i, x, y, 2.0), ctx)] == []
    inside = position(start + len(outside), 36.0, 23.0, 2.0)
    assert len(rule.evaluate(inside, ctx)) == (0 if GEOMETRY.in_working_hours(inside.clock) else 1)
