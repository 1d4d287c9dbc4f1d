"""message-integrity: bad signature, replayed sequence, clock skew, unknown device or kind."""

from __future__ import annotations

from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.records import Rejection
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import EdgeContext


class Params(StrictModel):
    max_clock_skew_s: float = pydantic.Field(default=5.0, gt=0, le=3600)
    replay_window: int = pydantic.Field(default=256, ge=1, le=65536)
    # One alert per device and reason per window: a forged device sends thousands of frames.
    realert_after_s: float = pydantic.Field(default=300.0, ge=0)


class Entry(RuleEntry):
    kind: Literal["message-integrity"]
    params: Params = Params()


class MessageIntegrity(Rule):
    kind = "message-integrity"
    consumes = (Rejection,)

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._last_alert: dict[tuple[str, str], float] = {}

    def evaluate(self, event: Rejection, ctx: EdgeContext) -> list[Finding]:
        source = event.device or "unidentified"
        key = (source, event.reason)
        last = self._last_alert.get(key)
        if last is not None and event.received_at - last < self.params.realert_after_s:
            return []
        self._last_alert[key] = event.received_at
        return [
            Finding(
                targets=(f"device:{source}",),
                event_time=event.received_at,
                observed_at=event.received_at,
                summary=f"rejected message from {source}: {event.reason}",
                dedupe_key=f"{source}:{event.reason}:{event.received_at!r}",  # the window is the rule's own
                detail={"reason": event.reason, "detail": event.detail},
            )
        ]
