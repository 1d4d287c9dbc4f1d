"""weighbridge-anomaly: the scale itself misbehaves — unstable weighing, zero drift, plateau steps,
weight with no vehicle in view.

Readings are put back in device-clock order (a reorder window of `reorder_s`) and fused into weigh
tickets by `WeighingFuser`. Three checks, in divisions e of the scale (device attr `division_kg`):

- unstable weighing: no plateau of at least `min_stable_s` while loaded (someone rocking the
  truck, or stepping on and off the plate, so no reading can be taken);
- zero drift: the empty scale reads stable beyond ±`zero_tolerance_e` for `zero_drift_min_s`
  (a remote-control offset, or a zero the indicator no longer tracks);
- plateau step: two stable plateaus of the vehicle fully on the plate (both at least
  `on_fraction` of the highest plateau) differ by more than `max_plateau_step_e` (a person
  stepping on or off). Axles rolling on give plateaus far below the full load and are ignored.
  Judged while the vehicle is still on the plate, as soon as the new plateau and a settled one
  before it have each held `step_hold_s` and the plate camera has seen the same vehicle on the
  plate since the earlier one began (so not a vehicle changing places); otherwise, for plateaus
  too short for that, when the weighing ends. One alert per weighing;
- no vehicle in view: the scale reads a stable load for `no_vehicle_min_s` while its plate camera
  (the `vehicle` event) sees no vehicle on the plate — a remote offset too large to pass for a
  zero drift, or ballast left on the plate.

Weighing accuracy against a declared or expected weight is not judged here: an honest scale is
off by up to its MPE (class III: 1.5e at 2000–10000e), and the declared weight lives in fusion.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.edge.weighing import WeighingFuser, WeighTicket
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import DeviceMessage, EdgeContext

DEFAULT_DIVISION_KG = 20.0  # e of a 60 t class III weighbridge, when the device attrs omit it


class Params(StrictModel):
    min_stable_s: float = pydantic.Field(default=3.0, ge=0, le=600)
    zero_tolerance_e: float = pydantic.Field(default=1.0, ge=0, le=100)
    zero_drift_min_s: float = pydantic.Field(default=5.0, ge=0, le=3600)
    max_plateau_step_e: float = pydantic.Field(default=1.5, gt=0, le=1000)
    on_fraction: float = pydantic.Field(default=0.9, gt=0, le=1)
    # Below this many e the plate counts as empty (R76 Min is 20e; a person weighs ~4e at 20 kg).
    zero_band_e: float = pydantic.Field(default=10.0, gt=0, le=1000)
    reorder_s: float = pydantic.Field(default=0.5, ge=0, le=10)
    no_vehicle_min_s: float = pydantic.Field(default=10.0, ge=0, le=3600)
    # A step is judged during the weighing once both plateaus have held this long: with the
    # indicator's 1 s motion window, 3 s of steady weight, which a truck rolling on does not show.
    step_hold_s: float = pydantic.Field(default=2.0, ge=0, le=600)


class Entry(RuleEntry):
    kind: Literal["weighbridge-anomaly"]
    params: Params = Params()


@dataclass
class _Sustained:
    """A condition that must hold over stable readings for a while before it is reported, once."""

    since: float | None = None
    alerted: bool = False

    def update(self, clock: float, holds: bool | None, min_s: float) -> float | None:
        """`holds` None (an unstable reading) neither starts nor ends it. Returns when it began,
        the first time it has held for `min_s`."""
        if holds is None:
            return None
        if not holds:
            self.since, self.alerted = None, False
            return None
        if self.since is None:
            self.since = clock
        if self.alerted or clock - self.since < min_s:
            return None
        self.alerted = True
        return self.since


@dataclass
class _Scale:
    fuser: WeighingFuser
    pending: list[tuple[float, int, float, float, bool]] = field(default_factory=list)  # clock, seq, recv, kg, stable
    newest_clock: float = float("-inf")
    newest_arrival: float = float("-inf")
    released_clock: float = float("-inf")
    zero_drift: _Sustained = field(default_factory=_Sustained)
    no_vehicle: _Sustained = field(default_factory=_Sustained)
    views: list[tuple[float, str]] = field(default_factory=list)  # (clock, plate in view), sorted, not yet reached
    plate: str = ""  # the vehicle the plate camera shows at the latest fused reading ("" none)
    plate_since: float = float("-inf")  # when that view began
    view_clock: float = float("-inf")  # clock of the latest view taken
    step_alerted: float | None = None  # start of the weighing whose plateau step has alerted


class WeighbridgeAnomaly(Rule):
    kind = "weighbridge-anomaly"
    consumes = (DeviceMessage,)
    tick_s = 1.0

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._scales: dict[str, _Scale] = {}

    def _scale(self, device: str, ctx: EdgeContext) -> _Scale:
        scale = self._scales.get(device)
        if scale is None:
            raw = ctx.devices[device].attrs.get("division_kg", str(DEFAULT_DIVISION_KG))
            try:
                division = float(raw)
            except ValueError:
                raise ValueError(
                    f"rule {self.entry.id}: device {device} has division_kg {raw!r}, not a number"
                ) from None
            scale = self._scales[device] = _Scale(WeighingFuser(device, division, self.params.zero_band_e))
        return scale

    def evaluate(self, event: DeviceMessage, ctx: EdgeContext) -> list[Finding]:
        if event.device_type != "weighbridge":
            return []
        scale = self._scale(event.device, ctx)
        if event.kind == "vehicle":
            bisect.insort(scale.views, (event.clock, event.payload.plate))
        scale.newest_clock = max(scale.newest_clock, event.clock)
        scale.newest_arrival = max(scale.newest_arrival, event.received_at)
        # A reading older than one already fused missed the reorder window; it cannot be placed.
        if event.kind == "reading" and event.clock > scale.released_clock:
            entry = (event.clock, event.seq, event.received_at, event.payload.mass_kg, event.payload.stable)
            heapq.heappush(scale.pending, entry)
        return self._release(event.device, scale, scale.newest_clock - self.params.reorder_s, ctx)

    def on_time(self, now: float, ctx: EdgeContext) -> list[Finding]:
        """Flush a scale that has gone quiet: nothing earlier can still be on its way."""
        return [
            finding
            for device, scale in self._scales.items()
            if scale.pending and scale.newest_arrival <= now - self.params.reorder_s
            for finding in self._release(device, scale, float("inf"), ctx)
        ]

    def _release(self, device: str, scale: _Scale, upto: float, ctx: EdgeContext) -> list[Finding]:
        findings: list[Finding] = []
        weighbridge = ctx.devices[device].attrs.get("weighbridge")
        targets = (f"device:{device}",) + ((f"weighbridge:{weighbridge}",) if weighbridge else ())
        while scale.pending and scale.pending[0][0] <= upto:
            clock, _seq, received_at, mass, stable = heapq.heappop(scale.pending)
            scale.released_clock = clock
            self._advance_view(scale, clock)
            ticket = scale.fuser.add(clock, mass, stable)
            if ticket is not None:
                findings += self._judge_ticket(ticket, targets, received_at, scale.fuser.division_kg,
                                               step_judged=scale.step_alerted == ticket.started_at)
            else:
                findings += self._judge_step(scale, targets, received_at)
            findings += self._judge_zero(scale, clock, mass, stable, targets, received_at)
            findings += self._judge_no_vehicle(scale, clock, mass, stable, targets, received_at)
        return findings

    @staticmethod
    def _advance_view(scale: _Scale, clock: float) -> None:
        """Take the plate camera's views up to `clock` (readings are fused in clock order)."""
        at = bisect.bisect_right(scale.views, (clock, "\uffff"))
        for view_clock, plate in scale.views[:at]:
            if view_clock < scale.view_clock:
                continue  # arrived after a newer view had been taken: superseded
            scale.view_clock = view_clock
            if plate != scale.plate:
                scale.plate, scale.plate_since = plate, view_clock
        del scale.views[:at]

    def _judge_step(self, scale: _Scale, targets: tuple[str, ...], received_at: float) -> list[Finding]:
        """A plateau step while the weighing is in progress and the same vehicle stands on the plate."""
        fuser, p = scale.fuser, self.params
        now = fuser.holding()
        if now is None or now.duration_s < p.step_hold_s or not scale.plate or scale.step_alerted == fuser.started_at:
            return []
        closed = fuser.closed_plateaus
        before = next((q for q in reversed(closed) if q.duration_s >= p.step_hold_s), None)
        if before is None or scale.plate_since > before.start:
            return []  # nothing settled before it, or another vehicle (or none) was in view then
        top = max(q.mass_kg for q in (*closed, now))
        step = now.mass_kg - before.mass_kg
        vehicle_on = min(before.mass_kg, now.mass_kg) >= p.on_fraction * top
        if not vehicle_on or abs(step) <= p.max_plateau_step_e * fuser.division_kg:
            return []
        scale.step_alerted = fuser.started_at
        device = fuser.device
        return [
            Finding(
                targets=targets,
                event_time=now.start,
                observed_at=received_at,
                summary=(
                    f"weighbridge {device}: stable weight stepped by {step:+g} kg with vehicle "
                    f"{scale.plate} on the plate"
                ),
                dedupe_key=f"{device}:step@{fuser.started_at:.3f}",
                detail={
                    "check": "plateau-step",
                    "steps": [(before.mass_kg, now.mass_kg, now.start)],
                    "started_at": fuser.started_at,
                    "vehicle": scale.plate,
                    "judged": "during the weighing",
                },
            )
        ]

    def _judge_no_vehicle(
        self, scale: _Scale, clock: float, mass: float, stable: bool, targets: tuple[str, ...], received_at: float
    ) -> list[Finding]:
        holds = False if not scale.fuser.loaded or scale.plate else (True if stable else None)
        since = scale.no_vehicle.update(clock, holds, self.params.no_vehicle_min_s)
        if since is None:
            return []
        device = scale.fuser.device
        return [
            Finding(
                targets=targets,
                event_time=clock,
                observed_at=received_at,
                summary=f"weighbridge {device} reads {mass:g} kg with no vehicle in view",
                dedupe_key=f"{device}:no-vehicle@{since:.3f}",
                detail={"check": "no-vehicle", "mass_kg": mass, "since": since},
            )
        ]

    def _judge_zero(
        self, scale: _Scale, clock: float, mass: float, stable: bool, targets: tuple[str, ...], received_at: float
    ) -> list[Finding]:
        e = scale.fuser.division_kg
        off_zero = abs(mass) > self.params.zero_tolerance_e * e
        holds = False if scale.fuser.loaded else (off_zero if stable else None)
        since = scale.zero_drift.update(clock, holds, self.params.zero_drift_min_s)
        if since is None:
            return []
        device = scale.fuser.device
        return [
            Finding(
                targets=targets,
                event_time=clock,
                observed_at=received_at,
                summary=f"weighbridge {device} reads {mass:g} kg ({mass / e:+.1f}e) when empty",
                dedupe_key=f"{device}:zero@{since:.3f}",
                detail={"check": "zero-drift", "mass_kg": mass, "division_kg": e, "since": since},
            )
        ]

    def _judge_ticket(
        self, ticket: WeighTicket, targets: tuple[str, ...], received_at: float, e: float, step_judged: bool
    ) -> list[Finding]:
        """The checks of a finished weighing; its plateau step only if none alerted during it."""
        findings = []
        device = ticket.device
        ticket_detail = {
            "started_at": ticket.started_at,
            "ended_at": ticket.ended_at,
            "gross_kg": ticket.gross_kg,
            "stable_s": ticket.stable_s,
            "instability": ticket.instability,
        }
        if ticket.stable_s < self.params.min_stable_s:
            findings.append(
                Finding(
                    targets=targets,
                    event_time=ticket.ended_at,
                    observed_at=received_at,
                    summary=(
                        f"weighbridge {device}: no stable reading for {self.params.min_stable_s:g} s in a "
                        f"{ticket.ended_at - ticket.started_at:.0f} s weighing"
                    ),
                    dedupe_key=f"{device}:unstable@{ticket.started_at:.3f}",
                    detail={"check": "unstable", **ticket_detail},
                )
            )
        top = max((p.mass_kg for p in ticket.plateaus), default=0.0)
        on = [p.mass_kg >= self.params.on_fraction * top for p in ticket.plateaus]
        steps = [
            (a, b)
            for i, (a, b) in enumerate(zip(ticket.plateaus, ticket.plateaus[1:]))
            if on[i] and on[i + 1] and abs(b.mass_kg - a.mass_kg) > self.params.max_plateau_step_e * e
        ]
        if steps and not step_judged:
            first = steps[0][1]
            findings.append(
                Finding(
                    targets=targets,
                    event_time=first.start,
                    observed_at=received_at,
                    summary=(
                        f"weighbridge {device}: stable weight stepped {len(steps)} time(s) with the vehicle on, "
                        f"first by {first.mass_kg - steps[0][0].mass_kg:+g} kg"
                    ),
                    dedupe_key=f"{device}:step@{ticket.started_at:.3f}",
                    detail={
                        "check": "plateau-step",
                        "steps": [(a.mass_kg, b.mass_kg, b.start) for a, b in steps],
                        "judged": "when the weighing ended",
                        **ticket_detail,
                    },
                )
            )
        return findings
