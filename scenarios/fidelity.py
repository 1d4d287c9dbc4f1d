"""`cangtwin fidelity`: how true the twin's sensors are, and how fast the twin runs, as one report.

Five measurements (each in its own module): the weighbridge against OIML R76 class III, honest
and cheated (`fidelity_scale`); LiDAR volume errors per commodity and preset, and LiDAR points
per wall second with moving goods (`fidelity_lidar`); camera-tamper detection and false alarms,
and camera frames per second (`fidelity_camera`); the `medium` site's 24 h run time and its cost
centres (`fidelity_speed`). Each figure is printed beside its target (brief §9, issue 3); where a
target is not met the report states the gap, and the profile says where the time goes.

The default runs the real 24 h `medium` day (about half an hour here); `--quick` runs one busy
hour and extrapolates, and says so wherever the figure appears.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import click
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from cangtwin.devices.oiml import mpe_class_iii

VOLUME_TARGET = 0.015  # median relative error per bay, at σ = 3 cm (VLP-16-like)
LIDAR_TARGET_PPS = 2e6
FRAMES_PER_MEDIUM_DAY = 24 * 3600 / 2 * 24  # 24 cameras, one analysis frame per 2 s
CAMERA_BUDGET_S = 60.0  # cameras, devices and edge together, may take this much of the 120 s day (bench_camera)

Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def measure(sizes: dict, progress) -> dict:
    """Run every study; `progress(name, fraction)` reports each one's advance."""
    from cangtwin.scenarios.fidelity_camera import camera_study
    from cangtwin.scenarios.fidelity_lidar import throughput, volume_study
    from cangtwin.scenarios.fidelity_scale import ScaleRig, scale_study
    from cangtwin.scenarios.fidelity_speed import profile_day, time_day

    out: dict = {"sizes": sizes}
    out["scale"] = [asdict(w) | {"error_kg": w.error_kg, "within_mpe": w.within_mpe}
                    for w in scale_study(sizes["scale_points"], progress=lambda f: progress("scale", f))]
    rig = ScaleRig()
    try:
        coil = rig.weigh_coil(20_000.0)
        out["coil_20t"] = asdict(coil) | {"error_kg": coil.error_kg, "within_mpe": coil.within_mpe}
        out["scale_e_kg"], out["scale_max_kg"] = rig.e_kg, rig.scale.capacity_kg
    finally:
        rig.close()
    out["volume"] = [asdict(v) | {"relative": v.relative} for v in
                     volume_study(layouts=sizes["lidar_layouts"], scans=sizes["lidar_scans"],
                                  progress=lambda f: progress("volume", f))]
    out["lidar_rate"] = throughput(scans=max(2, sizes["lidar_scans"] * 3))
    progress("volume", 1.0)
    out["camera"] = [asdict(t) for t in camera_study(sizes["camera_trials"], sizes["camera_after_s"],
                                                     sizes["honest_s"], progress=lambda f: progress("camera", f))]
    day = time_day(sizes["day_hours"], 0 if sizes["day_hours"] >= 24 else 8, progress=lambda f: progress("day", f))
    out["day"] = asdict(day) | {"wall_s_per_day": day.wall_s_per_day, "extrapolated": day.extrapolated}
    if sizes["profile_hours"] > 0:
        profiled_wall, rows = profile_day(sizes["profile_hours"], 8)
        out["profile"] = {"hours": sizes["profile_hours"], "wall_s": profiled_wall, "top": [asdict(r) for r in rows]}
    progress("day", 1.0)
    return out


def summarise(r: dict) -> dict:
    """The headline figures, computed from the raw measurements (so a saved JSON re-renders)."""
    s: dict = {}
    by_cheat = defaultdict(list)
    for w in r["scale"]:
        by_cheat[w["cheat"]].append(w)
    s["scale"] = {cheat: {"n": len(ws), "within": sum(w["within_mpe"] for w in ws),
                          "worst_error_over_mpe": max(abs(w["error_kg"]) / w["mpe_kg"] for w in ws),
                          "mean_error_kg": statistics.fmean(w["error_kg"] for w in ws)}
                  for cheat, ws in by_cheat.items()}
    groups = defaultdict(list)
    for v in r["volume"]:
        groups[(v["preset"], v["commodity"])].append(v["relative"])
        groups[(v["preset"], "all bays")].append(v["relative"])
    s["volume"] = {f"{p}/{c}": {"n": len(e), "median": statistics.median(e),
                                "p90": sorted(e)[min(len(e) - 1, math.ceil(0.9 * len(e)) - 1)]}
                   for (p, c), e in groups.items()}
    modes = defaultdict(list)
    for t in r["camera"]:
        modes[t["mode"]].append(t)
    s["camera"] = {}
    for mode, ts in modes.items():
        latencies = [t["latency_s"] for t in ts if t["latency_s"] is not None]
        hours = sum(t["camera_hours"] for t in ts)
        s["camera"][mode] = {"trials": len(ts), "detected": sum(t["detected"] for t in ts),
                             "median_latency_s": statistics.median(latencies) if latencies else None,
                             "false_alarms": sum(t["false_alarms"] for t in ts), "camera_hours": hours}
    frames = sum(t["frames"] for t in r["camera"])
    s["camera_frames_per_s"] = frames / max(sum(t["wall_s"] for t in r["camera"]), 1e-9)
    return s


