"""One warehouse's edge as a live service: EdgeService on wall time, talking MQTT.

Two MQTT sessions, as on a real site: the device side (the warehouse LAN, often a broker in the
warehouse) and the uplink (the WAN to the cloud's broker); they may be the same broker. An uplink
outage therefore does not stop the edge hearing its devices and alerting locally (边缘自治).

Device frames arrive on their Thing Descriptions' event topics, `cangtwin/<site>/+/+`; the edge acknowledges them to the broker only
after the records they produced are durable in the on-disk outbox (group commit: an fsync per
batch of flushes, off the event loop), so neither a `kill -9` nor a power cut loses anything the
broker was told is safe. Outbox batches go up at QoS 1 and leave the outbox only when the
cloud's ack record arrives, i.e. after the cloud committed them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import msgspec
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.platform.clock import AsyncioClock, Clock
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.edge.outbox import Outbox, OutboxConfig, OutboxFull
from cangtwin.platform.edge.service import PRIORITY_ALERT, EdgeService, EdgeTiming
from cangtwin.platform.live import topics
from cangtwin.platform.live.mqtt import MqttEndpoint, MqttSettings
from cangtwin.platform.rules.ruleset import RuleSet
from cangtwin.platform.site_geometry import SiteGeometry
from cangtwin.platform.thing_model import ThingModel

log = logging.getLogger(__name__)
Tap = Callable[[str, object], None]
# Wall time: the code's own cost is the service time; the ack timeout bounds a resend after loss.
LIVE_TIMING = EdgeTiming(per_message_s=0.0, linger_s=0.01, ack_timeout_s=2.0)


def outbox_key(path: Path) -> Ed25519PrivateKey:
    """The edge's checkpoint-signing key, kept next to its outbox so a restart signs as the same edge."""
    key_path = path.with_name(path.name + ".key")
    if key_path.exists():
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key_path.read_text(encoding="ascii").strip()))
    key = Ed25519PrivateKey.generate()
    key_path.write_text(key.private_bytes_raw().hex() + "\n", encoding="ascii")
    key_path.chmod(0o600)
    return key


@dataclass
class EdgeStats:
    frames: int = 0
    uplinked_batches: int = 0
    highest_sent_seq: int = 0  # the newest outbox entry handed to the broker so far
    downlinks: int = 0
    bad_downlinks: int = 0


