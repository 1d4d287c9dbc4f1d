"""What changed between two rule-set versions, rule by rule and parameter by parameter."""

from __future__ import annotations

from dataclasses import dataclass

from cangtwin.platform.rules.ruleset import RuleSet


@dataclass(frozen=True)
class Change:
    rule: str
    what: str  # "added", "removed", or the field that changed (e.g. "severity", "params.max_clock_skew_s")
    old: object
    new: object


def _flat(entry) -> dict[str, object]:
    fields = entry.model_dump(exclude={"id", "params"})
    fields.update({f"params.{k}": v for k, v in entry.params.model_dump().items()})
    return fields


def diff_rulesets(old: RuleSet, new: RuleSet) -> list[Change]:
    before = {e.id: e for e in old.entries}
    after = {e.id: e for e in new.entries}
    changes = []
    for rule in sorted(before.keys() | after.keys()):
        if rule not in after:
            changes.append(Change(rule, "removed", before[rule].kind, None))
        elif rule not in before:
            changes.append(Change(rule, "added", None, after[rule].kind))
        else:
            a, b = _flat(before[rule]), _flat(after[rule])
            changes += [Change(rule, key, a.get(key), b.get(key)) for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)]
    return changes
