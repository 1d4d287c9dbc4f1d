"""Platform ingest benchmark: the edge's full path on the `medium` site's message mix, one core.

Run: python bench/bench_ingest.py [--hours 5] [--repeats 3]  (one to two minutes).

The traffic is pre-generated from the `medium` site file at its pinned rates, without LiDAR and
camera payloads: heartbeats of all 82 devices every 10 s, climate every 30 s, 1 Hz positions of
forklifts while they drive (a busy shift), and one truck after another taking the gates in turn:
RFID reads and a passage in, 10 Hz weighbridge readings while it stands on the plate (drive-on
ramp, stable plateau, drive-off, stable zero), again on the way out, and reads and a passage out. Every frame is sealed with its device's own key (`wire.seal`), sequence
numbers and device clocks advance, so the edge admits every one of them.

The timed path is `EdgeService.on_frame` for every frame, in arrival order: envelope decode,
HMAC-SHA256 verify, clock skew and replay window, payload validation against the TD, gate
fusion, the whole default rule catalog, and outbox append (in-memory SQLite) in batches of
1,000; the uplink acks each batch at once. Modelled service time is zero and the clock is a
heap drained in order (`HeapClock`). The edge's linger is set to an hour so every append is a
full 1,000-record batch, as it would be at 100k msg/s with the default 10 ms linger.

Prints `name: measured (baseline: X, target: Y)`, the median of the repeats, in messages per
second of CPU time of this process (the target is for one core, and the machine is shared; wall
rates are printed beside). The baseline is a bare decode + HMAC verify of the same frames. Then
a cProfile top-15 of one full-path run.
"""

from __future__ import annotations

import argparse
import cProfile
import heapq
import io
import math
import os
import pstats
import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable
from zoneinfo import ZoneInfo

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.edge.outbox import Outbox, OutboxConfig
from cangtwin.platform.edge.service import EdgeService, EdgeTiming
from cangtwin.platform.records import BookSync, UplinkAck, batch_decoder, record_encoder
from cangtwin.platform.rules.ruleset import load_ruleset
from cangtwin.platform.thing_model import ThingModel
from cangtwin.platform.wire import DeviceKey, seal, split
from cangtwin.scenarios.run import device_attrs, site_geometry  # what the integrator provisions
from cangtwin.twin.site import Site, load_site
from cangtwin.twin.world import shape_for

TARGET_MSG_S = 100_000
BATCH = 1000
LAN_LATENCY_S = 0.004
PLEDGED_BAYS = ("W01", "W02", "W03", "W04", "W05", "W06", "W07", "W08",
                "E01", "E02", "E03", "E04", "E05", "E06", "E07", "E08")


class HeapClock:
    """A `Clock` for benches: `call_later` pushes on a heap that `advance` drains in time order."""

    def __init__(self, start: float) -> None:
        self.t = start
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._n = 0

    def now(self) -> float:
        return self.t

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self._n += 1
        heapq.heappush(self._heap, (self.t + max(0.0, delay), self._n, callback))

    def next_due(self) -> float:
        return self._heap[0][0] if self._heap else float("inf")

    def advance(self, to: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= to:
            self.t, _, callback = heapq.heappop(heap)
            callback()
        self.t = max(self.t, to)


@dataclass(frozen=True)
class Traffic:
    """Sealed frames in arrival order, (edge arrival time, frame), and what sent them."""

    site: Site
    start: float
    end: float
    devices: dict[str, DeviceRecord]
    frames: list[tuple[float, bytes]]
    kinds: dict[str, int]


def site_start(site: Site, local: str = "2026-03-03T08:30") -> float:
    """A working-day morning at the site: after-hours rules stay quiet, as on an honest day."""
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(site.spec.timezone)).timestamp()


def medium_book(site: Site) -> CollateralBook:
    """The initial stock of the site, half of the bays pledged to one loan."""
    book = CollateralBook()
    for bay in site.spec.bays:
        commodity = site.spec.commodities[bay.commodity]
        mass = sum(commodity.mass_kg) / 2
        for n in range(1, bay.initial_lots + 1):
            lot = f"{bay.id}-{n:02d}"
            book.add_lot(Lot(lot, f"EPC-{lot}", site.id, bay.commodity, mass, bay.id,
                             volume_m3=round(shape_for(commodity, mass).envelope_volume_m3, 4)))
    book.open_loan(Loan("LN-M-001", "bank-a", "华东金属贸易有限公司", 2_000_000))
    pledged = sorted(lot.id for lot in book.lots.values() if lot.bay in PLEDGED_BAYS)
    book.pledge("LN-M-001", pledged, receipt_id="WR-medium-0001")
    return book


