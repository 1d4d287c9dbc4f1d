"""Recorded runs for the dashboard tests, made once per test process with the real `cangtwin run`.

- `medium`: the two-bank story at the `medium` site (`medium-short.yaml`, half an hour, ~10 s;
  with CANGTWIN_DASH_DAY=1 the whole day, `medium-day.yaml`, ~5 minutes);
- `sensors`: six minutes at `small` with LiDAR on and `--record-inputs`, for the sensor views;
- `suite`: `cangtwin suite small-suite.yaml -n 2`, for the suite views.
The two runs are written under ROOT/runs, so the dashboard opens them as one results folder;
the suite goes to ROOT/suite. CANGTWIN_DASH_RUNS=ROOT reuses a ROOT made earlier (when
iterating on the dashboard).
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


@functools.cache
def recorded_runs() -> dict[str, Path]:
    if os.environ.get("CANGTWIN_DASH_RUNS"):
        return _found(Path(os.environ["CANGTWIN_DASH_RUNS"]))
    root = Path(tempfile.mkdtemp(prefix="cangtwin-dash-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    medium = "medium-day.yaml" if os.environ.get("CANGTWIN_DASH_DAY") == "1" else "medium-short.yaml"
    jobs = {
        "medium": [str(CANGTWIN), "run", str(HERE / medium), "--out", str(root / "runs")],
        "sensors": [str(CANGTWIN), "run", str(HERE / "small-sensors.yaml"), "--record-inputs", "--out", str(root / "runs")],
        "suite": [str(CANGTWIN), "suite", str(HERE / "small-suite.yaml"), "-n", "2", "--out", str(root / "suite")],
    }
    procs = {name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for name, cmd in jobs.items()}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=900)
        if proc.returncode not in (0, 1):  # 1: a criterion failed, which the dashboard must show too
            raise RuntimeError(f"cangtwin run for {name} exited {proc.returncode}:\n{out.decode()[-3000:]}")
    return _found(root)


def _found(root: Path) -> dict[str, Path]:
    runs = {p.parent.name: p.parent for p in (root / "runs").glob("*/result.json")}
    return {"medium": next(p for n, p in runs.items() if n.startswith("dash-medium")),
            "sensors": next(p for n, p in runs.items() if n.startswith("dash-small-sensors")),
            "root": root / "runs", "suite": root / "suite"}
