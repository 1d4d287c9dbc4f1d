"""Live faults through real components: an uplink outage (TCP fault proxy), a broker restart,
`kill -9` of an edge process during an outage, and a forged device over MQTT."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from cangtwin.platform.live.mqtt import MqttSettings
from cangtwin.platform.live.store import CloudStore, seen_ranges
from cangtwin.platform.wire import seal
from cangtwin.scenarios.live.devices import DeviceClient
from cangtwin.scenarios.live.fault_proxy import FaultProxy
from services import start_mosquitto

from test_live_serve import alerts_in, deployment, launch_serve, relaunch, said, serving, start_serve, wait_for, write
from test_live_transport import DEVICES, make_cloud, make_edge, outbound_alerts, send, theft, wait_until


def edge_alert_ids(taps: list) -> list[str]:
    return [record.id for kind, record in taps if kind == "edge.alert" and record.rule == "outbound-unauthorized"]


def nothing_lost(edge, cloud) -> bool:
    """Every record the edge ever put in its outbox is committed at the cloud, and the outbox is empty."""
    counters = edge.outbox.counters
    return counters.pending == 0 and all(cloud.cloud.has_record(edge.site, seq)
                                         for seq in range(1, counters.appended + 1))


def test_uplink_outage_through_the_fault_proxy(mosquitto, tmp_path):
    """Alerts raised at the edge during the outage reach the cloud after it: nothing lost, no duplicates."""
    taps: list = []

    async def scenario():
        cloud = make_cloud(mosquitto, f"sqlite:///{tmp_path / 'cloud.db'}")
        with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
            edge = make_edge(mosquitto, tmp_path, tap=lambda kind, record: taps.append((kind, record)))
            edge.link.settings = MqttSettings(proxy.listen_host, proxy.port)  # the uplink goes through the proxy
            await cloud.start()
            await edge.start()
            devices = {d: DeviceClient(mosquitto.host, mosquitto.port, "small", d) for d in DEVICES}
            try:
                await wait_until(lambda: any(kind == "edge.book-sync" for kind, _ in taps), what="the edge's book")
                await wait_until(lambda: edge.outbox.counters.pending == 0, what="a quiet uplink")
                proxy.set_mode("drop")
                await wait_until(lambda: not edge.link.connected, what="the edge to notice the outage")
                for n in (1, 2):  # two thefts, one after the other (each gate read is used by one passage)
                    await send(devices, theft(n, n, time.time()))
                    await wait_until(lambda: len(edge_alert_ids(taps)) == n, what=f"edge alert {n} during the outage")
                await asyncio.sleep(0.5)
                during = outbound_alerts(cloud)
                restored_at = time.time()
                proxy.set_mode("pass")
                await wait_until(lambda: len(outbound_alerts(cloud)) == 2, what="the alerts after the outage")
                await wait_until(lambda: nothing_lost(edge, cloud), what="the outbox to drain")
                return during, restored_at, cloud, proxy.connections
            finally:
                for device in devices.values():
                    device.close()
                edge.close()
                cloud.close()

    during, restored_at, cloud, connections = asyncio.run(scenario())
    assert during == []  # nothing crossed while the uplink was down
    assert connections >= 2  # the edge reconnected through the proxy
    cases = [c for c in cloud.cloud.desk.cases.values() if c.alert.rule == "outbound-unauthorized"]
    assert sorted(c.alert.id for c in cases) == sorted(edge_alert_ids(taps))  # the edge's own alerts, once each
    assert all(c.visible_at >= restored_at > c.alert.raised_at for c in cases)  # raised during, visible after
    rows = [r for r in cloud.store.alert_rows() if r["rule"] == "outbound-unauthorized"]
    assert sorted(r["id"] for r in rows) == sorted(c.alert.id for c in cases)


def test_broker_restart_loses_nothing(mosquitto, tmp_path):
    """An uplink batch the broker had queued for the (absent) cloud survives the broker's restart."""
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    site_broker = start_mosquitto(tmp_path / "site-broker")  # the warehouse's own broker stays up
    taps: list = []

    async def before_restart():
        cloud = make_cloud(mosquitto, url)
        await cloud.start()  # makes the cloud's persistent session and subscription
        edge = make_edge(mosquitto, tmp_path, tap=lambda kind, record: taps.append((kind, record)))
        edge.device_link.settings = MqttSettings(site_broker.host, site_broker.port)
        await edge.start()
        await wait_until(lambda: any(kind == "edge.book-sync" for kind, _ in taps), what="the edge's book")
        cloud.close()  # the cloud goes away; its session stays on the broker and queues the uplink
        devices = {d: DeviceClient(site_broker.host, site_broker.port, "small", d) for d in DEVICES}
        try:
            await send(devices, theft(1, 1, time.time()))
            await wait_until(lambda: edge_alert_ids(taps), what="the edge alert")
            await asyncio.sleep(0.2)  # the alert reaches the outbox at the next flush (linger 10 ms)
            # Unacked, the edge resends everything pending after its ack timeout; then give the broker
            # a moment to PUBACK (the batch is now queued in the absent cloud's session).
            await wait_until(lambda: edge.stats.highest_sent_seq >= edge.outbox.counters.appended, what="the resend")
            await asyncio.sleep(0.3)
        finally:
            for device in devices.values():
                device.close()
            edge.close()

    async def cloud_alone():
        cloud = make_cloud(restarted, url)
        await cloud.start()
        try:
            await wait_until(lambda: outbound_alerts(cloud), what="the queued batch after the broker restart")
            return outbound_alerts(cloud)
        finally:
            cloud.close()

    async def both_again():
        cloud = make_cloud(restarted, url)
        edge = make_edge(restarted, tmp_path)
        await cloud.start()
        await edge.start()
        try:
            await wait_until(lambda: nothing_lost(edge, cloud), what="the restarted edge's outbox to drain")
            return outbound_alerts(cloud), [r["id"] for r in cloud.store.alert_rows() if r["rule"] == "outbound-unauthorized"]
        finally:
            edge.close()
            cloud.close()

    with site_broker:
        asyncio.run(before_restart())
    mosquitto.stop()
    with relaunch(mosquitto) as restarted:
        # The edge is down: only the broker's persistence can bring the batch to the cloud now.
        assert asyncio.run(cloud_alone()) == [("lot:B01-01",)]
        alerts, rows = asyncio.run(both_again())
    assert alerts == [("lot:B01-01",)] and rows == edge_alert_ids(taps)


