"""What an edge knows of its site's layout: zones and bays as floor rectangles, time zone, hours.

The edge receives it at provisioning, as `EdgeContext.extra["geometry"]`. Which bays hold pledged
goods is not here: that changes with every pledge and release, so it comes from the book.
Validated with pydantic like every other user-edited file, so a bad layout names its field.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic

from cangtwin.platform.config_file import StrictModel

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# YAML and JSON have no tuples or sets: accept lists for these; their items stay strict.
Days = Annotated[frozenset[Weekday], pydantic.Strict(False)]


@functools.lru_cache(maxsize=4096)
def _in_hours(timezone: str, start_hour: int, end_hour: int, days: frozenset, quarter: int) -> bool:
    local = dt.datetime.fromtimestamp(quarter * 900, ZoneInfo(timezone))
    return _WEEKDAYS[local.weekday()] in days and start_hour <= local.hour < end_hour


def known_timezone(value: str) -> str:
    """An IANA time zone name, or a ValueError that names it."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


class Rect(StrictModel):
    """Axis-aligned floor rectangle in metres, x0 < x1 and y0 < y1."""

    x0: float
    y0: float
    x1: float
    y1: float

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> Rect:
        if not (self.x0 < self.x1 and self.y0 < self.y1):
            raise ValueError("needs x0 < x1 and y0 < y1")
        return self

    def contains(self, x: float, y: float, margin: float = 0.0) -> bool:
        """Inside by at least `margin` metres (positioning noise must not put an aisle in a bay)."""
        return self.x0 + margin <= x <= self.x1 - margin and self.y0 + margin <= y <= self.y1 - margin

    def overlaps(self, other: Rect) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)


class Bay(StrictModel):
    id: str
    zone: str
    rect: Rect


class WorkingHours(StrictModel):
    """Daily hours [start_hour, end_hour) on the listed weekdays, in the site's local time."""

    start_hour: int = pydantic.Field(ge=0, le=23)
    end_hour: int = pydantic.Field(ge=1, le=24)
    days: Days

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if self.start_hour >= self.end_hour:
            raise ValueError(f"start_hour ({self.start_hour}) must be before end_hour ({self.end_hour})")
        return self


class SiteGeometry(StrictModel):
    site: str
    timezone: str
    working_hours: WorkingHours
    zones: dict[str, Rect]
    bays: Annotated[tuple[Bay, ...], pydantic.Strict(False)]

    @pydantic.field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_timezone(value)

    @pydantic.model_validator(mode="after")
    def _bays_in_known_zones(self) -> SiteGeometry:
        unknown = sorted({f"{b.id}→{b.zone}" for b in self.bays if b.zone not in self.zones})
        if unknown:
            raise ValueError(f"bay(s) in unknown zone(s): {', '.join(unknown)}")
        return self

    def in_working_hours(self, t_epoch: float) -> bool:
        """Whether a Unix time falls in the site's working hours, in the site's local time."""
        hours = self.working_hours
        # Every UTC offset in use is a multiple of 15 minutes, so the answer is constant within
        # each quarter hour: cache by quarter (this runs for every forklift position message).
        return _in_hours(self.timezone, hours.start_hour, hours.end_hour, hours.days, int(t_epoch // 900))

    def bay_at(self, x: float, y: float, margin: float = 0.0) -> Bay | None:
        """The bay containing a floor point by at least `margin` metres, if any."""
        return next((b for b in self.bays if b.rect.contains(x, y, margin)), None)
