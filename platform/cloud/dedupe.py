"""Which sequence numbers have been committed, as merged ranges.

At-least-once delivery resends batches whose ack was lost; remembering every number would grow
without bound over a long run, but the numbers arrive nearly contiguous, so ranges stay few.
Hand-written because no library offers a small interval set with this merge behaviour.
"""

from __future__ import annotations

import bisect


class SeenRanges:
    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []  # inclusive

    def __contains__(self, n: int) -> bool:
        i = bisect.bisect_right(self._starts, n) - 1
        return i >= 0 and n <= self._ends[i]

    def add(self, n: int) -> bool:
        """Record `n`; False if it was already there (a duplicate)."""
        i = bisect.bisect_right(self._starts, n) - 1
        if i >= 0 and n <= self._ends[i]:
            return False
        joins_left = i >= 0 and self._ends[i] == n - 1
        joins_right = i + 1 < len(self._starts) and self._starts[i + 1] == n + 1
        if joins_left and joins_right:
            self._ends[i] = self._ends[i + 1]
            del self._starts[i + 1], self._ends[i + 1]
        elif joins_left:
            self._ends[i] = n
        elif joins_right:
            self._starts[i + 1] = n
        else:
            self._starts.insert(i + 1, n)
            self._ends.insert(i + 1, n)
        return True

    @property
    def range_count(self) -> int:
        return len(self._starts)
