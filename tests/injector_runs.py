"""Shared by the injector tests: run a library scenario in a scratch folder and build its result.

The folder is on tmpfs when the machine has one: runs with a durable outbox or a ledger fsync
each block, and on a shared disk that, not the simulation, would dominate the test's time.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import RunOutcome, run_scenario
from cangtwin.scenarios.spec import load_scenario

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"


def run_library(name: str) -> tuple[RunOutcome, dict]:
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix=f"cangtwin-{name}-", dir=shm if shm.is_dir() else None))
    try:
        outcome = run_scenario(load_scenario(LIBRARY / f"{name}.yaml"), folder)
        return outcome, build_result(outcome, "n/a")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def latency(result: dict, label: str, view: str = "bank") -> float:
    return result["detections"][label][f"{view}_latency_s"]
