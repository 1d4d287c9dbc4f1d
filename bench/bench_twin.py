"""Twin speed benchmark: the `medium` site for 24 simulated hours, the whole run, one core.

Run: python bench/bench_twin.py [--hours 24] [--profile-hours 1]
The profiled run starts at 08:00, so it shows the cost centres of the busy hours.

An honest working day, written as a scenario: one loan over half the bays; from 08:00 to 18:00
a truck every 15 minutes, alternating an inbound of 3 lots into a box bay and an outbound of 2
unpledged lots, by both gates; the night is quiet (heartbeats, climate). The run is the real one
(`scenarios.run.run_scenario`): twin, pybullet weighings, every device the fleet builds today, the
device links, the edge with its rules and outbox, the uplink and the cloud, the evidence ledger.
Which sensors produce what is counted from the event log and printed, so the figure says what it
covered: a device type that `devices/fleet.py` gives no model of its own sends heartbeats only.

Prints `name: measured (baseline: X, target: Y)`: simulated seconds per wall second; the baseline
is a bare SimPy loop of as many timeouts as the run emitted device messages. Then a cProfile
top-15 (own time) of a separate run of `--profile-hours`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from collections import Counter
from pathlib import Path

import simpy

from cangtwin.scenarios.fidelity_speed import TARGET_WALL_S_PER_DAY, emitted_by_type, run_day


def simpy_floor(events: int) -> float:
    """Wall seconds for a bare SimPy loop of `events` timeouts (the engine's own cost)."""
    env = simpy.Environment()

    def ticker(n: int):
        for _ in range(n):
            yield env.timeout(1.0)

    env.process(ticker(events))
    started = time.perf_counter()
    env.run()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--profile-hours", type=float, default=1.0, help="length of the profiled run (0: none)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-twin-") as tmp:
        outcome, wall, cpu = run_day(args.hours, Path(tmp))
        counts = emitted_by_type(outcome)
        m = outcome.messages
        trucks = sum(1 for line in outcome.log.lines if b'"ev":"twin.truck-arrived"' in line)
        print(f"medium site, {args.hours:g} h: {trucks} truck visits, {m['emitted']:,} device messages, "
              f"{m['edge_accepted']:,} admitted at the edge, {m['cloud_records']:,} records at the cloud, "
              f"{len(outcome.alerts)} alert(s) {dict(Counter(s.alert.rule for s in outcome.alerts))}")
        by_type: dict[str, list[str]] = {}
        for (device_type, kind), n in sorted(counts.items()):
            by_type.setdefault(device_type, []).append(f"{kind} {n:,}")
        for device_type, kinds in by_type.items():
            print(f"  {device_type}: {', '.join(kinds)}")
        heartbeat_only = sorted(t for t, kinds in by_type.items() if all(k.startswith("heartbeat") for k in kinds))
        if heartbeat_only:
            print(f"  sent heartbeats only in this run: {', '.join(heartbeat_only)}")
        floor = simpy_floor(m["emitted"])
        speed = args.hours * 3600 / wall
        print(f"  wall {wall:.1f} s for the whole run, {cpu:.1f} s of CPU ({os.getloadavg()[0]:.1f} load average); "
              f"{outcome.wall_s:.1f} s wall in the event loop, the rest is building the site, the world and the "
              f"platform, and writing evidence")
        print(f"twin speed, medium, {args.hours:g} h (simulated s per wall s): {speed:,.0f}x, "
              f"{wall * 24 / args.hours:.0f} s per simulated day "
              f"(baseline: {args.hours * 3600 / floor:,.0f}x bare SimPy, one timeout per device message; "
              f"target: <= {TARGET_WALL_S_PER_DAY:.0f} s per day, >= 720x)")

    if args.profile_hours > 0:
        with tempfile.TemporaryDirectory(prefix="bench-twin-profile-") as tmp:
            profiler = cProfile.Profile()
            profiler.runcall(run_day, args.profile_hours, Path(tmp), 8)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(15)
            print(f"\ncProfile, {args.profile_hours:g} h of the busy day from 08:00, top 15 by own time:")
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
