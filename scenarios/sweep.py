"""`cangtwin sweep`: run every point of a sweep file N times, locally or on a Ray cluster.

Each point is a self-contained folder `<out>/points/<id>/` (its scenario, site and rule files);
replication i of a point runs as `cangtwin run` would with the point's seed + i, into
`<out>/points/<id>/rep-<i>-s<seed>/` (the same seeds at every point, so the points differ by
their parameters, not by their luck). A replication that crashes is kept as an error with its
seed and a command that reruns it alone; the others still run. `sweep.json` holds every point's
parameters, its replications' figures and their means with 95 % confidence intervals.
"""

from __future__ import annotations

import multiprocessing
import os
import shlex
import socket
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import msgspec

from cangtwin.scenarios.result import RESULT_FORMAT, code_version
from cangtwin.scenarios.spec import load_scenario
from cangtwin.scenarios.suite import ERROR, _rule_counts, mean_ci, run_replication
from cangtwin.scenarios.sweep_metrics import METRICS, summarize
from cangtwin.scenarios.sweep_report import write_sweep_html
from cangtwin.scenarios.sweep_spec import SCENARIO_FILE, Point, Sweep, load_sweep, write_inputs

SWEEP_FORMAT = "cangtwin.sweep/1"

Progress = Callable[[int, int, str], None]  # (replications done, total, what just finished)


@dataclass(frozen=True, eq=False)  # identity: a job is one submission
class Job:
    point: Point
    index: int
    seed: int

    @property
    def folder(self) -> str:
        """Relative to the sweep's output folder."""
        return f"points/{self.point.id}/rep-{self.index}-s{self.seed}"


def replicate(source: str, seed: int, folder: str) -> dict:
    """One replication as `cangtwin suite` runs it, plus the figures a sweep aggregates."""
    done = run_replication(source, seed, folder)
    if "result" in done:
        done["metrics"] = summarize(done["result"], Path(folder), load_scenario(source, seed))
    return done


def _replicate_here(source: str, seed: int, folder: str) -> dict:
    done = replicate(source, seed, folder)
    done["executor"] = {"kind": "local", "host": socket.gethostname(), "pid": os.getpid()}
    return done


def _run_local(out: Path, jobs: list[Job], workers: int, progress: Progress | None) -> dict[Job, dict]:
    done: dict[Job, dict] = {}
    # spawn: fresh workers, untouched by the parent's threads (rich's refresh) or pybullet state.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_replicate_here, str(out / "points" / job.point.id / SCENARIO_FILE), job.seed,
                               str(out / job.folder)): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                done[job] = future.result()
            except BrokenProcessPool as err:  # the worker died outright: no Python traceback to keep
                done[job] = crashed(out / job.folder, f"the worker process running this replication died: {err}\n")
            except Exception as err:  # the summary of a finished run failed: still this replication's error
                done[job] = crashed(out / job.folder, f"{type(err).__name__}: {err}\n")
            if progress:
                progress(len(done), len(jobs), _what(job))
    return done


