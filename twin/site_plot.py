"""The floor plan of a site as a Plotly figure: what a site author wrote, drawn to scale.

Building, zones, bays (labelled, coloured by commodity), gates, weighbridge plates, docks,
forklift homes, and every device mount with what it covers on the floor: a camera's view
frustum cut by the floor, a LiDAR's scan footprint, an RFID portal's read zone at its gate.

The twin does not know the sensors' optics (they belong to `devices/`), so the caller passes
them in as `Coverage`; this module only does geometry and drawing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from cangtwin.twin.site import Site

# Fill colours per commodity, in the order the site lists its commodities (colour-blind safe).
PALETTE = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#EE8866")
DEVICE_STYLE = {  # marker symbol, colour, legend name; drawn in this order, so the last are on top
    "climate-sensor": ("cross", "#56B4E9", "temperature/humidity"),
    "positioning-tag": ("circle", "#E69F00", "UWB tag (on a forklift)"),
    "weighbridge": ("hexagon", "#7F3C8D", "weighbridge indicator"),
    "gate-sensor": ("square", "#555555", "gate loop sensor"),
    "rfid-reader": ("diamond", "#009E73", "RFID reader (portal zone)"),
    "camera": ("triangle-up", "#D55E00", "camera (view on the floor)"),
    "lidar": ("star", "#0072B2", "LiDAR (scan footprint)"),
}


@dataclass(frozen=True)
class Coverage:
    """What each sensor covers, from the device models: optics and ranges the site file does not hold.

    `lidar_footprint_m` maps a LiDAR's id to the radius of floor its scan pattern reaches;
    `camera_reach_m` caps how far a view is drawn where a ray does not meet the floor.
    """

    camera_vfov_deg: float
    camera_aspect: float
    lidar_footprint_m: dict[str, float] = field(default_factory=dict)
    rfid_zone_m: float = 3.0
    camera_reach_m: float = 60.0


def camera_floor_view(position, look_at, vfov_deg: float, aspect: float, reach_m: float,
                      samples: int = 16) -> np.ndarray:
    """Polygon (n, 2) where the camera's view frustum meets the floor, `reach_m` at most.

    Rays along the frustum's edge are cut at the floor (z = 0); rays that never meet it, or
    meet it farther out, stop at `reach_m` of horizontal distance.
    """
    eye = np.asarray(position, dtype=float)
    forward = np.subtract(look_at, eye)
    forward /= np.linalg.norm(forward)
    up_hint = (0.0, 0.0, 1.0) if abs(forward[2]) < 0.99 else (0.0, 1.0, 0.0)
    right = np.cross(forward, up_hint)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    t = math.tan(math.radians(vfov_deg) / 2)
    s = np.linspace(-1.0, 1.0, samples)
    one = np.ones(samples)
    edge = np.concatenate([  # around the image border: bottom, right, top, left
        np.stack([s, -one], 1), np.stack([one, s], 1), np.stack([-s, one], 1), np.stack([-one, -s], 1),
    ])
    points = []
    for a, b in edge:
        ray = forward + t * (a * aspect * right + b * up)
        horizontal = math.hypot(ray[0], ray[1])
        if ray[2] < 0:
            k = -eye[2] / ray[2]
            if horizontal * k <= reach_m:
                points.append(eye[:2] + k * ray[:2])
                continue
        if horizontal < 1e-9:  # looking straight up: nothing of the floor on this edge
            continue
        points.append(eye[:2] + ray[:2] / horizontal * reach_m)
    return np.asarray(points)


def clip_to_rect(polygon: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Sutherland–Hodgman clip of a polygon to an axis-aligned rectangle."""
    out = [tuple(p) for p in polygon]
    for axis, bound, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        if not out:
            break
        inside = (lambda p: p[axis] <= bound) if keep_below else (lambda p: p[axis] >= bound)
        points, out = out, []
        for i, current in enumerate(points):
            previous = points[i - 1]
            if inside(current) != inside(previous):
                f = (bound - previous[axis]) / (current[axis] - previous[axis])
                out.append(tuple(previous[k] + f * (current[k] - previous[k]) for k in range(2)))
            if inside(current):
                out.append(current)
    return np.asarray(out)


def _closed(xs, ys) -> tuple[list, list]:
    return list(xs) + [xs[0]], list(ys) + [ys[0]]


def _rect_xy(r) -> tuple[list, list]:
    return [r.x0, r.x1, r.x1, r.x0, r.x0], [r.y0, r.y0, r.y1, r.y1, r.y0]


