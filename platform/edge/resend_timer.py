"""How long the edge waits for the cloud's ack of an uplink batch before sending it again.

The retransmission timeout of RFC 6298, hand-written because it is a dozen lines and no kept
library exposes it apart from a TCP stack: a smoothed round trip and its variation, measured
from acks of batches sent once (Karn's rule: an ack of a resent batch could answer either
send), RTO = SRTT + 4·RTTVAR, clamped to [floor, cap]; each timeout doubles it up to the cap,
so a real outage is probed at most once per cap, not flooded. A lost batch under a lossy but
working link is then resent about one round trip after it went, not after a fixed wait.
"""

from __future__ import annotations

ALPHA, BETA, K = 1 / 8, 1 / 4, 4  # RFC 6298 §2


class ResendTimer:
    def __init__(self, initial_s: float, floor_s: float, cap_s: float) -> None:
        if not 0 < floor_s <= initial_s <= cap_s:
            raise ValueError(f"resend timer: need 0 < floor ({floor_s}) <= initial ({initial_s}) <= cap ({cap_s})")
        self.floor_s, self.cap_s = floor_s, cap_s
        self.rto_s = initial_s
        self.srtt_s: float | None = None
        self.rttvar_s = 0.0

    def measured(self, rtt_s: float) -> None:
        """A round trip of a batch sent once (RFC 6298 §2.2-2.3)."""
        if self.srtt_s is None:
            self.srtt_s, self.rttvar_s = rtt_s, rtt_s / 2
        else:
            self.rttvar_s = (1 - BETA) * self.rttvar_s + BETA * abs(self.srtt_s - rtt_s)
            self.srtt_s = (1 - ALPHA) * self.srtt_s + ALPHA * rtt_s
        self.rto_s = min(max(self.srtt_s + K * self.rttvar_s, self.floor_s), self.cap_s)

    def timed_out(self) -> None:
        """Back off (RFC 6298 §5.5) until an ack of a batch sent once measures the path again."""
        self.rto_s = min(2 * self.rto_s, self.cap_s)