def book_sync(book: CollateralBook, site: str) -> bytes:
    lots = book.lots
    return record_encoder.encode(BookSync(
        site=site, version=book.version, pledged=dict(book.pledges), released=sorted(book.released),
        tags={lid: lot.tag for lid, lot in lots.items()}, bays={lid: lot.bay for lid, lot in lots.items()},
        volumes={lid: lot.volume_m3 for lid, lot in lots.items()}, masses={lid: lot.mass_kg for lid, lot in lots.items()},
    ))


def generate(site: Site, seconds: float, seed: int = 7) -> Traffic:
    """The medium mix for `seconds` of a busy working morning, sealed per device."""
    spec, rates = site.spec, site.spec.rates
    rng = np.random.default_rng(seed)
    start = site_start(site)
    end = start + seconds
    keys = {d.id: rng.bytes(32) for d in spec.devices}
    devices = {d.id: DeviceRecord(d.id, d.type, keys[d.id], device_attrs(site, d.id)) for d in spec.devices}
    events: dict[str, list[tuple[float, str, dict]]] = {d.id: [] for d in spec.devices}

    for d in spec.devices:  # heartbeats: every device, booted at different times
        t = start + rng.uniform(0, rates.heartbeat_s)
        while t < end:
            events[d.id].append((t, "heartbeat", {"uptime_s": round(t - start + 3600.0, 3), "status": "ok"}))
            t += rates.heartbeat_s
    for d in (d for d in spec.devices if d.type == "climate-sensor"):
        t = start + rng.uniform(0, rates.climate_s)
        while t < end:
            phase = 2 * math.pi * ((t % 86400) / 86400 - 0.625)
            events[d.id].append((t, "climate", {
                "temperature_c": round(18.0 + 6.0 * math.cos(phase) + rng.normal(0, 0.2), 2),
                "humidity_pct": round(60.0 - 12.0 * math.cos(phase) + rng.normal(0, 1.5), 1),
            }))
            t += rates.climate_s
    _forklifts(site, rng, start, end, events)
    _truck_visits(site, medium_book(site), rng, start, end, events)

    merged: list[tuple[float, bytes]] = []
    kinds: dict[str, int] = {}
    for device_id, items in events.items():
        items.sort(key=lambda e: e[0])
        offset = float(rng.normal(0.0, 0.003))  # NTP-disciplined device clock
        for seq, (t, kind, payload) in enumerate(items, 1):
            merged.append((t + LAN_LATENCY_S, seal(device_id, keys[device_id], seq, t + offset, kind, payload)))
            kinds[kind] = kinds.get(kind, 0) + 1
    merged.sort(key=lambda f: f[0])
    return Traffic(site, start, end, devices, merged, dict(sorted(kinds.items())))


def _forklifts(site: Site, rng: np.random.Generator, start: float, end: float, events: dict) -> None:
    """Dock ↔ bay runs along the aisles (x, then y), 1 Hz while moving, ~10 cm ranging noise.
    The runs serve unpledged bays only: a forklift carrying pledged goods to a dock is what
    `geofence` rightly flags, and this is honest traffic."""
    spec = site.spec
    period = 1.0 / spec.rates.positioning_hz
    free_bays = [bay for bay in spec.bays if bay.id not in PLEDGED_BAYS]
    for fl in spec.forklifts:
        tag = next(d.id for d in spec.devices if d.forklift == fl.id)
        at, t = tuple(fl.home), start + rng.uniform(0, 30)
        to_bay = True
        while t < end:
            if to_bay:
                goal = free_bays[int(rng.integers(len(free_bays)))].rect.center
            else:
                goal = tuple(spec.docks[int(rng.integers(len(spec.docks)))].position)
            dx, dy = goal[0] - at[0], goal[1] - at[1]
            length = abs(dx) + abs(dy)
            duration = length / fl.speed_mps
            k = 0
            while k * period < duration and t + k * period < end:
                s = k * period * fl.speed_mps
                x, y = (at[0] + math.copysign(s, dx), at[1]) if s <= abs(dx) else (goal[0], at[1] + math.copysign(s - abs(dx), dy))
                events[tag].append((t + k * period, "position", {
                    "x_m": round(x + rng.normal(0, 0.1), 2), "y_m": round(y + rng.normal(0, 0.1), 2),
                    "speed_mps": fl.speed_mps,
                }))
                k += 1
            at, to_bay = goal, not to_bay
            t += duration + fl.handling_s + rng.uniform(0, 20)


