"""edge-offline: the cloud has not heard a site's edge heartbeat for more than k periods.

Edge heartbeats reach the cloud only through the uplink; during an outage they queue in the
edge's outbox and arrive as a backlog after reconnect. So an outage ends only once the newest
heartbeat is fresh again (within k periods of now), not at the first backlog heartbeat: the
replayed backlog advances `edge_last_heard` in steps while it is still stale, and must not raise
one alert per step. A site is watched from its first heartbeat.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import CloudContext


class Params(StrictModel):
    k: int = pydantic.Field(default=3, ge=1, le=100)
    heartbeat_s: float = pydantic.Field(default=10.0, gt=0, le=3600)


class Entry(RuleEntry):
    kind: Literal["edge-offline"]
    params: Params = Params()


class EdgeOffline(Rule):
    kind = "edge-offline"
    where = "cloud"
    tick_s = 1.0

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._down: set[str] = set()

    def on_time(self, now: float, ctx: CloudContext) -> list[Finding]:
        limit = self.params.k * self.params.heartbeat_s
        findings = []
        for site, heard in ctx.edge_last_heard.items():
            if now - heard <= limit:
                self._down.discard(site)
                continue
            if site in self._down:
                continue
            self._down.add(site)
            event_time = heard + limit
            findings.append(
                Finding(
                    targets=(f"edge:{site}",),
                    event_time=event_time,
                    observed_at=now,
                    summary=f"edge {site} not heard for more than {self.params.k} x {self.params.heartbeat_s:g} s",
                    dedupe_key=f"{site}@{event_time:.3f}",
                    detail={"last_heartbeat": heard, "silent_s": now - heard},
                )
            )
        return findings
