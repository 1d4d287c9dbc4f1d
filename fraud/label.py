"""Ground-truth labels: what was really done, to what, when, and which rules should see it.

The harness matches alerts against labels; the platform never sees them.
"""

from __future__ import annotations

import msgspec


class Label(msgspec.Struct, kw_only=True):
    """`onset` is None until the act has physically happened (e.g. goods crossed the gate).

    `started` is when the act began, if that is earlier than its onset (the stolen goods were
    lifted from their bay before the truck reached the gate): what the act's early effects trip
    from then on counts for the label, while latency is still measured from the onset."""

    id: str
    kind: str
    fault: bool  # a fault explains alerts; it is not a fraud to be detected
    targets: list[str]
    injected_at: float
    onset: float | None = None
    started: float | None = None
    magnitude: float
    magnitude_unit: str
    primary_rules: list[str]
    secondary_rules: list[str] = []
    window_s: float = 3600.0
    detail: dict = {}
