"""Device authentication at the edge: the replay window, and each reason a frame is refused.

A refused frame must never wedge the authenticator: the next honest frame still gets in.
"""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.edge.auth import DeviceAuthenticator, DeviceRecord, ReplayWindow
from cangtwin.platform.thing_model import ThingModel
from cangtwin.platform.wire import MAX_FRAME_BYTES, Reject, WireError, seal

NOW = 1_772_000_000.0
SKEW_S = 5.0
WINDOW = 64
KEY = bytes(range(32))
HEARTBEAT = {"uptime_s": 12.0, "status": "ok"}
MODELS = {name: ThingModel(td) for name, td in thing_descriptions().items()}

window_sizes = st.integers(min_value=1, max_value=300)  # across the 64-bit mask boundary


@settings(max_examples=200)
@given(data=st.data(), size=window_sizes, base=st.integers(min_value=0, max_value=2**64))
def test_any_order_of_distinct_seqs_within_the_window_is_accepted_once(data, size: int, base: int) -> None:
    seqs = data.draw(st.permutations(range(base, base + size)))
    seqs = seqs[: data.draw(st.integers(min_value=1, max_value=size))]
    window = ReplayWindow(size)
    assert all(window.check_and_mark(s) for s in seqs)
    assert not any(window.check_and_mark(s) for s in seqs)


@settings(max_examples=300)
@given(size=window_sizes, seqs=st.lists(st.integers(min_value=0, max_value=400), max_size=120))
def test_the_window_matches_its_definition_on_any_sequence(size: int, seqs: list[int]) -> None:
    """Definition: accept a seq never seen before unless it is `size` or more below the highest."""
    window = ReplayWindow(size)
    seen: set[int] = set()
    for seq in seqs:
        expected = seq not in seen and (not seen or seq > max(seen) - size)
        assert window.check_and_mark(seq) == expected, (seq, sorted(seen))
        seen |= {seq} if expected else set()


@settings(max_examples=200)
@given(size=window_sizes, highest=st.integers(min_value=0, max_value=2**40), data=st.data())
def test_seqs_older_than_the_window_are_refused_even_if_never_seen(size: int, highest: int, data) -> None:
    assume(highest >= size)
    old = data.draw(st.integers(min_value=max(0, highest - 10 * size), max_value=highest - size))
    window = ReplayWindow(size)
    assert window.check_and_mark(highest)
    assert not window.check_and_mark(old)
    if size > 1:
        assert window.check_and_mark(highest - size + 1)  # the oldest seq still inside


def authenticator() -> DeviceAuthenticator:
    devices = {"scale-1": DeviceRecord("scale-1", "weighbridge", KEY)}
    return DeviceAuthenticator(devices, MODELS, max_clock_skew_s=SKEW_S, replay_window=WINDOW)


def frame(seq: int, *, device: str = "scale-1", key: bytes = KEY, clock: float = NOW,
          kind: str = "heartbeat", payload: object = HEARTBEAT) -> bytes:
    return seal(device, key, seq, clock, kind, payload)


def replay_of_seq_1(auth: DeviceAuthenticator) -> bytes:
    auth.admit(frame(1), NOW)
    return frame(1)


# Each reason: how to build a frame refused for it, and whether the refusal names the device.
CASES = {
    Reject.TRUNCATED: (lambda auth: frame(1)[:20], None),
    Reject.OVERSIZED: (lambda auth: frame(1, kind="heartbeat", payload=bytes(MAX_FRAME_BYTES)), None),
    Reject.MALFORMED: (lambda auth: msgspec.msgpack.encode([1, 2, 3]) + bytes(32), None),
    Reject.UNKNOWN_DEVICE: (lambda auth: frame(1, device="scale-9"), "scale-9"),
    Reject.BAD_SIGNATURE: (lambda auth: frame(1, key=bytes(32)), "scale-1"),
    Reject.REPLAYED_SEQ: (replay_of_seq_1, "scale-1"),
    Reject.CLOCK_SKEW: (lambda auth: frame(1, clock=NOW + SKEW_S + 0.5), "scale-1"),
    Reject.UNKNOWN_KIND: (lambda auth: frame(1, kind="teleport"), "scale-1"),
    Reject.BAD_PAYLOAD: (lambda auth: frame(1, payload={"uptime_s": "long", "status": "ok"}), "scale-1"),
}


def test_every_reject_reason_has_a_case() -> None:
    assert set(CASES) == set(Reject)


@pytest.mark.parametrize("reason", list(CASES))
def test_each_reason_is_reported_and_the_next_good_frame_still_gets_in(reason: Reject) -> None:
    auth = authenticator()
    build, device = CASES[reason]
    bad = build(auth)
    with pytest.raises(WireError) as caught:
        auth.admit(bad, NOW)
    assert caught.value.reason is reason
    assert caught.value.device == device
    envelope, payload = auth.admit(frame(2), NOW)
    assert (envelope.seq, payload.uptime_s) == (2, 12.0)


@pytest.mark.parametrize("reason", [Reject.UNKNOWN_DEVICE, Reject.BAD_SIGNATURE, Reject.CLOCK_SKEW])
def test_a_refused_frame_does_not_spend_the_sequence_number(reason: Reject) -> None:
    """Otherwise a forger could burn a real device's next seqs and get its honest frames refused."""
    auth = authenticator()
    with pytest.raises(WireError) as caught:
        auth.admit(CASES[reason][0](auth), NOW)
    assert caught.value.reason is reason
    envelope, _ = auth.admit(frame(1), NOW)
    assert envelope.seq == 1


@pytest.mark.parametrize("offset", [-SKEW_S, SKEW_S, -SKEW_S - 0.01, SKEW_S + 0.01])
def test_clock_skew_limit_is_inclusive(offset: float) -> None:
    auth = authenticator()
    if abs(offset) <= SKEW_S:
        assert auth.admit(frame(1, clock=NOW + offset), NOW)[0].clock == NOW + offset
    else:
        with pytest.raises(WireError, match="clock-skew"):
            auth.admit(frame(1, clock=NOW + offset), NOW)


@pytest.mark.parametrize("clock", [math.inf, -math.inf])
def test_an_infinite_clock_is_skewed(clock: float) -> None:
    with pytest.raises(WireError) as caught:
        authenticator().admit(frame(1, clock=clock), NOW)
    assert caught.value.reason is Reject.CLOCK_SKEW


def test_a_nan_clock_is_skewed() -> None:
    """Rules run in event time; a NaN timestamp admitted here poisons every window downstream."""
    with pytest.raises(WireError) as caught:
        authenticator().admit(frame(1, clock=math.nan), NOW)
    assert caught.value.reason is Reject.CLOCK_SKEW


def test_a_payload_string_that_is_not_utf8_is_a_bad_payload() -> None:
    """Signed by the right key (a faulty device, not a forger), so only the payload check is left."""
    payload = msgspec.msgpack.encode(HEARTBEAT).replace(b"\xa2ok", b"\xa2\xff\xfe")
    with pytest.raises(WireError) as caught:
        authenticator().admit(frame(1, payload=msgspec.Raw(payload)), NOW)
    assert caught.value.reason is Reject.BAD_PAYLOAD


def test_devices_of_a_type_with_no_thing_model_are_refused_at_setup() -> None:
    devices = {"x-1": DeviceRecord("x-1", "teleporter", KEY)}
    with pytest.raises(ValueError, match="teleporter"):
        DeviceAuthenticator(devices, MODELS, max_clock_skew_s=SKEW_S, replay_window=WINDOW)
