"""The LiDAR device: real-sensor presets, ray casting against the live pybullet world, noise."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import simpy

from cangtwin.devices.lidar import MAX_POINTS_PER_MESSAGE, LidarDevice
from cangtwin.devices.lidar_presets import HDL32E, VLP16, LidarPreset, PanMount, preset, scan_directions
from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.thing_model import ThingModel
from cangtwin.platform.wire import MAX_FRAME_BYTES, split
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import load_site
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import PhysicalWorld, pb

SITE = load_site("small")


def lidar(seed: int = 1, sensor: LidarPreset | str = "vlp16", world_seed: int = 1):
    world = PhysicalWorld(SITE)
    env = simpy.Environment()
    warehouse = Warehouse(env, SITE, world, RandomStreams(world_seed), lambda kind, data: None)
    sent: list[bytes] = []
    device = LidarDevice(
        env=env, device_id="lidar-1", device_type="lidar", key=b"k" * 32, rng=np.random.default_rng(seed),
        send=sent.append, tap=lambda kind, data: None, heartbeat_s=10.0, warehouse=warehouse, preset=sensor,
        period_s=60.0,
    )
    return device, sent


@pytest.fixture(scope="module")
def device():
    d, sent = lidar()
    yield d, sent
    d.warehouse.world.close()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"dropout": 1.2}, "dropout"),
        ({"range_sigma_m": -0.01}, "range_sigma_m"),
        ({"azimuth_resolution_deg": 0.0}, "azimuth_resolution_deg"),
        ({"elevations_deg": (95.0, 0.0)}, "elevations_deg"),
        ({"elevations_deg": ()}, "elevations_deg"),
    ],
)
def test_impossible_presets_are_refused_naming_the_field(change, field):
    with pytest.raises(pydantic.ValidationError, match=field):
        LidarPreset(**{**VLP16.model_dump(), **change})


def test_min_range_beyond_max_range_is_refused():
    with pytest.raises(pydantic.ValidationError, match="min_range_m"):
        LidarPreset(**{**VLP16.model_dump(), "min_range_m": 120.0})
    with pytest.raises(ValueError, match="unknown LiDAR preset 'vlp64'"):
        preset("vlp64")


def test_presets_have_their_datasheet_point_rates():
    assert VLP16.channels == 16 and round(VLP16.points_per_s) == 288_000  # ~300k/s single return
    assert HDL32E.channels == 32 and min(HDL32E.elevations_deg) == pytest.approx(-30.67, abs=0.01)
    assert round(HDL32E.points_per_s, -3) == 720_000  # ~695k/s on the datasheet


def test_scan_pattern_is_unit_rays_below_the_window():
    mount = PanMount(pan_steps=4, max_off_nadir_deg=60.0)
    d = scan_directions(VLP16, mount)
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0)
    assert (np.degrees(np.arccos(-d[:, 2])) <= 60.0 + 1e-9).all()
    assert d[:, 2].max() < 0  # no ray spent on the roof


def test_a_scan_fits_one_frame_and_decodes_with_the_thing_model(device):
    d, sent = device
    n = d.sweep()
    frame = sent[-1]
    assert 0.9 * len(d.directions) < n <= MAX_POINTS_PER_MESSAGE and len(frame) <= MAX_FRAME_BYTES
    envelope, _, _ = split(frame)
    payload = ThingModel(thing_descriptions()["lidar"]).decode("scan", envelope.payload)
    points = np.frombuffer(payload.points, dtype="<f4").reshape(-1, 3)
    assert payload.n_points == n == len(points)
    # Every return lies on the floor or on goods, below the 11 m mount, in the mount frame.
    assert points[:, 2].max() < 0 and points[:, 2].min() == pytest.approx(-11.0, abs=0.2)


def test_range_noise_and_dropout_match_the_preset(device):
    d, _ = device
    hits = np.isfinite(d.clean_ranges()).sum()
    d.rng = np.random.default_rng(5)
    points = d.measure()
    assert 1 - len(points) / hits == pytest.approx(VLP16.dropout, abs=0.002)
    # Floor returns: the floor lies 11 m below the mount, so each one's true range is known.
    floor = points[points[:, 2] < -10.8]  # the lowest goods (copper, 0.4 m) stand clear of this
    ranges = np.linalg.norm(floor, axis=1)
    residual = ranges - 11.0 * ranges / -floor[:, 2]
    assert len(floor) > 100_000
    # Robust statistics: a few rays strike the foot of a coil just above the floor.
    assert abs(np.median(residual)) < 0.0005
    mad_sigma = np.median(np.abs(residual - np.median(residual))) / 0.6745
    assert mad_sigma == pytest.approx(VLP16.range_sigma_m, rel=0.02)
    assert 0.99 < np.mean(np.abs(residual) < 3 * VLP16.range_sigma_m) < 0.9985  # Gaussian: 0.9973


def test_same_seed_same_scan_other_seed_other_noise():
    a, _ = lidar(seed=7)
    b, _ = lidar(seed=7)
    c, _ = lidar(seed=8)
    pa, pb_, pc = a.measure(), b.measure(), c.measure()
    assert np.array_equal(pa, pb_)
    assert not np.array_equal(pa, pc)
    for d in (a, b, c):
        d.warehouse.world.close()


def test_the_scene_is_rebuilt_only_when_a_body_moves(device):
    d, _ = device
    d.clean_ranges()
    rebuilds = d.world_scene.rebuilds
    before = d.clean_ranges().copy()
    assert d.world_scene.rebuilds == rebuilds  # nothing moved: cached ranges
    lot = d.warehouse.lots["B02-01"]
    x, y, _ = d.warehouse.world.position(lot.body)
    d.warehouse.world.place(lot.body, (x, y - 30.0, 0.0))  # a forklift took it away
    after = d.clean_ranges()
    assert d.world_scene.rebuilds == rebuilds + 1
    assert (after > before + 1.0).sum() > 100  # rays that hit its top now reach the floor
    d.warehouse.world.place(lot.body, (x, y, 0.0))
    assert np.allclose(d.clean_ranges(), before, atol=1e-4)


def test_open3d_ranges_agree_with_pybullet_ray_tests(device):
    """The meshes cast against are the bodies pybullet holds (cylinders tessellated finely)."""
    d, _ = device
    clean = d.clean_ranges()
    picks = np.random.default_rng(0).choice(len(clean), 2000, replace=False)
    origin = d.position
    starts = [origin.tolist()] * len(picks)
    ends = (origin + d.directions[picks] * 60.0).tolist()
    results = pb.rayTestBatch(starts, ends, physicsClientId=d.warehouse.world.client)
    bullet = np.array([r[2] * 60.0 if r[0] >= 0 else np.inf for r in results])
    both = np.isfinite(bullet) & np.isfinite(clean[picks])
    assert both.mean() > 0.99
    assert np.percentile(np.abs(bullet[both] - clean[picks][both]), 99) < 0.02


def test_true_bay_volumes_are_the_lots_envelopes(device):
    d, _ = device
    truth = d.true_bay_volumes()
    coils = [lot for lot in d.warehouse.lots.values() if lot.bay == "B01"]
    assert truth["B01"] == pytest.approx(sum(np.pi * l.shape.size[0] ** 2 * l.shape.size[2] for l in coils))
    assert truth["B05"] == pytest.approx(5 * 1.0 * 0.9 * 0.6)


def test_a_pattern_too_big_for_one_message_is_refused():
    world = PhysicalWorld(SITE)
    env = simpy.Environment()
    warehouse = Warehouse(env, SITE, world, RandomStreams(1), lambda kind, data: None)
    with pytest.raises(ValueError, match="pan_steps=200"):
        LidarDevice(
            env=env, device_id="lidar-1", device_type="lidar", key=b"k" * 32, rng=np.random.default_rng(1),
            send=lambda b: None, tap=lambda kind, data: None, heartbeat_s=10.0, warehouse=warehouse,
            period_s=60.0, mount=PanMount(pan_steps=200, max_off_nadir_deg=70.0),
        )
    world.close()


def test_scans_run_on_the_period_once_started():
    d, sent = lidar()
    d.start()
    d.env.run(until=181.0)
    scans = [f for f in sent if split(f)[0].kind == "scan"]
    assert len(scans) == 3
    d.warehouse.world.close()


def test_the_scan_action_scans_one_sweep_later_and_keeps_the_period():
    """The edge's `scan` command (the TD's action) is answered a pan sweep later, off the schedule."""
    d, sent = lidar()
    assert "scan" in thing_descriptions()["lidar"]["actions"]
    assert d.sweep_s == pytest.approx(d.mount.pan_steps / VLP16.rotation_hz) and 1.0 < d.sweep_s < 5.0
    d.start()
    d.env.run(until=130.0)
    periodic = [split(f)[0].clock for f in sent if split(f)[0].kind == "scan"]
    assert len(periodic) == 3  # the first comes at a random phase within the first period, then every 60 s
    d.scan()
    d.scan()  # a second command during the sweep joins the first
    d.env.run(until=130.0 + d.sweep_s - 0.01)
    assert len([f for f in sent if split(f)[0].kind == "scan"]) == 3  # not before the sweep is done
    d.env.run(until=250.0)
    clocks = [split(f)[0].clock for f in sent if split(f)[0].kind == "scan"]
    commanded = [c for c in clocks if c not in periodic and abs((c - periodic[0]) % 60.0) > 0.1 and abs((c - periodic[0]) % 60.0 - 60.0) > 0.1]
    assert len(commanded) == 1 and commanded[0] == pytest.approx(130.0 + d.sweep_s, abs=0.05)
    assert len(clocks) == 6  # the periodic scans kept their phase: 3 + 1 commanded + 2 more
    d.warehouse.world.close()
