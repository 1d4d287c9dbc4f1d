"""environment: temperature or humidity out of the storage range of the goods near a sensor.

A climate sensor's provisioning attrs name the commodities stored in its zone (`"commodities"`,
comma-separated). A reading is out of range when it breaks the range of any of them; an
excursion alerts once it has lasted `min_duration_s` in the sensor's clock, so a door opened
for a minute does not. Each quantity (temperature, humidity) is debounced on its own.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from cangtwin.platform.config_file import Pair, StrictModel
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import DeviceMessage, EdgeContext

Quantity = Literal["temperature_c", "humidity_pct"]
QUANTITIES: tuple[Quantity, ...] = ("temperature_c", "humidity_pct")


class StorageRange(StrictModel):
    temperature_c: Pair
    humidity_pct: Pair

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> StorageRange:
        for name in QUANTITIES:
            lo, hi = getattr(self, name)
            if lo >= hi:
                raise ValueError(f"{name}: low {lo} must be below high {hi}")
        return self


# The storage conditions of the reference commodities (twin/sites/small.yaml `commodities`).
DEFAULT_RANGES = {
    "steel-coil": StorageRange(temperature_c=(-25, 50), humidity_pct=(0, 80)),
    "aluminium-ingot": StorageRange(temperature_c=(-25, 50), humidity_pct=(0, 85)),
    "copper-cathode": StorageRange(temperature_c=(-25, 50), humidity_pct=(0, 80)),
    "rubber-bale": StorageRange(temperature_c=(-10, 35), humidity_pct=(0, 85)),
}


class Params(StrictModel):
    min_duration_s: float = pydantic.Field(default=300.0, ge=0, le=86400)
    # Entries here override the defaults for their commodity; the other defaults still apply.
    ranges: dict[str, StorageRange] = DEFAULT_RANGES

    @pydantic.field_validator("ranges", mode="after")
    @classmethod
    def _over_defaults(cls, ranges: dict[str, StorageRange]) -> dict[str, StorageRange]:
        return {**DEFAULT_RANGES, **ranges}


class Entry(RuleEntry):
    kind: Literal["environment"]
    params: Params = Params()


class Environment(Rule):
    kind = "environment"
    consumes = (DeviceMessage,)

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._last_clock: dict[str, float] = {}
        self._since: dict[tuple[str, Quantity], float] = {}  # start of the current excursion
        self._alerted: set[tuple[str, Quantity]] = set()

    def _commodities(self, device: str, ctx: EdgeContext) -> list[str]:
        listed = ctx.devices[device].attrs.get("commodities", "")
        names = [name.strip() for name in listed.split(",") if name.strip()]
        unknown = [name for name in names if name not in self.params.ranges]
        if unknown:
            raise ValueError(
                f"rule {self.entry.id}: device {device} is provisioned with commodities {unknown} "
                f"that have no storage range; known: {sorted(self.params.ranges)}"
            )
        return names

    def evaluate(self, event: DeviceMessage, ctx: EdgeContext) -> list[Finding]:
        if event.kind != "climate":
            return []
        device, t = event.device, event.clock
        # Readings come every 30 s; an older one arriving late says nothing about now.
        if t <= self._last_clock.get(device, float("-inf")):
            return []
        self._last_clock[device] = t
        commodities = self._commodities(device, ctx)
        findings = []
        for quantity in QUANTITIES:
            value = getattr(event.payload, quantity)
            breached = [c for c in commodities if not _inside(value, getattr(self.params.ranges[c], quantity))]
            key = (device, quantity)
            if not breached:
                self._since.pop(key, None)
                self._alerted.discard(key)
                continue
            since = self._since.setdefault(key, t)
            if t - since < self.params.min_duration_s or key in self._alerted:
                continue
            self._alerted.add(key)
            zone = ctx.devices[device].attrs.get("zone")
            findings.append(
                Finding(
                    targets=(f"device:{device}",) + ((f"zone:{zone}",) if zone else ()),
                    event_time=t,
                    observed_at=event.received_at,
                    summary=(
                        f"{quantity} {value:g} out of the storage range of {', '.join(breached)} "
                        f"for {t - since:.0f} s"
                    ),
                    dedupe_key=f"{device}:{quantity}@{since:.3f}",
                    detail={
                        "quantity": quantity,
                        "value": value,
                        "since": since,
                        "commodities": breached,
                        "ranges": {c: list(getattr(self.params.ranges[c], quantity)) for c in breached},
                    },
                )
            )
        return findings


def _inside(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]
