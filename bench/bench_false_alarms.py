"""False alarms over many honest site-days: is the catalog quiet enough for a bank to listen to it?

Run: python bench/bench_false_alarms.py [--site small] [--days 90] [--workers 2] [--no-lidar]

Each site-day is one 24 h honest run (`scenarios/honest_day.py`: two banks' loans, a truck every
15 minutes in working hours, an authorized release collected at noon, quiet days off, in-service
sensor noise, the default rule catalog), with its own seed and date, consecutive from a Monday.
Nothing is injected, so every alert is a false alarm. Runs go to a process pool, with a progress
bar. Prints the false alarms per 30 site-days beside its one-sided 95 % Poisson upper bound (what
the same run can vouch for: with 90 site-days and no alarm the bound is exactly 1 per 30) and the
target (≤ 1 per 30 site-days), then each false alarm.
"""

from __future__ import annotations

import argparse
import json
import datetime as dt
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from scipy.stats import chi2

from cangtwin.scenarios.honest_day import honest_day
from cangtwin.scenarios.result import build_result, code_version
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario

FIRST_DAY = dt.date(2026, 3, 2)  # a Monday
TARGET_PER_30 = 1.0


def one_day(site: str, index: int, lidar: bool) -> dict:
    day = FIRST_DAY + dt.timedelta(days=index)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "day.yaml"
        path.write_text(honest_day(site, day, seed=1000 + index, lidar_scans=lidar), encoding="utf-8")
        started = time.perf_counter()
        result = build_result(run_scenario(load_scenario(path), Path(folder) / "run"), "n/a")
    alerts = {a["id"]: a for a in result["alerts"]}
    return {
        "day": day.isoformat(),
        "wall_s": time.perf_counter() - started,
        "code_version": result["provenance"]["code_version"],
        "lidar": lidar,
        "false_alarms": [(alerts[i]["rule"], alerts[i]["summary"]) for i in result["false_alarms"]],
    }


def upper_95(count: int) -> float:
    """One-sided 95 % upper bound of a Poisson mean, given `count` events (exact, chi-square)."""
    return chi2.ppf(0.95, 2 * (count + 1)) / 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="small")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--no-lidar", action="store_true", help="LiDAR heartbeats only (about 10× faster)")
    parser.add_argument("--days-log", type=Path, default=None,
                        help="append each finished site-day here as a JSON line (kept if the run is cut short)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the site-days already in --days-log and run only the missing ones")
    args = parser.parse_args()
    if args.resume and not args.days_log:
        parser.error("--resume needs --days-log")

    days: list[dict] = []
    if args.resume and args.days_log.exists():
        days = [json.loads(line) for line in args.days_log.read_text(encoding="utf-8").splitlines() if line.strip()]
    done = {d["day"] for d in days}
    todo = [i for i in range(args.days) if (FIRST_DAY + dt.timedelta(days=i)).isoformat() not in done]
    wall = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn()) as bar, ProcessPoolExecutor(args.workers) as pool:
        task = bar.add_task(f"honest {args.site} site-days", total=args.days, completed=args.days - len(todo))
        futures = [pool.submit(one_day, args.site, i, not args.no_lidar) for i in todo]
        for future in as_completed(futures):
            days.append(future.result())
            if args.days_log:
                with args.days_log.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(days[-1], ensure_ascii=False) + "\n")
            bar.advance(task)
    wall = time.perf_counter() - wall

    versions = sorted({d.get("code_version", "unrecorded") for d in days})
    if len(versions) > 1 or versions != [code_version()]:
        print(f"note: site-days from code versions {', '.join(versions)} (this one: {code_version()})")
    if any(d.get("lidar", True) == args.no_lidar for d in days):
        print("note: the log mixes days with and without LiDAR scans")
    false_alarms = [fa for d in days for fa in d["false_alarms"]]
    n = len(days)
    rate = 30 * len(false_alarms) / n
    print(f"site-days: {n} at {args.site} ({'LiDAR heartbeats only' if args.no_lidar else 'every sensor'}), "
          f"{wall:.0f} s wall on {args.workers} workers for {len(todo)} new, median {statistics.median(d['wall_s'] for d in days):.1f} s "
          f"per site-day, load average {os.getloadavg()[0]:.1f}")
    print(f"false alarms per 30 site-days: {rate:.2f} (95 % upper bound {30 * upper_95(len(false_alarms)) / n:.2f}; "
          f"target: <= {TARGET_PER_30:g})")
    for rule, summary in false_alarms:
        print(f"  false alarm: {rule}: {summary}")
    return 0 if rate <= TARGET_PER_30 else 1


if __name__ == "__main__":
    raise SystemExit(main())
