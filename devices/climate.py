"""Temperature and humidity sensors: the true air where the sensor hangs, plus sensor noise."""

from __future__ import annotations

from typing import Iterator

import simpy

from cangtwin.devices.device import Device
from cangtwin.twin.warehouse import Warehouse


class ClimateSensor(Device):
    def __init__(self, *args, warehouse: Warehouse, period_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.warehouse = warehouse
        self.period_s = period_s
        # It reads the air of the zone it hangs in (its mount in the site file).
        self.floor_xy = next(tuple(d.position[:2]) for d in warehouse.spec.devices if d.id == self.id)

    def start(self) -> None:
        super().start()
        self.env.process(self._report())

    def _report(self) -> Iterator[simpy.Event]:
        yield self.env.timeout(float(self.rng.uniform(0, self.period_s)))
        while True:
            temperature, humidity = self.warehouse.ambient(self.env.now, self.floor_xy)
            self.emit(
                "climate",
                {
                    "temperature_c": round(temperature + float(self.rng.normal(0, 0.2)), 2),
                    "humidity_pct": round(min(100.0, max(0.0, humidity + float(self.rng.normal(0, 1.5)))), 1),
                },
            )
            yield self.env.timeout(self.period_s)
