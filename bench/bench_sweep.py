"""Sweep harness overhead: how much of a sweep's wall time goes to running scenarios.

Run: python bench/bench_sweep.py [--points 4] [--replications 2] [--workers 2] [--ray ADDRESS]
(about a minute on two idle cores with the defaults).

The sweep is the bank example's (substitution-or-hollow's tolerance_e on the `substitution`
scenario, LiDAR off, 90 simulated minutes per run), cut to `--points` thresholds. It runs through
`run_sweep`, locally on a process pool or on the Ray cluster at `--ray`: validation, input files,
the runs, the per-replication summaries, sweep.json and sweep.html.

Prints `name: measured (baseline: X, target: Y)`: efficiency = Σ runs' own wall time / (sweep wall
time × workers; with --ray, give --workers as the cluster's CPUs), i.e. the share of the workers' time spent inside scenario runs. The baseline is
1.0 (no overhead at all); the target, ≥ 0.6 for sweeps of a few minutes, keeps process start-up,
validation and reporting small beside the runs. The load average is printed beside it: other work
on the machine slows the runs and the harness alike.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cangtwin.scenarios.sweep import run_sweep

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"
THRESHOLDS = [0.0, 0.25, 0.5, 2.0, 4.0, 6.0, 8.0]
TARGET_EFFICIENCY = 0.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4, choices=range(1, len(THRESHOLDS) + 1))
    parser.add_argument("--replications", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="local processes, or the Ray cluster's CPUs")
    parser.add_argument("--ray", default=None, metavar="ADDRESS")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        sweep = Path(tmp) / "sweep.yaml"
        sweep.write_text(
            f"sweep: bench\nbase_scenario: {LIBRARY / 'substitution.yaml'}\nreplications: {args.replications}\n"
            f"parameters:\n  - field: rules.substitution-or-hollow.params.tolerance_e\n"
            f"    values: {THRESHOLDS[:args.points]}\n", encoding="utf-8")
        started = time.perf_counter()
        document = run_sweep(sweep, Path(tmp) / "out", args.workers, args.ray)
        wall = time.perf_counter() - started
    reps = [rep for point in document["points"] for rep in point["replications"]]
    busy = sum(rep["wall"]["run_s"] for rep in reps if rep["wall"])
    efficiency = busy / (wall * args.workers)
    print(f"sweep ({document['executor']}, {len(reps)} replications, {document['errors']} crashed): "
          f"{wall:.1f} s wall, {busy:.1f} s inside runs, {len(reps) / wall * 60:.1f} replications/min")
    print(f"sweep efficiency: {efficiency:.2f} (baseline: 1.0, target: >= {TARGET_EFFICIENCY}), "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
