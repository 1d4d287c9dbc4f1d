"""evidence-tamper (edge side): a range of buffered evidence was lost before the cloud had it.

Every gap the outbox reports (TTL expiry, overflow, or corruption found at start-up) is an
alert: the bank must know that a stretch of the record is missing, and why.
"""

from __future__ import annotations

from typing import Literal

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.records import OutboxGap
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import EdgeContext


class Params(StrictModel):
    # Corruption always alerts; TTL and overflow losses can be tolerated up to this many records
    # (a bank may accept losing a few heartbeats of a long outage).
    tolerated_evictions: int = 0


class Entry(RuleEntry):
    kind: Literal["evidence-tamper"]
    params: Params = Params()


class EvidenceTamper(Rule):
    kind = "evidence-tamper"
    consumes = (OutboxGap,)

    def evaluate(self, event: OutboxGap, ctx: EdgeContext) -> list[Finding]:
        if event.reason != "corrupt" and event.count <= self.params.tolerated_evictions:
            return []
        return [
            Finding(
                targets=(f"edge:{event.site}",),
                event_time=event.at,
                observed_at=event.at,
                summary=f"{event.count} buffered record(s) {event.first_seq}–{event.last_seq} lost at the edge ({event.reason})",
                dedupe_key=f"{event.first_seq}-{event.last_seq}-{event.reason}",
                detail={"reason": event.reason, "first_seq": event.first_seq, "last_seq": event.last_seq,
                        "count": event.count, "detail": event.detail},
            )
        ]
