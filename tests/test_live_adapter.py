"""The platform-under-test adapter: its file, topics per the Thing Descriptions, the broker's logins
and ACLs as a device sees them, and alerts by webhook. (Alerts by REST polling, against cangtwin's
own live platform, are in test_live_realtime.py.)"""

from __future__ import annotations

import queue
import re
import time
from pathlib import Path

import httpx
import msgspec
import paho.mqtt.client as mqtt
import pytest
import yaml
from click.testing import CliRunner
from paho.mqtt.client import topic_matches_sub
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.config_file import InputError
from cangtwin.platform.live import topics
from cangtwin.platform.wire import seal
from cangtwin.scenarios.live.adapter import AlertCollector, DevicePublisher, load_adapter
from cangtwin.scenarios.live.cli import live_run
from cangtwin.scenarios.live.devices import ActionRefused, DeviceActions

from services import MissingBinary, skip_or_fail, start_mosquitto

LIBRARY = Path(__file__).resolve().parents[1] / "scenarios" / "library"
POLL = {"poll": {"url": "http://127.0.0.1:9/v1/alerts", "token": "t"}}


def adapter_file(tmp_path: Path, name: str = "adapter.yaml", **data) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"site": "small", "alerts": POLL, **data}, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("data,expected", [
    ({"colour": "red"}, r"adapter\.yaml:\d+: colour: Extra inputs are not permitted"),
    ({"topic": "cangtwin/{siteId}/{deviceName}"}, r"adapter\.yaml:\d+: topic: .*unknown variable \{deviceName\}"),
    ({"topic": "cangtwin/+/{deviceId}"}, r"adapter\.yaml:\d+: topic: .*wildcards"),
    ({"alerts": {**POLL, "webhook": {"port": 0}}}, r"adapter\.yaml:\d+: alerts: .*exactly one of poll or webhook"),
    ({"alerts": {"poll": {"url": "ftp://x", "token": "t"}}}, r"adapter\.yaml:\d+: alerts\.poll\.url"),
    ({"clock": {"speed": 60}}, r"adapter\.yaml:\d+: clock: .*needs start and at"),
    ({"broker": {"port": 0}}, r"adapter\.yaml:\d+: broker\.port"),
    ({"command_topic": "x/{deviceId}/{event}"}, r"adapter\.yaml:\d+: command_topic: .*unknown variable \{event\}"),
    ({"bank_api": {"url": "http://x/v1", "token": "t"}}, r"adapter\.yaml:\d+: bank_api\.token: Extra inputs"),
    ({"bank_api": {"tokens": {"bank-a": "t"}}}, r"adapter\.yaml:\d+: bank_api\.url: Field required"),
])
def test_bad_adapter_file_is_one_located_line(tmp_path, data, expected):
    with pytest.raises(InputError) as error:
        load_adapter(adapter_file(tmp_path, **data))
    assert re.search(expected, str(error.value)), str(error.value)
    result = CliRunner().invoke(live_run, [str(LIBRARY / "demo-outbound.yaml"), "--config",
                                           str(tmp_path / "adapter.yaml")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_live_run_refuses_what_it_cannot_play_and_a_foreign_speed(tmp_path):
    clock = {"speed": 20.0, "start": 1.0e9, "at": time.time()}
    config = adapter_file(tmp_path, clock=clock)
    # a release needs the platform's bank API: an adapter without one is told so, by file and field
    result = CliRunner().invoke(live_run, [str(LIBRARY / "demo-outbound.yaml"), "--config", str(config)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert re.search(r"adapter\.yaml:\d+: bank_api: missing: demo-outbound\.yaml operations\[1\] \(release\)",
                     result.output), result.output
    api = {"url": "http://127.0.0.1:9/v1", "tokens": {"bank-z": "t"}}
    no_desk = adapter_file(tmp_path, "no-desk.yaml", clock=clock, bank_api=api)
    result = CliRunner().invoke(live_run, [str(LIBRARY / "demo-outbound.yaml"), "--config", str(no_desk)])
    assert result.exit_code == 2 and re.search(r"no-desk\.yaml:\d+: bank_api\.tokens\.bank-a: missing: .*LN-A-001",
                                               result.output), result.output
    no_operator = adapter_file(tmp_path, "no-ops.yaml", clock=clock, bank_api={**api, "tokens": {"bank-a": "t"}})
    result = CliRunner().invoke(live_run, [str(LIBRARY / "rules-update.yaml"), "--config", str(no_operator)])
    assert result.exit_code == 2 and re.search(r"no-ops\.yaml:\d+: bank_api\.operator: missing: .*only the operator",
                                               result.output), result.output
    outage = tmp_path / "outage.yaml"
    outage.write_text((LIBRARY / "authorized-release.yaml").read_text(encoding="utf-8").split("operations:")[0]
                      + "injections:\n  - {kind: uplink-outage, id: o-1, at: 1m, duration: 5m}\n", encoding="utf-8")
    result = CliRunner().invoke(live_run, [str(outage), "--config", str(config)])
    assert result.exit_code == 2 and re.search(r"injections\[\d\]: uplink-outage: acts on the platform's side",
                                               result.output), result.output
    result = CliRunner().invoke(live_run, [str(LIBRARY / "forged-device.yaml"), "--config", str(config),
                                           "--speed", "60"])
    assert result.exit_code == 2 and "runs at 20x, not --speed 60x" in result.output, result.output


def test_topics_follow_the_thing_descriptions_or_the_template(tmp_path):
    from_tds = load_adapter(adapter_file(tmp_path))
    assert from_tds.topic("rfid-g1", "rfid-reader", "tag_read") == "cangtwin/small/rfid-g1/tag_read"
    assert from_tds.topic("scale-wb1", "weighbridge", "heartbeat") == "cangtwin/small/scale-wb1/heartbeat"
    assert from_tds.topic("rogue-x", None, "heartbeat") == "cangtwin/small/rogue-x/heartbeat"  # a forged device
    templated = load_adapter(adapter_file(tmp_path, "t.yaml", topic="plant/{siteId}/dev/{deviceId}"))
    assert templated.topic("rfid-g1", "rfid-reader", "tag_read") == "plant/small/dev/rfid-g1"


def test_serve_listens_on_every_td_form_so_its_adapter_needs_no_template(tmp_path):
    """cangtwin's own platform takes each device event at its TD form, and an edge's subscription and
    a device's ACL cover exactly those: the adapter's template is only for other vendors."""
    from_tds = load_adapter(adapter_file(tmp_path))
    forms = [(device_type, event) for device_type, td in thing_descriptions().items() for event in td["events"]]
    assert len(forms) >= 10
    for device_type, event in forms:
        topic = from_tds.topic("dev-1", device_type, event)
        assert topic == topics.device("small", "dev-1", event)
        assert topics.parse(topic) == ("small", f"event:{event}", "dev-1")
        assert topic_matches_sub(topics.devices("small"), topic)
        assert topic_matches_sub(topics.device_events("small", "dev-1"), topic)
        assert not topic_matches_sub(topics.device_events("small", "dev-2"), topic)
    assert topics.check_name("site", "workers")  # would collide with cangtwin/workers/<worker>
    capture = thing_descriptions()["camera"]["actions"]["capture_evidence"]["forms"][0]["href"]
    assert topics.device_command("small", "cam-1", "capture_evidence") == \
        capture.format(siteId="small", deviceId="cam-1")


@settings(max_examples=50, deadline=None)
@given(speed=st.floats(0.5, 500), start=st.floats(1e9, 2e9), lag=st.floats(0, 1e5))
def test_dilated_clock_runs_at_its_speed(tmp_path_factory, speed, start, lag):
    at = time.time() - lag
    adapter = load_adapter(adapter_file(tmp_path_factory.mktemp("c"), clock={"speed": speed, "start": start, "at": at}))
    before, now, after = time.time(), adapter.platform_now(), time.time()
    assert start + (before - at) * speed - 1e-3 <= now <= start + (after - at) * speed + 1e-3


def test_devices_publish_with_their_own_logins_and_an_intruder_is_refused(tmp_path):
    acl = "user small.rfid-g1\ntopic write cangtwin/small/rfid-g1/#\n"
    try:
        broker = start_mosquitto(tmp_path / "mq", passwords={"small.rfid-g1": "pw-rfid"}, acl=acl)
    except MissingBinary as error:
        skip_or_fail(error)
    with broker:
        adapter = load_adapter(adapter_file(tmp_path, broker={"host": "127.0.0.1", "port": broker.port},
                                            logins={"passwords": {"rfid-g1": "pw-rfid"}}))
        publisher = DevicePublisher(adapter, {"rfid-g1": "rfid-reader"})
        try:
            publisher.connect_all()
            key = b"k" * 32
            for seq in range(1, 6):
                publisher.send(seal("rfid-g1", key, seq, time.time(), "tag_read",
                                    {"tag": "EPC-1", "rssi_dbm": -50.0, "antenna": "1"}))
            assert publisher.drain(15.0) and publisher.acked == 5 and publisher.broker_refused == 0
            publisher.send(seal("rogue-x", key, 1, time.time(), "heartbeat", {"uptime_s": 1.0, "status": "ok"}))
            assert publisher.drain(15.0) and publisher.broker_refused == 1 and "rogue-x" in publisher.refused
        finally:
            publisher.close()
        wrong = load_adapter(adapter_file(tmp_path, "w.yaml", broker={"host": "127.0.0.1", "port": broker.port},
                                          logins={"passwords": {"rfid-g1": "guessed"}}))
        with pytest.raises(Exception, match="device rfid-g1 refused"):
            DevicePublisher(wrong, {"rfid-g1": "rfid-reader"}).connect_all()


def test_alerts_by_webhook(tmp_path):
    adapter = load_adapter(adapter_file(tmp_path, alerts={
        "webhook": {"port": 0, "path": "/hook", "token": "s3cret", "items": "alerts"},
        "fields": {"id": "alertId", "rule": "type", "targets": "about", "event_time": "when.happened",
                   "visible_at": None, "raised_at": None, "cloud_received_at": None}}))
    collector = AlertCollector(adapter)
    collector.start()
    try:
        url = collector.webhook_url
        one = {"alertId": "V-1", "type": "outbound-unauthorized", "about": ["lot:B01-03"],
               "when": {"happened": "2026-03-02T00:31:00Z"}}
        auth = {"Authorization": "Bearer s3cret"}
        assert httpx.post(url, json={"alerts": [one, one]}, headers=auth).status_code == 200
        assert httpx.post(url, json={"alerts": [one]}).status_code == 401
        assert httpx.post(url, json={"alerts": [{"alertId": "V-2"}]}, headers=auth).status_code == 422
        assert httpx.post(url.replace("/hook", "/other"), json={}, headers=auth).status_code == 404
        [seen] = collector.alerts()
        assert seen.alert.id == "V-1" and seen.alert.targets == ("lot:B01-03",)
        assert seen.alert.event_time == 1772411460.0  # ISO times are understood
        assert seen.visible_at is not None and seen.visible_at >= time.time() - 60  # when the harness heard it
        assert collector.malformed and collector.answered
    finally:
        collector.stop()


def test_devices_take_their_td_actions_and_refuse_a_malformed_command(mosquitto, tmp_path):
    """Each device listens on its TD's action forms (and only a device whose TD has the action);
    the input decodes per the TD, and the old JSON wire is refused with a reason naming it."""
    adapter = load_adapter(adapter_file(tmp_path, broker={"host": mosquitto.host, "port": mosquitto.port}))
    assert adapter.command_topics("cam-1", "camera") == {"capture_evidence": "cangtwin/small/cam-1/command/capture_evidence"}
    assert adapter.command_topics("rfid-g1", "rfid-reader") == {}
    templated = load_adapter(adapter_file(tmp_path, "t.yaml", topic="plant/{siteId}/{deviceId}",
                                          command_topic="plant/{siteId}/{deviceId}/do/{action}"))
    assert templated.command_topics("lidar-1", "lidar") == {"scan": "plant/small/lidar-1/do/scan"}
    got: queue.Queue = queue.Queue()
    publisher = DevicePublisher(adapter, {"cam-1": "camera", "lidar-1": "lidar", "rfid-g1": "rfid-reader"},
                                on_command=lambda *command: got.put(command))
    edge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-stand-in")
    try:
        publisher.connect_all()  # returns once each device's action topics are subscribed
        edge.connect(mosquitto.host, mosquitto.port)
        edge.loop_start()
        good = msgspec.msgpack.encode({"reason": "small-A000001"})
        old_wire = b'{"action": "capture_evidence", "reason": "small-A000001"}'
        for topic, payload in [(topics.device_command("small", "cam-1", "capture_evidence"), good),
                               (topics.device_command("small", "cam-1", "capture_evidence"), old_wire),
                               (topics.device_command("small", "lidar-1", "scan"), good),
                               (topics.device_command("small", "rfid-g1", "scan"), good)]:  # not in its TD: unheard
            edge.publish(topic, payload, qos=1).wait_for_publish(10)
        heard = sorted(got.get(timeout=10) for _ in range(3))
        time.sleep(0.3)
        assert got.empty() and [(d, a) for d, a, _ in heard] == [("cam-1", "capture_evidence")] * 2 + [("lidar-1", "scan")]
    finally:
        edge.loop_stop()
        publisher.close()
    actions, types = DeviceActions(thing_descriptions()), {"cam-1": "camera", "lidar-1": "lidar"}
    taken, refused = [], []
    for device, action, payload in heard:
        try:
            taken.append((device, action, actions.decode(device, types[device], action, payload)))
        except ActionRefused as err:
            refused.append(str(err))
    assert taken == [("cam-1", "capture_evidence", {"reason": "small-A000001"}),
                     ("lidar-1", "scan", {"reason": "small-A000001"})]
    assert refused == ["cam-1: action capture_evidence: input is not what the camera Thing Description declares "
                       "(application/msgpack): it is JSON"]
    with pytest.raises(ActionRefused, match=r"cam-1: action capture_evidence: .*unknown field `action`"):
        actions.decode("cam-1", "camera", "capture_evidence", msgspec.msgpack.encode({"action": "x", "reason": "y"}))
    with pytest.raises(ActionRefused, match=r"length <= 64 - at `\$\.reason`"):
        actions.decode("cam-1", "camera", "capture_evidence", msgspec.msgpack.encode({"reason": "r" * 65}))
    with pytest.raises(ActionRefused, match=r"cam-1: no action 'scan' in the camera Thing Description \(it offers: "
                                            r"capture_evidence\)"):
        actions.decode("cam-1", "camera", "scan", good)