def _circle_xy(cx: float, cy: float, radius: float, n: int = 72) -> tuple[list, list]:
    a = np.linspace(0, 2 * math.pi, n + 1)
    return list(cx + radius * np.cos(a)), list(cy + radius * np.sin(a))


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def floor_plan(site: Site, coverage: Coverage, width_px: int = 1400, chinese: bool = True) -> go.Figure:
    """The site's floor plan, metres on both axes at the same scale.

    `chinese=False` leaves the Chinese names out, for renderers without a CJK font.
    """
    spec = site.spec

    def zh(text: str) -> str:
        return f" ({text})" if chinese and text else ""

    b = spec.building
    fig = go.Figure()

    def shape(xs, ys, *, name, line, fill=None, group=None, legend=False, dash=None, hover=None, width=1.5):
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", name=name, legendgroup=group or name, showlegend=legend,
            line=dict(color=line, width=width, dash=dash), fill="toself" if fill else None, fillcolor=fill,
            hoverinfo="text" if hover else "skip", text=hover,
        ))

    # Coverage first, so bays and devices are drawn over it.
    shown: set[str] = set()
    for device in spec.devices:
        x, y, z = device.position
        if device.type == "camera" and device.look_at is not None:
            polygon = camera_floor_view(device.position, device.look_at, coverage.camera_vfov_deg,
                                        coverage.camera_aspect, coverage.camera_reach_m)
            polygon = clip_to_rect(polygon, 0, 0, b.width_m, b.depth_m)
            if len(polygon) >= 3:
                xs, ys = _closed(list(polygon[:, 0]), list(polygon[:, 1]))
                shape(xs, ys, name="camera views", line=_rgba(DEVICE_STYLE["camera"][1], 0.45),
                      fill=_rgba(DEVICE_STYLE["camera"][1], 0.05), group="camera-view",
                      legend="camera-view" not in shown, width=1, hover=f"{device.id}: view on the floor")
                shown.add("camera-view")
        elif device.type == "lidar" and device.id in coverage.lidar_footprint_m:
            xs, ys = _circle_xy(x, y, coverage.lidar_footprint_m[device.id])
            polygon = clip_to_rect(np.c_[xs[:-1], ys[:-1]], 0, 0, b.width_m, b.depth_m)
            if len(polygon) >= 3:
                xs, ys = _closed(list(polygon[:, 0]), list(polygon[:, 1]))
                shape(xs, ys, name="LiDAR scan footprints", line=_rgba(DEVICE_STYLE["lidar"][1], 0.7),
                      fill=_rgba(DEVICE_STYLE["lidar"][1], 0.06), group="lidar-view", dash="dash",
                      legend="lidar-view" not in shown, hover=f"{device.id}: scan reaches "
                      f"{coverage.lidar_footprint_m[device.id]:.1f} m on the floor")
                shown.add("lidar-view")
        elif device.type == "rfid-reader" and device.gate is not None:
            gate = next(g for g in spec.gates if g.id == device.gate)
            xs, ys = _circle_xy(gate.position[0], gate.position[1], coverage.rfid_zone_m)
            shape(xs, ys, name="RFID portal zones", line=DEVICE_STYLE["rfid-reader"][1],
                  fill=_rgba(DEVICE_STYLE["rfid-reader"][1], 0.18), group="rfid-view",
                  legend="rfid-view" not in shown, hover=f"{device.id}: reads tags through gate {gate.id}")
            shown.add("rfid-view")

    shape([0, b.width_m, b.width_m, 0, 0], [0, 0, b.depth_m, b.depth_m, 0], name=f"building {b.width_m:g} × {b.depth_m:g} m, {b.height_m:g} m high", line="#222222",
          legend=True, width=3)
    for name, zone in spec.zones.items():
        xs, ys = _rect_xy(zone)
        shape(xs, ys, name="zones", line="#999999", dash="dot", group="zones", legend=name == next(iter(spec.zones)),
              hover=f"zone {name}")
        fig.add_annotation(x=zone.x1, y=zone.y1, text=name, showarrow=False, xanchor="right", yanchor="bottom",
                           font=dict(size=11, color="#777777"))

    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(spec.commodities)}
    for commodity in spec.commodities:
        bays = [bay for bay in spec.bays if bay.commodity == commodity]
        for i, bay in enumerate(bays):
            xs, ys = _rect_xy(bay.rect)
            shape(xs, ys, name=f"bays: {commodity}{zh(spec.commodities[commodity].name_zh)}",
                  line=colours[commodity], fill=_rgba(colours[commodity], 0.55), group=f"bay-{commodity}",
                  legend=i == 0, hover=f"bay {bay.id}: {commodity}, {bay.initial_lots} lots")
    fig.add_trace(go.Scatter(
        x=[bay.rect.center[0] for bay in spec.bays], y=[bay.rect.center[1] for bay in spec.bays],
        mode="text", text=[bay.id for bay in spec.bays], textfont=dict(size=11, color="#111111"),
        showlegend=False, hoverinfo="skip",
    ))

    for i, scale in enumerate(spec.weighbridges):
        xs, ys = _rect_xy(scale.rect)
        shape(xs, ys, name="weighbridge plates", line="#444444", fill="rgba(120,120,120,0.45)", group="plates",
              legend=i == 0, hover=f"{scale.id}: Max {scale.capacity_kg / 1000:g} t, e = {scale.division_kg:g} kg")
        fig.add_annotation(x=scale.rect.center[0], y=scale.rect.center[1],
                           text=f"{scale.id} {scale.capacity_kg / 1000:g} t", showarrow=False, font=dict(size=10))
    for gate in spec.gates:
        gx, gy = gate.position
        dx, dy = gate.outside[0] - gx, gate.outside[1] - gy
        norm = math.hypot(dx, dy) or 1.0
        fig.add_annotation(x=gx + 4 * dx / norm, y=gy + 4 * dy / norm, ax=gx, ay=gy, xref="x", yref="y", axref="x",
                           ayref="y", showarrow=True, arrowhead=2, arrowwidth=2, arrowcolor="#222222", text="")
        fig.add_annotation(x=gx + 4 * dx / norm, y=gy + 4 * dy / norm, text=f"<b>{gate.id}</b>", showarrow=False,
                           yshift=12, font=dict(size=11))
    fig.add_trace(go.Scatter(
        x=[g.position[0] for g in spec.gates], y=[g.position[1] for g in spec.gates], mode="markers",
        name="gates (arrow: way out)", marker=dict(symbol="line-ns", size=22, line=dict(width=5, color="#222222")),
        text=[f"gate {g.id}" for g in spec.gates], hoverinfo="text",
    ))
    fig.add_trace(go.Scatter(
        x=[d.position[0] for d in spec.docks], y=[d.position[1] for d in spec.docks], mode="markers+text",
        name="docks", marker=dict(symbol="square-open", size=14, color="#222222", line=dict(width=2)),
        text=[d.id for d in spec.docks], textposition="bottom center", textfont=dict(size=10),
    ))
    fig.add_trace(go.Scatter(
        x=[f.home[0] for f in spec.forklifts], y=[f.home[1] for f in spec.forklifts], mode="markers",
        name="forklift homes", marker=dict(symbol="circle-open", size=17, color="#E69F00", line=dict(width=2)),
        text=[f.id for f in spec.forklifts], hoverinfo="text",
    ))
    for kind, (symbol, colour, label) in DEVICE_STYLE.items():
        mounts = [d for d in spec.devices if d.type == kind]
        if not mounts:
            continue
        fig.add_trace(go.Scatter(
            x=[d.position[0] for d in mounts], y=[d.position[1] for d in mounts], mode="markers", name=label,
            marker=dict(symbol=symbol, size=16 if kind == "lidar" else 11, color=colour, line=dict(width=1, color="white")),
            text=[f"{d.id} at z = {d.position[2]:g} m" for d in mounts], hoverinfo="text",
        ))

    pad = max(b.width_m, b.depth_m) * 0.06
    legend_px = 330  # the legend sits in the right margin
    plot_w = width_px - legend_px - 60
    height = int(plot_w * (b.depth_m + 2 * pad) / (b.width_m + 2 * pad)) + 110
    fig.update_layout(
        title=dict(text=f"{spec.name.get('en', spec.site)}{zh(spec.name.get('zh', ''))}, site <b>{spec.site}</b>: "
                   f"{len(spec.bays)} bays, {len(spec.devices)} devices", x=0.01),
        width=width_px, height=max(height, 420), plot_bgcolor="white", paper_bgcolor="white",
        margin=dict(l=60, r=legend_px, t=60, b=50), legend=dict(x=1.02, y=1, font=dict(size=11)),
        hoverlabel=dict(namelength=-1),
    )
    fig.update_xaxes(title="x (m, east)", range=[-pad, b.width_m + pad], showgrid=True, gridcolor="#eeeeee",
                     zeroline=False, constrain="domain")
    fig.update_yaxes(title="y (m, north)", range=[-pad, b.depth_m + pad], showgrid=True, gridcolor="#eeeeee",
                     zeroline=False, scaleanchor="x", scaleratio=1, constrain="domain")
    return fig
