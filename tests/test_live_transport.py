"""Live mode over a real (private) Mosquitto: devices → broker → edge → broker → cloud → store."""

from __future__ import annotations

import asyncio
import threading
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.edge.outbox import Outbox, OutboxConfig
from cangtwin.platform.live.cloud_node import CloudNode
from cangtwin.platform.live.edge_node import EdgeNode, EdgeStats, GroupCommitter, _CommitNotifyingOutbox
from cangtwin.platform.live.mqtt import MqttSettings
from cangtwin.platform.live.store import CloudStore
from cangtwin.platform.rules.ruleset import load_ruleset
from cangtwin.platform.thing_model import ThingModel
from cangtwin.platform.wire import seal
from cangtwin.scenarios.live.devices import DeviceClient

RFID, LOOP = b"r" * 32, b"l" * 32
DEVICES = {
    "rfid-g1": DeviceRecord("rfid-g1", "rfid-reader", RFID, {"gate": "G1"}),
    "loop-g1": DeviceRecord("loop-g1", "gate-sensor", LOOP, {"gate": "G1"}),
}
WAIT_S = 15.0


def seed_book() -> CollateralBook:
    book = CollateralBook()
    for n in (1, 2, 3):
        book.add_lot(Lot(f"B01-0{n}", f"EPC-B01-0{n}", "small", "steel-coil", 20000.0, "B01"))
    book.open_loan(Loan("LN-1", "bank-a", "borrower", 1e6))
    book.pledge("LN-1", ["B01-01", "B01-02", "B01-03"], "WR-1")
    return book


def theft(lot: int, seq: int, now: float) -> list[tuple[str, bytes]]:
    """A pledged coil's tag read at the gate, then a vehicle leaving: outbound with no release."""
    return [
        ("rfid-g1", seal("rfid-g1", RFID, seq, now, "tag_read", {"tag": f"EPC-B01-0{lot}", "rssi_dbm": -55.0, "antenna": "1"})),
        ("loop-g1", seal("loop-g1", LOOP, seq, now + 0.01, "passage", {"direction": "out", "occupancy_s": 8.0})),
    ]


def make_edge(broker, tmp_path, site="small", tap=lambda *_: None, login: tuple[str, str] | None = None) -> EdgeNode:
    models = {name: ThingModel(td) for name, td in thing_descriptions().items()}
    return EdgeNode(site, MqttSettings(broker.host, broker.port, *(login or (None, None))), DEVICES, models, load_ruleset(),
                    tmp_path / f"outbox-{site}.db", OutboxConfig(max_bytes=1 << 24, segment_bytes=1 << 20), tap=tap)


def make_cloud(broker, url, sites=("small",), worker="w1", scale_out=False, tap=lambda *_: None,
               login: tuple[str, str] | None = None) -> CloudNode:
    return CloudNode(worker, MqttSettings(broker.host, broker.port, *(login or (None, None))), CloudStore(url),
                     list(sites), load_ruleset(),
                     seed_book=seed_book(), scale_out=scale_out, tap=tap)


