"""Recorded runs for the dashboard tests, made once per test session with the real `cangtwin run`.

- `medium`: the two-bank story over a whole day at the `medium` site (`medium-day.yaml`, LiDAR
  and cameras at the site's pinned rates; the longest recording by far). CANGTWIN_DASH_SHORT=1
  uses the same story compressed into half an hour (`medium-short.yaml`, seconds) instead,
  for iterating on the dashboard;
- `sensors`: six minutes at `small` with LiDAR on and `--record-inputs`, for the sensor views;
- `pair`: twenty minutes at the two-warehouse `pair` site (`pair-short.yaml`);
- `suite`: `cangtwin suite small-suite.yaml -n 2`, for the suite views.
The day and the sensor run are written under ROOT/runs, so the dashboard opens them as one
results folder; the pair run goes to ROOT/multi and the suite to ROOT/suite. CANGTWIN_DASH_RUNS=ROOT reuses a ROOT made earlier.

The recordings start as soon as a dashboard test module is imported (`start()`, at collection),
so the day is recorded in other processes while the tests collected before the dashboard's
run; `recorded_runs()` waits for them. Recordings never waited for are killed at exit.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
CANGTWIN = Path(sys.executable).parent / "cangtwin"
RECORD_TIMEOUT_S = 3600  # the day at `medium` takes ~11 minutes of one core

_started: dict = {}


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start() -> None:
    """Launch the recordings (once per process) without waiting for them."""
    if _started or os.environ.get("CANGTWIN_DASH_RUNS"):
        return
    root = Path(tempfile.mkdtemp(prefix="cangtwin-dash-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    medium = "medium-short.yaml" if os.environ.get("CANGTWIN_DASH_SHORT") == "1" else "medium-day.yaml"
    jobs = {
        "medium": [str(CANGTWIN), "run", str(HERE / medium), "--out", str(root / "runs")],
        "sensors": [str(CANGTWIN), "run", str(HERE / "small-sensors.yaml"), "--record-inputs", "--out", str(root / "runs")],
        "pair": [str(CANGTWIN), "run", str(HERE / "pair-short.yaml"), "--out", str(root / "multi")],
        "suite": [str(CANGTWIN), "suite", str(HERE / "small-suite.yaml"), "-n", "2", "--out", str(root / "suite")],
    }
    logs = root / "logs"
    logs.mkdir()
    procs = {name: subprocess.Popen(cmd, stdout=open(logs / f"{name}.log", "wb"), stderr=subprocess.STDOUT)
             for name, cmd in jobs.items()}
    atexit.register(_stop, procs)  # registered after rmtree, so it runs first
    _started.update(root=root, procs=procs, logs=logs)


@functools.cache
def recorded_runs() -> dict[str, Path]:
    if os.environ.get("CANGTWIN_DASH_RUNS"):
        return _found(Path(os.environ["CANGTWIN_DASH_RUNS"]))
    start()
    for name, proc in _started["procs"].items():
        proc.wait(timeout=RECORD_TIMEOUT_S)
        if proc.returncode not in (0, 1):  # 1: a criterion failed, which the dashboard must show too
            out = (_started["logs"] / f"{name}.log").read_text(errors="replace")
            raise RuntimeError(f"cangtwin run for {name} exited {proc.returncode}:\n{out[-3000:]}")
    return _found(_started["root"])


def _found(root: Path) -> dict[str, Path]:
    runs = {p.parent.name: p.parent for p in (root / "runs").glob("*/result.json")}
    return {"medium": next(p for n, p in runs.items() if n.startswith("dash-medium")),
            "sensors": next(p for n, p in runs.items() if n.startswith("dash-small-sensors")),
            "pair": next((root / "multi").glob("dash-pair*/result.json")).parent,
            "root": root / "runs", "suite": root / "suite"}
