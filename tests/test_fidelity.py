"""Physics the fidelity report rests on, and `cangtwin fidelity --quick` end to end with tiny sizes.

The weighings are physical: bodies on the small site's pybullet plate, contact forces through the
site's own weighbridge device. The hollow stack is one arrangement of bales measured twice, by the
LiDAR in a bay and by the weighbridge on its plate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cangtwin.devices.oiml import mpe_class_iii
from cangtwin.platform.perception.lidar_volume import estimate_bays
from cangtwin.scenarios.fidelity_lidar import LidarRig
from cangtwin.scenarios.fidelity_scale import PERSON_KG, PLATE_TOP_M, ScaleRig
from cangtwin.twin.world import Shape

CLI = [str(Path(sys.executable).parent / "cangtwin")]
BALE = Shape("box", (1.15, 1.15, 1.1))
BALE_KG = 1200.0


@pytest.fixture(scope="module")
def scale():
    rig = ScaleRig(seed=5)
    yield rig
    rig.close()


def test_a_20_t_coil_on_the_plate_reads_within_mpe(scale) -> None:
    weighing = scale.weigh_coil(20_000.0)
    assert weighing.plate_kg == pytest.approx(20_000.0, rel=1e-3)  # the solver carries it all on the plate
    assert abs(weighing.error_kg) <= mpe_class_iii(20_000.0, scale.e_kg)
    assert abs(weighing.indicated_kg - 20_000.0) <= mpe_class_iii(20_000.0, scale.e_kg) + scale.e_kg / 2


@pytest.mark.parametrize("load", [20_000.0, 45_000.0])
def test_a_truck_with_a_wheel_off_the_plate_reads_low_and_on_it_reads_true(scale, load: float) -> None:
    honest = scale.weigh("honest", load)
    cheat = scale.weigh("wheel off the plate", load)
    assert honest.within_mpe
    assert cheat.plate_kg < load - 10 * honest.mpe_kg  # the apron carries the rear wheels' share
    assert cheat.fine_kg < load - cheat.mpe_kg
    assert cheat.fine_kg > 0.3 * load  # the rest of the truck is still on the plate


def test_a_person_on_the_plate_adds_their_weight_and_a_remote_offset_shifts_the_reading(scale) -> None:
    person = scale.weigh("person on the plate", 30_000.0)
    assert person.error_kg == pytest.approx(PERSON_KG, abs=scale.e_kg / 2)
    assert not person.within_mpe  # 80 kg is more than the 1e MPE at 30 t with e = 50 kg
    offset = scale.weigh("remote offset", 30_000.0)
    assert offset.error_kg == pytest.approx(scale.remote_offset_kg, abs=scale.e_kg / 2)


def _hollow_block(world, x0: float, y0: float, z0: float, n: int) -> tuple[int, int]:
    """An n x n x 2 block of bales whose lower layer lacks its (n-2)^2 core; (placed, full count)."""
    placed = 0
    for layer in range(2):
        for i in range(n):
            for j in range(n):
                if layer == 0 and 0 < i < n - 1 and 0 < j < n - 1:
                    continue
                world.add_goods(BALE, BALE_KG, (x0 + 1.15 * (i + 0.5), y0 + 1.15 * (j + 0.5), z0 + 1.1 * layer))
                placed += 1
    return placed, 2 * n * n


def test_a_hollow_stack_fits_by_volume_but_not_by_mass(scale) -> None:
    n = 3  # 3 x 3 bales: 3.45 m, as wide as the plate allows
    lidar = LidarRig(seed=3)
    try:
        world = lidar.world
        for lot in [lot for lot in lidar.warehouse.lots.values() if lot.bay == "B11"]:
            world.remove(lot.body)
            lot.location = "gone"
        placed, full = _hollow_block(world, 57.0, 40.5, 0.0, n)
        block = (n * 1.15) ** 2 * 2.2
        measured = np.mean([s.volume_m3 for _ in range(2) for s in
                            estimate_bays(lidar.device.measure(), lidar.mount, lidar.geometry, 0.0, 0.0)
                            if s.bay == "B11"])
    finally:
        lidar.close()
    assert placed < full
    assert measured == pytest.approx(block, rel=0.05)  # the LiDAR sees the block of a full stack
    # The same block on the weighbridge: what is missing inside is missing on the scale.
    book_kg = full * BALE_KG
    r = scale.scale.rect
    bodies_before = set(scale.world.shapes)
    _hollow_block(scale.world, (r.x0 + r.x1) / 2 - 1.725, (r.y0 + r.y1) / 2 - 1.725, PLATE_TOP_M, n)
    reading = None
    for _ in range(40):
        scale.world.settle(0.1)
        reading = scale.device.indicator.step(scale.world.plate_load_kg("WB1"), 0.1, 20.0)
    for body in set(scale.world.shapes) - bodies_before:
        scale.world.remove(body)
    assert reading.stable
    assert abs(reading.fine_kg - placed * BALE_KG) <= mpe_class_iii(placed * BALE_KG, scale.e_kg)
    assert book_kg - reading.fine_kg > 10 * mpe_class_iii(book_kg, scale.e_kg)


# --- the report, end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("fidelity")
    done = subprocess.run(
        [*CLI, "fidelity", "--quick", "--out", str(out), "--scale-points", "4", "--lidar-layouts", "1",
         "--lidar-scans", "1", "--camera-trials", "1", "--camera-after-s", "90", "--honest-s", "120",
         "--day-hours", "0.01", "--profile-hours", "0.005"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads((out / "fidelity.json").read_text(encoding="utf-8")), out


def test_quick_report_weighings_are_physics_honest(report) -> None:
    _, r, _ = report
    by = {}
    for w in r["scale"]:
        by.setdefault(w["cheat"], []).append(w)
    assert len(by["honest"]) == 4 and all(w["within_mpe"] for w in by["honest"])
    assert all(not w["within_mpe"] and w["error_kg"] < 0 for w in by["remote offset"])
    assert all(w["fine_kg"] < w["true_kg"] - w["mpe_kg"] for w in by["wheel off the plate"])
    assert all(w["error_kg"] == pytest.approx(PERSON_KG, abs=25) for w in by["person on the plate"])
    assert r["coil_20t"]["within_mpe"]


def test_quick_report_volumes_cameras_and_rates_are_sane(report) -> None:
    _, r, _ = report
    summary = r["summary"]
    for key in ("vlp16/all bays", "hdl32e/all bays"):
        assert 0 < summary["volume"][key]["median"] < 0.1  # a few per cent, not a broken estimator
    assert {v["commodity"] for v in r["volume"]} == {"steel-coil", "aluminium-ingot", "copper-cathode", "rubber-bale"}
    cameras = summary["camera"]
    for mode in ("cover", "replay"):
        assert cameras[mode]["detected"] == cameras[mode]["trials"] == 1
        assert 0 < cameras[mode]["median_latency_s"] <= 20
    assert cameras["honest day"]["false_alarms"] == cameras["honest night"]["false_alarms"] == 0
    assert r["lidar_rate"]["points_per_s"] > 1e5
    assert summary["camera_frames_per_s"] > 10
    assert r["day"]["extrapolated"] and r["day"]["messages"] > 0
    assert r["day"]["wall_s_per_day"] > r["day"]["wall_s"]
    assert r["profile"]["top"] and r["profile"]["top"][0]["own_s"] > 0


def test_quick_report_says_it_extrapolated_and_writes_html(report) -> None:
    done, r, out = report
    assert "extrapolated to 24 h" in done.stdout
    assert ("NOT met" in done.stdout) == (r["day"]["wall_s_per_day"] > 120)
    page = (out / "fidelity.html").read_text(encoding="utf-8")
    assert page.count('class="plotly-graph-div"') == 4
    assert "OIML R76 class III" in page and "extrapolated to 24 h" in page
