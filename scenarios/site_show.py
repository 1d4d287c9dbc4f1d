"""`cangtwin site show FILE`: validate a site file and draw its floor plan (HTML and PNG).

Lives in the harness because the fields of view come from the device models (camera optics,
the LiDAR's scan pattern), which the twin's drawing code must not import.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import click

from cangtwin.platform.config_file import InputError

CHROMIUM = "/usr/bin/chromium"


def coverage_for(site):
    """Each sensor's floor coverage as the device models would build it for this site."""
    import numpy as np

    from cangtwin.devices.camera import ANALYSIS_SIZE, CameraDevice
    from cangtwin.devices.lidar import LidarDevice, _stack_height, default_mount
    from cangtwin.devices.lidar_presets import preset
    from cangtwin.twin.site_plot import Coverage

    spec = site.spec
    # The fleet builds cameras and LiDARs with their defaults; read them, so the plan follows the models.
    sensor = preset(inspect.signature(LidarDevice.__init__).parameters["preset"].default)
    footprints = {}
    for device in spec.devices:
        if device.type != "lidar":
            continue
        position = np.asarray(device.position, dtype=float)
        bays = [(b.rect, _stack_height(spec, b.commodity)) for b in spec.bays if b.id in device.bays]
        mount = default_mount(sensor, position, bays)
        height = position[2]
        reach = height * np.tan(np.radians(mount.max_off_nadir_deg))
        footprints[device.id] = float(min(reach, np.sqrt(max(sensor.max_range_m**2 - height**2, 0.0))))
    diagonal = float(np.hypot(spec.building.width_m, spec.building.depth_m))
    return Coverage(
        camera_vfov_deg=inspect.signature(CameraDevice.__init__).parameters["fov_deg"].default,
        camera_aspect=ANALYSIS_SIZE[0] / ANALYSIS_SIZE[1],
        lidar_footprint_m=footprints,
        camera_reach_m=diagonal,
    )


def write_image(figure, path: Path, **kwargs) -> None:
    """PNG through kaleido, which drives a Chrome; the Debian chromium is used when none is configured."""
    if "BROWSER_PATH" not in os.environ and Path(CHROMIUM).exists():
        os.environ["BROWSER_PATH"] = CHROMIUM
    figure.write_image(path, **kwargs)


@click.group("site")
def site() -> None:
    """Site files: check and draw them."""


@site.command("show")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/sites"), show_default=True,
              help="Folder for <site>-floor-plan.html and .png.")
def show(file: Path, out: Path) -> None:
    """Validate a site file and render its floor plan: bays, gates, scales, devices and their views."""
    from cangtwin.twin.site import load_site
    from cangtwin.twin.site_plot import floor_plan

    try:
        loaded = load_site(file)
    except InputError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    coverage = coverage_for(loaded)
    out.mkdir(parents=True, exist_ok=True)
    html, png = out / f"{loaded.id}-floor-plan.html", out / f"{loaded.id}-floor-plan.png"
    floor_plan(loaded, coverage).write_html(html, include_plotlyjs=True)
    # The headless Chrome may lack a CJK font, so the picture keeps to English names.
    try:
        write_image(floor_plan(loaded, coverage, chinese=False), png, scale=1)
    except Exception as err:  # kaleido found no Chrome, or it failed: the HTML is still there
        reason = " ".join(str(err).split())[:160]
        click.echo(f"error: {png}: cannot render the PNG ({type(err).__name__}: {reason}); "
                   f"set BROWSER_PATH to a Chrome or Chromium; {html} was written", err=True)
        sys.exit(1)
    spec = loaded.spec
    counts = {}
    for device in spec.devices:
        counts[device.type] = counts.get(device.type, 0) + 1
    click.echo(f"{file}: site {spec.site} is valid: {len(spec.bays)} bays, {len(spec.gates)} gate(s), "
               f"{len(spec.weighbridges)} weighbridge(s), {len(spec.docks)} dock(s), "
               + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())))
    click.echo(f"wrote {html}")
    click.echo(f"wrote {png}")
