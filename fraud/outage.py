"""uplink-outage: the warehouse loses its uplink (both directions) for a while.

A fault, not a fraud: its label explains the `edge-offline` alerts it causes. The edge keeps
alerting locally and its outbox holds everything until the link returns.
"""

from __future__ import annotations

from typing import Callable

from cangtwin.fraud.label import Label
from cangtwin.twin.network import Link


def inject_uplink_outage(
    label_id: str, site: str, at: float, duration_s: float, links: list[Link], record: Callable[[Label], None]
) -> Label:
    for link in links:
        link.add_outage(at, at + duration_s)
    label = Label(
        id=label_id,
        kind="uplink-outage",
        fault=True,
        targets=[f"edge:{site}"],
        injected_at=at,
        onset=at,
        magnitude=duration_s,
        magnitude_unit="s",
        primary_rules=["edge-offline"],
        secondary_rules=["evidence-tamper"],  # a small outbox may overflow while the link is down
        window_s=duration_s + 120.0,
        detail={"until": at + duration_s},
    )
    record(label)
    return label
