"""Scenario suites: every scenario in a folder, N seeded replications each, aggregated with
confidence intervals; and the same aggregate recomputed later from the kept event logs.

Replication i of a scenario runs with the scenario file's seed + i (so replication 0 is what
`cangtwin run FILE` does) in `<out>/<scenario>/rep-<i>-s<seed>/`, with the same `result.json`,
`events.jsonl`, ledger and evidence as `cangtwin run`. A replication that crashes is kept as
an ERROR with its seed and its traceback in `crash.log` beside it; the others still run.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import re
import shlex
import statistics
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import msgspec
import simpy
from scipy import stats

from cangtwin.fraud.label import Label
from cangtwin.platform.config_file import InputError
from cangtwin.platform.records import Alert
from cangtwin.scenarios.criteria import Status
from cangtwin.scenarios.eventlog import EventLog
from cangtwin.scenarios.matching import SeenAlert
from cangtwin.scenarios.result import RESULT_FORMAT, all_criteria, build_result, code_version
from cangtwin.scenarios.run import RunOutcome, run_scenario
from cangtwin.scenarios.spec import Scenario, load_scenario

SUITE_FORMAT = "cangtwin.suite/1"
COUNTERS_EVENT = "run.counters"
ERROR = "ERROR"  # a replication that crashed: no criteria could be evaluated
STAGES = ("sensing", "edge", "transport", "cloud")
_SCENARIO_KEY = re.compile(r"^scenario\s*:", re.MULTILINE)

Progress = Callable[[int, int, str], None]  # (replications done, total, what just finished)


def is_scenario_file(path: Path) -> bool:
    """A YAML file with a top-level `scenario:` key (site and rule files beside it are not)."""
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return False
    try:
        return bool(_SCENARIO_KEY.search(path.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


def scenario_files(folder_or_files: Path | Sequence[Path]) -> list[Path]:
    """The scenario files of a folder (sorted by name, not recursive), or the files given."""
    paths = [Path(folder_or_files)] if isinstance(folder_or_files, (str, Path)) else [Path(p) for p in folder_or_files]
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if is_scenario_file(p))
            if not inside:
                raise InputError(str(path), None, None, "no scenario files here (YAML files with a top-level `scenario:` key)")
            found += inside
        elif path.exists():
            found.append(path)
        else:
            raise InputError(str(path), None, None, "no such file or folder")
    return found


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean and its two-sided Student-t confidence interval over replications (none for n < 2).

    Every figure aggregated here (latencies, rates, shares, money) is non-negative, so the interval
    is cut at 0 rather than reporting a negative latency."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "ci95": None, "values": []}
    mean = statistics.fmean(values)
    ci = None
    if n > 1:
        half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)
        ci = [round(max(0.0, mean - half), 6), round(mean + half, 6)]
    return {"n": n, "mean": round(mean, 6), "ci95": ci, "values": list(values)}


# --- one replication (runs in a worker process) -------------------------------------------

def write_result(folder: Path, result: dict) -> None:
    (folder / "result.json").write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n")


def run_replication(source: str, seed: int, folder: str) -> dict:
    """Run one replication into `folder`; returns {"result": ...} or {"error": ..., "traceback": ...}."""
    where = Path(folder)
    where.mkdir(parents=True, exist_ok=True)
    for stale in ("crash.log", "result.json", "events.jsonl"):
        (where / stale).unlink(missing_ok=True)
    try:
        outcome = run_scenario(load_scenario(source, seed), where)
        result = build_result(outcome, outcome.log.write(where / "events.jsonl"))
        write_result(where, result)
    except Exception as err:  # a crash is a finding about this seed, not the end of the suite
        text = traceback.format_exc()
        (where / "crash.log").write_text(text)
        return {"error": f"{type(err).__name__}: {err}", "traceback": text}
    return {"result": result}


# --- aggregation ----------------------------------------------------------------------------

def _replication_entry(index: int, seed: int, folder: str, source: str, done: dict) -> dict:
    if "result" in done:
        result = done["result"]
        return {"index": index, "seed": seed, "folder": folder, "status": result["status"],
                "criteria": result["criteria"], "provenance": result["provenance"], "wall": result["wall"],
                "error": None}
    return {"index": index, "seed": seed, "folder": folder, "status": ERROR, "criteria": [], "provenance": None,
            "wall": None, "error": {"message": done["error"], "traceback": f"{folder}/crash.log",
                                    "rerun": f"cangtwin run {shlex.quote(source)} --seed {seed}"}}


def _rule_counts(results: Iterable[dict]) -> dict[str, dict[str, Any]]:
    """Per rule: alerts a label explains / all its alerts; labels it caught / labels naming it primary."""
    counts: dict[str, dict[str, int]] = {}

    def entry(rule: str) -> dict[str, int]:
        return counts.setdefault(rule, {"alerts": 0, "explained": 0, "labels": 0, "caught": 0})

    for result in results:
        explained = result["explained_by"]
        caught = {(label, a["rule"]) for a in result["alerts"] for label in explained.get(a["id"], [])}
        for a in result["alerts"]:
            e = entry(a["rule"])
            e["alerts"] += 1
            e["explained"] += a["id"] in explained
        for label in result["labels"]:
            for rule in label["primary_rules"]:
                e = entry(rule)
                e["labels"] += 1
                e["caught"] += (label["id"], rule) in caught
    return {rule: _with_ratios(c) for rule, c in sorted(counts.items())}


def _with_ratios(c: dict[str, int]) -> dict[str, Any]:
    return {**c, "precision": round(c["explained"] / c["alerts"], 6) if c["alerts"] else None,
            "recall": round(c["caught"] / c["labels"], 6) if c["labels"] else None}


def _detections(results: list[tuple[int, dict]]) -> dict[str, dict]:
    """Per label: which replications caught it, by which rule, and its latencies with CIs."""
    per_label: dict[str, dict] = {}
    for index, result in results:
        for label in result["labels"]:
            if not label["primary_rules"]:
                continue
            agg = per_label.setdefault(label["id"], {"kind": label["kind"], "fault": label["fault"],
                                                     "samples": [], "missed": 0})
            d = result["detections"].get(label["id"])
            if d is None:
                agg["missed"] += 1
            else:
                agg["samples"].append({"replication": index, "rule": d["rule"], "edge_latency_s": d["edge_latency_s"],
                                       "bank_latency_s": d["bank_latency_s"], "stages_s": d["stages_s"]})
    for agg in per_label.values():
        samples = agg["samples"]
        agg["detected"] = len(samples)
        agg["edge_latency_s"] = mean_ci([s["edge_latency_s"] for s in samples])
        agg["bank_latency_s"] = mean_ci([s["bank_latency_s"] for s in samples if s["bank_latency_s"] is not None])
        agg["stages_s"] = {st: mean_ci([s["stages_s"][st] for s in samples if s["stages_s"].get(st) is not None])
                           for st in STAGES}
    return dict(sorted(per_label.items()))


def aggregate(meta: dict, replications: list[dict], results: dict[int, dict]) -> dict:
    """One scenario's aggregate over its replications; `results` maps index → result (crashed ones absent)."""
    ran = [(i, results[i]) for i in sorted(results)]
    statuses = [r["status"] for r in replications]
    criteria: dict[str, dict[str, int]] = {}
    for rep in replications:
        seen: dict[str, int] = {}
        for c in all_criteria(rep):
            seen[c["name"]] = seen.get(c["name"], 0) + 1  # two expectations may read alike
            name = c["name"] if seen[c["name"]] == 1 else f"{c['name']} #{seen[c['name']]}"
            counts = criteria.setdefault(name, {s.value: 0 for s in Status})
            counts[c["status"]] += 1
    days = meta["duration_s"] / 86400 * meta.get("warehouses", 1)  # site-days per replication
    false_alarms = [len(r["false_alarms"]) for _, r in ran]
    messages: dict[str, int] = {}
    for _, r in ran:
        for key, value in r["messages"].items():
            messages[key] = messages.get(key, 0) + value
    if ERROR in statuses:
        status = ERROR
    else:
        status = next((s.value for s in (Status.FAILURE, Status.ACCEPTABLE) if s.value in statuses), Status.SUCCESS.value)
    return {
        **meta,
        "status": status,
        "replications": replications,
        "pass_rate": round(sum(s in (Status.SUCCESS, Status.ACCEPTABLE) for s in statuses) / len(statuses), 6),
        "errors": statuses.count(ERROR),
        "criteria": criteria,
        "detections": _detections(ran),
        "misses": sum(len(r["missed"]) for _, r in ran),
        "repeats": sum(sum(r["repeats"].values()) for _, r in ran),
        "false_alarms": {
            "count": sum(false_alarms),
            "site_days": round(days * len(ran), 6),
            "per_site_day": round(sum(false_alarms) / (days * len(ran)), 6) if ran and days else None,
            "per_replication": mean_ci([n / days for n in false_alarms] if days else []),
        },
        "rules": _rule_counts(r for _, r in ran),
        "messages": dict(sorted(messages.items())),
        "wall": {"run_s": round(sum(rep["wall"]["run_s"] for rep in replications if rep["wall"]), 3)},
    }