def tables(r: dict, s: dict) -> list[Table]:
    e = r["scale_e_kg"]
    out: list[Table] = []
    rows = [[cheat, str(v["n"]), f"{v['within']} / {v['n']}", f"{v['mean_error_kg']:+.1f}",
             f"{v['worst_error_over_mpe']:.2f}"] for cheat, v in s["scale"].items()]
    coil = r["coil_20t"]
    rows.append(["20 t steel coil on the plate", "1", f"{int(coil['within_mpe'])} / 1", f"{coil['error_kg']:+.1f}",
                 f"{abs(coil['error_kg']) / coil['mpe_kg']:.2f}"])
    out.append((f"Weighbridge WB1 (Max {r['scale_max_kg'] / 1000:g} t, e = {e:g} kg) against OIML R76 class III MPE "
                f"(initial verification), errors at e/10", ["weighing", "points", "within MPE", "mean error kg",
                                                             "worst |error| / MPE"], rows))
    rows = []
    for key, v in sorted(s["volume"].items()):
        preset, commodity = key.split("/")
        verdict = ("met" if v["median"] <= VOLUME_TARGET else f"gap {_pct(v['median'] - VOLUME_TARGET)}") \
            if preset == "vlp16" else "(σ = 2 cm preset)"
        rows.append([preset, commodity, str(v["n"]), _pct(v["median"]), _pct(v["p90"]), verdict])
    out.append(("LiDAR volume error per bay, |measured − true| / true (target: median ≤ 1.5 % at σ = 3 cm)",
                ["preset", "commodity", "bay scans", "median", "p90", "target"], rows))
    rows = []
    for mode, v in s["camera"].items():
        honest = mode.startswith("honest")
        rate = "—" if honest else f"{v['detected']} / {v['trials']} ({v['detected'] / v['trials']:.0%})"
        latency = "—" if v["median_latency_s"] is None else f"{v['median_latency_s']:.0f} s"
        fp = f"{v['false_alarms']} in {v['camera_hours']:.2f} camera-h" + (
            f" ({v['false_alarms'] / v['camera_hours']:.2f}/camera-h)" if v["camera_hours"] else "")
        rows.append([mode, str(v["trials"]), rate, latency, fp])
    out.append(("Camera tamper (default camera-tamper rule, small site, one camera per trial)",
                ["trial", "trials", "detected", "median latency", "false alarms"], rows))
    lidar = r["lidar_rate"]
    fps, needed = s["camera_frames_per_s"], FRAMES_PER_MEDIUM_DAY / CAMERA_BUDGET_S
    day = r["day"]
    label = (f"{day['hours']:g} h from {day['start_hour']:02d}:00, extrapolated to 24 h"
             if day["extrapolated"] else "24 h, measured")
    rows = [
        ["LiDAR points per wall s (scene rebuilt before every scan)", f"{lidar['points_per_s'] / 1e6:.2f} M",
         f"≥ {LIDAR_TARGET_PPS / 1e6:.0f} M", _verdict(lidar["points_per_s"] >= LIDAR_TARGET_PPS,
                                                          f"{lidar['points_per_s'] / LIDAR_TARGET_PPS:.2f}× of target"),
         f"static cast {lidar['static_rays_per_s'] / 1e6:.2f} M rays/s"],
        ["camera analysis frames per CPU s (devices + edge features + rule)", f"{fps:,.0f}", f"≥ {needed:,.0f}",
         _verdict(fps >= needed, f"{fps / needed:.2f}× of target"), "medium day: 1.04 M frames in ≤ 60 s (bench_camera's budget)"],
        [f"medium site day, wall s ({label})", f"{day['wall_s_per_day']:,.0f} s", "≤ 120 s",
         _verdict(day["wall_s_per_day"] <= 120, f"{day['wall_s_per_day'] / 120:.1f}× the target"),
         f"{86400 / day['wall_s_per_day']:,.0f}× real time; run {day['wall_s']:.1f} s wall, "
         f"{day['loop_s']:.1f} s in the event loop, {day['messages']:,} messages, {day['alerts']} alert(s)"],
    ]
    out.append(("Speed (wall clock; this machine is shared, so figures vary)",
                ["figure", "measured", "target", "verdict", "note"], rows))
    if "profile" in r:
        p = r["profile"]
        total = p["wall_s"]
        out.append((f"cProfile of {p['hours']:g} h of the medium day from 08:00 ({total:.1f} s wall under the "
                    f"profiler), top cost centres by own time",
                    ["function", "calls", "own s", "share", "cumulative s"],
                    [[c["function"], f"{c['calls']:,}", f"{c['own_s']:.2f}", f"{c['own_s'] / total:.0%}",
                      f"{c['cumulative_s']:.2f}"] for c in p["top"]]))
    return out


