"""UWB/5G positioning tags on forklifts: 1 Hz while moving, with ~10 cm ranging noise."""

from __future__ import annotations

from typing import Iterator

import simpy

from cangtwin.devices.device import Device
from cangtwin.twin.warehouse import Warehouse

SIGMA_M = 0.1


class PositioningTag(Device):
    def __init__(self, *args, warehouse: Warehouse, forklift_id: str, rate_hz: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.forklift_id = forklift_id
        self.period = 1.0 / rate_hz
        warehouse.signals.forklift_move.append(self._on_move)

    def _on_move(self, forklift_id: str, start: tuple, end: tuple, t0: float, t1: float) -> None:
        if forklift_id == self.forklift_id:
            self.env.process(self._track(start, end, t0, t1))

    def _track(self, start: tuple, end: tuple, t0: float, t1: float) -> Iterator[simpy.Event]:
        # Manhattan route: along x first, then along y, as aisles run.
        dx, dy = end[0] - start[0], end[1] - start[1]
        length = abs(dx) + abs(dy)
        speed = length / (t1 - t0)
        while self.env.now < t1:
            travelled = (self.env.now - t0) * speed
            if travelled <= abs(dx):
                x, y = start[0] + travelled * (1 if dx >= 0 else -1), start[1]
            else:
                x, y = end[0], start[1] + (travelled - abs(dx)) * (1 if dy >= 0 else -1)
            nx, ny = (float(v) for v in self.rng.normal(0.0, SIGMA_M, 2))
            self.emit("position", {"x_m": round(x + nx, 2), "y_m": round(y + ny, 2), "speed_mps": round(speed, 2)})
            yield self.env.timeout(self.period)
