"""Per-device logins and topic ACLs on a private Mosquitto: the broker itself stops what it must."""

from __future__ import annotations

import asyncio
import time

import pytest

from cangtwin.platform.live.broker import MONITOR_USER, acl_text, logins, write_broker_files
from cangtwin.platform.live.mqtt import MqttEndpoint, MqttRefused, MqttSettings
from cangtwin.platform.live import topics
from cangtwin.platform.wire import seal
from cangtwin.scenarios.live.devices import DeviceClient, broker_counter
from services import MissingBinary, skip_or_fail, start_mosquitto

from test_live_transport import LOOP, make_cloud, make_edge, send, theft, wait_until

PASSWORDS = {"rfid-g1": "rfid-secret", "loop-g1": "loop-secret"}
LOGINS = logins({"small": ("edge-secret", PASSWORDS)}, "cloud-secret", monitor_password="monitor-secret")


@pytest.fixture
def secured(tmp_path):
    try:
        broker = start_mosquitto(tmp_path / "broker", passwords={l.username: l.password for l in LOGINS},
                                 acl=acl_text(LOGINS))
    except MissingBinary as error:
        skip_or_fail(error)
    with broker:
        yield broker


def test_acl_confines_each_device_to_its_own_topic(secured, tmp_path):
    async def scenario():
        cloud = make_cloud(secured, f"sqlite:///{tmp_path / 'cloud.db'}", login=("cloud", "cloud-secret"))
        edge = make_edge(secured, tmp_path, login=("edge-small", "edge-secret"))
        await cloud.start()
        await edge.start()
        rfid = DeviceClient(secured.host, secured.port, "small", "rfid-g1", PASSWORDS["rfid-g1"])
        loop = DeviceClient(secured.host, secured.port, "small", "loop-g1", PASSWORDS["loop-g1"])
        try:
            # The RFID reader writes into the loop detector's topic, and into the uplink: both dropped.
            forged = seal("loop-g1", LOOP, 1, time.time(), "passage", {"direction": "out", "occupancy_s": 8.0})
            denials = [await asyncio.to_thread(rfid.send, forged, topics.device("small", "loop-g1", "passage")),
                       await asyncio.to_thread(rfid.send, b"not a batch", topics.uplink("small")),
                       # an action topic is the edge's to write, even the device's own
                       await asyncio.to_thread(rfid.send, b"{}", topics.device_command("small", "rfid-g1", "x"))]
            # Then both devices speak honestly on their own topics: those arrive, and the theft is caught.
            await send({"rfid-g1": rfid, "loop-g1": loop}, theft(1, 1, time.time()))
            await wait_until(lambda: any(c.alert.rule == "outbound-unauthorized"
                                         for c in cloud.cloud.desk.cases.values()), what="the honest alert")
            return edge.stats.frames, cloud.malformed, denials
        finally:
            rfid.close()
            loop.close()
            edge.close()
            cloud.close()

    frames, malformed, denials = asyncio.run(scenario())
    assert [str(reason) for reason in denials] == ["Not authorized"] * 3  # the broker's PUBACK
    assert frames == 2  # only the two honest frames reached the edge
    assert malformed == 0  # the fake uplink batch never reached the cloud
    # The monitor login reads the broker's own counters: the traffic really crossed it.
    assert broker_counter(secured.host, secured.port, "publish/messages/received", at_least=4,
                          username=MONITOR_USER, password="monitor-secret") >= 4


@pytest.mark.parametrize("username,password", [(None, None), ("small.rfid-g1", "guessed"), ("small.ghost", "x")])
def test_forged_device_without_valid_login_is_refused(secured, username, password):
    device = DeviceClient(secured.host, secured.port, "small", "ghost", password, username=username)
    device.close()
    assert device.refused is not None and device.refused.is_failure


def test_edge_with_wrong_password_is_refused(secured, tmp_path):
    async def connect():
        endpoint = MqttEndpoint("edge-small", MqttSettings(secured.host, secured.port, "edge-small", "wrong",
                                                           connect_timeout_s=5), lambda _m: None)
        await endpoint.start(offline_ok=True)  # even an edge allowed to start offline stops on a refusal

    with pytest.raises(MqttRefused, match="refused"):
        asyncio.run(connect())


def test_broker_files_for_a_deployment(tmp_path):
    conf = write_broker_files(tmp_path / "broker", 18830, LOGINS)
    text = conf.read_text()
    assert "allow_anonymous false" in text and "listener 18830 127.0.0.1" in text
    hashed = (tmp_path / "broker" / "passwords").read_text().splitlines()
    assert [line.split(":")[0] for line in hashed] == [l.username for l in LOGINS]
    assert all(line.split(":", 1)[1].startswith("$7$") for line in hashed)  # hashed by mosquitto_passwd
    acl = (tmp_path / "broker" / "acl").read_text()
    block = acl.split("user small.rfid-g1\n")[1].split("\n\n")[0]
    # The Thing Descriptions' forms: events at cangtwin/{siteId}/{deviceId}/{event}, actions under command/.
    assert block.splitlines() == ["topic read cangtwin/small/rfid-g1/command/+", "topic write cangtwin/small/rfid-g1/+"]
