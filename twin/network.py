"""Links in virtual time: latency, loss and outage windows. Messages cross them as bytes.

A link is one direction of one connection. `fifo=True` keeps order as TCP (and so MQTT) does;
latency is a fixed base plus an exponential tail, which is what LAN and 4G/5G round trips
look like at this resolution.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import simpy


@dataclass(frozen=True)
class LinkProfile:
    base_latency_s: float = 0.005
    jitter_s: float = 0.002
    loss: float = 0.0
    outages: tuple[tuple[float, float], ...] = ()  # (start, end) in simulation time


@dataclass
class LinkStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    dropped_in_outage: int = 0
    bytes_delivered: int = 0


@dataclass
class Link:
    env: simpy.Environment
    name: str
    rng: np.random.Generator
    profile: LinkProfile = LinkProfile()
    fifo: bool = True
    stats: LinkStats = field(default_factory=LinkStats)
    _queue: deque = field(default_factory=deque)  # FIFO mode: (arrival, data, deliver) in send order
    _outages: list[tuple[float, float]] = field(default_factory=list)
    _spikes: list[tuple[float, float, float, float]] = field(default_factory=list)  # start, end, loss, extra s

    def __post_init__(self) -> None:
        self._outages.extend(self.profile.outages)

    def add_outage(self, start: float, end: float) -> None:
        """A fault injector cuts the link for [start, end)."""
        self._outages.append((start, end))

    def add_spike(self, start: float, end: float, loss: float, extra_latency_s: float) -> None:
        """A fault injector degrades the link for [start, end): this loss rate (when above the
        profile's) and this much more latency on top of the base and jitter."""
        self._spikes.append((start, end, loss, extra_latency_s))

    def _spike(self, at: float) -> tuple[float, float]:
        worst = [(loss, extra) for start, end, loss, extra in self._spikes if start <= at < end]
        return (max(loss for loss, _ in worst), max(extra for _, extra in worst)) if worst else (0.0, 0.0)

    def is_up(self, at: float) -> bool:
        return not any(start <= at < end for start, end in self._outages)

    def send(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        now = self.env.now
        self.stats.sent += 1
        if not self.is_up(now):
            self.stats.dropped_in_outage += 1
            return
        spike_loss, spike_latency = self._spike(now) if self._spikes else (0.0, 0.0)
        loss = max(self.profile.loss, spike_loss)
        if loss and self.rng.random() < loss:
            self.stats.lost += 1
            return
        arrival = now + spike_latency + self.profile.base_latency_s + (self.rng.exponential(self.profile.jitter_s) if self.profile.jitter_s else 0.0)
        if self.fifo:
            # One queue per link: a message never overtakes an earlier one, as on a TCP stream.
            self._queue.append((arrival, data, deliver))
            if len(self._queue) == 1:
                self._schedule_head()
        else:
            self.env.timeout(arrival - now).callbacks.append(lambda _e: self._arrive(arrival, data, deliver))

    def _schedule_head(self) -> None:
        arrival, data, deliver = self._queue[0]

        def pop(_event: simpy.Event) -> None:
            self._queue.popleft()
            self._arrive(arrival, data, deliver)
            if self._queue:
                self._schedule_head()

        self.env.timeout(max(0.0, arrival - self.env.now)).callbacks.append(pop)

    def _arrive(self, arrival: float, data: bytes, deliver: Callable[[bytes], None]) -> None:
        if not self.is_up(arrival):  # the link went down while the bytes were on it
            self.stats.dropped_in_outage += 1
            return
        self.stats.delivered += 1
        self.stats.bytes_delivered += len(data)
        deliver(data)
