"""substitution-or-hollow: the goods' volume fits, but their mass does not.

A hollow stack (空心垛) or goods swapped for a cheaper, lighter grade (以次充好) keep their
shape and their tags; they give themselves away on the weighbridge. The net weight of a load
is compared with the mass the receipts declare for its lots, allowing for the two weighings'
maximum permissible errors.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.records import LoadCheck
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import EdgeContext


class Params(StrictModel):
    # Two class III weighings err by at most 1.5e each (R76), and each reading rounds to e:
    # 4e covers an honest net; the relative part covers declared masses rounded on receipts.
    tolerance_e: float = pydantic.Field(default=4.0, ge=0, le=1000)
    tolerance_rel: float = pydantic.Field(default=0.005, ge=0, le=0.5)


class Entry(RuleEntry):
    kind: Literal["substitution-or-hollow"]
    params: Params = Params()


class SubstitutionOrHollow(Rule):
    kind = "substitution-or-hollow"
    consumes = (LoadCheck,)

    def evaluate(self, event: LoadCheck, ctx: EdgeContext) -> list[Finding]:
        allowed = self.params.tolerance_e * event.division_kg + self.params.tolerance_rel * event.declared_kg
        gap = event.net_kg - event.declared_kg
        if abs(gap) <= allowed:
            return []
        lighter = gap < 0
        return [
            Finding(
                targets=tuple(f"lot:{lot}" for lot in event.lots),
                event_time=event.event_time,
                observed_at=event.received_at,
                summary=(
                    f"load of {len(event.lots)} lot(s) weighs {event.net_kg:,.0f} kg against {event.declared_kg:,.0f} kg "
                    f"declared ({'lighter' if lighter else 'heavier'} by {abs(gap):,.0f} kg): "
                    f"{'hollow or substituted goods' if lighter else 'goods not on the receipts'}"
                ),
                dedupe_key=event.id,
                detail={"load_check": event.id, "gate_event": event.gate_event, "net_kg": event.net_kg,
                        "declared_kg": event.declared_kg, "allowed_kg": round(allowed, 3)},
            )
        ]
