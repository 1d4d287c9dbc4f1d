"""geofence: a forklift moving inside a bay that holds pledged goods outside working hours.

Positions come from the forklifts' UWB/5G tags. The bays and working hours are the site geometry
the edge got at provisioning (`EdgeContext.extra["geometry"]`, a `SiteGeometry`); which bays hold
pledged, unreleased goods comes from the book (`book.bay_by_lot`). Working hours are judged at the
position's device time in the site's time zone. A parked forklift (speed below `min_speed_mps`) is
not a move, and a position must be `margin_m` inside a bay so that ranging noise (~10 cm) on a
forklift driving down the aisle beside it does not count.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.rules.base import BookView, Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import DeviceMessage, EdgeContext
from cangtwin.platform.site_geometry import SiteGeometry


class Params(StrictModel):
    min_speed_mps: float = pydantic.Field(default=0.3, ge=0, le=10)
    margin_m: float = pydantic.Field(default=0.3, ge=0, le=5)
    # One alert per forklift and bay per this long (device time): a move sends a position a second.
    realert_after_s: float = pydantic.Field(default=600.0, ge=0)


class Entry(RuleEntry):
    kind: Literal["geofence"]
    params: Params = Params()


def pledged_bays(book: BookView) -> set[str]:
    """Bays holding at least one pledged lot that has not been released."""
    return {bay for lot, bay in book.bay_by_lot.items() if lot in book.pledged and lot not in book.released}


class Geofence(Rule):
    kind = "geofence"
    consumes = (DeviceMessage,)

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._last_alert: dict[tuple[str, str], float] = {}

    def evaluate(self, event: DeviceMessage, ctx: EdgeContext) -> list[Finding]:
        if event.kind != "position" or event.payload.speed_mps < self.params.min_speed_mps:
            return []
        geometry = ctx.extra.get("geometry")
        if not isinstance(geometry, SiteGeometry):
            raise LookupError(f"rule {self.entry.id}: site {ctx.site} was provisioned without a SiteGeometry")
        if geometry.in_working_hours(event.clock):  # cheap, and true most of the day: check it first
            return []
        bay = geometry.bay_at(event.payload.x_m, event.payload.y_m, self.params.margin_m)
        if bay is None or bay.id not in pledged_bays(ctx.book):
            return []
        key = (event.device, bay.id)
        last = self._last_alert.get(key)
        if last is not None and abs(event.clock - last) < self.params.realert_after_s:
            return []
        self._last_alert[key] = event.clock
        forklift = ctx.devices[event.device].attrs.get("forklift")
        return [
            Finding(
                targets=(f"bay:{bay.id}", f"zone:{bay.zone}", f"device:{event.device}"),
                event_time=event.clock,
                observed_at=event.received_at,
                summary=(
                    f"forklift {forklift or event.device} moving at {event.payload.speed_mps:g} m/s in pledged bay "
                    f"{bay.id} outside working hours"
                ),
                dedupe_key=f"{event.device}:{bay.id}@{event.clock:.3f}",
                detail={
                    "forklift": forklift,
                    "x_m": event.payload.x_m,
                    "y_m": event.payload.y_m,
                    "speed_mps": event.payload.speed_mps,
                },
            )
        ]
