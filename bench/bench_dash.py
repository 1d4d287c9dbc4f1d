"""Dashboard benchmark: first paint of a day at `medium`, and the replay frame callback.

Run: python bench/bench_dash.py [--day RUN_DIR] [--sensors RUN_DIR]
Without --day it makes the 24 h `medium` run of tests/dash_fixtures/medium-day.yaml once (LiDAR
and cameras at the site's pinned rates, ~11 minutes of one core) and keeps it under
~/.cache/cangtwin/bench-dash/, keyed by the scenario file's hash; likewise the short LiDAR run.

Prints `name: measured (baseline: X, target: Y)`:
- event log index, cold: decoding the day's events.jsonl (~2M lines) once; later opens read the
  index cache. Baseline: reading the file's bytes. No target (it is paid once per log, before
  the first page when `cangtwin dash DIR` starts).
- first paint: headless Chromium, from navigation until the floor plan of the day is drawn,
  the index cached (as after `cangtwin dash DIR` started). Baseline: the same page with no
  results folder (Dash, Plotly and the layout only). Target ≤ 2 s.
- replay frame callback: the server side of one frame (floor plan, clock, timeline cursor
  patch) and its JSON encoding, median and p99 over 300 instants of the day. Baseline: the
  JSON encoding alone. Target ≤ 100 ms.
- LiDAR view: points shipped for one full scan (server-side down-sampling) and the time to
  thin it. Target: never millions of points (≤ 20,000 shipped).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from plotly.utils import PlotlyJSONEncoder

from cangtwin.dash_app.access import OPERATOR
from cangtwin.dash_app.app import create_app, lidar_view, replay_frame
from cangtwin.dash_app.results import read_events
from cangtwin.dash_app.store import load_run

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "dash_fixtures"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cangtwin" / "bench-dash"
FIRST_PAINT_TARGET_S = 2.0
FRAME_TARGET_MS = 100.0


def recorded(scenario: str, extra: list[str]) -> Path:
    digest = hashlib.sha256((FIXTURES / scenario).read_bytes()).hexdigest()[:12]
    out = CACHE / f"{Path(scenario).stem}-{digest}"  # an edited scenario is recorded afresh
    found = list(out.glob("*/result.json"))
    if found:
        return found[0].parent
    print(f"making {scenario} once (kept in {out}) ...", flush=True)
    cangtwin = Path(sys.executable).parent / "cangtwin"
    done = subprocess.run([str(cangtwin), "run", str(FIXTURES / scenario), "--out", str(out), *extra],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode not in (0, 1):
        sys.exit(f"cangtwin run {scenario} failed:\n{done.stderr[-2000:]}")
    return next(out.glob("*/result.json")).parent


def serve(results: Path | None) -> tuple[str, object]:
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(results)
    if results is not None:
        app.server.config["runs"].get(results)  # indexed before the first page, as the CLI does
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    httpd = make_server("127.0.0.1", port, app.server, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}/", httpd


def first_paint(url: str, selector: str, repeats: int = 3) -> float:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp(prefix="bench-dash-")
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)  # warm the browser cache of the JS bundles, as a second visit would
        WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))
        times = []
        for _ in range(repeats):
            driver.get("about:blank")
            start = time.perf_counter()
            driver.get(url)
            WebDriverWait(driver, 120, poll_frequency=0.02).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))
            times.append(time.perf_counter() - start)
        return statistics.median(times)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", type=Path, help="a 24 h medium run folder (made once if not given)")
    parser.add_argument("--sensors", type=Path, help="a run with --record-inputs and LiDAR (made once if not given)")
    args = parser.parse_args()
    day = args.day or recorded("medium-day.yaml", [])
    sensors = args.sensors or recorded("small-sensors.yaml", ["--record-inputs"])
    result = json.loads((day / "result.json").read_text())

    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        start = time.perf_counter()
        raw = (day / "events.jsonl").read_bytes()
        bare = time.perf_counter() - start
        start = time.perf_counter()
        emits, others = read_events(day / "events.jsonl", result["provenance"]["event_log_sha256"])
        cold = time.perf_counter() - start
        start = time.perf_counter()
        read_events(day / "events.jsonl", result["provenance"]["event_log_sha256"])
        warm = time.perf_counter() - start
        print(f"event log index, cold ({len(emits) + len(others):,} events, {len(raw) / 1e6:.0f} MB): {cold:.2f} s; "
              f"from the cache: {warm:.2f} s (baseline: reading the bytes {bare:.2f} s, target: none, paid once per log)")

        run = load_run(day)
        span = run.replay.end - run.replay.start
        encode = lambda fig: json.dumps(fig, cls=PlotlyJSONEncoder)  # noqa: E731 - what Dash does per response
        frames, encodes = [], []
        for offset in np.linspace(0, span, 300):
            start = time.perf_counter()
            floor, label, note, _patch = replay_frame(run, float(offset), "en", OPERATOR, "cursor")
            body = encode(floor)
            frames.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            encode(floor)
            encodes.append((time.perf_counter() - start) * 1000)
        p99 = float(np.percentile(frames, 99))
        print(f"replay frame callback, day at medium: median {statistics.median(frames):.1f} ms, p99 {p99:.1f} ms, "
              f"{len(body) / 1000:.0f} kB per frame (baseline: JSON encoding alone {statistics.median(encodes):.1f} ms, "
              f"target: ≤ {FRAME_TARGET_MS:.0f} ms)")

        url, httpd = serve(day)
        base_url, base_httpd = serve(None)
        try:
            paint = first_paint(url, "#floor .scatterlayer .trace")
            shell = first_paint(base_url, "#floor .main-svg")
        finally:
            httpd.shutdown()
            base_httpd.shutdown()
        print(f"first paint, day at medium: {paint:.2f} s (baseline: the page with no results {shell:.2f} s, "
              f"target: ≤ {FIRST_PAINT_TARGET_S:.0f} s)")

        scan_run = load_run(sensors)
        device = sorted(scan_run.sensors.scans)[0]
        total = len(scan_run.sensors.scan_at(device, scan_run.replay.start)[1])
        start = time.perf_counter()
        figure, _caption, _key = lidar_view(scan_run, device, None, 0.0, "en", None)
        thin_ms = (time.perf_counter() - start) * 1000
        print(f"LiDAR view: {len(figure['data'][0]['x']):,} points shipped of {total:,} in the scan, thinned in "
              f"{thin_ms:.0f} ms (baseline: the full scan, {total:,} points; target: ≤ 20,000 shipped)")


if __name__ == "__main__":
    main()
