"""The edge under bad traffic: every bad frame is refused, counted and alerted; nothing else is lost."""

from __future__ import annotations

import msgspec
import simpy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.clock import SimPyClock
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.edge.outbox import Outbox, OutboxConfig
from cangtwin.platform.edge.service import EdgeService
from cangtwin.platform.records import Alert, Telemetry, UplinkAck, batch_decoder, record_decoder, record_encoder
from cangtwin.platform.rules.ruleset import load_ruleset
from cangtwin.platform.thing_model import ThingModel
from cangtwin.platform.wire import seal

KEY = bytes(range(32))
T0 = 1_772_000_000.0


def _edge():
    env = simpy.Environment(initial_time=T0)
    sent: list = []
    devices = {"scale-wb1": DeviceRecord("scale-wb1", "weighbridge", KEY, {"weighbridge": "WB1"})}
    models = {name: ThingModel(td) for name, td in thing_descriptions().items()}
    outbox = Outbox(None, OutboxConfig(max_bytes=1 << 24, segment_bytes=1 << 20), Ed25519PrivateKey.generate())
    taps: list = []
    edge = EdgeService("small", SimPyClock(env), devices, models, load_ruleset(), outbox,
                       send_uplink=sent.append, tap=lambda ev, rec: taps.append((ev, rec)))
    return env, edge, sent, taps


def _frame(seq, clock=T0, kind="reading", payload=None, key=KEY, device="scale-wb1"):
    return seal(device, key, seq, clock, kind, payload if payload is not None else {"mass_kg": 1000.0, "stable": True})


def test_each_kind_of_bad_frame_is_refused_counted_and_alerted_and_good_traffic_flows_on():
    env, edge, sent, taps = _edge()
    good1 = _frame(1)
    bad = {
        "bad-signature": _frame(2, key=b"x" * 32),
        "unknown-device": _frame(3, device="ghost"),
        "replayed-seq": good1,
        "clock-skew": _frame(4, clock=T0 + 60),
        "unknown-kind": _frame(5, kind="teleport", payload={}),
        "bad-payload": _frame(6, payload={"mass_kg": 1.0, "stable": True, "extra": 1}),
        "truncated": good1[:10],
        "malformed": b"\xc1" * 40,
    }
    edge.on_frame(good1)
    for frame in bad.values():
        edge.on_frame(frame)
    edge.on_frame(_frame(7))
    env.run(until=T0 + 1)
    assert dict(edge.rejected) == {reason: 1 for reason in bad}
    assert edge.accepted == 2
    alerts = [rec for ev, rec in taps if ev == "edge.alert"]
    assert {a.rule for a in alerts} == {"message-integrity"}
    assert sorted(a.detail["reason"] for a in alerts) == sorted(bad)
    # Both good readings went up the uplink, alongside the alerts and rejections.
    records = [record_decoder.decode(raw) for data in sent for _, raw in batch_decoder.decode(data).entries]
    observations = [o for r in records if isinstance(r, Telemetry) for o in r.observations]
    readings = [o for o in observations if o.kind == "reading"]
    assert [r.seq for r in readings] == [1, 7]
    assert len([r for r in records if isinstance(r, Alert)]) == len(alerts)


def test_unacknowledged_batches_are_resent_and_acks_empty_the_outbox():
    env, edge, sent, _ = _edge()
    edge.on_frame(_frame(1))
    env.run(until=T0 + 1)
    assert len(sent) == 1
    env.run(until=T0 + 12)  # no ack within the timeout: the same entries again
    first, again = batch_decoder.decode(sent[0]), batch_decoder.decode(sent[1])
    assert first.entries == again.entries
    edge.on_downlink(record_encoder.encode(UplinkAck("small", [seq for seq, _ in again.entries])))
    assert edge.outbox.next_batch(100, env.now) == []


