"""Turn a finished run into its result: matches, metrics, criteria and provenance.

Everything except the `wall` section is a function of scenario and seed only, so results of
the same run compare equal across machines and processes.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import msgspec

from cangtwin.platform.cloud.evidence import REQUIRED_SIGNATURES
from cangtwin.platform.ledger.verification import VerifyInputError, verify_path
from cangtwin.scenarios.criteria import Criterion, Status, at_least, at_most, overall
from cangtwin.scenarios.matching import MatchResult, match
from cangtwin.scenarios.money_at_risk import money_at_risk
from cangtwin.scenarios.run import RunOutcome
from cangtwin.scenarios.spec import Detect, LedgerVerifies, NoAlerts, NoFalseAlarms, Rejections, Throughput, ZeroLoss

RESULT_FORMAT = "cangtwin.result/1"


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        version = metadata.version("cangtwin")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{version}+g{commit}"
    except (OSError, subprocess.SubprocessError):
        return version


def evaluate(outcome: RunOutcome, matched: MatchResult) -> list[Criterion]:
    criteria = []
    for exp in outcome.scenario.spec.expectations:
        if isinstance(exp, Detect):
            detection = matched.by_rule.get((exp.label, exp.rule))
            actual = None
            if detection is not None:
                actual = detection.bank_latency_s if exp.view == "bank" else detection.edge_latency_s
            criteria.append(
                at_most(f"{exp.rule} catches {exp.label} ({exp.view})", exp.success_s, exp.acceptable_s,
                        None if actual is None else round(actual, 6), "s")
            )
        elif isinstance(exp, NoFalseAlarms):
            criteria.append(at_most("false alarms", 0, exp.acceptable, len(matched.false_alarms)))
        elif isinstance(exp, Rejections):
            criteria.append(at_least(f"frames rejected as {exp.reason}", exp.min, outcome.edge_rejections.get(exp.reason, 0)))
        elif isinstance(exp, ZeroLoss):
            m = outcome.messages
            criteria.append(at_most("records lost between edge and cloud", 0, 0, m["records_lost"] + m["outbox_evicted"]))
        elif isinstance(exp, NoAlerts):
            count = sum(1 for s in outcome.alerts if s.alert.rule == exp.rule)
            criteria.append(at_most(f"no {exp.rule} alerts", 0, 0, count))
        elif isinstance(exp, LedgerVerifies):
            criteria.append(at_most("ledger and evidence checks failed", 0, 0, len(ledger_failures(outcome))))
    return criteria


def ledger_failures(outcome: RunOutcome) -> list[str]:
    """Every failed check of the run's ledger audit and evidence packages, as a bank would run them
    offline (`cangtwin verify`), trusting the parties' keys published with the run."""
    if outcome.workdir is None:
        return ["no run folder: the ledger cannot be checked"]
    keys = outcome.workdir / "parties.json"
    paths = [outcome.workdir / "ledger.log", *outcome.evidence.values()]
    failures = []
    for path in paths:
        try:
            _, rows, ok = verify_path(path, keys, None, REQUIRED_SIGNATURES)
        except VerifyInputError as err:
            failures.append(str(err))
            continue
        failures += [f"{path.name}: {name}: {detail}" for name, passed_check, detail in rows if not passed_check]
        if not ok and all(passed_check for _, passed_check, _ in rows):
            failures.append(f"{path.name}: verification failed")
    return failures


def wall_figures(outcome: RunOutcome) -> tuple[dict, list[Criterion]]:
    """Wall-clock figures, all derived from the rounded run time so a recomputation from the kept
    figures gives the same values, and the throughput floors judged on them."""
    run_s = round(outcome.wall_s, 3)
    scenario = outcome.scenario
    wall = {
        "run_s": run_s,
        "sim_speed_x": round(scenario.spec.duration / run_s, 1) if run_s else None,
        "messages_per_s": round(outcome.messages["emitted"] / run_s, 1) if run_s else None,
    }
    criteria = []
    for exp in scenario.spec.expectations:
        if isinstance(exp, Throughput):
            if exp.min_messages_per_s is not None:
                criteria.append(at_least("device messages per wall second", exp.min_messages_per_s,
                                         wall["messages_per_s"] or 0.0, "msg/s"))
            if exp.min_sim_speed_x is not None:
                criteria.append(at_least("simulated seconds per wall second", exp.min_sim_speed_x,
                                         wall["sim_speed_x"] or 0.0, "×"))
    if criteria:
        wall["criteria"] = [msgspec.to_builtins(asdict(c)) for c in criteria]
    return wall, criteria


def build_result(outcome: RunOutcome, log_sha256: str) -> dict:
    scenario = outcome.scenario
    matched = match(outcome.labels, outcome.alerts)
    criteria = evaluate(outcome, matched)
    wall, wall_criteria = wall_figures(outcome)
    site_days = scenario.spec.duration / 86400 * len(getattr(scenario.site, "members", (scenario.site,)))
    labels = [msgspec.to_builtins(label) for label in outcome.labels]
    detections = {k: asdict(v) for k, v in sorted(matched.detections.items())}
    list_price = {name: c.value_cny_per_t for name, c in scenario.site.spec.commodities.items()}
    return {
        "format": RESULT_FORMAT,
        "provenance": {
            "code_version": code_version(),
            "seed": outcome.seed,
            "scenario": scenario.spec.scenario,
            "scenario_sha256": scenario.sha256,
            "scenario_file": scenario.source,
            "site": scenario.site.id,
            "site_sha256": scenario.site.sha256,
            "ruleset": scenario.ruleset.label,
            "ruleset_sha256": scenario.ruleset.sha256,
            "event_log_sha256": log_sha256,
        },
        "status": overall(criteria + wall_criteria).value,
        "criteria": [msgspec.to_builtins(asdict(c)) for c in criteria],
        "labels": labels,
        "detections": detections,
        "money_at_risk": money_at_risk(labels, detections, outcome.log.lines, list_price, scenario.end_epoch),
        "missed": matched.missed(outcome.labels),
        "repeats": matched.repeats,
        "secondary": matched.secondary,
        "false_alarms": matched.false_alarms,
        "explained_by": matched.explained_by,
        "false_alarms_per_site_day": round(len(matched.false_alarms) / site_days, 6) if site_days else None,
        "alerts": [
            {**msgspec.to_builtins(s.alert), "cloud_received_at": s.cloud_received_at, "visible_at": s.visible_at}
            for s in outcome.alerts
        ],
        "evidence": {alert_id: path.name for alert_id, path in outcome.evidence.items()},
        "messages": outcome.messages,
        "edge_rejections": outcome.edge_rejections,
        "wall": wall,
    }


def all_criteria(result: dict) -> list[dict]:
    """The deterministic criteria, then the wall-clock ones (throughput floors)."""
    return [*result["criteria"], *((result.get("wall") or {}).get("criteria") or [])]


def passed(result: dict) -> bool:
    return result["status"] != Status.FAILURE.value