def _totals(scenarios: list[dict]) -> dict:
    reps = [rep for s in scenarios for rep in s["replications"]]
    pooled: dict[str, dict[str, int]] = {}
    for s in scenarios:
        for rule, c in s["rules"].items():
            into = pooled.setdefault(rule, {"alerts": 0, "explained": 0, "labels": 0, "caught": 0})
            for key in into:
                into[key] += c[key]
    return {
        "replications": len(reps),
        "failed": sum(rep["status"] == Status.FAILURE for rep in reps),
        "errors": sum(rep["status"] == ERROR for rep in reps),
        "rules": {rule: _with_ratios(c) for rule, c in sorted(pooled.items())},
    }


def _suite_document(scenarios: list[dict], replications: int, version: str) -> dict:
    return {
        "format": SUITE_FORMAT,
        "result_format": RESULT_FORMAT,
        "code_version": version,
        "replications": replications,
        "seeds": "replication i runs with the scenario file's seed + i",
        "status": _overall(scenarios),
        "totals": _totals(scenarios),
        "scenarios": scenarios,
    }


def _overall(scenarios: list[dict]) -> str:
    statuses = {s["status"] for s in scenarios}
    for status in (ERROR, Status.FAILURE.value, Status.ACCEPTABLE.value):
        if status in statuses:
            return status
    return Status.SUCCESS.value


