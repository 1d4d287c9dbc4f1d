"""Gate fusion: a vehicle passage plus the RFID reads around it make one GateEvent.

A loop detector reports a passage when the vehicle has cleared the gate; the portal reads the
tags while it passes. Reads can arrive a little after the passage (network jitter), so the
passage is held for `grace_s` before the event is emitted. Each read is used once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cangtwin.platform.records import GateEvent
from cangtwin.platform.rules.base import BookView


@dataclass(frozen=True)
class TagRead:
    tag: str
    clock: float


@dataclass(frozen=True)
class Passage:
    gate: str
    direction: str
    clock: float
    received_at: float


class GateFusion:
    def __init__(self, site: str, window_s: float = 20.0, grace_s: float = 0.5, id_prefix: str | None = None) -> None:
        self.site = site
        self.id_prefix = id_prefix or site
        self.window_s = window_s
        self.grace_s = grace_s
        self._reads: dict[str, deque[TagRead]] = {}
        self._count = 0

    def add_read(self, gate: str, tag: str, clock: float) -> None:
        self._reads.setdefault(gate, deque()).append(TagRead(tag, clock))

    def close(self, passage: Passage, book: BookView) -> GateEvent:
        """Build the event for a passage once its grace period is over; consumes its reads."""
        reads = self._reads.setdefault(passage.gate, deque())
        start, end = passage.clock - self.window_s, passage.clock + self.grace_s
        kept: deque[TagRead] = deque()
        tags: list[str] = []
        for read in reads:
            if start <= read.clock <= end:
                if read.tag not in tags:
                    tags.append(read.tag)
            elif read.clock > end:
                kept.append(read)
        self._reads[passage.gate] = kept
        lots = sorted({book.lot_by_tag[t] for t in tags if t in book.lot_by_tag})
        unknown = sorted(t for t in tags if t not in book.lot_by_tag)
        self._count += 1
        return GateEvent(
            id=f"{self.id_prefix}-G{self._count:06d}",
            site=self.site,
            gate=passage.gate,
            direction=passage.direction,
            lots=tuple(lots),
            unknown_tags=tuple(unknown),
            event_time=passage.clock,
            received_at=passage.received_at,
        )
