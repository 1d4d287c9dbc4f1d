"""forged-device: a rogue transmitter on the device network, posing as a real device.

It speaks the wire format perfectly but does not hold the device's key (一机一密), so its
frames carry a wrong HMAC tag; `unknown-id` mode claims a device that was never provisioned.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import simpy

from cangtwin.fraud.label import Label
from cangtwin.platform.wire import seal


def inject_forged_device(
    env: simpy.Environment,
    label_id: str,
    at: float,
    device: str,
    kind: str,
    payload: dict,
    count: int,
    interval_s: float,
    rng: np.random.Generator,
    send: Callable[[bytes], None],
    record: Callable[[Label], None],
) -> Label:
    label = Label(
        id=label_id,
        kind="forged-device",
        fault=False,
        targets=[f"device:{device}"],
        injected_at=at,
        onset=at,
        magnitude=count,
        magnitude_unit="messages",
        primary_rules=["message-integrity"],
        detail={"claimed_device": device},
    )
    record(label)
    wrong_key = rng.bytes(32)

    def transmit() -> Iterator[simpy.Event]:
        yield env.timeout(at - env.now)
        for n in range(count):
            # Sequence numbers far ahead of the real device's, as a naive forger would pick.
            send(seal(device, wrong_key, 10_000_000 + n, env.now, kind, payload))
            yield env.timeout(interval_s)

    env.process(transmit())
    return label
