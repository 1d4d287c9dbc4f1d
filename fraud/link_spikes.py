"""link-spikes: bursts of packet loss and latency on the network links, short of an outage.

A fault, not a fraud. The links stay up but drop `loss` of the messages and add
`extra_latency_s` to each for `duration_s`. The uplink's at-least-once resend (an unacked batch
is sent again after the edge's ack timeout) must keep the record whole, and the cloud's
idempotent ingest must keep it exactly-once: no loss, no duplicate effects, no false alarms.
The label has no primary rule; an `edge-offline` alert is explained only if heartbeats really
went missing for k periods.
"""

from __future__ import annotations

from typing import Callable

from cangtwin.fraud.label import Label
from cangtwin.twin.network import Link


def inject_link_spikes(
    label_id: str, site: str, at: float, duration_s: float, loss: float, extra_latency_s: float,
    links: list[Link], record: Callable[[Label], None],
) -> Label:
    for link in links:
        link.add_spike(at, at + duration_s, loss, extra_latency_s)
    label = Label(
        id=label_id, kind="link-spikes", fault=True, targets=[f"edge:{site}"], injected_at=at, onset=at,
        magnitude=loss, magnitude_unit="loss (fraction)", primary_rules=[],
        secondary_rules=["edge-offline"], window_s=duration_s + 120.0,
        detail={"until": at + duration_s, "extra_latency_s": extra_latency_s, "links": [link.name for link in links]},
    )
    record(label)
    return label