def crashed(folder: Path, text: str) -> dict:
    """An error entry for a replication that left no result, with its reason kept in crash.log."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crash.log").write_text(text)
    return {"error": text.splitlines()[0] if text.strip() else "crashed", "traceback": text}


def _what(job: Job) -> str:
    return f"{job.point.id} rep {job.index} (seed {job.seed})"


def run_sweep(path: Path, out: Path, workers: int | None = None, ray_address: str | None = None,
              progress: Progress | None = None) -> dict:
    """Validate the sweep file and every point, run them, write sweep.json and sweep.html.

    Raises InputError for a bad sweep file, scenario or Ray address before anything runs.
    """
    sweep = load_sweep(path)
    out.mkdir(parents=True, exist_ok=True)
    for point in sweep.points:
        write_inputs(out / "points" / point.id, point.inputs)
    jobs = [Job(point, i, point.scenario.spec.seed + i) for point in sweep.points
            for i in range(sweep.spec.replications)]
    if ray_address:
        from cangtwin.scenarios.sweep_ray import run_on_ray

        done = run_on_ray(ray_address, out, jobs, progress)
    else:
        done = _run_local(out, jobs, workers or min(2, os.cpu_count() or 1), progress)
    document = sweep_document(sweep, out, jobs, done)
    (out / "sweep.json").write_bytes(msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n")
    write_sweep_html(document, out)
    return document


# --- the sweep document ---------------------------------------------------------------------

def _replication(job: Job, out: Path, done: dict) -> dict:
    entry = {"index": job.index, "seed": job.seed, "folder": job.folder, "executor": done.get("executor")}
    if "result" in done:
        result = done["result"]
        return {**entry, "status": result["status"], "metrics": done["metrics"], "provenance": result["provenance"],
                "wall": result["wall"], "error": None}
    rerun = f"cangtwin run {shlex.quote(str(out / 'points' / job.point.id / SCENARIO_FILE))} --seed {job.seed}"
    return {**entry, "status": ERROR, "metrics": None, "provenance": None, "wall": None,
            "error": {"message": done["error"], "traceback": f"{job.folder}/crash.log", "rerun": rerun}}


def _point(point: Point, reps: list[dict], results: list[dict]) -> dict:
    ran = [rep["metrics"] for rep in reps if rep["metrics"] is not None]
    rules = {}
    for rule, pooled in _rule_counts(results).items():
        per_rep = [m["rules"].get(rule, {}) for m in ran]
        rules[rule] = {**pooled,
                       "precision_ci": mean_ci([r["precision"] for r in per_rep if r.get("precision") is not None]),
                       "recall_ci": mean_ci([r["recall"] for r in per_rep if r.get("recall") is not None])}
    return {
        "id": point.id,
        "params": point.params,
        "folder": f"points/{point.id}",
        "scenario_file": f"points/{point.id}/{SCENARIO_FILE}",
        "scenario_sha256": point.scenario.sha256,
        "ruleset": point.scenario.ruleset.label,
        "base_seed": point.scenario.spec.seed,
        "errors": sum(rep["status"] == ERROR for rep in reps),
        "metrics": {name: mean_ci([m[name] for m in ran if m[name] is not None]) for name in METRICS},
        "rules": rules,
        "labels": _labels(ran),
        "replications": reps,
    }


def _labels(ran: list[dict]) -> dict[str, dict]:
    """Per label: in how many replications it was caught, and its latencies when it was."""
    out: dict[str, dict] = {}
    for label in sorted({label for m in ran for label in m["labels"]}):
        seen = [m["labels"][label] for m in ran if label in m["labels"]]
        out[label] = {"detected": sum(s["detected"] for s in seen), "replications": len(seen),
                      **{f"{view}_latency_s": mean_ci([s[f"{view}_latency_s"] for s in seen
                                                       if s[f"{view}_latency_s"] is not None])
                         for view in ("edge", "bank")}}
    return out


def sweep_document(sweep: Sweep, out: Path, jobs: list[Job], done: dict[Job, dict]) -> dict:
    points = []
    for point in sweep.points:
        mine = [job for job in jobs if job.point is point]
        reps = [_replication(job, out, done[job]) for job in mine]
        points.append(_point(point, reps, [done[job]["result"] for job in mine if "result" in done[job]]))
    spec = sweep.spec
    return {
        "format": SWEEP_FORMAT,
        "result_format": RESULT_FORMAT,
        "code_version": code_version(),
        "sweep": spec.sweep,
        "description": spec.description,
        "source": str(Path(sweep.source).resolve()),
        "sweep_sha256": sweep.sha256,
        "scenario": str(Path(sweep.base.source).resolve()),
        "scenario_sha256": sweep.base.sha256,
        "search": spec.search,
        "search_seed": spec.seed if spec.search == "random" else None,
        "parameters": [p.model_dump(exclude_defaults=True) for p in spec.parameters],
        "replications": spec.replications,
        "seeds": "replication i of every point runs with the point's scenario seed + i",
        "executor": "ray" if any((d.get("executor") or {}).get("kind") == "ray" for d in done.values()) else "local",
        "errors": sum(p["errors"] for p in points),
        "points": points,
    }


def exit_code(document: dict) -> int:
    """0 when every replication ran; 3 when one crashed (as `cangtwin suite`). Criteria failing at
    some points is what a sweep is for, not an error."""
    return 3 if document["errors"] else 0
