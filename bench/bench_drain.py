"""Outage drain benchmark: after 1 h without uplink at `medium` rates, how fast the backlog empties.

Run: python bench/bench_drain.py [--hours 1] [--repeats 3]  (about a minute).

The edge admits an hour of the `medium` site's message mix (the generator of bench_ingest.py)
while both WAN links are down, so every record waits in its outbox (in-memory SQLite, as in
simulations). Then the links come back and the edge drains through a real `CloudService`
in-process: batches of 1,000 go up, the cloud applies them idempotently (dedupe by outbox
sequence) and acks, and each ack releases the next batch. Links deliver through the bench's
`HeapClock` with no latency and no modelled service time, so wall time is the code's cost.

Prints `name: measured (baseline: X, target: Y)`, the median of the repeats: records drained per
wall second from the first resend after reconnecting to an empty outbox. The baseline is the raw
`Outbox.next_batch` + `ack` loop over the same records, with no uplink and no cloud. Each run is
checked for zero loss and zero duplicate effects: every outbox sequence number is committed at
the cloud (`has_record`), `records_applied` equals the records appended, and no alert was held twice.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench_ingest import HeapClock, Traffic, generate, medium_book
from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.cloud.service import CloudService, CloudTiming
from cangtwin.platform.edge.outbox import Outbox, OutboxConfig
from cangtwin.platform.edge.service import EdgeService, EdgeTiming
from cangtwin.platform.rules.ruleset import load_ruleset
from cangtwin.platform.thing_model import ThingModel
from cangtwin.scenarios.run import site_geometry
from cangtwin.twin.site import load_site

TARGET_MSG_S = 20_000
BATCH = 1000
OUTBOX = OutboxConfig(max_bytes=512 * 1024 * 1024, segment_bytes=4 * 1024 * 1024)


def _outbox() -> Outbox:
    return Outbox(None, OUTBOX, Ed25519PrivateKey.from_private_bytes(bytes(32)))


class Wan:
    """Both directions between edge and cloud: delivered on the clock when up, dropped when down."""

    def __init__(self, clock: HeapClock) -> None:
        self.clock = clock
        self.up = True
        self.dropped = 0

    def carry(self, deliver):
        def send(data: bytes) -> None:
            if self.up:
                self.clock.call_later(0.0, lambda: deliver(data))
            else:
                self.dropped += 1
        return send


class OutageRun:
    """One edge and one cloud; the edge's outbox filled while the WAN is down."""

    def __init__(self, traffic: Traffic) -> None:
        site = traffic.site
        self.site = site.id
        self.clock = HeapClock(traffic.start - 1.0)
        self.cloud_alerts: list[str] = []
        self.wan = Wan(self.clock)
        ruleset = load_ruleset()
        self.cloud = CloudService(self.clock, medium_book(site), ruleset, self._tap, timing=CloudTiming(0.0, 0.0))
        self.edge = EdgeService(
            site.id, self.clock, traffic.devices,
            {name: ThingModel(td) for name, td in thing_descriptions().items()},
            ruleset, _outbox(), send_uplink=self.wan.carry(self.cloud.on_uplink), tap=lambda *_: None,
            timing=EdgeTiming(per_message_s=0.0, batch_size=BATCH), geometry=site_geometry(site),
        )
        self.cloud.connect_edge(site.id, self.wan.carry(self.edge.on_downlink))
        self.edge.start()
        self.cloud.start()
        self.clock.advance(traffic.start)  # the book reaches the edge before the outage
        self.wan.up = False
        advance, on_frame = self.clock.advance, self.edge.on_frame
        for at, frame in traffic.frames:
            advance(at)
            on_frame(frame)
        advance(traffic.end)

    def _tap(self, event: str, record: object) -> None:
        if event == "cloud.alert":
            self.cloud_alerts.append(record.alert.id)

    @property
    def pending(self) -> int:
        return self.edge.outbox.counters.pending

    def drain(self) -> tuple[int, float, float]:
        """Reconnect and run the clock until the outbox is empty: (records drained, wall s, CPU s).

        The clock starts at the edge's next ack timeout (its first resend), so the wall time is
        the drain itself, not the simulated wait for the timer.
        """
        backlog = self.pending
        self.wan.up = True
        self.clock.advance(math.nextafter(self.clock.next_due(), -math.inf))
        wall, cpu = time.perf_counter(), time.process_time()
        while self.pending:
            self.clock.advance(self.clock.now() + 1.0)
        return backlog, time.perf_counter() - wall, time.process_time() - cpu

    def check_exactly_once(self) -> None:
        head, _ = self.edge.outbox.head
        counters = self.edge.outbox.counters
        missing = [seq for seq in range(1, head + 1) if not self.cloud.has_record(self.site, seq)]
        problems = []
        if missing:
            problems.append(f"{len(missing)} records never committed (first {missing[:5]})")
        if self.cloud.records_applied != counters.appended:
            problems.append(f"cloud applied {self.cloud.records_applied} records, the edge appended {counters.appended}")
        if counters.evicted or counters.rejected:
            problems.append(f"outbox evicted {counters.evicted}, rejected {counters.rejected}")
        if len(set(self.cloud_alerts)) != len(self.cloud_alerts):
            problems.append("an alert was held twice")
        if problems:
            raise SystemExit("drain lost or duplicated records: " + "; ".join(problems))


def raw_outbox_rate(run: OutageRun) -> float:
    """next_batch + ack over a copy of the same backlog, nothing else."""
    entries = run.edge.outbox.next_batch(1 << 30, run.clock.now())
    outbox = _outbox()
    for i in range(0, len(entries), BATCH):
        outbox.append_many([(e.payload, e.priority) for e in entries[i:i + BATCH]], run.clock.now())
    started = time.perf_counter()
    while batch := outbox.next_batch(BATCH, run.clock.now()):
        outbox.ack([e.seq for e in batch])
    return len(entries) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="length of the outage in simulated hours")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    traffic = generate(load_site("medium"), args.hours * 3600)
    drained, drained_cpu, raw = [], [], []
    for repeat in range(args.repeats):
        run = OutageRun(traffic)
        raw.append(raw_outbox_rate(run))
        backlog, wall, cpu = run.drain()
        run.check_exactly_once()
        drained.append(backlog / wall)
        drained_cpu.append(backlog / cpu)
        if repeat == 0:
            print(f"medium site, {args.hours:g} h outage: {len(traffic.frames):,} device frames → backlog of "
                  f"{backlog:,} records; {run.wan.dropped} sends dropped while down; cloud applied "
                  f"{run.cloud.records_applied:,} records exactly once, {run.cloud.duplicates} duplicate(s) "
                  f"ignored, {len(run.cloud_alerts)} cloud alert(s) ({wall:.2f} s wall)")
    print(f"  repeats drain: {', '.join(f'{r:,.0f}' for r in drained)} msg/wall-s "
          f"({', '.join(f'{r:,.0f}' for r in drained_cpu)} msg/CPU-s, {os.getloadavg()[0]:.1f} load average); "
          f"raw outbox: {', '.join(f'{r:,.0f}' for r in raw)} msg/wall-s")
    print(f"outage drain msg/s (edge outbox → cloud, idempotent apply + ack): {statistics.median(drained):,.0f} "
          f"(baseline: {statistics.median(raw):,.0f} raw Outbox.next_batch + ack, target: >= {TARGET_MSG_S:,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
