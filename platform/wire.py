"""The wire envelope: the only way device bytes get in or out of the platform.

A frame is a MessagePack-encoded `Envelope` followed by a 32-byte HMAC-SHA256 tag over those
bytes, keyed per device (一机一密). HMAC rather than Ed25519 because device traffic runs at
100k msg/s and Ed25519 verifies at ~10k/s here; Ed25519 is kept for parties (tree heads,
checkpoints). Decoding is strict: unknown fields are rejected, and the payload stays raw until
the signature has been checked and the kind is known from the device's Thing Description.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from typing import Annotated, Any

import msgspec

TAG_BYTES = 32
MAX_FRAME_BYTES = 4 * 1024 * 1024


class Envelope(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What every device message carries; `payload` is MessagePack bytes checked per kind."""

    device: str
    seq: Annotated[int, msgspec.Meta(ge=0)]
    clock: float
    kind: str
    payload: msgspec.Raw


class Reject(enum.StrEnum):
    """Why a frame was refused; each reason is counted and may raise `message-integrity`."""

    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    UNKNOWN_DEVICE = "unknown-device"
    BAD_SIGNATURE = "bad-signature"
    REPLAYED_SEQ = "replayed-seq"
    CLOCK_SKEW = "clock-skew"
    UNKNOWN_KIND = "unknown-kind"
    BAD_PAYLOAD = "bad-payload"


class WireError(Exception):
    """A frame that must be rejected; `device` is set when the envelope named one."""

    def __init__(self, reason: Reject, detail: str, device: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.device = device


_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)


def seal(device: str, key: bytes, seq: int, clock: float, kind: str, payload: Any) -> bytes:
    """Encode and sign one message; the result is what goes on the wire."""
    body = _encoder.encode(
        Envelope(device=device, seq=seq, clock=clock, kind=kind, payload=msgspec.Raw(_encoder.encode(payload)))
    )
    return body + hmac.digest(key, body, "sha256")


def split(frame: bytes) -> tuple[Envelope, bytes, bytes]:
    """Parse a frame into (envelope, signed body, tag) without trusting it yet."""
    if len(frame) > MAX_FRAME_BYTES:
        raise WireError(Reject.OVERSIZED, f"{len(frame)} bytes > {MAX_FRAME_BYTES}")
    if len(frame) <= TAG_BYTES:
        raise WireError(Reject.TRUNCATED, f"{len(frame)} bytes is shorter than a tag")
    body, tag = frame[:-TAG_BYTES], frame[-TAG_BYTES:]
    try:
        envelope = _envelope_decoder.decode(body)
    except msgspec.DecodeError as exc:
        reason = Reject.TRUNCATED if "truncated" in str(exc).lower() else Reject.MALFORMED
        raise WireError(reason, str(exc)) from None
    except UnicodeDecodeError as exc:  # msgspec raises this, not DecodeError, for bad UTF-8
        raise WireError(Reject.MALFORMED, f"invalid UTF-8: {exc.reason}") from None
    return envelope, body, tag


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class DeviceKey:
    """A device key ready for HMAC-SHA256 (RFC 2104), its two padded-key states hashed once.

    Hand-written for speed, not for lack of a library: `hmac.digest` pads and hashes the key
    again for every message (~1.6 µs here); copying the two saved SHA-256 states costs ~0.6 µs,
    which is most of the verify cost at 100k msg/s. The tags are the standard ones.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > hashlib.sha256().block_size:
            key = hashlib.sha256(key).digest()
        key = key.ljust(hashlib.sha256().block_size, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def tag(self, body: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def matches(self, body: bytes, tag: bytes) -> bool:
        """Constant-time check of a frame's tag."""
        return hmac.compare_digest(self.tag(body), tag)


def tag_matches(key: bytes, body: bytes, tag: bytes) -> bool:
    """Constant-time check of a frame's HMAC-SHA256 tag (hot paths keep a `DeviceKey`)."""
    return DeviceKey(key).matches(body, tag)