def _meta(scenario: Scenario) -> dict:
    return {"scenario": scenario.spec.scenario, "source": str(Path(scenario.source).resolve()),
            "scenario_sha256": scenario.sha256, "base_seed": scenario.spec.seed, "duration_s": scenario.spec.duration,
            "warehouses": len(getattr(scenario.site, "members", (scenario.site,)))}


def _load_all(files: list[Path]) -> list[Scenario]:
    loaded: list[Scenario] = []
    names: dict[str, str] = {}
    for path in files:
        scenario = load_scenario(path)
        name = scenario.spec.scenario
        if name in names:
            raise InputError(str(path), None, "scenario", f"name {name!r} is also used by {names[name]}")
        names[name] = str(path)
        loaded.append(scenario)
    return loaded


def run_suite(
    folder_or_files: Path | Sequence[Path],
    replications: int = 3,
    out: Path = Path("results/suite"),
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict:
    """Run every scenario `replications` times on a local process pool; write and return suite.json.

    Raises InputError for a bad scenario file before anything runs.
    """
    scenarios = _load_all(scenario_files(folder_or_files))
    workers = workers or min(2, os.cpu_count() or 1)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, i, s.spec.seed + i) for s in scenarios for i in range(replications)]
    done: dict[tuple[str, int], dict] = {}
    # spawn: fresh workers, untouched by the parent's threads (rich's refresh) or pybullet state.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            pool.submit(run_replication, s.source, seed, str(out / _folder(s, i, seed))): (s, i, seed)
            for s, i, seed in jobs
        }
        for future in as_completed(futures):
            s, i, seed = futures[future]
            try:
                done[(s.spec.scenario, i)] = future.result()
            except BrokenProcessPool as err:  # the worker died outright (no Python traceback to keep)
                text = f"the worker process running this replication died: {err}\n"
                (out / _folder(s, i, seed)).mkdir(parents=True, exist_ok=True)
                (out / _folder(s, i, seed) / "crash.log").write_text(text)
                done[(s.spec.scenario, i)] = {"error": "worker process died", "traceback": text}
            if progress:
                progress(len(done), len(jobs), f"{s.spec.scenario} rep {i} (seed {seed})")
    aggregated = []
    for s in scenarios:
        name = s.spec.scenario
        meta = _meta(s)
        reps = [_replication_entry(i, seed, _folder(s, i, seed), meta["source"], done[(name, i)])
                for s2, i, seed in jobs if s2 is s]
        results = {i: done[(name, i)]["result"] for i in range(replications) if "result" in done[(name, i)]}
        aggregated.append(aggregate(meta, reps, results))
    suite = _suite_document(aggregated, replications, code_version())
    write_suite(out, suite)
    return suite


