"""The rule engine: routes each event to the rules that consume it and stamps their alerts."""

from __future__ import annotations

from collections import defaultdict

from cangtwin.platform.records import Alert
from cangtwin.platform.rules.base import BookView, Rule
from cangtwin.platform.rules.ruleset import RuleSet


class RuleEngine:
    """Evaluates in event time: verdicts depend on the events, never on when they arrive."""

    def __init__(self, ruleset: RuleSet, site: str) -> None:
        self.ruleset = ruleset
        self.site = site
        self.rules = ruleset.instantiate()
        self._by_type: dict[type, list[Rule]] = defaultdict(list)
        for rule in self.rules:
            for event_type in rule.consumes:
                self._by_type[event_type].append(rule)
        self._seen: set[tuple[str, str]] = set()
        self._count = 0

    def params(self, kind: str):
        """The parameters of the first enabled rule of `kind`, or None if the set has none."""
        return next((r.params for r in self.rules if r.kind == kind), None)

    def evaluate(self, event: object, book: BookView, raised_at: float) -> list[Alert]:
        alerts = []
        for rule in self._by_type.get(type(event), ()):
            for finding in rule.evaluate(event, book):
                key = (rule.entry.id, finding.dedupe_key)
                if key in self._seen:
                    continue
                self._seen.add(key)
                self._count += 1
                entry = rule.entry
                alerts.append(
                    Alert(
                        id=f"{self.site}-A{self._count:06d}",
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
