"""device-offline: a device has sent nothing for more than k heartbeat periods.

Any admitted message counts as a sign of life, not only heartbeats. Silence is measured on the
edge's clock (the device's own clock may drift); the alert's event time is in the device's clock:
its last message plus k periods. A device never heard since the edge started is counted from the
edge's start (its first tick), or from the first tick it is provisioned on. One alert per outage:
the outage ends with the next admitted message, and a later silence alerts again.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import DeviceMessage, EdgeContext


class Params(StrictModel):
    k: int = pydantic.Field(default=3, ge=1, le=100)
    heartbeat_s: float = pydantic.Field(default=10.0, gt=0, le=3600)


class Entry(RuleEntry):
    kind: Literal["device-offline"]
    params: Params = Params()


class DeviceOffline(Rule):
    kind = "device-offline"
    consumes = (DeviceMessage,)
    tick_s = 1.0

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._heard_at: dict[str, float] = {}  # edge time of the latest arrival
        self._last_clock: dict[str, float] = {}  # newest device clock seen
        self._watched_since: dict[str, float] = {}  # edge time of the first tick that listed it
        self._down: set[str] = set()
        self._next_check = float("-inf")  # no device can be overdue before this edge time

    def evaluate(self, event: DeviceMessage, ctx: EdgeContext) -> list[Finding]:
        device = event.device
        self._heard_at[device] = max(self._heard_at.get(device, event.received_at), event.received_at)
        self._last_clock[device] = max(self._last_clock.get(device, event.clock), event.clock)
        if device in self._down:
            self._down.discard(device)
            self._next_check = float("-inf")  # it may go silent again: watch it from now
        return []

    def on_time(self, now: float, ctx: EdgeContext) -> list[Finding]:
        limit = self.params.k * self.params.heartbeat_s
        if now < self._next_check:  # hearing a device only ever pushes its deadline later
            return []
        findings = []
        deadlines = []
        for device in ctx.devices:
            since = self._watched_since.setdefault(device, now)
            heard = self._heard_at.get(device)
            silent_s = now - (since if heard is None else heard)
            if silent_s <= limit or device in self._down:
                if device not in self._down:
                    deadlines.append((since if heard is None else heard) + limit)
                continue
            self._down.add(device)
            last_clock = self._last_clock.get(device)
            event_time = (since if last_clock is None else last_clock) + limit
            findings.append(
                Finding(
                    targets=(f"device:{device}",),
                    event_time=event_time,
                    observed_at=now,
                    summary=(
                        f"device {device} never heard since the edge started watching it"
                        if heard is None
                        else f"device {device} silent for more than {self.params.k} x {self.params.heartbeat_s:g} s"
                    ),
                    dedupe_key=f"{device}@{event_time:.3f}",
                    detail={"last_clock": last_clock, "last_heard_at": heard, "silent_s": silent_s},
                )
            )
        # Skip ticks until the earliest deadline; a device that is down wakes the rule by speaking.
        self._next_check = min(deadlines, default=float("inf"))
        return findings
