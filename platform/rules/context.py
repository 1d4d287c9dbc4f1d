"""What a rule may read on each side. Rules never change it; the services do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from cangtwin.platform.rules.base import BookView


class DeviceMessage(msgspec.Struct, frozen=True):
    """An admitted device message with its validated payload, as edge rules see it (not forwarded)."""

    device: str
    device_type: str
    kind: str
    seq: int
    clock: float
    received_at: float
    payload: Any


@dataclass
class EdgeContext:
    """The edge's view: its copy of the book and the devices provisioned on it."""

    site: str
    book: BookView
    devices: dict[str, Any]  # device id → DeviceRecord
    timezone: str = "UTC"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CloudContext:
    """The cloud's view: the authoritative book, device shadows, and every edge's liveness."""

    book: Any  # CollateralBook
    shadows: dict[str, Any]
    edge_last_heard: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)
