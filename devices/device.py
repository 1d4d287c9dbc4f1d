"""What every device shares: its key (一机一密), sequence numbers, its own clock, heartbeats.

A device observes the twin and sends signed bytes; nothing it sends carries ground truth.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import simpy

from cangtwin.platform.wire import seal

Send = Callable[[bytes], None]
Tap = Callable[[str, dict], None]


class Device:
    def __init__(
        self,
        env: simpy.Environment,
        device_id: str,
        device_type: str,
        key: bytes,
        rng: np.random.Generator,
        send: Send,
        tap: Tap,
        heartbeat_s: float,
    ) -> None:
        self.env = env
        self.id = device_id
        self.type = device_type
        self.key = key
        self.rng = rng
        self.send = send
        self.tap = tap
        self.heartbeat_s = heartbeat_s
        self.seq = 0
        self.alive = True
        self.started_at = env.now
        # NTP-disciplined clocks are off by a few milliseconds; drift faults change these.
        self.clock_offset_s = float(rng.normal(0.0, 0.003))
        self.drift_ppm = 0.0

    def clock(self) -> float:
        elapsed = self.env.now - self.started_at
        return self.env.now + self.clock_offset_s + self.drift_ppm * 1e-6 * elapsed

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        if not self.alive:
            return
        self.seq += 1
        frame = seal(self.id, self.key, self.seq, self.clock(), kind, payload)
        self.tap("device.emit", {"device": self.id, "seq": self.seq, "kind": kind, "bytes": len(frame)})
        self.send(frame)

    def start(self) -> None:
        self.env.process(self._heartbeats())

    def _heartbeats(self) -> Iterator[simpy.Event]:
        yield self.env.timeout(float(self.rng.uniform(0, self.heartbeat_s)))  # devices boot at different times
        while True:
            self.emit("heartbeat", {"uptime_s": round(self.env.now - self.started_at, 3), "status": "ok"})
            yield self.env.timeout(self.heartbeat_s)
