"""Pass/fail criteria after CARLA ScenarioRunner: expected, acceptable and actual, with a status."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    SUCCESS = "SUCCESS"
    ACCEPTABLE = "ACCEPTABLE"
    FAILURE = "FAILURE"


@dataclass(frozen=True)
class Criterion:
    name: str
    expected: float | int | str
    acceptable: float | int | str
    actual: float | int | str | None
    status: Status
    unit: str = ""


def at_most(name: str, expected: float, acceptable: float, actual: float | None, unit: str = "") -> Criterion:
    """Lower is better; None (never happened) fails."""
    if actual is None:
        status = Status.FAILURE
    elif actual <= expected:
        status = Status.SUCCESS
    elif actual <= acceptable:
        status = Status.ACCEPTABLE
    else:
        status = Status.FAILURE
    return Criterion(name, expected, acceptable, actual, status, unit)


def at_least(name: str, expected: float, actual: float, unit: str = "") -> Criterion:
    status = Status.SUCCESS if actual >= expected else Status.FAILURE
    return Criterion(name, expected, expected, actual, status, unit)


def overall(criteria: list[Criterion]) -> Status:
    if any(c.status is Status.FAILURE for c in criteria):
        return Status.FAILURE
    if any(c.status is Status.ACCEPTABLE for c in criteria):
        return Status.ACCEPTABLE
    return Status.SUCCESS
