"""Matching alerts to ground-truth labels: the one implementation of docs/matching.md.

- An alert counts for a label when its rule is one of the label's primary or secondary rules,
  it names one of the label's targets, and its event time lies in the label's attribution
  window [start - CLOCK_SLACK_S, onset + window_s], where start is the onset, or when the act
  began if that was earlier (stolen goods lifted from their bay before they reach the gate).
- The first primary-rule alert for a label is its detection; further primary alerts are repeats;
  secondary-rule alerts are expected consequences, not false alarms.
- Faults are matched the same way (a device failure should be caught by device-offline), and the
  alerts they explain are expected, not false.
- An alert that no label explains is a false alarm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cangtwin.fraud.label import Label
from cangtwin.platform.records import Alert

# Device clocks may be a few seconds off (the integrity rule tolerates that much skew), so an
# alert's event time may precede the true onset by up to this much.
CLOCK_SLACK_S = 5.0


@dataclass(frozen=True)
class SeenAlert:
    """An alert as the harness saw it: raised at the edge, and when (if) the bank could see it."""

    alert: Alert
    cloud_received_at: float | None
    visible_at: float | None


@dataclass
class Detection:
    label: str
    rule: str
    alert: str
    edge_latency_s: float
    bank_latency_s: float | None
    stages_s: dict[str, float | None]


@dataclass
class MatchResult:
    detections: dict[str, Detection] = field(default_factory=dict)
    repeats: dict[str, int] = field(default_factory=dict)
    secondary: dict[str, list[str]] = field(default_factory=dict)
    fault_explained: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    explained_by: dict[str, list[str]] = field(default_factory=dict)  # alert → labels that explain it
    by_rule: dict[tuple[str, str], Detection] = field(default_factory=dict)  # (label, rule) → its first alert

    def missed(self, labels: list[Label]) -> list[str]:
        """Labels whose primary rules never caught them (a fault's too: a failed device must be noticed)."""
        return [label.id for label in labels if label.primary_rules and label.id not in self.detections]


def _explains(label: Label, alert: Alert) -> bool:
    if label.onset is None or alert.rule not in label.primary_rules + label.secondary_rules:
        return False
    if not set(alert.targets) & set(label.targets):
        return False
    start = label.onset if label.started is None else min(label.started, label.onset)
    return start - CLOCK_SLACK_S <= alert.event_time <= label.onset + label.window_s


def _detection(label: Label, seen: SeenAlert) -> Detection:
    a = seen.alert
    onset = label.onset
    transport = None if seen.cloud_received_at is None else seen.cloud_received_at - a.raised_at
    cloud = None if seen.visible_at is None or seen.cloud_received_at is None else seen.visible_at - seen.cloud_received_at
    return Detection(
        label=label.id,
        rule=a.rule,
        alert=a.id,
        edge_latency_s=a.raised_at - onset,
        bank_latency_s=None if seen.visible_at is None else seen.visible_at - onset,
        stages_s={
            "sensing": a.observed_at - onset,
            "edge": a.raised_at - a.observed_at,
            "transport": transport,
            "cloud": cloud,
        },
    )


def match(labels: list[Label], alerts: list[SeenAlert]) -> MatchResult:
    result = MatchResult()
    ordered = sorted(alerts, key=lambda s: (s.alert.raised_at, s.alert.id))
    for seen in ordered:
        alert = seen.alert
        explaining = [label for label in labels if _explains(label, alert)]
        if not explaining:
            result.false_alarms.append(alert.id)
            continue
        result.explained_by[alert.id] = [label.id for label in explaining]
        if any(label.fault for label in explaining):
            result.fault_explained.append(alert.id)
        for label in explaining:
            result.by_rule.setdefault((label.id, alert.rule), _detection(label, seen))
            if alert.rule in label.primary_rules:
                if label.id in result.detections:
                    result.repeats[label.id] = result.repeats.get(label.id, 0) + 1
                else:
                    result.detections[label.id] = _detection(label, seen)
            else:
                result.secondary.setdefault(label.id, []).append(alert.id)
    return result
