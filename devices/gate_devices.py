"""Gate devices: the UHF RFID portal and the induction-loop vehicle detector."""

from __future__ import annotations

from typing import Iterator

import simpy

from cangtwin.devices.device import Device
from cangtwin.twin.warehouse import Warehouse

INVENTORY_ROUND_S = 0.25


class RfidReader(Device):
    """Reads each tag in its field once per passage; metal goods make single rounds unreliable."""

    def __init__(self, *args, warehouse: Warehouse, gate_id: str, read_rate: float = 0.7, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate_id = gate_id
        self.read_rate = read_rate
        warehouse.signals.gate_pass.append(self._on_pass)

    def _on_pass(self, gate_id: str, direction: str, tags: list[str], enter: float, clear: float) -> None:
        if gate_id == self.gate_id and tags:
            self.env.process(self._inventory(list(tags), clear))

    def _inventory(self, tags: list[str], clear: float) -> Iterator[simpy.Event]:
        unread = list(tags)
        while unread and self.env.now < clear:
            yield self.env.timeout(INVENTORY_ROUND_S)
            for tag in list(unread):
                if self.rng.random() < self.read_rate:
                    unread.remove(tag)
                    rssi = round(float(self.rng.normal(-58.0, 4.0)), 1)
                    self.emit("tag_read", {"tag": tag, "rssi_dbm": max(-120.0, min(0.0, rssi)), "antenna": "1"})


class LoopDetector(Device):
    """Reports a passage, with its direction, when the vehicle has cleared the loops."""

    def __init__(self, *args, warehouse: Warehouse, gate_id: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate_id = gate_id
        warehouse.signals.gate_pass.append(self._on_pass)

    def _on_pass(self, gate_id: str, direction: str, tags: list[str], enter: float, clear: float) -> None:
        if gate_id == self.gate_id:
            self.env.timeout(clear - self.env.now).callbacks.append(
                lambda _e: self.emit("passage", {"direction": direction, "occupancy_s": round(clear - enter, 3)})
            )