def _weighing(device: str, t: float, gross: float, e: float, dt: float, end: float, events: dict) -> None:
    """A truck drives on (3 s of motion), stands 37 s, drives off (2 s); the scale reads zero."""
    series = [(gross * (i + 1) / 30, False) for i in range(30)]
    series += [(gross, True)] * 370
    series += [(gross * (19 - i) / 20, False) for i in range(20)]
    series.append((0.0, True))
    for i, (mass, stable) in enumerate(series):
        if t + i * dt < end:
            events[device].append((t + i * dt, "reading", {"mass_kg": round(round(mass / e) * e, 1), "stable": stable}))


def _truck_visits(site: Site, book: CollateralBook, rng: np.random.Generator, start: float, end: float,
                  events: dict) -> None:
    """One truck after another, taking the gates in turn: tags read and passage in, weighed on the
    gate's weighbridge, loaded or unloaded, weighed again, tags read and passage out.

    Inbound trucks bring 3 new lots; outbound ones take 2 unpledged lots, and the two weighings
    differ by exactly the mass the book holds for them, as on an honest day. Visits do not overlap,
    because the edge pairs a truck's two weighings by their order (platform/edge/load_check.py).
    """
    spec = site.spec
    dt = 1.0 / spec.rates.scale_hz
    tare = spec.truck.tare_kg
    leaving = [lot for lot in sorted(book.lots) if lot not in book.pledges]
    t, visit = start + rng.uniform(0, 60), 0
    while True:
        gate = spec.gates[visit % len(spec.gates)]
        scale = min(spec.weighbridges, key=lambda w: abs(w.rect.center[0] - gate.position[0]))
        reader = next(d.id for d in spec.devices if d.type == "rfid-reader" and d.gate == gate.id)
        loop = next(d.id for d in spec.devices if d.type == "gate-sensor" and d.gate == gate.id)
        device = next(d.id for d in spec.devices if d.weighbridge == scale.id)
        visit += 1
        if visit % 2:
            tags_in, tags_out, cargo_in, cargo_out = [f"EPC-IN-{visit:04d}-{i}" for i in (1, 2, 3)], [], 3600.0, 0.0
        else:
            lots = [leaving[(visit + i) % len(leaving)] for i in (0, 1)]
            tags_in, tags_out = [], [book.lots[lot].tag for lot in lots]
            cargo_in, cargo_out = 0.0, sum(book.lots[lot].mass_kg for lot in lots)
        if t + 400 > end:
            return
        for direction, at, tags in (("in", t, tags_in), ("out", t + 360, tags_out)):
            for i, tag in enumerate(tags):
                events[reader].append((at + 1.0 + 0.25 * i, "tag_read", {
                    "tag": tag, "rssi_dbm": round(float(rng.normal(-58, 4)), 1), "antenna": "1"}))
            events[loop].append((at + 8.0, "passage", {"direction": direction, "occupancy_s": 8.0}))
        _weighing(device, t + 15, tare + cargo_in, scale.division_kg, dt, end, events)
        _weighing(device, t + 300, tare + cargo_out, scale.division_kg, dt, end, events)
        t += 370 + rng.uniform(10, 60)


