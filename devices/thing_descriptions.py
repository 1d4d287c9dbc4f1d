"""The Thing Descriptions this project's devices publish, one per device type (物模型)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

TD_DIR = Path(__file__).parent / "td"


@cache
def thing_descriptions() -> dict[str, dict]:
    """Device type → its TD, as JSON; the platform compiles these into validators."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(TD_DIR.glob("*.json"))}
