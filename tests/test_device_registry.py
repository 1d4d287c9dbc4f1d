"""The cloud's device registry: edges are provisioned from it, and a retired device is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from cangtwin.platform.cloud.device_registry import DeviceRegistry
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.scenarios.run import Run
from cangtwin.scenarios.spec import load_scenario

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"


def _record(device: str, kind: str = "camera") -> DeviceRecord:
    return DeviceRecord(device, kind, b"k" * 32, {})


def test_ids_are_unique_across_sites_and_retired_devices_are_not_provisioned() -> None:
    registry = DeviceRegistry()
    registry.register("small", _record("cam-1"), 0.0)
    registry.register("small", _record("scale-1", "weighbridge"), 0.0)
    registry.register("medium", _record("cam-2"), 0.0)
    with pytest.raises(ValueError, match="'cam-1' is already registered at site 'small'"):
        registry.register("medium", _record("cam-1"), 1.0)
    registry.retire("cam-1", 5.0, "lens covered twice this week")
    assert sorted(registry.provisioning("small")) == ["scale-1"]
    assert sorted(registry.provisioning("medium")) == ["cam-2"]
    assert registry.get("cam-1").reason == "lens covered twice this week"
    with pytest.raises(ValueError, match="already retired"):
        registry.retire("cam-1", 6.0, "again")
    with pytest.raises(ValueError, match="'cam-9' is not registered"):
        registry.retire("cam-9", 6.0, "unknown")


def test_a_device_retired_by_the_cloud_is_refused_at_its_edge_and_stays_refused_after_a_restart(tmp_path) -> None:
    """The cloud retires the gate camera at 10 min; its frames reach the edge as before, and the
    edge now refuses them as unknown. Its shadow stops at the retirement. Then the edge crashes and
    restarts: provisioned afresh from the registry, it still refuses the camera."""
    run = Run(load_scenario(LIBRARY / "authorized-release.yaml"), tmp_path)
    retire_at = run.env.now + 600.0
    run.env.timeout(600.0).callbacks.append(lambda _e: run.cloud.retire_device("cam-gate", "housing opened"))
    run.env.timeout(900.0).callbacks.append(lambda _e: (run._crash_edge(), run._restart_edge()))
    outcome = run.execute()
    assert outcome.edge_rejections.get("unknown-device", 0) > 0
    assert "cam-gate" not in run.edge.devices and "cam-gate" not in run.edge.auth.devices
    assert run.cloud.shadows["cam-gate"].last_seen < retire_at + 1.0
    assert run.cloud.shadows["cam-store-w"].last_seen > retire_at + 600.0  # the others carry on
    assert run.cloud.devices.get("cam-gate").retired_at == pytest.approx(retire_at)