def test_book_sync_commands_apply_only_when_newer():
    from cangtwin.platform.records import BookSync

    env, edge, _, _ = _edge()
    edge.on_downlink(msgspec.msgpack.encode(BookSync("small", 5, {"B01-01": "LN"}, [], {"B01-01": "EPC-B01-01"})))
    edge.on_downlink(msgspec.msgpack.encode(BookSync("small", 4, {}, [], {})))
    assert edge.book.version == 5 and edge.book.pledged == {"B01-01": "LN"}
    assert edge.book.lot_by_tag == {"EPC-B01-01": "B01-01"}


def test_a_full_outbox_under_the_reject_policy_refuses_counts_and_alerts_once():
    env = simpy.Environment(initial_time=T0)
    devices = {"scale-wb1": DeviceRecord("scale-wb1", "weighbridge", KEY, {"weighbridge": "WB1"})}
    models = {name: ThingModel(td) for name, td in thing_descriptions().items()}
    tiny = Outbox(None, OutboxConfig(max_bytes=8192, segment_bytes=1024, when_full="reject"),
                  Ed25519PrivateKey.generate())
    taps: list = []
    edge = EdgeService("small", SimPyClock(env), devices, models, load_ruleset(), tiny,
                       send_uplink=lambda _data: None, tap=lambda ev, rec: taps.append((ev, rec)))
    for seq in range(1, 200):  # the uplink never acks: the outbox fills
        env.timeout(seq * 0.1).callbacks.append(lambda _e, seq=seq: edge.on_frame(_frame(seq, clock=env.now)))
    env.run(until=T0 + 25)
    assert edge.refused > 0 and tiny.counters.rejected > 0
    alerts = [rec for ev, rec in taps if ev == "edge.alert" and rec.rule == "evidence-tamper"]
    assert len(alerts) == 1 and alerts[0].detail["reason"] == "rejected"


def test_a_critical_alert_makes_the_edge_capture_evidence_and_hash_the_clip():
    import hashlib

    from cangtwin.platform.records import EvidenceClip

    env = simpy.Environment(initial_time=T0)
    cam_key, rfid_key, loop_key = b"c" * 32, b"r" * 32, b"l" * 32
    devices = {
        "cam-1": DeviceRecord("cam-1", "camera", cam_key, {}),
        "rfid-g1": DeviceRecord("rfid-g1", "rfid-reader", rfid_key, {"gate": "G1"}),
        "loop-g1": DeviceRecord("loop-g1", "gate-sensor", loop_key, {"gate": "G1"}),
    }
    models = {name: ThingModel(td) for name, td in thing_descriptions().items()}
    outbox = Outbox(None, OutboxConfig(max_bytes=1 << 24, segment_bytes=1 << 20), Ed25519PrivateKey.generate())
    commands, sent = [], []
    edge = EdgeService("small", SimPyClock(env), devices, models, load_ruleset(), outbox, send_uplink=sent.append,
                       tap=lambda *_: None, send_command=lambda *c: commands.append(c))
    from cangtwin.platform.records import BookSync

    edge.on_downlink(msgspec.msgpack.encode(BookSync("small", 1, {"B01-01": "LN"}, [], {"B01-01": "EPC-B01-01"})))
    edge.on_frame(seal("rfid-g1", rfid_key, 1, T0, "tag_read", {"tag": "EPC-B01-01", "rssi_dbm": -50.0, "antenna": "1"}))
    edge.on_frame(seal("loop-g1", loop_key, 1, T0, "passage", {"direction": "out", "occupancy_s": 8.0}))
    env.run(until=T0 + 1)
    assert commands == [("cam-1", "capture_evidence", {"reason": "small-A000001"})]
    frame = b"\x89PNG fake but hashed as sent"
    edge.on_frame(seal("cam-1", cam_key, 1, env.now, "full_frame",
                       {"width": 640, "height": 480, "encoding": "png-gray8", "data": frame}))
    env.run(until=T0 + 2)
    records = [record_decoder.decode(e.payload) for e in edge.outbox.next_batch(10_000, env.now)]
    [clip] = [r for r in records if isinstance(r, EvidenceClip)]
    assert clip.alert == "small-A000001" and clip.sha256 == hashlib.sha256(frame).hexdigest()
