"""`cangtwin site show`: a valid site is drawn to HTML and PNG; a broken one is refused in one line.

The real console script runs in a subprocess, as a site author would run it. Broken sites are
small edits of the `small` reference site; the expected line is computed from the text written.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.devices.lidar_presets import VLP16, LidarPreset
from cangtwin.twin.site_plot import camera_floor_view, clip_to_rect

REPO = Path(__file__).resolve().parents[1]
CLI = [str(Path(sys.executable).parent / "cangtwin")]
SMALL = (REPO / "twin" / "sites" / "small.yaml").read_text(encoding="utf-8")
B01_RECT = re.search(r"\{id: B01, .*?rect: (\{[^}]*\})", SMALL)[1]

# name: (edits, text on the blamed line, field, message)
BROKEN = {
    "overlapping-bays": (((r"(\{id: B02, .*?rect: )\{[^}]*\}", rf"\g<1>{B01_RECT}"),), "id: B02", "bays[1].rect",
                         "overlaps bay B01"),
    "device-outside-building": (((r"(id: lidar-1, .*?position: )\[[^\]]*\]", r"\1[54.0, 33.0, 40.0]"),),
                                "id: lidar-1", "devices[9].position", "outside the building"),
    "camera-outside-building": (((r"(id: cam-gate, .*?position: )\[[^\]]*\]", r"\1[-2.0, 2.0, 5.0]"),),
                                "id: cam-gate", "devices[5].position", "outside the building"),
    "goods-heavier-than-scale": (((r"mass_kg: \[10000, 25000\]", "mass_kg: [10000, 60000]"),),
                                 "mass_kg: [10000, 60000]", "commodities.steel-coil.mass_kg",
                                 "exceed weighbridge WB1's capacity"),
    "camera-without-view": (((r"(id: cam-scale, .*?\]), look_at: \[[^\]]*\]", r"\1"),), "id: cam-scale",
                            "devices[6].look_at", "needs a look_at"),
    "bay-overfull": (((r"(\{id: B01, .*?)initial_lots: 5\}", r"\1initial_lots: 40}"),), "id: B01",
                     "bays[0].initial_lots", "holds at most 12 lots of steel-coil, not 40"),
}


def edited(text: str, edits) -> str:
    for pattern, replacement in edits:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"edit {pattern!r} must match once, matched {count} times"
    return text


def line_of(text: str, needle: str) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} must be on exactly one line, found on {hits}"
    return hits[0]


def show(path: str | Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "site", "show", str(path), "--out", str(out)], capture_output=True, text=True,
                          timeout=180)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Each broken site run once, two at a time; returns name -> (file, text, completed process)."""
    folder = tmp_path_factory.mktemp("broken-sites")

    def one(name: str):
        text = edited(SMALL, BROKEN[name][0])
        path = folder / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        return path, text, show(path, folder / f"{name}-out")

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(BROKEN, pool.map(one, BROKEN)))


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_site_exits_2_with_one_line_naming_file_line_and_field(broken, name: str) -> None:
    path, text, done = broken[name]
    _, at, field, message = BROKEN[name]
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {path}:{line_of(text, at)}: {field}: "), line
    assert message in line
    assert not (path.parent / f"{name}-out").exists()  # nothing drawn for a broken site


@pytest.mark.parametrize("site", ["small", "medium"])
def test_reference_sites_are_drawn_to_html_and_png(tmp_path: Path, site: str) -> None:
    done = show(site, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"site {site} is valid" in done.stdout
    html = (tmp_path / f"{site}-floor-plan.html").read_text(encoding="utf-8")
    spec = (REPO / "twin" / "sites" / f"{site}.yaml").read_text(encoding="utf-8")
    for bay in re.findall(r"\{id: ([A-Z]\d+), zone:", spec):
        assert f'"{bay}"' in html  # every bay is labelled
    for device in re.findall(r"\{id: ([\w-]+), type:", spec):
        assert device in html  # every device mount is drawn (its id in the hover text)
    for legend in ("camera views", "LiDAR scan footprints", "RFID portal zones", "weighbridge plates", "gates"):
        assert legend in html
    png = (tmp_path / f"{site}-floor-plan.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == 1400 and 400 < height < 1400


def test_a_missing_site_file_is_one_line_too(tmp_path: Path) -> None:
    done = show(tmp_path / "nosuch.yaml", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'nosuch.yaml'}: file not found"


# --- the geometry of the fields of view ----------------------------------------------------------


def test_a_camera_looking_straight_down_sees_a_rectangle_of_its_fov() -> None:
    height, vfov, aspect = 10.0, 50.0, 4 / 3
    polygon = camera_floor_view((20.0, 30.0, height), (20.0, 30.0 + 1e-3, 0.0), vfov, aspect, reach_m=100.0)
    half_y = height * math.tan(math.radians(vfov / 2))
    xs, ys = polygon[:, 0], polygon[:, 1]
    assert xs.max() - 20.0 == pytest.approx(half_y * aspect, rel=1e-3)
    assert 20.0 - xs.min() == pytest.approx(half_y * aspect, rel=1e-3)
    assert ys.max() - 30.0 == pytest.approx(half_y, rel=1e-3)


def test_a_tilted_camera_sees_its_look_at_point_and_nothing_behind_it() -> None:
    eye, target = (3.0, 2.0, 5.0), (0.5, 12.0, 1.0)
    polygon = camera_floor_view(eye, target, 50.0, 4 / 3, reach_m=60.0)
    assert polygon[:, 1].min() > eye[1]  # it looks north: no floor south of the mount is in view
    assert np.hypot(*(polygon - eye[:2]).T).max() <= 60.0 + 1e-9
    # the ray through the look-at point meets the floor beyond it, inside the polygon's y span
    assert polygon[:, 1].min() < target[1] < polygon[:, 1].max()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(points=st.lists(st.tuples(st.floats(-50, 150), st.floats(-50, 150)), min_size=3, max_size=12))
def test_clipping_keeps_every_vertex_inside_the_building(points) -> None:
    clipped = clip_to_rect(np.asarray(points), 0.0, 0.0, 80.0, 50.0)
    if len(clipped):
        assert (clipped[:, 0] >= -1e-9).all() and (clipped[:, 0] <= 80 + 1e-9).all()
        assert (clipped[:, 1] >= -1e-9).all() and (clipped[:, 1] <= 50 + 1e-9).all()
    inside = [p for p in points if 0 <= p[0] <= 80 and 0 <= p[1] <= 50]
    for p in inside:  # vertices already inside survive
        assert any(np.allclose(p, q) for q in clipped)


# --- LiDAR presets: site files do not carry them, the preset model refuses impossible ones ------------


@pytest.mark.parametrize(("field", "value"), [
    ("max_range_m", 0.0), ("max_range_m", -5.0), ("max_range_m", float("nan")), ("min_range_m", -1.0),
    ("azimuth_resolution_deg", -0.2), ("azimuth_resolution_deg", 400.0), ("range_sigma_m", -0.01),
    ("dropout", 1.0), ("dropout", -0.1), ("elevations_deg", (-95.0, 0.0)), ("rotation_hz", 0.0),
])
def test_impossible_lidar_parameters_are_refused_naming_the_field(field: str, value) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        LidarPreset(**{**VLP16.model_dump(), field: value})
