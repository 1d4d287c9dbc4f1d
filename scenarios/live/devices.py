"""Devices as MQTT clients: each publishes its sealed frames to its own topic, with its own login.

The harness side of live mode; the frames are the same wire bytes the twin's devices send in
virtual time.
"""

from __future__ import annotations

import queue
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cangtwin.platform.live import topics
from cangtwin.platform.wire import split

WAIT_S = 10.0


class DeviceClient:
    """One device's MQTT session (QoS 1). `refused` holds the broker's answer when it said no."""

    def __init__(self, host: str, port: int, site: str, device: str, password: str | None = None,
                 username: str | None = None) -> None:
        self.site, self.device = site, device
        self._connects: queue.Queue[ReasonCode] = queue.Queue()
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{site}-{device}", protocol=mqtt.MQTTv5)
        if password is not None:
            self.paho.username_pw_set(username or f"{site}.{device}", password)
        self.paho.on_connect = lambda _c, _u, _f, reason, _p: self._connects.put(reason)
        self._pubacks: dict[int, ReasonCode] = {}
        self.paho.on_publish = lambda _c, _u, mid, reason, _p: self._pubacks.__setitem__(mid, reason)
        self.paho.connect(host, port)
        self.paho.loop_start()
        reason = self._connects.get(timeout=WAIT_S)
        self.refused: ReasonCode | None = reason if reason.is_failure else None
        if self.refused is not None:
            self.paho.loop_stop()

    def send(self, frame: bytes, topic: str | None = None) -> ReasonCode:
        """Publish one frame (to its own topic for the frame's event, per the device's Thing
        Description, unless told otherwise); returns the PUBACK's reason.

        MQTT 5 lets the broker say why it dropped a message: "Not authorized" is the ACL talking.
        """
        topic = topic or topics.device(self.site, self.device, split(frame)[0].kind)
        info = self.paho.publish(topic, frame, qos=1)
        info.wait_for_publish(timeout=WAIT_S)
        if not info.is_published():
            raise TimeoutError(f"{self.device}: no PUBACK within {WAIT_S} s")
        return self._pubacks.pop(info.mid)

    def close(self) -> None:
        if self.refused is None:
            self.paho.disconnect()
            self.paho.loop_stop()


def broker_counter(host: str, port: int, name: str, at_least: int = 0, username: str | None = None,
                   password: str | None = None, timeout_s: float = 25.0) -> int:
    """A Mosquitto `$SYS` counter (e.g. `publish/messages/received`): proof traffic crossed the broker.

    The broker refreshes `$SYS` every `sys_interval` (10 s by default), so this waits for a value of
    at least `at_least` and returns the first such value, or the last one seen at the timeout.
    """
    got: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
    if username is not None:
        client.username_pw_set(username, password)
    client.on_message = lambda _c, _u, message: got.put(message.payload)
    client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe(f"$SYS/broker/{name}", qos=0)
    client.connect(host, port)
    client.loop_start()
    deadline = time.monotonic() + timeout_s
    value = -1
    try:
        while value < at_least and time.monotonic() < deadline:
            try:
                value = int(got.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return value
    finally:
        client.disconnect()
        client.loop_stop()