def _verdict(ok: bool, gap: str) -> str:
    return "met" if ok else f"NOT met: {gap}"


def figures(r: dict) -> list[go.Figure]:
    e = r["scale_e_kg"]
    figs = []
    fig = go.Figure()
    loads = sorted({w["true_kg"] for w in r["scale"]})
    grid = [x for lo, hi in zip([20 * e] + loads, loads + [r["scale_max_kg"]]) for x in (lo, hi)]
    grid = sorted(set(grid + [500 * e, 500 * e + 1e-6, 2000 * e, 2000 * e + 1e-6]))
    grid = [x for x in grid if 20 * e <= x <= r["scale_max_kg"]]
    mpe = [mpe_class_iii(x, e) for x in grid]
    fig.add_trace(go.Scatter(x=grid, y=mpe, mode="lines", line=dict(color="#b3261e", dash="dash", shape="hv"),
                             name="+MPE class III"))
    fig.add_trace(go.Scatter(x=grid, y=[-m for m in mpe], mode="lines", line=dict(color="#b3261e", dash="dash",
                                                                                   shape="hv"), name="−MPE"))
    for cheat, symbol in (("honest", "circle"), ("remote offset", "x"), ("wheel off the plate", "triangle-down"),
                          ("person on the plate", "triangle-up")):
        ws = [w for w in r["scale"] if w["cheat"] == cheat]
        fig.add_trace(go.Scatter(x=[w["true_kg"] for w in ws], y=[w["error_kg"] for w in ws], mode="markers+lines",
                                 marker=dict(symbol=symbol, size=9), name=cheat,
                                 text=[w["what"] for w in ws]))
    shown = [abs(w["error_kg"]) for w in r["scale"] if w["cheat"] != "wheel off the plate"] + [1.5 * e]
    limit = 1.15 * max(shown)
    wheel = [w for w in r["scale"] if w["cheat"] == "wheel off the plate"]
    if wheel:
        low = min(w["fine_kg"] / w["true_kg"] for w in wheel)
        fig.add_annotation(x=0.98, y=0.97, xref="paper", yref="paper", xanchor="right", showarrow=False,
                           text=f"wheel off the plate: below the axis, reads {low:.0%}–"
                                f"{max(w['fine_kg'] / w['true_kg'] for w in wheel):.0%} of the load")
    fig.update_layout(title="Weighbridge error against the OIML R76 class III MPE, honest and cheated",
                      xaxis_title="true load (kg, log scale)", xaxis_type="log",
                      yaxis_title="indicated − true (kg, at e/10)", yaxis_range=[-limit, limit], height=480)
    figs.append(fig)
    fig = go.Figure()
    for preset, colour in (("vlp16", "#0072B2"), ("hdl32e", "#E69F00")):
        vs = [v for v in r["volume"] if v["preset"] == preset]
        fig.add_trace(go.Box(x=[v["commodity"] for v in vs], y=[100 * v["relative"] for v in vs], name=preset,
                             marker_color=colour, boxpoints="all", jitter=0.4, pointpos=0))
    fig.add_hline(y=100 * VOLUME_TARGET, line_dash="dash", line_color="#b3261e",
                  annotation_text="target: median ≤ 1.5 %")
    fig.update_layout(boxmode="group", title="LiDAR volume error per bay, by commodity and preset",
                      yaxis_title="|measured − true| / true (%)", height=460)
    figs.append(fig)
    s = summarise(r)["camera"]
    tampers = [m for m in s if not m.startswith("honest")]
    fig = go.Figure(go.Bar(x=tampers, y=[s[m]["detected"] / s[m]["trials"] for m in tampers],
                           name="detection rate", marker_color="#0072B2", texttemplate="%{y:.0%}"))
    fig.add_trace(go.Bar(x=list(s), y=[s[m]["false_alarms"] / s[m]["camera_hours"] if s[m]["camera_hours"] else 0
                                       for m in s], name="false alarms per camera-hour", marker_color="#b3261e",
                         texttemplate="%{y:.2f}", textposition="outside"))
    fig.update_layout(title="Camera tamper: detection rate and false alarms", barmode="group", height=420)
    figs.append(fig)
    if "profile" in r:
        top = r["profile"]["top"][::-1]
        fig = go.Figure(go.Bar(y=[c["function"] for c in top], x=[c["own_s"] for c in top], orientation="h"))
        fig.update_layout(title=f"Top cost centres, {r['profile']['hours']:g} h of the medium day (own time)",
                          xaxis_title="seconds", height=520, margin=dict(l=380))
        figs.append(fig)
    return figs