async def wait_until(predicate, timeout_s: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


async def send(devices: dict[str, DeviceClient], frames: list[tuple[str, bytes]]) -> None:
    for device, frame in frames:
        await asyncio.to_thread(devices[device].send, frame)


def outbound_alerts(cloud: CloudNode) -> list:
    return sorted(c.alert.targets for c in cloud.cloud.desk.cases.values() if c.alert.rule == "outbound-unauthorized")


def test_theft_crosses_the_broker_and_is_committed(mosquitto, tmp_path):
    async def scenario():
        cloud = make_cloud(mosquitto, f"sqlite:///{tmp_path / 'cloud.db'}")
        edge = make_edge(mosquitto, tmp_path)
        await cloud.start()
        await edge.start()
        devices = {d: DeviceClient(mosquitto.host, mosquitto.port, "small", d) for d in DEVICES}
        try:
            await send(devices, theft(1, 1, time.time()))
            await wait_until(lambda: outbound_alerts(cloud), what="the bank-visible alert")
            await wait_until(lambda: edge.outbox.counters.acked >= edge.outbox.counters.appended >= 1,
                             what="the outbox to drain")
            return cloud, edge
        finally:
            for device in devices.values():
                device.close()
            edge.close()
            cloud.close()

    cloud, edge = asyncio.run(scenario())
    assert outbound_alerts(cloud) == [("lot:B01-01",)]
    [row] = [r for r in cloud.store.alert_rows() if r["rule"] == "outbound-unauthorized"]
    assert row["site"] == "small" and row["status"] == "raised"
    assert edge.stats.frames == 2 and edge.stats.uplinked_batches >= 1
    # The broker's $SYS counters are checked in test_live_broker (they refresh only every 10 s).


def test_restarted_cloud_resumes_from_the_store(mosquitto, tmp_path):
    """Dedupe ranges, alerts and the book survive a cloud restart: a resent batch is not applied twice."""
    url = f"sqlite:///{tmp_path / 'cloud.db'}"

    async def first_run():
        cloud = make_cloud(mosquitto, url)
        edge = make_edge(mosquitto, tmp_path)
        await cloud.start()
        await edge.start()
        devices = {d: DeviceClient(mosquitto.host, mosquitto.port, "small", d) for d in DEVICES}
        try:
            await send(devices, theft(1, 1, time.time()))
            await wait_until(lambda: outbound_alerts(cloud), what="the first alert")
            applied = cloud.cloud.records_applied
        finally:
            for device in devices.values():
                device.close()
            edge.close()
            cloud.close()
        return applied

    async def second_run():
        cloud = make_cloud(mosquitto, url)
        await cloud.start()
        try:
            return cloud
        finally:
            cloud.close()

    applied = asyncio.run(first_run())
    assert applied >= 1
    cloud = asyncio.run(second_run())
    assert outbound_alerts(cloud) == [("lot:B01-01",)]  # the alert came back from the store
    assert not cloud.cloud.book.lots["B01-01"].present  # so did the outbound in the book
    seen = cloud.cloud._seen["small"]
    assert all(seq in seen for seq in range(1, applied + 1))


def test_a_failed_commit_acknowledges_nothing(mosquitto, postgres_server, postgres_dsn, tmp_path):
    """The database disappears under the cloud: the batch is not acked, the edge's outbox keeps it."""
    from cangtwin.platform.live.store import StoreError

    taps: list = []

    async def scenario():
        cloud = make_cloud(mosquitto, postgres_dsn)
        edge = make_edge(mosquitto, tmp_path, tap=lambda kind, record: taps.append(kind))
        await cloud.start()
        await edge.start()
        devices = {d: DeviceClient(mosquitto.host, mosquitto.port, "small", d) for d in DEVICES}
        try:
            await wait_until(lambda: "edge.book-sync" in taps and edge.outbox.counters.pending == 0,
                             what="a synced, drained edge")
            postgres_server.drop_database(postgres_dsn.rsplit("/", 1)[1])
            await send(devices, theft(1, 1, time.time()))
            await wait_until(lambda: cloud.failed.done(), what="the cloud to give up")
            await asyncio.sleep(0.5)
            return cloud.failed.exception(), edge.outbox.counters
        finally:
            for device in devices.values():
                device.close()
            edge.close()
            cloud.close()

    error, counters = asyncio.run(scenario())
    assert isinstance(error, StoreError) and "commit failed" in str(error)
    assert counters.pending >= 1  # what the cloud could not store is still at the edge, unacknowledged


class _GatedOutbox(Outbox):
    """A real group-commit outbox whose fsync waits for the test to open a gate, and counts."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.fsyncs = 0

    def make_durable(self) -> None:
        self.gate.wait(WAIT_S)
        self.fsyncs += 1
        super().make_durable()


def test_group_commit_acks_frames_and_offers_entries_only_after_the_fsync(tmp_path):
    outbox = _GatedOutbox(tmp_path / "outbox.db", OutboxConfig(max_bytes=1 << 20, segment_bytes=1 << 16),
                          Ed25519PrivateKey.generate(), group_commit=True)
    acked: list[str] = []
    durable: list[int] = []
    committer = GroupCommitter(outbox, acked.extend, durable.append)
    view = _CommitNotifyingOutbox(outbox, lambda head: committer.hand_over(frames, head), EdgeStats())
    try:
        frames = ["frame-1", "frame-2"]
        view.append_many([(b"telemetry-1", 2)], now=1.0)  # the committer starts its fsync, held at the gate
        frames = ["frame-3"]
        view.append_many([(b"alert", 0), (b"telemetry-2", 2)], now=1.0)  # waits for the next fsync
        time.sleep(0.2)
        assert acked == [] and durable == [], "nothing may be acknowledged before the fsync returns"
        assert view.next_batch(10, now=1.0) == [], "nothing may go up before the fsync returns"
        outbox.gate.set()
        deadline = time.monotonic() + WAIT_S
        while durable[-1:] != [3] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert acked == ["frame-1", "frame-2", "frame-3"]
        assert durable[-1] == 3 and outbox.fsyncs <= 2, "appends made during one fsync share the next"
        view.durable_seq = durable[-1]  # what EdgeNode does on its loop when told
        assert [e.seq for e in view.next_batch(10, now=1.0)] == [2, 1, 3]  # alert first, all durable
    finally:
        committer.close()
        outbox.close()


def test_read_buffer_serves_small_reads_from_one_recv_and_reports_what_is_pending():
    import socket

    from cangtwin.platform.live.mqtt import _ReadBufferedSocket

    left, right = socket.socketpair()
    try:
        buffered = _ReadBufferedSocket(right)
        left.sendall(b"\x30\x05hello\x30\x03abc")  # two packets in one burst
        time.sleep(0.05)
        assert buffered.recv(1) == b"\x30" and buffered.pending() == 11  # the rest came with it
        assert buffered.recv(1) == b"\x05" and buffered.recv(5) == b"hello"
        assert [buffered.recv(1), buffered.recv(1), buffered.recv(3)] == [b"\x30", b"\x03", b"abc"]
        assert buffered.pending() == 0
        right.setblocking(False)
        try:
            buffered.recv(1)
            raise AssertionError("an empty buffer must read the socket, which has nothing")
        except BlockingIOError:
            pass
        left.close()
        assert buffered.recv(1) == b""  # the peer closed: paho sees the connection lost
        assert buffered.fileno() == right.fileno()  # select() waits on the real socket
    finally:
        right.close()
