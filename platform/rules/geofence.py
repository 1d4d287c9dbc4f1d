"""geofence: pledged goods moved outside working hours, or carried out of their zone at any hour.

What the edge observes is the forklifts' UWB/5G positions (1 Hz while moving, ~10 cm noise); it
never sees which lot a forklift holds. The bays, zones and working hours are the site geometry
the edge got at provisioning (`EdgeContext.extra["geometry"]`, a `SiteGeometry`); which bays hold
pledged, unreleased goods comes from the book (`book.bay_by_lot`). Two findings:

- **after hours**: a forklift moving (speed ≥ `min_speed_mps`) `margin_m` inside a bay holding
  pledged goods outside working hours (judged at the position's device time, site time zone).
- **out of zone**: a forklift that lifted goods in a bay holding only pledged, unreleased goods
  is seen `margin_m` outside that bay's zone before it sets them down. Loads are inferred from
  stops: a forklift stands still for its handling time to lift or set down, so its stops
  alternate pickup, drop (it starts empty). A stop is `min_stand_s` with no moving position,
  after which it drives off within `stand_radius_m` of where it was last seen moving (a longer
  jump means positions were lost, and the rule forgets the load rather than guess). A pickup in a
  bay that also holds released or unpledged lots may be an honest outbound: no finding (the gate
  and the bay scans still judge it). Moves between bays of one zone never leave the zone. One
  finding per load, and per forklift and bay per `realert_after_s`; it names the bay's lots, as
  the load is one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.rules.base import BookView, Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import DeviceMessage, EdgeContext
from cangtwin.platform.site_geometry import Bay, SiteGeometry


class Params(StrictModel):
    min_speed_mps: float = pydantic.Field(default=0.3, ge=0, le=10)
    margin_m: float = pydantic.Field(default=0.3, ge=0, le=5)
    # One alert per forklift, bay and kind per this long (device time): a move sends a position a second.
    realert_after_s: float = pydantic.Field(default=600.0, ge=0)
    # A stop to lift or set down lasts the forklift's handling time (25 s on the reference sites);
    # shorter silences are lost messages.
    min_stand_s: float = pydantic.Field(default=10.0, gt=0, le=3600)
    # A forklift drives off from where it stopped; its last moving position is at most one 1 Hz
    # period of driving (2.5 m at 2.5 m/s) short of that spot.
    stand_radius_m: float = pydantic.Field(default=4.0, gt=0, le=50)
    # A bank whose keepers may stage pledged goods in the yard can switch the out-of-zone finding off.
    out_of_zone: bool = True


class Entry(RuleEntry):
    kind: Literal["geofence"]
    params: Params = Params()


def pledged_bays(book: BookView) -> set[str]:
    """Bays holding at least one pledged lot that has not been released."""
    return {bay for lot, bay in book.bay_by_lot.items() if lot in book.pledged and lot not in book.released}


def only_pledged(book: BookView, bay: str) -> tuple[str, ...]:
    """The lots the book places in `bay` if every one of them is pledged and unreleased, else ()."""
    lots = sorted(lot for lot, at in book.bay_by_lot.items() if at == bay)
    return tuple(lots) if all(lot in book.pledged and lot not in book.released for lot in lots) else ()


@dataclass(slots=True)
class _Forklift:
    """What one positioning tag's track says: where it last moved, and the load it is inferred to hold."""

    clock: float
    x: float
    y: float
    loaded: bool = False
    loaded_in: Bay | None = None  # the bay of only-pledged goods it lifted its load in
    lots: tuple[str, ...] = ()  # the lots the book had there: the load is one of them
    reported: bool = False  # this load has been seen out of its zone: once per load is enough


class Geofence(Rule):
    kind = "geofence"
    consumes = (DeviceMessage,)

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._last_alert: dict[tuple[str, str, str], float] = {}
        self._tracks: dict[str, _Forklift] = {}
        self._min_stand_s = self.params.min_stand_s

    def evaluate(self, event: DeviceMessage, ctx: EdgeContext) -> list[Finding]:
        if event.kind != "position":
            return []
        payload = event.payload
        if payload.speed_mps < self.params.min_speed_mps:
            return []
        geometry = ctx.extra.get("geometry")
        if not isinstance(geometry, SiteGeometry):
            raise LookupError(f"rule {self.entry.id}: site {ctx.site} was provisioned without a SiteGeometry")
        x, y, clock = payload.x_m, payload.y_m, event.clock
        track = self._tracks.get(event.device)
        if track is not None and track.clock <= clock < track.clock + self._min_stand_s:
            track.clock, track.x, track.y = clock, x, y  # driving on: runs for nearly every position
        else:
            track = self._follow(track, event, geometry, ctx.book)
        findings = []
        bay = track.loaded_in
        if (bay is not None and not track.reported and self.params.out_of_zone
                and not geometry.zones[bay.zone].contains(x, y, -self.params.margin_m)):
            track.reported = True
            what = f"out of zone {bay.zone}, carrying goods lifted in pledged bay {bay.id}"
            findings += self._finding("out-of-zone", bay, event, ctx, what, lots=track.lots)
        if not geometry.in_working_hours(clock):
            bay = geometry.bay_at(x, y, self.params.margin_m)
            if bay is not None and bay.id in pledged_bays(ctx.book):
                findings += self._finding("after-hours", bay, event, ctx,
                                          f"in pledged bay {bay.id} outside working hours")
        return findings

    def _follow(self, track: _Forklift | None, event: DeviceMessage, geometry: SiteGeometry,
                book: BookView) -> _Forklift:
        """A tag's first position, a late one, or the first after a stop: what its load now is."""
        x, y = event.payload.x_m, event.payload.y_m
        if track is None:
            track = self._tracks[event.device] = _Forklift(event.clock, x, y)
        if event.clock < track.clock:  # reordered on the link: too late to say where it stood
            return track
        if event.clock - track.clock >= self._min_stand_s:
            track.reported = False
            if math.hypot(x - track.x, y - track.y) > self.params.stand_radius_m:
                # Lost track of it: forget the load, never guess.
                track.loaded, track.loaded_in, track.lots = False, None, ()
            elif track.loaded:
                track.loaded, track.loaded_in, track.lots = False, None, ()  # set its load down here
            else:
                bay = geometry.bay_at(x, y, self.params.margin_m)
                track.loaded = True
                track.lots = only_pledged(book, bay.id) if bay is not None else ()
                track.loaded_in = bay if track.lots else None
        track.clock, track.x, track.y = event.clock, x, y
        return track

    def _finding(self, why: str, bay: Bay, event: DeviceMessage, ctx: EdgeContext, what: str,
                 lots: tuple[str, ...] = ()) -> list[Finding]:
        key = (why, event.device, bay.id)
        last = self._last_alert.get(key)
        if last is not None and abs(event.clock - last) < self.params.realert_after_s:
            return []
        self._last_alert[key] = event.clock
        forklift = ctx.devices[event.device].attrs.get("forklift")
        return [
            Finding(
                targets=(f"bay:{bay.id}", f"zone:{bay.zone}", f"device:{event.device}", *(f"lot:{lot}" for lot in lots)),
                event_time=event.clock,
                observed_at=event.received_at,
                summary=f"forklift {forklift or event.device} moving at {event.payload.speed_mps:g} m/s {what}",
                dedupe_key=f"{why}:{event.device}:{bay.id}@{event.clock:.3f}",
                detail={
                    "why": why,
                    "forklift": forklift,
                    "x_m": event.payload.x_m,
                    "y_m": event.payload.y_m,
                    "speed_mps": event.payload.speed_mps,
                },
            )
        ]
