"""The wire envelope: what a device seals comes back intact, and any damaged frame is refused.

These are the first bytes the platform touches, so every property here is about frames an
attacker or a bad link can produce: flipped bits, cut frames, extra fields, huge frames.
"""

from __future__ import annotations

import hmac

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.edge.auth import DeviceAuthenticator, DeviceRecord
from cangtwin.platform.thing_model import ThingModel
from cangtwin.platform.wire import MAX_FRAME_BYTES, TAG_BYTES, Reject, WireError, seal, split, tag_matches

NOW = 1_772_000_000.0
# Device keys are 32 random bytes. HMAC pads shorter keys with zeros and hashes longer ones,
# so "any other key fails" only holds between keys of one fixed length, as here.
keys = st.binary(min_size=32, max_size=32)
# Two devices whose ids differ in one byte: a flip can turn one into the other.
DEVICES = {
    "scale-1": DeviceRecord("scale-1", "weighbridge", bytes(range(32))),
    "scale-2": DeviceRecord("scale-2", "weighbridge", bytes(range(32, 64))),
    "cam-1": DeviceRecord("cam-1", "camera", bytes(range(64, 96))),
}
# What damage may look like to the authenticator; never a later stage (kind, payload, replay).
DAMAGED = {Reject.TRUNCATED, Reject.MALFORMED, Reject.UNKNOWN_DEVICE, Reject.BAD_SIGNATURE}

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


MODELS = {name: ThingModel(td) for name, td in thing_descriptions().items()}


def authenticator() -> DeviceAuthenticator:
    """A fresh one, so no sequence number is spent by an earlier frame."""
    return DeviceAuthenticator(DEVICES, MODELS, max_clock_skew_s=5.0, replay_window=64)


@st.composite
def good_frames(draw: st.DrawFn) -> bytes:
    """A frame the authenticator admits: a provisioned device, its key, a valid reading."""
    device = draw(st.sampled_from(sorted(n for n, d in DEVICES.items() if d.type == "weighbridge")))
    seq = draw(st.integers(min_value=0, max_value=2**40))
    clock = NOW + draw(st.floats(min_value=-4.0, max_value=4.0))
    if draw(st.booleans()):
        kind, payload = "reading", {"mass_kg": draw(st.floats(-5000, 200000)), "stable": draw(st.booleans())}
    else:
        kind, payload = "heartbeat", {"uptime_s": draw(st.floats(0, 1e7)), "status": draw(st.sampled_from(["ok", "degraded"]))}
    return seal(device, DEVICES[device].key, seq, clock, kind, payload)


@settings(max_examples=150)
@given(
    device=st.text(max_size=40),
    key=keys,
    seq=st.integers(min_value=0, max_value=2**64 - 1),
    clock=st.floats(allow_nan=False),
    kind=st.text(max_size=40),
    payload=msgpack_values,
)
def test_seal_then_split_gives_back_every_field(device, key, seq, clock, kind, payload) -> None:
    frame = seal(device, key, seq, clock, kind, payload)
    envelope, body, tag = split(frame)
    assert (envelope.device, envelope.seq, envelope.clock, envelope.kind) == (device, seq, clock, kind)
    assert msgspec.msgpack.decode(envelope.payload) == payload
    assert body + tag == frame and len(tag) == TAG_BYTES


@settings(max_examples=150)
@given(key=keys, other=keys, seq=st.integers(min_value=0, max_value=2**64 - 1), payload=msgpack_values)
def test_the_tag_verifies_with_the_device_key_and_no_other(key, other, seq, payload) -> None:
    _, body, tag = split(seal("scale-1", key, seq, NOW, "reading", payload))
    assert tag_matches(key, body, tag)
    assert tag_matches(other, body, tag) == (other == key)


# Fails today on the first string it damages: see the next test.
@example(frame=seal("scale-1", DEVICES["scale-1"].key, 1, NOW, "heartbeat", {"uptime_s": 1.0, "status": "ok"}), mask=0x80)
@settings(max_examples=60)
@given(frame=good_frames(), mask=st.integers(min_value=1, max_value=255))
def test_flipping_any_byte_gets_the_frame_rejected(frame: bytes, mask: int) -> None:
    """Every position is tried: header, device id, numbers, payload and tag."""
    for i in range(len(frame)):
        tampered = frame[:i] + bytes([frame[i] ^ mask]) + frame[i + 1 :]
        with pytest.raises(WireError) as caught:
            authenticator().admit(tampered, NOW)
        assert caught.value.reason in DAMAGED, f"byte {i}: {caught.value}"
    authenticator().admit(frame, NOW)  # the untouched frame is fine: damage, not the frame, was refused


def test_a_device_id_that_is_not_utf8_is_malformed() -> None:
    """msgspec raises UnicodeDecodeError, not DecodeError, for a bad str; a one-bit flip gets there."""
    frame = seal("scale-1", DEVICES["scale-1"].key, 1, NOW, "heartbeat", {"uptime_s": 1.0, "status": "ok"})
    at = frame.index(b"scale-1")
    with pytest.raises(WireError) as caught:
        authenticator().admit(frame[:at] + b"\xf3" + frame[at + 1 :], NOW)
    assert caught.value.reason is Reject.MALFORMED


