"""Modelled service times, so edge and cloud stages take time in virtual time.

A stage is a single FIFO server: work submitted at `now` finishes at
max(now, busy_until) + service time. Under wall time the service time is zero and the real
cost of the code is the latency.
"""

from __future__ import annotations

from typing import Callable

from cangtwin.platform.clock import Clock


class ServiceQueue:
    def __init__(self, clock: Clock, fixed_s: float, per_item_s: float = 0.0) -> None:
        self.clock = clock
        self.fixed_s = fixed_s
        self.per_item_s = per_item_s
        self._busy_until = float("-inf")

    def submit(self, work: Callable[[], None], items: int = 1) -> None:
        """Run `work` when the server has served it; zero service time runs it now."""
        if self.fixed_s == 0 and self.per_item_s == 0:
            work()
            return
        now = self.clock.now()
        self._busy_until = max(now, self._busy_until) + self.fixed_s + self.per_item_s * items
        self.clock.call_later(self._busy_until - now, work)