class GroupCommitter:
    """Takes the outbox's fsyncs off the event loop (group commit).

    The loop commits its appends to the WAL (cheap) and hands over the frames behind them; this
    thread fsyncs once for everything handed over since its last fsync, then acknowledges those
    frames to the broker and reports the outbox seq now durable. A frame is thus acknowledged only
    after its records would survive a power cut, and one fsync serves every flush made meanwhile.
    """

    def __init__(self, outbox: Outbox, ack: Callable[[list[mqtt.MQTTMessage]], None],
                 durable: Callable[[int], None]) -> None:
        self._outbox = outbox
        self._ack = ack
        self._durable = durable  # called on this thread with the highest durable seq
        self._wake = threading.Condition()
        self._frames: list[mqtt.MQTTMessage] = []
        self._head = 0  # the outbox head when the newest hand-over was made
        self._synced = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="outbox-committer", daemon=True)
        self._thread.start()

    def hand_over(self, frames: list[mqtt.MQTTMessage], head: int) -> None:
        with self._wake:
            self._frames.extend(frames)
            self._head = max(self._head, head)
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._frames and self._head == self._synced:
                    self._wake.wait()
                if self._closed:
                    return
                frames, self._frames, head = self._frames, [], self._head
            try:
                self._outbox.make_durable()
            except OSError as err:  # the disk failed: acknowledge nothing more, the broker keeps it
                log.error("outbox fsync failed, frames are no longer acknowledged: %s", err)
                return
            self._synced = head
            self._ack(frames)
            self._durable(head)

    def close(self) -> None:
        """Stop after the fsync under way (what is not yet acknowledged stays with the broker)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()


class _CommitNotifyingOutbox:
    """The outbox as the EdgeService sees it: appends are handed to the group committer with the
    frames admitted so far, and the uplink is offered only entries already durable."""

    def __init__(self, outbox: Outbox, committed: Callable[[int], None], stats: EdgeStats) -> None:
        self._outbox = outbox
        self._committed = committed
        self._stats = stats
        self.durable_seq = outbox.head[0]  # what a previous run left is on disk
        self.newest_alert_seq = 0  # at or above the seq of the newest alert appended

    def append_many(self, items, now):
        try:
            seqs = self._outbox.append_many(items, now)
        except OutboxFull:  # refused under the reject policy, counted and alerted: settled too
            self._committed(self._outbox.head[0])
            raise
        if any(priority == PRIORITY_ALERT for _, priority in items):
            self.newest_alert_seq = seqs[-1]
        self._committed(self._outbox.head[0])
        return seqs

    def next_batch(self, max_items, now):
        # Priority order, not seq order; an entry not yet fsynced waits (a power cut could lose it
        # and a restart reuse its seq), and the committer's report pumps it out.
        entries = [entry for entry in self._outbox.next_batch(max_items, now) if entry.seq <= self.durable_seq]
        self._stats.highest_sent_seq = max([self._stats.highest_sent_seq, *(entry.seq for entry in entries)])
        return entries

    @property
    def head(self):
        return self._outbox.head

    def ack(self, seqs):
        return self._outbox.ack(seqs)

    def take_gaps(self):
        return self._outbox.take_gaps()


class EdgeNode:
    def __init__(
        self,
        site: str,
        mqtt_settings: MqttSettings,
        devices: dict[str, DeviceRecord],
        models: dict[str, ThingModel],
        ruleset: RuleSet,
        outbox_path: Path,
        outbox_config: OutboxConfig,
        tap: Tap = lambda _kind, _record: None,
        timing: EdgeTiming = LIVE_TIMING,
        device_mqtt: MqttSettings | None = None,
        clock: Clock | None = None,
        geometry: SiteGeometry | None = None,
    ) -> None:
        """`mqtt_settings` is the uplink's broker; `device_mqtt` the devices' one (default: the same);
        `clock` the platform's time (default: wall time); `geometry` the site plan, if provisioned."""
        self._clock = clock
        self._geometry = geometry
        self.site = site
        self.stats = EdgeStats()
        self._tap = tap
        self._unsettled: list[mqtt.MQTTMessage] = []
        self.outbox = Outbox(outbox_path, outbox_config, outbox_key(outbox_path), group_commit=True)
        self._view = _CommitNotifyingOutbox(self.outbox, self._settle_frames, self.stats)
        self._committer: GroupCommitter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.link = MqttEndpoint(f"edge-{site}", mqtt_settings, self._on_message, manual_ack=True)
        self.device_link = MqttEndpoint(f"edge-{site}-devices", device_mqtt or mqtt_settings, self._on_frame,
                                        manual_ack=True, mqtt5=False)
        self.link.subscribe(topics.ack(site))
        self.link.subscribe(topics.command(site))
        self.device_link.subscribe(topics.devices(site))
        self._build = (devices, models, ruleset, timing)
        self.service: EdgeService | None = None
        self.online_at_start = False

    async def start(self) -> None:
        devices, models, ruleset, timing = self._build
        self._loop = asyncio.get_running_loop()
        self._committer = GroupCommitter(self.outbox, self.device_link.ack_many, self._on_durable)
        self.service = EdgeService(
            self.site, self._clock or AsyncioClock(), devices, models, ruleset,
            self._view, self._send_uplink, self._tap,
            timing=timing, send_command=self._send_command, geometry=self._geometry,
        )
        self.service.start()
        await self.device_link.start(offline_ok=True)
        self.online_at_start = await self.link.start(offline_ok=True)

    def _on_frame(self, message: mqtt.MQTTMessage) -> None:
        service = self.service
        if service is None or not service.running:
            return  # not acked: the broker keeps it for the next run of this edge
        self.stats.frames += 1
        service.on_frame(message.payload)
        self._unsettled.append(message)

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        service = self.service
        if service is None or not service.running:
            return
        self.stats.downlinks += 1
        try:
            service.on_downlink(message.payload)  # an ack is applied to the outbox (committed) right here
        except msgspec.DecodeError as err:  # only the cloud may write here (ACL); still, never loop on it
            self.stats.bad_downlinks += 1
            self._tap("edge.bad-downlink", {"topic": message.topic, "error": str(err)})
        self.link.ack(message)

    def _settle_frames(self, head: int) -> None:
        """Every frame admitted so far has its records committed up to outbox seq `head`: once the
        committer has made that durable, the broker may forget them."""
        unsettled, self._unsettled = self._unsettled, []
        self._committer.hand_over(unsettled, head)

    def _on_durable(self, seq: int) -> None:
        """On the committer's thread: entries up to `seq` may now go up."""
        def offer() -> None:
            view = self._view
            if seq > view.durable_seq:
                alerts = view.newest_alert_seq > view.durable_seq  # perhaps among those now durable
                view.durable_seq = seq
                if self.service is not None:
                    self.service.pump(alerts)

        try:
            self._loop.call_soon_threadsafe(offer)
        except RuntimeError:  # the loop closed while this fsync ran: the node is gone
            pass

    def _send_uplink(self, data: bytes) -> None:
        self.stats.uplinked_batches += 1
        self.link.publish(topics.uplink(self.site), data)

    def _send_command(self, device: str, action: str, args: dict) -> None:
        """The action's input, MessagePack as its TD form says; the action is named by the topic."""
        self.device_link.publish(topics.device_command(self.site, device, action), msgspec.msgpack.encode(args))

    def close(self) -> None:
        if self.service is not None:
            self.service.stop()
        if self._committer is not None:
            self._committer.close()
        self.device_link.close()
        self.link.close()
        self.outbox.close()
