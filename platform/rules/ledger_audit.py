"""evidence-tamper (ledger side): the evidence log no longer matches its signed tree heads.

The cloud re-audits its copy of the alliance-chain log on a timer: any edit, truncation or fork
of stored evidence breaks a root or a consistency proof, and the audit says where.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import CloudContext


class Params(StrictModel):
    audit_every_s: float = pydantic.Field(default=60.0, gt=0, le=86400)


class Entry(RuleEntry):
    kind: Literal["ledger-audit"]
    params: Params = Params()


class LedgerAudit(Rule):
    kind = "ledger-audit"
    where = "cloud"
    tick_s = 1.0

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._next_audit = float("-inf")

    def on_time(self, now: float, ctx: CloudContext) -> list[Finding]:
        evidence = ctx.extra.get("evidence")
        if evidence is None or now < self._next_audit:
            return []
        self._next_audit = now + self.params.audit_every_s
        report = evidence.audit()
        if report.ok:
            return []
        first = report.findings[0]
        where = "" if report.location is None else f" (first bad entry in [{report.location[0]}, {report.location[1]}))"
        return [
            Finding(
                targets=("ledger:evidence",),
                event_time=now,
                observed_at=now,
                summary=f"evidence ledger fails its audit: {first.kind}{where}",
                dedupe_key=f"{first.kind}:{report.location}",
                detail={"findings": [f"{f.kind}: {f.detail}" for f in report.findings],
                        "attested_size": report.attested_size},
            )
        ]
