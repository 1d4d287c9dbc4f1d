"""A paho-mqtt client whose callbacks run on an asyncio loop.

paho runs its network loop in a thread of its own; every message is handed to the asyncio loop
in arrival order (one loop wake-up per burst), so platform code stays single-threaded as under
SimPy. Sessions are persistent (MQTT 5: clean start off and an expiry interval; MQTT 3.1.1: clean
session off), so QoS 1 messages queued for a client while it was away are delivered when it returns, and with `manual_ack` a message is
acknowledged to the broker only when the platform says it is committed.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 5
    session_expiry_s: int = 3600
    connect_timeout_s: float = 10.0


class MqttRefused(ConnectionError):
    """The broker refused the connection (bad credentials, not authorised) or never answered."""


class _ReadBufferedSocket:
    """The broker connection with a read buffer, so a burst of PUBLISHes costs one recv() call.

    Hand-written because paho reads every packet in three or more unbuffered recv() calls (the
    command byte, each remaining-length byte, the body), about 9 µs each here: more than the edge
    spends admitting the frame. paho asks `pending()` (as for its TLS and WebSocket sockets) and
    then reads on without waiting in select(); everything else goes to the real socket.
    """

    def __init__(self, sock) -> None:
        self._sock = sock
        self._buffer = b""
        self._at = 0

    def recv(self, size: int) -> bytes:
        if self._at == len(self._buffer):
            data = self._sock.recv(max(size, 65536))  # BlockingIOError and b"" (closed) pass through
            if len(data) <= size:
                return data
            self._buffer, self._at = data, 0
        chunk = self._buffer[self._at:self._at + size]
        self._at += len(chunk)
        return chunk

    def pending(self) -> int:
        return len(self._buffer) - self._at

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _Client(mqtt.Client):
    def _create_socket(self):  # paho's (private) connect hook; were it renamed, reads just go unbuffered
        return _ReadBufferedSocket(super()._create_socket())


class MqttEndpoint:
    """One MQTT client: subscriptions survive reconnects; `on_message` runs on the asyncio loop."""

    def __init__(
        self,
        client_id: str,
        settings: MqttSettings,
        on_message: Callable[[mqtt.MQTTMessage], None],
        manual_ack: bool = False,
        will: tuple[str, bytes, bool] | None = None,
        mqtt5: bool = True,
    ) -> None:
        """`mqtt5=False` speaks MQTT 3.1.1 with a persistent session (clean session off) that the
        broker keeps without expiry: for the edge's high-rate device side, where paho's decoding of
        each PUBLISH's MQTT 5 properties costs about as much as admitting the frame."""
        self.client_id = client_id
        self.settings = settings
        self.on_message = on_message
        self.manual_ack = manual_ack
        self.filters: set[str] = set()
        self.connected = False
        self.connects = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first: asyncio.Future | None = None
        self._inbox: list[mqtt.MQTTMessage] = []  # arrived on paho's thread, not yet handed to the loop
        self._inbox_lock = threading.Lock()
        self._drain_scheduled = False
        self.mqtt5 = mqtt5
        if mqtt5:
            client = _Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                 manual_ack=manual_ack)
        else:
            client = _Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                 clean_session=False, manual_ack=manual_ack)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if will is not None:
            topic, payload, retain = will
            client.will_set(topic, payload, qos=1, retain=retain)
        client.reconnect_delay_set(min_delay=0.05, max_delay=1)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    async def start(self, offline_ok: bool = False) -> bool:
        """Connect and wait for the broker's CONNACK; MqttRefused if it says no.

        A broker that stays silent is MqttRefused too, unless `offline_ok`: then the client keeps
        trying in the background and this returns False (an edge must work offline: 边缘自治).
        """
        timeout_s = self.settings.connect_timeout_s
        self._loop = asyncio.get_running_loop()
        self._first = self._loop.create_future()
        if self.mqtt5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.settings.session_expiry_s
            self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s,
                                      clean_start=False, properties=properties)
        else:
            self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._first), timeout_s)
            return True
        except TimeoutError:
            if offline_ok:
                return False
            self.close()
            raise MqttRefused(f"{self.client_id}: no answer from {self.settings.host}:{self.settings.port} "
                              f"within {timeout_s:.0f} s") from None
        except MqttRefused:
            self.close()
            raise

    def _on_connect(self, client, _userdata, _flags, reason, _properties) -> None:
        if reason.is_failure:
            self._settle(MqttRefused(f"{self.client_id}: broker refused the connection: {reason}"))
            return
        self.connected = True
        self.connects += 1
        for topic in sorted(self.filters):
            client.subscribe(topic, qos=1)
        self._settle(None)

    def _settle(self, error: Exception | None) -> None:
        loop, first = self._loop, self._first
        if loop is None or first is None:
            return

        def settle() -> None:
            if not first.done():
                first.set_exception(error) if error else first.set_result(None)

        loop.call_soon_threadsafe(settle)

    def _on_disconnect(self, _client, _userdata, _flags, _reason, _properties) -> None:
        self.connected = False

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        # One wake-up of the asyncio loop per burst, not per message: the loop drains them all.
        loop = self._loop
        if loop is None:
            return
        with self._inbox_lock:
            self._inbox.append(message)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._inbox_lock:
            messages, self._inbox = self._inbox, []
            self._drain_scheduled = False
        for message in messages:
            self.on_message(message)

    def subscribe(self, topic: str) -> None:
        self.filters.add(topic)
        if self.connected:
            self.client.subscribe(topic, qos=1)

    def unsubscribe(self, topic: str) -> None:
        self.filters.discard(topic)
        if self.connected:
            self.client.unsubscribe(topic)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """QoS 1; while disconnected paho keeps the message and sends it after reconnecting."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise ConnectionError(f"{self.client_id}: publish to {topic} failed: {info.rc}")

    def ack(self, message: mqtt.MQTTMessage) -> None:
        """Tell the broker a message is committed (only meaningful with manual_ack)."""
        if self.manual_ack and message.qos > 0:
            self.client.ack(message.mid, message.qos)

    def ack_many(self, messages: list[mqtt.MQTTMessage]) -> None:
        """`ack` each; safe from any thread (paho queues the PUBACKs for its network thread)."""
        if self.manual_ack:
            ack = self.client.ack
            for message in messages:
                if message.qos > 0:
                    ack(message.mid, message.qos)

    def close(self) -> None:
        """A clean goodbye: the session stays on the broker, the will is not sent."""
        self.client.disconnect()
        self.client.loop_stop()
