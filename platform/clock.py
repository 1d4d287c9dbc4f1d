"""One clock interface, two implementations: SimPy virtual time and asyncio wall time.

Platform code only ever sees `Clock`, so the same handlers run fast and deterministic under
SimPy for suites and sweeps, and in real time as a live service.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Protocol

import simpy


class Clock(Protocol):
    """What platform code may ask of time: the current time, and a callback later."""

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> None: ...


class SimPyClock:
    """Virtual time: callbacks become SimPy events, ordered by (time, insertion)."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env

    def now(self) -> float:
        return float(self.env.now)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.env.timeout(max(0.0, delay)).callbacks.append(lambda _event: callback())


class AsyncioClock:
    """Wall time on a running asyncio loop; `now()` is Unix time in seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()

    def now(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.loop.call_later(max(0.0, delay), callback)
