"""Backtesting: re-evaluate a rule set on a recorded run's platform inputs, without the twin.

A run made with `--record-inputs` keeps every frame that reached the edge, with its arrival
time. Replaying feeds the same frames to a fresh edge and cloud running the new rules, with
the same bank actions, market, registry and network faults, and matches the alerts against
the run's own ground-truth labels. With the same rules it reproduces the run's verdicts.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import msgspec

from cangtwin.fraud.label import Label
from cangtwin.platform.config_file import InputError
from cangtwin.platform.rules.ruleset import load_ruleset
from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import Run
from cangtwin.scenarios.spec import load_scenario


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(str(path), None, None, f"no {what} here") from None


def replay_run(run_dir: Path, rules: Path | None, out: Path) -> tuple[dict, dict]:
    """(the replay's result, the original result). Raises InputError on a folder that will not do."""
    original = json.loads(_read(run_dir / "result.json", "result.json: not a run folder"))
    provenance = original.get("provenance", {})
    if "scenario_file" not in provenance:
        raise InputError(str(run_dir / "result.json"), None, "provenance", "no scenario_file: an older result format")
    scenario = load_scenario(provenance["scenario_file"], seed=provenance["seed"])
    if scenario.sha256 != provenance["scenario_sha256"]:
        raise InputError(scenario.source, None, None, "the scenario file changed since the run; replay needs the same one")
    raw = _read(run_dir / "inputs.msgpack", "recorded inputs (run it with `cangtwin run --record-inputs`)")
    try:
        frames = msgspec.msgpack.decode(raw, type=list[tuple[float, bytes]])
    except msgspec.DecodeError as exc:
        raise InputError(str(run_dir / "inputs.msgpack"), None, None, f"unreadable: {exc}") from None
    labels = [
        msgspec.convert(record["data"], Label)
        for record in map(json.loads, _read(run_dir / "events.jsonl", "event log").splitlines())
        if record["ev"] == "fraud.label"
    ]
    if rules is not None:
        scenario = dataclasses.replace(scenario, ruleset=load_ruleset(rules))
    out.mkdir(parents=True, exist_ok=True)
    outcome = Run(scenario, out, replay=(frames, labels)).execute()
    result = build_result(outcome, outcome.log.write(out / "events.jsonl"))
    result["replay_of"] = {"run": str(run_dir), "ruleset": original["provenance"]["ruleset"]}
    (out / "result.json").write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n")
    return result, original


def verdicts(result: dict) -> set[tuple]:
    """What a run concluded, independent of alert ids and timing: (rule, targets, event time)."""
    return {(a["rule"], tuple(a["targets"]), round(a["event_time"], 6)) for a in result["alerts"]}
