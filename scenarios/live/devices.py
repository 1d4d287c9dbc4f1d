"""Devices as MQTT clients: each publishes its sealed frames to its own topic, with its own login,
and takes the actions its Thing Description offers (`capture_evidence`, `scan`) in the form the TD
declares: a MessagePack object holding the action's `input`, on the action's form topic.

The harness side of live mode; the frames are the same wire bytes the twin's devices send in
virtual time.
"""

from __future__ import annotations

import json
import queue
import time

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cangtwin.platform.live import topics
from cangtwin.platform.thing_model import payload_struct
from cangtwin.platform.wire import split

WAIT_S = 10.0
ACTION_CONTENT_TYPE = "application/msgpack"


class ActionRefused(ValueError):
    """A command the device does not take: no such action in its TD, or an input the TD does not allow."""


class DeviceActions:
    """The actions each device type's Thing Description offers, each input compiled into a strict
    decoder (the compiler the platform uses for events, so unknown fields, wrong types and values
    out of range are refused alike). The device side of the action forms the live edge publishes to.
    """

    def __init__(self, tds: dict[str, dict]) -> None:
        self.decoders: dict[tuple[str, str], msgspec.msgpack.Decoder] = {}
        for device_type, td in tds.items():
            for action, affordance in td.get("actions", {}).items():
                content = {form.get("contentType", ACTION_CONTENT_TYPE) for form in affordance.get("forms", [])}
                if content != {ACTION_CONTENT_TYPE}:
                    raise ValueError(f"{device_type}: action {action}: forms must carry {ACTION_CONTENT_TYPE}, "
                                     f"not {', '.join(sorted(content)) or 'nothing'}")
                struct = payload_struct(td.get("title", device_type), action, affordance.get("input", {}))
                self.decoders[(device_type, action)] = msgspec.msgpack.Decoder(struct)

    def actions(self, device_type: str | None) -> list[str]:
        return sorted(action for kind, action in self.decoders if kind == device_type)

    def decode(self, device: str, device_type: str | None, action: str, payload: bytes) -> dict:
        """The action's input as a dict; ActionRefused (one line naming device, action and why) otherwise."""
        decoder = self.decoders.get((device_type, action))
        if decoder is None:
            offered = ", ".join(self.actions(device_type)) or "none"
            raise ActionRefused(f"{device}: no action {action!r} in the {device_type} Thing Description "
                                f"(it offers: {offered})")
        try:
            return msgspec.structs.asdict(decoder.decode(payload))
        except msgspec.DecodeError as err:
            why = "it is JSON" if _is_json(payload) else str(err)
            raise ActionRefused(f"{device}: action {action}: input is not what the {device_type} Thing Description "
                                f"declares ({ACTION_CONTENT_TYPE}): {why}") from None


def _is_json(payload: bytes) -> bool:
    try:
        json.loads(payload)
    except ValueError:
        return False
    return True


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
