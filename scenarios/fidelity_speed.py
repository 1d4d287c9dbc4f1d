"""Twin speed: the `medium` site's honest working day run for real, timed, and its cost centres.

The day is a scenario run by `scenarios.run.run_scenario`: one loan over 8 bays; from 08:00 to
18:00 a truck every 15 minutes, alternating an inbound of 3 lots into a box bay and an outbound of
2 unpledged lots, through both gates. Everything runs at its pinned rate: the twin (SimPy, Mesa,
pybullet weighings), every device the fleet builds (camera analysis streams, LiDAR scans), the
links, the edge with perception and rules, the uplink, the cloud and the evidence ledger.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import msgspec

from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario
from cangtwin.twin.site import load_site

TARGET_WALL_S_PER_DAY = 120.0
PLEDGED_BAYS = ["W01", "W02", "W03", "W04", "E01", "E02", "E03", "E04"]
BOX_BAYS = [("W09", "aluminium-ingot"), ("W14", "aluminium-ingot"), ("E09", "rubber-bale"), ("E12", "rubber-bale")]


def day_scenario(hours: float, start_hour: int = 0) -> str:
    """The scenario text: `hours` of the working day from `start_hour` o'clock."""
    site = load_site("medium").spec
    leaving = [f"{b.id}-{n:02d}" for b in site.bays if b.id not in PLEDGED_BAYS and b.commodity != "steel-coil"
               for n in range(1, b.initial_lots + 1)]
    ops = []
    for k, clock_minute in enumerate(range(8 * 60, 18 * 60, 15)):
        minute = clock_minute - start_hour * 60
        if minute < 0:
            continue
        if minute >= hours * 60:
            break
        if k % 2 == 0:
            bay, commodity = BOX_BAYS[(k // 2) % len(BOX_BAYS)]
            ops.append(f"  - {{kind: inbound, at: {minute}m, commodity: {commodity}, count: 3, bay: {bay}}}")
        else:
            lots = ", ".join(leaving.pop(7 * (k % 5)) for _ in range(2))
            ops.append(f"  - {{kind: outbound, at: {minute}m, lots: [{lots}]}}")
    return "\n".join([
        "scenario: bench-medium-day",
        "site: medium",
        "seed: 20260303",
        f'start: "2026-03-03T{start_hour:02d}:00"',
        f"duration: {hours * 3600:g}s",
        "loans:",
        f"  - {{id: LN-M-001, bank: bank-a, borrower: 华东金属贸易有限公司, amount_cny: 3000000, bays: [{', '.join(PLEDGED_BAYS)}]}}",
        "operations:" if ops else "operations: []",
        *ops,
        "expectations:",
        "  - {kind: no-false-alarms}",
    ]) + "\n"


def run_day(hours: float, folder: Path, start_hour: int = 0, progress: Callable[[float], None] | None = None):
    """(outcome, wall s, CPU s) of `hours` of the day from `start_hour`, run in `folder`."""
    path = folder / "bench-medium-day.yaml"
    path.write_text(day_scenario(hours, start_hour), encoding="utf-8")
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = run_scenario(load_scenario(path), folder / "run", progress=progress)
    return outcome, time.perf_counter() - wall, time.process_time() - cpu


def emitted_by_type(outcome) -> Counter:
    """(device type, message kind) of every device message, from the run's event log."""
    decode = msgspec.json.Decoder().decode
    types = {d.id: d.type for d in outcome.scenario.site.spec.devices}
    counts: Counter = Counter()
    for line in outcome.log.lines:
        if b'"ev":"device.emit"' in line:
            data = decode(line)["data"]
            counts[(types.get(data["device"], "?"), data["kind"])] += 1
    return counts


@dataclass(frozen=True)
class DayTiming:
    hours: float
    start_hour: int
    wall_s: float  # the whole run: building the site, world and platform, the event loop, evidence
    loop_s: float  # of which the event loop (what grows with simulated time)
    cpu_s: float
    messages: int
    alerts: int
    emitted: dict[str, int]  # "type/kind" -> messages

    @property
    def wall_s_per_day(self) -> float:
        """Measured for a 24 h run; otherwise the set-up once plus the event loop scaled to 24 h."""
        return self.wall_s + self.loop_s * (24 / self.hours - 1)

    @property
    def extrapolated(self) -> bool:
        return self.hours < 24


def time_day(hours: float, start_hour: int, progress: Callable[[float], None] | None = None) -> DayTiming:
    with tempfile.TemporaryDirectory(prefix="fidelity-day-") as tmp:
        outcome, wall, cpu = run_day(hours, Path(tmp), start_hour, progress)
        counts = emitted_by_type(outcome)
        return DayTiming(hours, start_hour, wall, outcome.wall_s, cpu, outcome.messages["emitted"], len(outcome.alerts),
                         {f"{t}/{k}": n for (t, k), n in sorted(counts.items())})


@dataclass(frozen=True)
class CostCentre:
    function: str  # file:line(name)
    calls: int
    own_s: float
    cumulative_s: float


def profile_day(hours: float, start_hour: int = 8, top: int = 15) -> tuple[float, list[CostCentre]]:
    """(profiled wall s, top cost centres by own time) of `hours` of the day from `start_hour`."""
    with tempfile.TemporaryDirectory(prefix="fidelity-profile-") as tmp:
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.runcall(run_day, hours, Path(tmp), start_hour)
        wall = time.perf_counter() - started
    stats = pstats.Stats(profiler, stream=io.StringIO()).strip_dirs()
    rows = []
    for (file, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():
        rows.append(CostCentre(f"{file}:{line}({name})", calls, own, cumulative))
    rows.sort(key=lambda r: r.own_s, reverse=True)
    return wall, rows[:top]
