"""lidar-tamper: a LiDAR's view of a bay is blocked (sensor covered) or something new hangs in it.

Two signs, each judged per device and bay on consecutive scans so that a forklift driving
through (one scan) is not tampering:
- the returns in the bay drop below `drop_ratio` of their running baseline (the median of the
  last `baseline_scans` unsuspicious scans; judged once `min_baseline_scans` are known): a
  covered window or a sheet hung under the sensor;
- a surface stands higher than any goods may (`max_goods_height_m`) with at least
  `min_occluder_points` returns on it: an occluder between the sensor and the goods.
One alert per device and sign per `realert_after_s` (device time): covering a sensor blinds all
its bays at once, and that is one incident. A scan that starts or extends a run not yet
confirmed asks the edge for a rescan (`lidar_rescan`), so confirmation takes a sweep, not a period.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.perception.lidar_volume import BayScan
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import EdgeContext


class Params(StrictModel):
    drop_ratio: float = pydantic.Field(default=0.5, gt=0, lt=1)
    baseline_scans: int = pydantic.Field(default=10, ge=1, le=1000)
    min_baseline_scans: int = pydantic.Field(default=3, ge=1, le=1000)
    max_goods_height_m: float = pydantic.Field(default=4.0, gt=0, le=50)
    min_occluder_points: int = pydantic.Field(default=50, ge=1)
    confirm_scans: int = pydantic.Field(default=2, ge=1, le=100)
    realert_after_s: float = pydantic.Field(default=600.0, ge=0)

    @pydantic.model_validator(mode="after")
    def _baseline(self) -> Params:
        if self.min_baseline_scans > self.baseline_scans:
            raise ValueError(f"min_baseline_scans ({self.min_baseline_scans}) exceeds baseline_scans ({self.baseline_scans})")
        return self


class Entry(RuleEntry):
    kind: Literal["lidar-tamper"]
    params: Params = Params()


class _View:
    __slots__ = ("last_at", "baseline", "streaks", "unconfirmed")

    def __init__(self, size: int) -> None:
        self.last_at = float("-inf")
        self.baseline: deque[int] = deque(maxlen=size)
        self.streaks = {"blocked": 0, "occluder": 0}
        self.unconfirmed = False  # the last scan started or extended a run not yet confirmed


class LidarTamper(Rule):
    kind = "lidar-tamper"
    consumes = (BayScan,)

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._views: dict[tuple[str, str], _View] = {}
        self._last_alert: dict[tuple[str, str], float] = {}

    def wants_rescan(self, device: str) -> bool:
        return any(view.unconfirmed for (d, _), view in self._views.items() if d == device)

    def evaluate(self, event: BayScan, ctx: EdgeContext) -> list[Finding]:
        p = self.params
        view = self._views.setdefault((event.device, event.bay), _View(p.baseline_scans))
        view.unconfirmed = False
        if event.at <= view.last_at:
            return []
        view.last_at = event.at
        usual = statistics.median(view.baseline) if len(view.baseline) >= p.min_baseline_scans else None
        signs = {
            "blocked": usual is not None and event.points < p.drop_ratio * usual,
            "occluder": event.top_m > p.max_goods_height_m and event.top_points >= p.min_occluder_points,
        }
        if not any(signs.values()):
            view.baseline.append(event.points)
        findings = []
        for sign, present in signs.items():
            view.streaks[sign] = view.streaks[sign] + 1 if present else 0
            last = self._last_alert.get((event.device, sign))
            quiet = last is not None and event.at - last < p.realert_after_s  # already alerted for this incident
            if view.streaks[sign] < p.confirm_scans:
                view.unconfirmed |= present and not quiet
                continue
            if quiet:
                continue
            self._last_alert[(event.device, sign)] = event.at
            findings.append(self._finding(event, sign, usual))
        return findings

    def _finding(self, event: BayScan, sign: str, usual: float | None) -> Finding:
        if sign == "blocked":
            summary = f"LiDAR {event.device} sees {event.points} returns in bay {event.bay}, usually {usual:.0f}: covered or blocked"
        else:
            summary = (
                f"LiDAR {event.device} sees a surface {event.top_m:.1f} m high over bay {event.bay} "
                f"({event.top_points} returns), above any goods: an occluder"
            )
        return Finding(
            targets=(f"device:{event.device}", f"bay:{event.bay}"),
            event_time=event.at,
            observed_at=event.received_at,
            summary=summary,
            dedupe_key=f"{event.device}:{sign}@{event.at:.3f}",
            detail={
                "sign": sign,
                "bay": event.bay,
                "points": event.points,
                "baseline_points": usual,
                "top_m": event.top_m,
                "top_points": event.top_points,
                "occluded_fraction": event.occluded_fraction,
            },
        )
