"""Weigh-ticket fusion: a weighbridge's 10 Hz readings, in device-clock order, become tickets.

A weighing starts when the reading leaves zero (|mass| above `zero_band_e` divisions) and ends
at the next stable reading back inside that band. While loaded, each run of stable readings
that stays within one division of its first value is a plateau; a plateau's value is the
reading it held longest (a value on a rounding boundary flickers between two divisions). The
ticket's gross is the value of the longest plateau. Pure: no clock but the readings' own.

While a weighing is in progress, `closed_plateaus` and `holding()` show its plateaus so far, so
that a rule can judge a step without waiting for the vehicle to leave.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec


class Plateau(msgspec.Struct, frozen=True):
    """A run of stable readings while loaded, from its first reading to the reading that ended it."""

    mass_kg: float
    start: float
    end: float

    @property
    def duration_s(self) -> float:
        return self.end - self.start


class WeighTicket(msgspec.Struct, frozen=True):
    """One weighing. `gross_kg` is None when the load never settled into a plateau."""

    device: str
    started_at: float
    ended_at: float
    gross_kg: float | None
    stable_s: float  # how long the gross value's plateau lasted
    unstable_s: float  # loaded time with the motion flag set
    peak_kg: float  # highest reading while loaded, stable or not
    plateaus: tuple[Plateau, ...]

    @property
    def instability(self) -> float:
        """Share of the loaded time the indicator reported motion, 0..1."""
        duration = self.ended_at - self.started_at
        return self.unstable_s / duration if duration > 0 else 0.0


class _Run:
    """The plateau being built: how long each value was held within it."""

    def __init__(self, mass_kg: float, start: float) -> None:
        self.first = mass_kg
        self.start = start
        self.held: dict[float, float] = defaultdict(float)

    def close(self, end: float) -> Plateau:
        # Ties go to the value reached first; `held` is never empty, since readings are
        # credited before the run that holds them closes.
        return Plateau(max(self.held, key=self.held.__getitem__), self.start, end)

    def so_far(self, now: float, showing: float) -> Plateau:
        """The plateau as held up to `now`, with the reading shown since the last credit."""
        held = dict(self.held)
        held[showing] = held.get(showing, 0.0)  # the first reading of a run has held for no time yet
        return Plateau(max(held, key=held.__getitem__), self.start, now)


class WeighingFuser:
    """One weighbridge's readings → tickets. Feed readings in device-clock order."""

    def __init__(self, device: str, division_kg: float, zero_band_e: float = 10.0) -> None:
        if not division_kg > 0:
            raise ValueError(f"weighbridge {device}: division_kg must be positive, got {division_kg!r}")
        self.device = device
        self.division_kg = division_kg
        self.zero_band_kg = zero_band_e * division_kg
        self._reset()

    def _reset(self) -> None:
        self._started: float | None = None
        self._previous: tuple[float, float, bool] | None = None  # (clock, mass, stable) while loaded
        self._run: _Run | None = None
        self._plateaus: list[Plateau] = []
        self._unstable_s = 0.0
        self._peak = 0.0

    @property
    def loaded(self) -> bool:
        return self._started is not None

    @property
    def started_at(self) -> float | None:
        """The clock of the reading that began the weighing in progress (None when empty)."""
        return self._started

    @property
    def closed_plateaus(self) -> tuple[Plateau, ...]:
        """The plateaus of the weighing in progress that have ended, oldest first."""
        return tuple(self._plateaus)

    def holding(self) -> Plateau | None:
        """The plateau the latest reading belongs to, as held so far (None: in motion or empty)."""
        if self._run is None or self._previous is None:
            return None
        clock, mass, _stable = self._previous
        return self._run.so_far(clock, mass)

    def add(self, clock: float, mass_kg: float, stable: bool) -> WeighTicket | None:
        """Take one reading; returns the ticket when this reading ends a weighing."""
        near_zero = abs(mass_kg) <= self.zero_band_kg
        if self._started is None:
            if near_zero:
                return None
            self._started = clock
        else:
            self._account(clock)
        if near_zero and stable:
            return self._finish(clock)
        self._previous = (clock, mass_kg, stable)
        self._peak = max(self._peak, mass_kg)
        if not stable:
            self._close_run(clock)
        else:
            if self._run is not None and abs(mass_kg - self._run.first) > self.division_kg:
                self._close_run(clock)
            if self._run is None:
                self._run = _Run(mass_kg, clock)
        return None

    def _account(self, clock: float) -> None:
        """Credit the time since the previous reading (there is one once loaded) to what it showed."""
        then, mass, stable = self._previous  # type: ignore[misc]
        held = clock - then
        if not stable:
            self._unstable_s += held
        elif self._run is not None:
            self._run.held[mass] += held

    def _close_run(self, clock: float) -> None:
        if self._run is not None:
            self._plateaus.append(self._run.close(clock))
            self._run = None

    def _finish(self, clock: float) -> WeighTicket:
        self._close_run(clock)
        plateaus = tuple(self._plateaus)
        longest = max(plateaus, key=lambda p: p.duration_s, default=None)
        ticket = WeighTicket(
            device=self.device,
            started_at=self._started,
            ended_at=clock,
            gross_kg=longest.mass_kg if longest else None,
            stable_s=longest.duration_s if longest else 0.0,
            unstable_s=self._unstable_s,
            peak_kg=self._peak,
            plateaus=plateaus,
        )
        self._reset()
        return ticket