def test_forged_device_over_mqtt_is_rejected_and_alerted(mosquitto, tmp_path):
    """A device with broker access but not the key (一机一密), and a device the edge never provisioned."""
    taps: list = []

    async def scenario():
        cloud = make_cloud(mosquitto, f"sqlite:///{tmp_path / 'cloud.db'}")
        edge = make_edge(mosquitto, tmp_path, tap=lambda kind, record: taps.append((kind, record)))
        await cloud.start()
        await edge.start()
        impostor = DeviceClient(mosquitto.host, mosquitto.port, "small", "rfid-g1")
        ghost = DeviceClient(mosquitto.host, mosquitto.port, "small", "ghost")
        try:
            now = time.time()
            read = {"tag": "EPC-B01-01", "rssi_dbm": -55.0, "antenna": "1"}
            await asyncio.to_thread(impostor.send, seal("rfid-g1", b"k" * 32, 1, now, "tag_read", read))
            await asyncio.to_thread(ghost.send, seal("ghost", b"g" * 32, 1, now, "tag_read", read))
            await wait_until(lambda: len([c for c in cloud.cloud.desk.cases.values()
                                          if c.alert.rule == "message-integrity"]) == 2, what="two integrity alerts")
            return cloud, edge
        finally:
            impostor.close()
            ghost.close()
            edge.close()
            cloud.close()

    cloud, edge = asyncio.run(scenario())
    assert dict(edge.service.rejected) == {"bad-signature": 1, "unknown-device": 1}
    assert edge.service.accepted == 0
    targets = sorted(c.alert.targets for c in cloud.cloud.desk.cases.values() if c.alert.rule == "message-integrity")
    assert targets == [("device:ghost",), ("device:rfid-g1",)]
    assert dict(cloud.cloud.rejections_reported) == {"bad-signature": 1, "unknown-device": 1}


def test_kill_9_of_an_edge_during_an_outage_then_restart(mosquitto, tmp_path):
    """The edge process dies hard while its uplink is down; what it committed reaches the cloud later."""
    url = f"sqlite:///{tmp_path / 'state' / 'cloud.db'}"
    cloud_config = write(tmp_path, deployment(tmp_path, mosquitto.port), "cloud.yaml")
    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        edge_side = deployment(tmp_path, proxy.port)  # the uplink crosses the proxy; the devices do not
        edge_side["sites"][0]["device_broker"] = {"host": mosquitto.host, "port": mosquitto.port}
        edge_side["broker"]["connect_timeout_s"] = 1.0  # starting offline: wait this long, then run without
        edge_config = write(tmp_path, edge_side, "edge.yaml")
        cloud, edge = launch_serve(cloud_config, "--cloud"), launch_serve(edge_config, "--edge", "small")
        serving(cloud), serving(edge)
        devices = {d: DeviceClient(mosquitto.host, mosquitto.port, "small", d) for d in DEVICES}
        try:
            store = CloudStore(url)
            wait_for(lambda: said(edge, "edge small holds book version"), what="the edge to hold the book")
            proxy.set_mode("drop")
            for device, frame in theft(1, 1, time.time()):
                devices[device].send(frame)
            wait_for(lambda: said(edge, "alert small-"), what="the edge alert during the outage")
            time.sleep(0.3)  # the alert reaches the outbox at the next flush (linger 10 ms)
            os.kill(edge.pid, signal.SIGKILL)
            assert edge.wait(timeout=10) == -signal.SIGKILL
            assert alerts_in(url) == []  # the outage held everything back
            edge = start_serve(edge_config, "--edge", "small")  # same outbox file, still offline
            time.sleep(0.5)
            proxy.set_mode("pass")
            [row] = wait_for(lambda: alerts_in(url), what="the alert the killed edge had committed")
            ranges = wait_for(lambda: (r := seen_ranges(store.load_ranges("small")))[0][1] >= 3 and r,
                              what="the backlog")
        finally:
            for device in devices.values():
                device.close()
            for process in (edge, cloud):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=15)
            store.close()
    assert row["id"].startswith("small-") and "-r" not in row["id"]  # raised by the killed process, not its successor
    assert ranges[0][0] == 1 and len(ranges) == 1  # every outbox record from 1 on, with no hole: nothing lost
