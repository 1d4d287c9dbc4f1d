"""The alert lifecycle at the cloud: raised → acknowledged → resolved, or escalated.

An alert is bank-visible from the moment the cloud holds it. The same (rule, targets) raised
again while open is a repeat of the open alert, not a new one, unless the rule names a different
condition in `detail["condition"]` (an LTV band entered: a loan in warning that goes on into
margin call is a new alert the bank must act on, not a repeat of the warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from cangtwin.platform.records import Alert


class AlertStatus(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    ESCALATED = "escalated"


class AlertDeskError(ValueError):
    """A lifecycle step that does not apply to the alert in its current state."""


@dataclass
class AlertCase:
    alert: Alert
    visible_at: float
    cloud_received_at: float
    status: AlertStatus = AlertStatus.RAISED
    repeats: int = 0
    history: list[tuple[float, str, str]] = field(default_factory=list)  # (time, status, actor)


def _open_key(alert: Alert) -> tuple:
    return alert.rule, alert.targets, alert.detail.get("condition")


class AlertDesk:
    def __init__(self) -> None:
        self.cases: dict[str, AlertCase] = {}
        self._open_by_key: dict[tuple, str] = {}

    def raise_alert(self, alert: Alert, received_at: float, visible_at: float) -> AlertCase | None:
        """Record an alert; returns the new case, or None when it repeats an open one."""
        if alert.id in self.cases:
            return None  # the same alert delivered twice
        key = _open_key(alert)
        open_id = self._open_by_key.get(key)
        if open_id is not None:
            self.cases[open_id].repeats += 1
            return None
        case = AlertCase(alert, visible_at, received_at, history=[(visible_at, AlertStatus.RAISED, "platform")])
        self.cases[alert.id] = case
        self._open_by_key[key] = alert.id
        return case

    def _move(self, alert_id: str, to: AlertStatus, allowed: set[AlertStatus], at: float, actor: str) -> AlertCase:
        case = self.cases.get(alert_id)
        if case is None:
            raise AlertDeskError(f"no alert {alert_id}")
        if case.status not in allowed:
            raise AlertDeskError(f"alert {alert_id} is {case.status}; cannot become {to}")
        case.status = to
        case.history.append((at, to, actor))
        if to is AlertStatus.RESOLVED:
            self._open_by_key.pop(_open_key(case.alert), None)
        return case

    def acknowledge(self, alert_id: str, at: float, actor: str) -> AlertCase:
        return self._move(alert_id, AlertStatus.ACKNOWLEDGED, {AlertStatus.RAISED, AlertStatus.ESCALATED}, at, actor)

    def resolve(self, alert_id: str, at: float, actor: str) -> AlertCase:
        allowed = {AlertStatus.RAISED, AlertStatus.ACKNOWLEDGED, AlertStatus.ESCALATED}
        return self._move(alert_id, AlertStatus.RESOLVED, allowed, at, actor)

    def escalate_unacknowledged(self, now: float, after_s: float) -> list[AlertCase]:
        """Escalate alerts left raised for longer than `after_s`."""
        late = [c for c in self.cases.values() if c.status is AlertStatus.RAISED and now - c.visible_at >= after_s]
        return [self._move(c.alert.id, AlertStatus.ESCALATED, {AlertStatus.RAISED}, now, "platform") for c in late]
