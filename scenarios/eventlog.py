"""The run's event log: every truth event, device message, platform decision and label.

One JSON object per line, keys sorted, in simulation order, so the same scenario and seed
give a byte-identical file in any process (PYTHONHASHSEED never reaches it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import msgspec
import simpy

_encoder = msgspec.json.Encoder(order="sorted")


class EventLog:
    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.lines: list[bytes] = []

    def record(self, event: str, fields: Any) -> None:
        body = msgspec.to_builtins(fields, order="sorted") if not isinstance(fields, dict) else fields
        self.lines.append(_encoder.encode({"t": self.env.now, "ev": event, "data": body}))

    def count(self, event: str) -> int:
        marker = f'"ev":"{event}"'.encode()
        return sum(1 for line in self.lines if marker in line)

    def write(self, path: Path) -> str:
        """Write the log and return its SHA-256, which the result cites."""
        data = b"\n".join(self.lines) + b"\n"
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()
