"""Camera tampering: covered (an object over the lens, in the world), frozen/replayed (the
device's output loops old frames), or moved (the mount is turned). Each acts where it would:
the covered lens is a body in pybullet; replay and move change the device itself."""

from __future__ import annotations

from typing import Callable

import simpy

from cangtwin.devices.camera import CameraDevice
from cangtwin.fraud.label import Label

REPLAY_HISTORY_S = 60.0  # a replay loops the last minute the camera saw


def inject_camera_tamper(
    env: simpy.Environment, camera: CameraDevice, label_id: str, at: float, mode: str,
    look_at: tuple[float, float, float] | None, record: Callable[[Label], None],
) -> Label:
    label = Label(
        id=label_id, kind=f"camera-{mode}", fault=False, targets=[f"device:{camera.id}"], injected_at=at,
        onset=at, magnitude=1, magnitude_unit="camera", primary_rules=["camera-tamper"], window_s=600.0,
    )

    def act(_event: simpy.Event) -> None:
        if mode == "cover":
            camera.cover()
        elif mode == "replay":
            camera.replay(env.now - REPLAY_HISTORY_S)
        else:
            camera.move(look_at)
        record(label)

    env.timeout(at - env.now).callbacks.append(act)
    return label
