"""The true indoor climate, zone by zone: the site's diurnal cycle, and faults in one zone's air.

A climate sensor reads the air of the zone it hangs in. Faults change that air, never a sensor:
- an HVAC failure lets the zone drift `delta` °C warmer. The air keeps its moisture, so its
  relative humidity falls as it warms (saturation pressure by the Magnus formula);
- a leak (a roof leak, a burst pipe, wet goods) adds moisture: relative humidity rises by `delta`
  points, capped at 100 %.
Both develop as a first-order response with the zone's time constant `tau_s` (the air mass and
the building's thermal or moisture inertia) and relax back the same way once repaired at `end`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from cangtwin.platform.site_geometry import Rect

Cause = Literal["hvac-failure", "leak"]


def diurnal(t: float) -> tuple[float, float]:
    """Indoor temperature (°C) and relative humidity (%) of an undisturbed zone: a daily cycle."""
    phase = 2 * math.pi * ((t % 86400) / 86400 - 0.625)  # warmest mid-afternoon
    return 18.0 + 6.0 * math.cos(phase), 60.0 - 12.0 * math.cos(phase)


def saturation_hpa(temperature_c: float) -> float:
    """Saturation vapour pressure over water (Magnus formula, Alduchov & Eskridge 1996 constants)."""
    return 6.1094 * math.exp(17.625 * temperature_c / (temperature_c + 243.04))


@dataclass(frozen=True)
class ClimateFault:
    zone: str
    cause: Cause
    delta: float  # °C for an HVAC failure, %RH points for a leak, once fully developed
    start: float
    end: float  # repaired
    tau_s: float

    def __post_init__(self) -> None:
        if not (self.delta > 0 and self.tau_s > 0 and self.end > self.start):
            raise ValueError(f"climate fault in {self.zone}: needs delta > 0, tau_s > 0 and end after start")

    def developed(self, t: float) -> float:
        """The fraction of `delta` in effect at `t` (0 before the fault, back towards 0 after repair)."""
        if t <= self.start:
            return 0.0
        rise = 1.0 - math.exp(-(min(t, self.end) - self.start) / self.tau_s)
        return rise if t <= self.end else rise * math.exp(-(t - self.end) / self.tau_s)


class ZoneClimate:
    """What the air of each zone really is; `at(t, zone)` is ground truth, sensors add their noise."""

    def __init__(self, zones: dict[str, Rect]) -> None:
        self.zones = zones
        self.faults: list[ClimateFault] = []

    def zone_at(self, x: float, y: float) -> str | None:
        return next((name for name, rect in self.zones.items() if rect.contains(x, y)), None)

    def add(self, fault: ClimateFault) -> None:
        if fault.zone not in self.zones:
            raise ValueError(f"no zone {fault.zone!r}; zones: {sorted(self.zones)}")
        self.faults.append(fault)

    def at(self, t: float, zone: str | None = None) -> tuple[float, float]:
        temperature, humidity = diurnal(t)
        for fault in self.faults:
            if fault.zone != zone:
                continue
            share = fault.developed(t)
            if share == 0.0:
                continue
            if fault.cause == "hvac-failure":
                warmer = temperature + fault.delta * share
                humidity *= saturation_hpa(temperature) / saturation_hpa(warmer)
                temperature = warmer
            else:
                humidity = min(100.0, humidity + fault.delta * share)
        return temperature, humidity