class IngestEdge:
    """A medium-site EdgeService on a HeapClock, its uplink acking every batch at once."""

    def __init__(self, traffic: Traffic) -> None:
        site = traffic.site
        self.clock = HeapClock(traffic.start - 1.0)
        self.alerts: list = []
        self.appends: list[int] = []
        outbox = Outbox(None, OutboxConfig(max_bytes=1 << 30, segment_bytes=4 << 20),
                        Ed25519PrivateKey.from_private_bytes(bytes(32)))
        self.edge = EdgeService(
            site.id, self.clock, traffic.devices,
            {name: ThingModel(td) for name, td in thing_descriptions().items()},
            load_ruleset(), outbox, send_uplink=self._ack, tap=self._tap,
            timing=EdgeTiming(per_message_s=0.0, linger_s=3600.0, batch_size=BATCH), geometry=site_geometry(site),
        )
        self.edge.on_downlink(book_sync(medium_book(site), site.id))
        self.edge.start()

    def _ack(self, data: bytes) -> None:
        batch = batch_decoder.decode(data)
        self.appends.append(len(batch.entries))
        self.edge.on_downlink(record_encoder.encode(UplinkAck(batch.site, [seq for seq, _ in batch.entries])))

    def _tap(self, event: str, record: object) -> None:
        if event == "edge.alert":
            self.alerts.append(record)

    def run(self, frames: list[tuple[float, bytes]], end: float) -> None:
        advance, on_frame = self.clock.advance, self.edge.on_frame
        for at, frame in frames:
            advance(at)
            on_frame(frame)
        advance(end + 1.0)


def full_path(traffic: Traffic) -> tuple[float, float, IngestEdge]:
    """(msg per CPU second, msg per wall second, the edge after the run)."""
    edge = IngestEdge(traffic)
    cpu, wall = time.process_time(), time.perf_counter()
    edge.run(traffic.frames, traffic.end)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return len(traffic.frames) / cpu, len(traffic.frames) / wall, edge


def bare_decode_hmac(traffic: Traffic) -> float:
    """msg per CPU second for envelope decode + HMAC verify alone."""
    keys = {d.id: DeviceKey(d.key) for d in traffic.devices.values()}
    started = time.process_time()
    for _, frame in traffic.frames:
        envelope, body, tag = split(frame)
        if not keys[envelope.device].matches(body, tag):
            raise AssertionError(f"bad tag from {envelope.device}")
    return len(traffic.frames) / (time.process_time() - started)


def profile_top(traffic: Traffic, top: int = 15) -> str:
    edge = IngestEdge(traffic)
    profiler = cProfile.Profile()
    profiler.runcall(edge.run, traffic.frames, traffic.end)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=5.0, help="simulated hours of traffic (5 h ≈ 270k frames)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    site = load_site("medium")
    began = time.perf_counter()
    traffic = generate(site, args.hours * 3600)
    n = len(traffic.frames)
    print(f"medium site, {len(traffic.devices)} devices, {args.hours:g} h busy morning: {n:,} frames "
          f"({n / (traffic.end - traffic.start):.1f} msg/s of simulated time), generated in "
          f"{time.perf_counter() - began:.1f} s")
    print("  mix: " + ", ".join(f"{kind} {count:,}" for kind, count in traffic.kinds.items()))

    bare, full, wall, last = [], [], [], None
    for _ in range(args.repeats):
        bare.append(bare_decode_hmac(traffic))
        rate, wall_rate, last = full_path(traffic)
        full.append(rate)
        wall.append(wall_rate)
    edge = last.edge
    if edge.accepted != n or sum(edge.rejected.values()):
        raise SystemExit(f"the edge admitted {edge.accepted} of {n} frames; rejected {dict(edge.rejected)}")
    pending = len(edge.outbox.next_batch(1 << 30, last.clock.now()))
    print(f"  admitted {edge.accepted:,}; outbox appends {len(last.appends)} of median "
          f"{statistics.median(last.appends):,.0f} records; {pending} left unacked; "
          f"edge alerts raised: {len(last.alerts)} ({', '.join(sorted({a.rule for a in last.alerts})) or 'none'})")
    print(f"  repeats full path: {', '.join(f'{r:,.0f}' for r in full)} msg/CPU-s "
          f"({', '.join(f'{r:,.0f}' for r in wall)} msg/wall-s, {os.getloadavg()[0]:.1f} load average); "
          f"bare: {', '.join(f'{r:,.0f}' for r in bare)} msg/CPU-s")
    print(f"platform ingest msg/s (full edge path, 1 core): {statistics.median(full):,.0f} "
          f"(baseline: {statistics.median(bare):,.0f} bare decode + HMAC, target: >= {TARGET_MSG_S:,})")
    print("\ncProfile, full path, top 15 by own time:")
    print(profile_top(traffic))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