def render_html(r: dict) -> str:
    s = summarise(r)
    parts = []
    for title, header, rows in tables(r, s):
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>")
    charts = "".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figures(r))
    sizes = html.escape(json.dumps(r["sizes"]))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>cangtwin fidelity</title>'
            "<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.25em .6em}th{background:#f3f3f3}</style>"
            f"<script>{get_plotlyjs()}</script></head><body><h1>cangtwin fidelity report</h1>"
            f"<p>Sizes: <code>{sizes}</code></p>{''.join(parts)}{charts}</body></html>\n")


QUICK = dict(scale_points=8, lidar_layouts=2, lidar_scans=2, camera_trials=4, camera_after_s=120.0, honest_s=600.0,
             day_hours=1.0, profile_hours=0.25)
FULL = dict(scale_points=14, lidar_layouts=5, lidar_scans=4, camera_trials=8, camera_after_s=150.0, honest_s=1800.0,
            day_hours=24.0, profile_hours=1.0)


@click.command("fidelity")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/fidelity"), show_default=True,
              help="Folder for fidelity.html and fidelity.json.")
@click.option("--quick", is_flag=True, help="Smaller samples and 1 h of the medium day, extrapolated to 24 h.")
@click.option("--scale-points", type=click.IntRange(2, 60), help="Loads across the weighbridge's range.")
@click.option("--lidar-layouts", type=click.IntRange(1, 50), help="Stock layouts per LiDAR preset.")
@click.option("--lidar-scans", type=click.IntRange(1, 50), help="Scans per layout.")
@click.option("--camera-trials", type=click.IntRange(1, 100), help="Seeds per tamper kind and honest stretch.")
@click.option("--camera-after-s", type=click.FloatRange(10, 3600), help="Simulated seconds watched after a tamper.")
@click.option("--honest-s", type=click.FloatRange(10, 86400), help="Simulated seconds of each honest stretch.")
@click.option("--day-hours", type=click.FloatRange(0.001, 24), help="Hours of the medium day to run and time.")
@click.option("--profile-hours", type=click.FloatRange(0, 24), help="Hours of the busy day to profile (0: none).")
def fidelity(out: Path, quick: bool, **overrides) -> None:
    """Measure the twin's fidelity (scale, LiDAR, cameras) and speed; print and write fidelity.html."""
    sizes = dict(QUICK if quick else FULL)
    sizes.update({k: v for k, v in overrides.items() if v is not None})
    console = Console(width=None if Console().is_terminal else 140)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        tasks = {name: bar.add_task(text, total=1.0) for name, text in (
            ("scale", "weighbridge on the pybullet plate"), ("volume", "LiDAR volumes and rate"),
            ("camera", "camera tamper trials"),
            ("day", f"medium day, {sizes['day_hours']:g} h" + (" + profile" if sizes["profile_hours"] else "")))}
        results = measure(sizes, lambda name, f: bar.update(tasks[name], completed=f))
    summary = summarise(results)
    for title, header, rows in tables(results, summary):
        table = RichTable(title=title, title_justify="left")
        for h in header:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity.json").write_text(json.dumps(results | {"summary": summary}, indent=1, ensure_ascii=False))
    (out / "fidelity.html").write_text(render_html(results), encoding="utf-8")
    console.print(f"wrote {out / 'fidelity.html'} and {out / 'fidelity.json'}")