def _folder(scenario: Scenario, index: int, seed: int) -> str:
    return f"{scenario.spec.scenario}/rep-{index}-s{seed}"


def write_suite(out: Path, suite: dict) -> None:
    (out / "suite.json").write_bytes(msgspec.json.format(msgspec.json.encode(suite), indent=2) + b"\n")


def exit_code(suite: dict) -> int:
    """0 all pass; 1 a criterion failed; 3 a replication crashed (as `cangtwin run`)."""
    return {ERROR: 3, Status.FAILURE.value: 1}.get(suite["status"], 0)


# --- recomputation from the kept event logs ------------------------------------------------

class _StoredReplication(msgspec.Struct):
    index: int
    seed: int
    folder: str
    status: str
    provenance: dict | None
    wall: dict | None
    error: dict | None


class _StoredScenario(msgspec.Struct):
    scenario: str
    source: str
    scenario_sha256: str
    replications: list[_StoredReplication]


class _StoredSuite(msgspec.Struct):
    format: str
    result_format: str
    code_version: str
    replications: int
    scenarios: list[_StoredScenario]


def load_suite(out: Path) -> tuple[dict, _StoredSuite]:
    """suite.json of a suite folder, checked for its format; InputError naming what is wrong."""
    path = out / "suite.json"
    if not out.is_dir():
        raise InputError(str(out), None, None, "not a folder (give the --out folder of `cangtwin suite`)")
    if not path.is_file():
        raise InputError(str(out), None, None, "not a suite folder: it has no suite.json (run `cangtwin suite` first)")
    try:
        raw = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError as err:
        raise InputError(str(path), None, None, f"not valid JSON: {err}") from None
    if not isinstance(raw, dict) or raw.get("format") != SUITE_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise InputError(str(path), None, "format", f"holds {found!r}; this cangtwin reads {SUITE_FORMAT!r}")
    if raw.get("result_format") != RESULT_FORMAT:
        raise InputError(str(path), None, "result_format",
                         f"results are {raw.get('result_format')!r}; this cangtwin reads {RESULT_FORMAT!r}")
    try:
        return raw, msgspec.convert(raw, _StoredSuite)
    except msgspec.ValidationError as err:
        raise InputError(str(path), None, None, str(err)) from None


