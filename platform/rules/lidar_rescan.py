"""Confirmation on command: the LiDAR rules ask the edge for a fresh scan instead of a period.

A bay rule that needs `confirm_scans` agreeing scans would otherwise wait a whole scan period
(60 s) for each confirming one. Whenever a scan starts or extends a run of suspicious scans that
is not yet confirmed, such a rule says so here, and the edge commands the LiDAR's `scan` action
(devices' Thing Description): the confirming scan comes a sweep later, not a period later. The
verdict still needs the same number of agreeing scans, so an alarm needs the same evidence.
"""

from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable


@runtime_checkable
class ConfirmsByRescan(Protocol):
    def wants_rescan(self, device: str) -> bool:
        """Whether the last scan of `device` left a suspicion that one more scan would settle."""


def rescan_wanted(rules: Iterable[object], device: str) -> bool:
    return any(isinstance(rule, ConfirmsByRescan) and rule.wants_rescan(device) for rule in rules)
