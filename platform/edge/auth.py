"""Device authentication at the edge: key, signature, sequence window, clock skew, kind."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from cangtwin.platform.thing_model import ThingModel
from cangtwin.platform.wire import DeviceKey, Envelope, Reject, WireError, split


@dataclass(frozen=True)
class DeviceRecord:
    """A provisioned device: its key (一机一密), its type's thing model and where it sits."""

    id: str
    type: str
    key: bytes
    attrs: dict[str, str] = field(default_factory=dict)


class ReplayWindow:
    """Sliding anti-replay window (as in IPsec): accepts reordering, refuses repeats."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.highest = -1
        self.mask = 0  # bit i set: sequence (highest - i) was seen
        self._full = (1 << size) - 1

    def check_and_mark(self, seq: int) -> bool:
        if seq > self.highest:
            shift = seq - self.highest
            self.mask = ((self.mask << shift) | 1) & self._full if shift < self.size else 1
            self.highest = seq
            return True
        offset = self.highest - seq
        if offset >= self.size or self.mask >> offset & 1:
            return False
        self.mask |= 1 << offset
        return True


class DeviceAuthenticator:
    """Turns untrusted frames into (envelope, validated payload), or raises WireError."""

    def __init__(
        self,
        devices: dict[str, DeviceRecord],
        models: dict[str, ThingModel],
        max_clock_skew_s: float,
        replay_window: int,
    ) -> None:
        missing = sorted({d.type for d in devices.values()} - models.keys())
        if missing:
            raise ValueError(f"no thing model for device type(s): {', '.join(missing)}")
        self.devices = devices
        self.models = models
        self.max_clock_skew_s = max_clock_skew_s
        self.windows = {device_id: ReplayWindow(replay_window) for device_id in devices}
        self._keys: dict[bytes, DeviceKey] = {}  # by key bytes, so a re-provisioned key is never stale

    def admit(self, frame: bytes, now: float) -> tuple[Envelope, msgspec.Struct]:
        envelope, body, tag = split(frame)
        device = self.devices.get(envelope.device)
        if device is None:
            raise WireError(Reject.UNKNOWN_DEVICE, f"device {envelope.device!r} is not provisioned", envelope.device)
        key = self._keys.get(device.key)
        if key is None:
            key = self._keys[device.key] = DeviceKey(device.key)
        if not key.matches(body, tag):
            raise WireError(Reject.BAD_SIGNATURE, "HMAC-SHA256 tag does not match the device key", device.id)
        skew = envelope.clock - now
        if not abs(skew) <= self.max_clock_skew_s:  # also refuses a NaN clock
            raise WireError(Reject.CLOCK_SKEW, f"device clock off by {skew:+.3f} s", device.id)
        if not self.windows[device.id].check_and_mark(envelope.seq):
            raise WireError(Reject.REPLAYED_SEQ, f"sequence {envelope.seq} already seen or too old", device.id)
        model = self.models[device.type]
        try:
            payload = model.decode(envelope.kind, envelope.payload)
        except KeyError:
            raise WireError(Reject.UNKNOWN_KIND, f"{device.type} has no message kind {envelope.kind!r}", device.id) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise WireError(Reject.BAD_PAYLOAD, f"{envelope.kind}: {exc}", device.id) from None
        return envelope, payload