def _decode_log(path: Path) -> list[tuple[int, dict]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(str(path), None, None, "missing: recomputing needs the replication's event log") from None
    events = []
    for n, line in enumerate(data.splitlines(), 1):
        try:
            event = msgspec.json.decode(line)
        except msgspec.DecodeError as err:
            raise InputError(str(path), n, None, f"not a JSON event: {err}") from None
        if not isinstance(event, dict) or not {"t", "ev", "data"} <= event.keys():
            raise InputError(str(path), n, None, "not an event (needs t, ev and data)")
        events.append((n, event))
    return events


def outcome_from_log(scenario: Scenario, seed: int, log_path: Path, wall_s: float = 0.0) -> tuple[RunOutcome, str]:
    """Rebuild what the harness saw of a run (labels, alerts, counters) from its event log.

    Mirrors `Run.execute`: every alert raised at the edge or held by the cloud, in id order,
    with the cloud's receipt and bank-visible times when it got there. `wall_s` is the run's
    kept wall time (it cannot be recomputed), for the throughput floors.
    """
    events = _decode_log(log_path)
    labels: list[Label] = []
    edge: dict[str, Alert] = {}
    cloud: dict[str, tuple[Alert, float, float]] = {}
    counters = None
    for n, event in events:
        kind, data = event["ev"], event["data"]
        try:
            if kind == "fraud.label":
                labels.append(msgspec.convert(data, Label))
            elif kind == "edge.alert":
                alert = msgspec.convert(data, Alert)
                edge[alert.id] = alert
            elif kind == "cloud.alert":
                alert = msgspec.convert(data["alert"], Alert)
                cloud[alert.id] = (alert, float(data["cloud_received_at"]), float(data["visible_at"]))
            elif kind == COUNTERS_EVENT:
                counters = data
        except (msgspec.ValidationError, KeyError, TypeError) as err:
            raise InputError(str(log_path), n, kind, f"cannot read the record: {err}") from None
    if counters is None:
        raise InputError(str(log_path), None, None, f"no {COUNTERS_EVENT!r} record: the log is cut short or predates it")
    everything = {**{aid: a for aid, (a, _, _) in cloud.items()}, **edge}
    alerts = [SeenAlert(alert, cloud[aid][1] if aid in cloud else None, cloud[aid][2] if aid in cloud else None)
              for aid, alert in sorted(everything.items())]
    evidence_dir = log_path.parent / "evidence"
    evidence = {p.stem: p for p in sorted(evidence_dir.glob("*.json"), key=lambda p: p.stem)} if evidence_dir.is_dir() else {}
    log = EventLog(simpy.Environment(initial_time=scenario.end_epoch))
    log.lines = log_path.read_bytes().splitlines()
    outcome = RunOutcome(scenario, seed, log, labels, alerts, dict(counters["edge_rejections"]),
                         dict(counters["messages"]), wall_s, evidence, log_path.parent)
    return outcome, hashlib.sha256(log_path.read_bytes()).hexdigest()


def recompute_suite(out: Path, progress: Progress | None = None) -> tuple[dict, dict[str, dict]]:
    """Recompute every result and the suite aggregate from the kept logs and the scenario files.

    Wall-clock figures cannot be recomputed and are carried over from suite.json. Returns the
    suite document and each replication's result by folder.
    """
    raw, stored = load_suite(out)
    total = sum(len(s.replications) for s in stored.scenarios)
    results_by_folder: dict[str, dict] = {}
    aggregated = []
    done = 0
    for s_raw, s in zip(raw["scenarios"], stored.scenarios):
        reps, results = [], {}
        for rep_raw, rep in zip(s_raw["replications"], s.replications):
            if rep.status == ERROR:
                reps.append(rep_raw)
            else:
                scenario = _reload(s, rep.seed)
                outcome, sha = outcome_from_log(scenario, rep.seed, out / rep.folder / "events.jsonl",
                                                (rep.wall or {}).get("run_s") or 0.0)
                recorded = (rep.provenance or {}).get("event_log_sha256")
                if sha != recorded:
                    raise InputError(str(out / rep.folder / "events.jsonl"), None, None,
                                     f"changed since the suite ran (sha256 {sha[:12]}…, suite.json has {str(recorded)[:12]}…)")
                result = msgspec.json.decode(msgspec.json.encode(build_result(outcome, sha)))  # as JSON, like result.json
                result["provenance"]["code_version"] = rep.provenance["code_version"]
                result["wall"] = rep.wall
                results_by_folder[rep.folder] = result
                results[rep.index] = result
                reps.append(_replication_entry(rep.index, rep.seed, rep.folder, s.source, {"result": result}))
            done += 1
            if progress:
                progress(done, total, f"{s.scenario} rep {rep.index} (seed {rep.seed})")
        scenario = _reload(s, None)
        aggregated.append(aggregate(_meta(scenario), reps, results))
    return _suite_document(aggregated, stored.replications, stored.code_version), results_by_folder


def _reload(stored: _StoredScenario, seed: int | None) -> Scenario:
    scenario = load_scenario(stored.source, seed)
    if scenario.sha256 != stored.scenario_sha256:
        raise InputError(stored.source, None, None, "the scenario file changed since the suite ran; recomputing would mix versions")
    return scenario


def without_wall(value: Any) -> Any:
    """A result or suite document without its wall-clock figures (the only non-deterministic part)."""
    if isinstance(value, dict):
        return {k: without_wall(v) for k, v in value.items() if k != "wall"}
    if isinstance(value, list):
        return [without_wall(v) for v in value]
    return value


def differences(stored: Any, recomputed: Any, where: str = "$") -> list[str]:
    """Where two JSON documents differ (wall-clock figures included: strip them first)."""
    if isinstance(stored, dict) and isinstance(recomputed, dict):
        out = []
        for key in sorted(stored.keys() | recomputed.keys()):
            if key not in stored or key not in recomputed:
                out.append(f"{where}.{key}: only in {'suite.json' if key in stored else 'the recomputation'}")
            else:
                out += differences(stored[key], recomputed[key], f"{where}.{key}")
        return out
    if isinstance(stored, list) and isinstance(recomputed, list) and len(stored) == len(recomputed):
        return [d for i, (a, b) in enumerate(zip(stored, recomputed)) for d in differences(a, b, f"{where}[{i}]")]
    return [] if stored == recomputed else [f"{where}: stored {stored!r}, recomputed {recomputed!r}"]
