"""outbound-unauthorized: pledged goods leave through a gate with no release order.

Run at the edge (the default) it judges each passage against the edge's copy of the book, and
keeps alerting while offline. With `where: cloud` the same check runs at the cloud against the
bank's own book when the edge's gate event arrives: a keeper who marks a release in the edge's
local copy (or an edge whose copy is wrong) silences the edge rule, not this one.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.records import GateEvent
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import CloudContext, EdgeContext


class Params(StrictModel):
    # Unknown tags leaving the site are suspicious (a swapped or cloned tag) but are not
    # pledged goods as far as the book knows; banks choose whether they alert.
    alert_on_unknown_tags: bool = False
    min_lots: int = pydantic.Field(default=1, ge=1, le=1000)
    where: Literal["edge", "cloud"] = "edge"


class Entry(RuleEntry):
    kind: Literal["outbound-unauthorized"]
    params: Params = Params()


class OutboundUnauthorized(Rule):
    kind = "outbound-unauthorized"
    consumes = (GateEvent,)

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self.where = self.params.where

    def evaluate(self, event: GateEvent, ctx: EdgeContext | CloudContext) -> list[Finding]:
        if event.direction != "out":
            return []
        book = ctx.book
        # The edge's BookView and the cloud's CollateralBook name the lot → loan map differently.
        pledged = book.pledges if self.where == "cloud" else book.pledged
        unreleased = tuple(lot for lot in event.lots if lot in pledged and lot not in book.released)
        unknown = event.unknown_tags if self.params.alert_on_unknown_tags else ()
        if len(unreleased) < self.params.min_lots and not unknown:
            return []
        targets = tuple(f"lot:{lot}" for lot in unreleased) + tuple(f"tag:{t}" for t in unknown)
        loans = sorted({pledged[lot] for lot in unreleased})
        return [
            Finding(
                targets=targets,
                event_time=event.event_time,
                observed_at=event.received_at,
                summary=f"{len(unreleased)} pledged lot(s) left via gate {event.gate} with no release order",
                dedupe_key=f"{event.gate}:{event.id}",
                detail={"gate": event.gate, "gate_event": event.id, "loans": loans, "unknown_tags": list(unknown)},
            )
        ]
