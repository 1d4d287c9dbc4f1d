"""The rule engine: routes each event to the rules that consume it and stamps their alerts."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

from cangtwin.platform.records import Alert
from cangtwin.platform.rules.base import Finding, Rule
from cangtwin.platform.rules.ruleset import RuleSet


class RuleEngine:
    """One side's rules. Verdicts depend on event times, never on when events arrive."""

    def __init__(
        self, ruleset: RuleSet, site: str, where: Literal["edge", "cloud"] = "edge", id_prefix: str | None = None
    ) -> None:
        self.ruleset = ruleset
        self.site = site
        self.where = where
        self.id_prefix = id_prefix or site
        self.all_rules = ruleset.instantiate()
        self.rules = [r for r in self.all_rules if r.where == where]
        self._by_type: dict[type, list[Rule]] = defaultdict(list)
        for rule in self.rules:
            for event_type in rule.consumes:
                self._by_type[event_type].append(rule)
        self._timed = [r for r in self.rules if r.tick_s]
        self.tick_s = min((r.tick_s for r in self._timed), default=None)
        self._seen: set[tuple[str, str]] = set()
        self._count = 0

    def successor(self, ruleset: RuleSet) -> RuleEngine:
        """The engine for a new rule set: rule windows start afresh, alert ids and dedupe carry on."""
        engine = RuleEngine(ruleset, self.site, self.where, self.id_prefix)
        engine._seen, engine._count = self._seen, self._count
        return engine

    def params(self, kind: str):
        """The parameters of the first enabled rule of `kind` (either side), or None."""
        return next((r.params for r in self.all_rules if r.kind == kind), None)

    def consumes(self, event_type: type) -> bool:
        return event_type in self._by_type

    def evaluate(self, event: object, ctx: Any, raised_at: float) -> list[Alert]:
        alerts: list[Alert] = []
        for rule in self._by_type.get(type(event), ()):
            findings = rule.evaluate(event, ctx)
            if findings:  # the common case is silence: skip the stamping machinery
                alerts += self._stamp(rule, findings, raised_at)
        return alerts

    def tick(self, now: float, ctx: Any) -> list[Alert]:
        return [alert for rule in self._timed for alert in self._stamp(rule, rule.on_time(now, ctx), now)]

    def _stamp(self, rule: Rule, findings: list[Finding], raised_at: float) -> list[Alert]:
        alerts = []
        entry = rule.entry
        for finding in findings:
            key = (entry.id, finding.dedupe_key)
            if key in self._seen:
                continue
            self._seen.add(key)
            self._count += 1
            alerts.append(
                Alert(
                    id=f"{self.id_prefix}-A{self._count:06d}",
                    rule=entry.id,
                    category=entry.category,
                    severity=entry.severity,
                    section=entry.section,
                    site=self.site,
                    targets=finding.targets,
                    event_time=finding.event_time,
                    observed_at=finding.observed_at,
                    raised_at=raised_at,
                    ruleset=self.ruleset.label,
                    summary=finding.summary,
                    detail=finding.detail,
                )
            )
        return alerts
