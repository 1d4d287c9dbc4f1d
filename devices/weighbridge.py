"""The weighbridge: true load from pybullet contact forces, through the load-cell model.

It reports at its pinned rate while loaded, and until the reading is back at a stable zero
after the vehicle has left. Its plate camera (ANPR, 车牌识别) reports the vehicle standing on the
plate whenever that changes, which lets the edge tell a truck's weighings apart and notice
weight with no vehicle in view.
"""

from __future__ import annotations

from typing import Iterator

import simpy

from cangtwin.devices.device import Device
from cangtwin.devices.loadcell import LoadCellParams, WeighbridgeIndicator
from cangtwin.twin.warehouse import Warehouse


class WeighbridgeDevice(Device):
    def __init__(self, *args, warehouse: Warehouse, scale_id: str, rate_hz: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.warehouse = warehouse
        self.scale_id = scale_id
        self.dt = 1.0 / rate_hz
        scale = next(w for w in warehouse.spec.weighbridges if w.id == scale_id)
        cells = 6
        params = LoadCellParams(
            max_kg=scale.capacity_kg,
            e_kg=scale.division_kg,
            n_cells=cells,
            cell_capacity_kg=scale.capacity_kg / cells * 2.5,
        )
        self.indicator = WeighbridgeIndicator(params, self.rng)
        self.loaded = False
        self._sampling = False
        self._last_step = self.env.now
        warehouse.signals.plate.append(self._on_plate)

    def wake(self) -> None:
        """Start reporting, as the indicator does whenever it does not read a stable zero."""
        if not self._sampling:
            self._sampling = True
            self.env.process(self._sample())

    def _on_plate(self, scale_id: str, loaded: bool) -> None:
        if scale_id != self.scale_id:
            return
        self.loaded = loaded
        self.emit("vehicle", {"plate": self.warehouse.on_plate[scale_id] or ""})
        if loaded:
            self.wake()

    def _sample(self) -> Iterator[simpy.Event]:
        world = self.warehouse.world
        idle = self.env.now - self._last_step
        if idle > 0:  # zero drift and creep recovery while nothing stood on the plate
            self.indicator.step(0.0, idle, self.warehouse.ambient(self.env.now)[0])
        while True:
            true_kg = world.plate_load_kg(self.scale_id) if self.loaded else 0.0
            temperature, _ = self.warehouse.ambient(self.env.now)
            reading = self.indicator.step(true_kg, self.dt, temperature)
            self._last_step = self.env.now
            self.emit("reading", {"mass_kg": reading.indicated_kg, "stable": reading.stable})
            if not self.loaded and reading.stable and reading.indicated_kg == 0:
                self._sampling = False
                return
            yield self.env.timeout(self.dt)
