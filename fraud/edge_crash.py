"""edge-crash: the warehouse's edge process dies and is restarted later.

What survives is what the edge had committed to its durable outbox; what it held only in
memory (unflushed records, fusion state, its copy of the book) is gone and must be rebuilt.
"""

from __future__ import annotations

from typing import Callable

from cangtwin.fraud.label import Label


def inject_edge_crash(
    label_id: str, site: str, at: float, down_s: float,
    crash: Callable[[], None], restart: Callable[[], None],
    schedule: Callable[[float, Callable[[], None]], None], record: Callable[[Label], None],
) -> Label:
    label = Label(
        id=label_id, kind="edge-crash", fault=True, targets=[f"edge:{site}"], injected_at=at, onset=at,
        magnitude=down_s, magnitude_unit="s", primary_rules=["edge-offline"],
        # While the edge is down its devices go unheard; after the restart it counts them afresh.
        secondary_rules=["device-offline"], window_s=down_s + 300.0, detail={"restart_at": at + down_s},
    )
    schedule(at, crash)
    schedule(at + down_s, restart)
    record(label)
    return label
