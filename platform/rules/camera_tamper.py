"""camera-tamper: a camera covered, frozen or replayed, or moved, from its analysis-frame features.

Reads `CameraObservation` records (platform/perception/camera_features.py), one per analysis
frame, in each camera's clock order. A condition alerts once it has held for `*_frames`
consecutive frames; the alert's event time is the first of those frames (when the tamper
showed), and the condition must be absent for `clear_frames` frames before it can alert again.

- covered: texture below `covered_texture_ratio` × the camera's own baseline. Texture is
  brightness-normalised and noise-free, so lights off at night (darker, noisier, same scene) is
  not a cover.
- frozen: `frozen_score` at or above `frozen_score` (exact repeats of recent frames: a frozen
  or looping output; honest frames carry fresh sensor noise and never repeat).
- moved: the view has shifted at least `moved_shift_px` against the camera's reference frame
  and at most `moved_max_anchored` of the reference's edges still line up where they were,
  while neither covered nor frozen (a flat or replayed image says nothing about the mount). A
  truck parked in part of a view leaves the rest lined up, so it is not a turned camera however
  long it stands there. A truck in a gate camera's face can fill the whole view for as long as it
  stands there; what it shows is not the kind of scene the camera watched (its texture, relative
  to brightness, is several times the camera's baseline, or far below it), whereas a turned
  camera sees more of the same warehouse. So `moved` alerts after `moved_frames` frames whose
  texture ratio stays within a factor `moved_texture_band` of the baseline, and otherwise only
  after `moved_frames_unlike` frames (longer than a truck stands in a gate).

Motion in the view (a forklift crossing) changes none of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.perception.camera_features import CameraObservation
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import EdgeContext

Condition = Literal["covered", "frozen", "moved"]
CONDITIONS: tuple[Condition, ...] = ("covered", "frozen", "moved")


class Params(StrictModel):
    covered_texture_ratio: float = pydantic.Field(default=0.25, gt=0, lt=1)
    covered_frames: int = pydantic.Field(default=3, ge=1, le=1000)
    frozen_score: float = pydantic.Field(default=0.9, gt=0, le=1)
    frozen_frames: int = pydantic.Field(default=3, ge=1, le=1000)
    moved_shift_px: float = pydantic.Field(default=2.0, gt=0, le=100)
    moved_max_anchored: float = pydantic.Field(default=0.3, ge=0, lt=1)
    moved_frames: int = pydantic.Field(default=3, ge=1, le=1000)
    moved_texture_band: float = pydantic.Field(default=2.0, gt=1, le=100)
    moved_frames_unlike: int = pydantic.Field(default=30, ge=1, le=1000)
    clear_frames: int = pydantic.Field(default=3, ge=1, le=1000)


class Entry(RuleEntry):
    kind: Literal["camera-tamper"]
    params: Params = Params()


@dataclass
class _Streak:
    since: float | None = None  # clock of the first frame of the current run
    frames: int = 0
    like: int = 0  # moved only: the latest run of frames that look like the scene the camera watched
    clear: int = 0
    alerted: bool = False


class CameraTamper(Rule):
    kind = "camera-tamper"
    consumes = (CameraObservation,)

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._last_at: dict[str, float] = {}
        self._streaks: dict[tuple[str, Condition], _Streak] = {}

    def _conditions(self, obs: CameraObservation) -> dict[Condition, bool]:
        p = self.params
        covered = obs.texture_ratio is not None and obs.texture_ratio < p.covered_texture_ratio
        frozen = obs.frozen_score >= p.frozen_score
        moved = (not covered and not frozen and obs.shift_px is not None and obs.shift_px >= p.moved_shift_px
                 and obs.anchored is not None and obs.anchored <= p.moved_max_anchored)
        return {"covered": covered, "frozen": frozen, "moved": moved}

    def _scene_like(self, obs: CameraObservation) -> bool:
        """The view still has the texture of the scene the camera watched (see `moved`)."""
        band = self.params.moved_texture_band
        return obs.texture_ratio is not None and 1 / band <= obs.texture_ratio <= band

    def _ready(self, condition: Condition, streak: _Streak) -> bool:
        p = self.params
        if condition == "covered":
            return streak.frames >= p.covered_frames
        if condition == "frozen":
            return streak.frames >= p.frozen_frames
        return streak.like >= p.moved_frames or streak.frames >= p.moved_frames_unlike

    def evaluate(self, event: CameraObservation, ctx: EdgeContext) -> list[Finding]:
        device = event.device
        if event.at <= self._last_at.get(device, float("-inf")):
            return []  # an older frame arriving late says nothing about now
        self._last_at[device] = event.at
        findings = []
        for condition, holds in self._conditions(event).items():
            streak = self._streaks.setdefault((device, condition), _Streak())
            if not holds:
                streak.since, streak.frames, streak.like = None, 0, 0
                streak.clear += 1
                if streak.clear >= self.params.clear_frames:
                    streak.alerted = False
                continue
            streak.clear = 0
            if streak.since is None:
                streak.since = event.at
            streak.frames += 1
            # The texture of a streak's first frame is measured against the frame before, which
            # showed the old view, so it says nothing about what the camera now sees.
            streak.like = streak.like + 1 if streak.frames == 1 or self._scene_like(event) else 0
            if streak.alerted or not self._ready(condition, streak):
                continue
            streak.alerted = True
            findings.append(
                Finding(
                    targets=(f"device:{device}",),
                    event_time=streak.since,
                    observed_at=event.received_at,
                    summary=f"camera {device} {condition} for {streak.frames} frames",
                    dedupe_key=f"{device}:{condition}@{streak.since:.3f}",
                    detail={
                        "condition": condition,
                        "since": streak.since,
                        "frames": streak.frames,
                        "brightness": event.brightness,
                        "texture_ratio": event.texture_ratio,
                        "frozen_score": event.frozen_score,
                        "shift_px": event.shift_px,
                        "anchored": event.anchored,
                    },
                )
            )
        return findings