@settings(max_examples=60)
@given(frame=good_frames(), mask=st.binary(min_size=TAG_BYTES, max_size=TAG_BYTES).filter(any))
def test_any_damage_to_the_tag_is_a_bad_signature(frame: bytes, mask: bytes) -> None:
    tag = bytes(a ^ b for a, b in zip(frame[-TAG_BYTES:], mask, strict=True))
    with pytest.raises(WireError) as caught:
        authenticator().admit(frame[:-TAG_BYTES] + tag, NOW)
    assert caught.value.reason is Reject.BAD_SIGNATURE


@settings(max_examples=60)
@given(frame=good_frames())
def test_every_shorter_prefix_is_rejected_as_truncated(frame: bytes) -> None:
    for length in range(len(frame)):
        with pytest.raises(WireError) as caught:
            authenticator().admit(frame[:length], NOW)
        assert caught.value.reason is Reject.TRUNCATED, f"{length} bytes: {caught.value}"


# seq 0x81A1FF is encoded ce 00 81 a1 ff: from 81 on, a one-entry map whose key is the bad string "\xff".
@example(frame=seal("scale-1", DEVICES["scale-1"].key, 0x81A1FF, NOW, "heartbeat", {"uptime_s": 1.0, "status": "ok"}))
@settings(max_examples=60)
@given(frame=good_frames())
def test_dropping_leading_bytes_gets_the_frame_rejected(frame: bytes) -> None:
    for start in range(1, len(frame)):
        with pytest.raises(WireError) as caught:
            authenticator().admit(frame[start:], NOW)
        assert caught.value.reason in DAMAGED, f"from byte {start}: {caught.value}"


def signed(body: bytes, device: str = "scale-1") -> bytes:
    """A frame whose tag is valid for whatever body it carries: only the decoder can refuse it."""
    return body + hmac.digest(DEVICES[device].key, body, "sha256")


def envelope_map(**extra: object) -> dict[str, object]:
    return {
        "device": "scale-1",
        "seq": 7,
        "clock": NOW,
        "kind": "reading",
        "payload": {"mass_kg": 21000.0, "stable": True},
        **extra,
    }


def test_a_hand_built_envelope_map_is_admitted() -> None:
    """The control for the malformed cases below: the same construction without the fault passes."""
    envelope, payload = authenticator().admit(signed(msgspec.msgpack.encode(envelope_map())), NOW)
    assert envelope.device == "scale-1" and payload.mass_kg == 21000.0


@settings(max_examples=60)
@given(name=st.text(max_size=12).filter(lambda n: n not in envelope_map()), value=msgpack_values)
def test_an_unknown_envelope_field_is_rejected_even_when_signed(name: str, value: object) -> None:
    frame = signed(msgspec.msgpack.encode(envelope_map(**{name: value})))
    with pytest.raises(WireError) as caught:
        authenticator().admit(frame, NOW)
    assert caught.value.reason is Reject.MALFORMED
    assert name in caught.value.detail


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(msgspec.msgpack.encode({k: v for k, v in envelope_map().items() if k != "seq"}), id="missing-seq"),
        pytest.param(msgspec.msgpack.encode(envelope_map(seq="7")), id="seq-as-text"),
        pytest.param(msgspec.msgpack.encode(envelope_map(clock="now")), id="clock-as-text"),
        pytest.param(msgspec.msgpack.encode(envelope_map(device=7)), id="device-as-int"),
        pytest.param(msgspec.msgpack.encode(list(envelope_map().values())), id="array-not-map"),
        pytest.param(msgspec.msgpack.encode(envelope_map()) + b"\xc0", id="trailing-byte"),
        pytest.param(b"\xc1" * 8, id="reserved-msgpack-byte"),
    ],
)
def test_a_signed_body_that_is_not_an_envelope_is_malformed(body: bytes) -> None:
    with pytest.raises(WireError) as caught:
        authenticator().admit(signed(body), NOW)
    assert caught.value.reason is Reject.MALFORMED
    assert caught.value.device is None


def camera_frame(data_bytes: int) -> bytes:
    payload = {"width": 640, "height": 480, "encoding": "png-gray8", "data": bytes(data_bytes)}
    return seal("cam-1", DEVICES["cam-1"].key, 1, NOW, "full_frame", payload)


def test_a_frame_of_exactly_the_limit_is_admitted_and_one_byte_more_is_oversized() -> None:
    # Above 64 KiB MessagePack uses a fixed 5-byte bin header, so frame size grows 1:1 with data.
    overhead = len(camera_frame(100_000)) - 100_000
    at_limit = camera_frame(MAX_FRAME_BYTES - overhead)
    assert len(at_limit) == MAX_FRAME_BYTES
    envelope, _ = authenticator().admit(at_limit, NOW)
    assert envelope.kind == "full_frame"
    with pytest.raises(WireError) as caught:
        authenticator().admit(camera_frame(MAX_FRAME_BYTES - overhead + 1), NOW)
    assert caught.value.reason is Reject.OVERSIZED


def test_an_oversized_frame_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(WireError) as caught:
        authenticator().admit(b"\xc1" * (MAX_FRAME_BYTES + 1), NOW)
    assert caught.value.reason is Reject.OVERSIZED


@pytest.mark.parametrize("length", [0, 1, TAG_BYTES])
def test_a_frame_no_longer_than_a_tag_is_truncated(length: int) -> None:
    with pytest.raises(WireError) as caught:
        split(b"\x85" * length)
    assert caught.value.reason is Reject.TRUNCATED


def test_a_negative_sequence_number_is_malformed() -> None:
    with pytest.raises(WireError) as err:
        split(seal("scale-1", b"k" * 32, -1, NOW, "reading", {"mass_kg": 1.0, "stable": True}))
    assert err.value.reason is Reject.MALFORMED
