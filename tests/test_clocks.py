"""One platform core, two clocks: the same edge and cloud code under SimPy and under asyncio."""

from __future__ import annotations

import asyncio
import time

import simpy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.clock import AsyncioClock, Clock, SimPyClock
from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot
from cangtwin.platform.cloud.service import CloudService, CloudTiming
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.edge.outbox import Outbox, OutboxConfig
from cangtwin.platform.edge.service import EdgeService, EdgeTiming
from cangtwin.platform.rules.ruleset import load_ruleset
from cangtwin.platform.thing_model import ThingModel
from cangtwin.platform.wire import seal

RFID, LOOP = b"r" * 32, b"l" * 32


def _platform(clock: Clock, deliver, timing: EdgeTiming, cloud_timing: CloudTiming):
    book = CollateralBook()
    book.add_lot(Lot("B01-01", "EPC-B01-01", "small", "steel-coil", 20000.0, "B01"))
    book.open_loan(Loan("LN-1", "bank-a", "borrower", 1e6))
    book.pledge("LN-1", ["B01-01"], "WR-1")
    devices = {
        "rfid-g1": DeviceRecord("rfid-g1", "rfid-reader", RFID, {"gate": "G1"}),
        "loop-g1": DeviceRecord("loop-g1", "gate-sensor", LOOP, {"gate": "G1"}),
    }
    models = {name: ThingModel(td) for name, td in thing_descriptions().items()}
    cloud = CloudService(clock, book, load_ruleset(), tap=lambda *_: None, timing=cloud_timing)
    outbox = Outbox(None, OutboxConfig(max_bytes=1 << 24, segment_bytes=1 << 20), Ed25519PrivateKey.generate())
    edge = EdgeService("small", clock, devices, models, load_ruleset(), outbox,
                       send_uplink=lambda data: deliver(cloud.on_uplink, data), tap=lambda *_: None, timing=timing)
    cloud.connect_edge("small", lambda data: deliver(edge.on_downlink, data))
    return edge, cloud


def _theft_frames(now: float) -> list[bytes]:
    return [
        seal("rfid-g1", RFID, 1, now, "tag_read", {"tag": "EPC-B01-01", "rssi_dbm": -55.0, "antenna": "1"}),
        seal("loop-g1", LOOP, 1, now + 0.01, "passage", {"direction": "out", "occupancy_s": 8.0}),
    ]


def test_under_simpy_virtual_time():
    env = simpy.Environment(initial_time=1_772_000_000.0)
    clock = SimPyClock(env)
    edge, cloud = _platform(clock, lambda handler, data: clock.call_later(0.02, lambda: handler(data)),
                            EdgeTiming(), CloudTiming())
    env.run(until=env.now + 1)
    start = env.now
    for frame in _theft_frames(start):
        edge.on_frame(frame)
    env.run(until=start + 5)
    [case] = cloud.desk.cases.values()
    assert case.alert.rule == "outbound-unauthorized" and case.alert.targets == ("lot:B01-01",)
    assert 0.5 <= case.visible_at - start <= 1.0  # fusion grace + modelled service + 2 link hops


def test_under_asyncio_wall_time():
    async def scenario():
        loop = asyncio.get_running_loop()
        clock = AsyncioClock(loop)
        zero = dict(per_message_s=0.0)
        edge, cloud = _platform(clock, lambda handler, data: loop.call_soon(handler, data),
                                EdgeTiming(**zero), CloudTiming(per_batch_s=0.0, per_record_s=0.0))
        await asyncio.sleep(0.05)
        start = time.time()
        for frame in _theft_frames(start):
            edge.on_frame(frame)
        for _ in range(100):
            if cloud.desk.cases:
                break
            await asyncio.sleep(0.02)
        return start, cloud

    start, cloud = asyncio.run(scenario())
    [case] = cloud.desk.cases.values()
    assert case.alert.rule == "outbound-unauthorized"
    assert 0.5 <= case.visible_at - start < 1.5  # the fusion grace is real time here
