"""The wire envelope: the only way device bytes get in or out of the platform.

A frame is a MessagePack-encoded `Envelope` followed by a 32-byte HMAC-SHA256 tag over those
bytes, keyed per device (一机一密). HMAC rather than Ed25519 because device traffic runs at
100k msg/s and Ed25519 verifies at ~10k/s here; Ed25519 is kept for parties (tree heads,
checkpoints). Decoding is strict: unknown fields are rejected, and the payload stays raw until
the signature has been checked and the kind is known from the device's Thing Description.
"""

from __future__ import annotations

import enum
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


def tag_matches(key: bytes, body: bytes, tag: bytes) -> bool:
    """Constant-time check of a frame's HMAC-SHA256 tag."""
    return hmac.compare_digest(hmac.digest(key, body, "sha256"), tag)
