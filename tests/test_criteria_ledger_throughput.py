"""The `ledger-verifies` and `throughput` expectations.

`ledger-verifies` runs the checks a bank runs offline (`cangtwin verify`) on the run's own ledger
and evidence packages: clean on an honest run, failed on a run whose ledger was edited at rest.
`throughput` judges wall-clock floors; its criteria live under the result's `wall` section, apart
from the deterministic ones, yet decide the status like any other.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cangtwin.platform.config_file import InputError
from cangtwin.scenarios.result import all_criteria, build_result
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario
from cangtwin.scenarios.suite import outcome_from_log

REPO = Path(__file__).resolve().parents[1]
LEDGER_EDIT = (REPO / "scenarios" / "library" / "ledger-edit.yaml").read_text(encoding="utf-8")
LEDGER = "ledger and evidence checks failed"


def _run(tmp_path: Path, text: str) -> tuple[dict, Path]:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    outcome = run_scenario(load_scenario(path), tmp_path / "run")
    sha = outcome.log.write(tmp_path / "run" / "events.jsonl")
    return json.loads(json.dumps(build_result(outcome, sha))), path


def _criterion(result: dict, name: str) -> dict:
    (found,) = [c for c in all_criteria(result) if c["name"] == name]
    return found


def test_an_honest_run_has_a_ledger_that_verifies(tmp_path):
    honest = LEDGER_EDIT.replace("injections:\n  - {kind: ledger-edit, id: edited, at: 8.5m, entry: 2, rehash: true}\n", "")
    honest = honest.replace(
        "  - {kind: detect, label: edited, rule: evidence-tamper-ledger, view: bank, success_s: 61, acceptable_s: 120}\n",
        "  - {kind: ledger-verifies}\n")
    assert honest.count("ledger-verifies") == 1 and "ledger-edit, id" not in honest
    result, _ = _run(tmp_path, honest)
    ledger = _criterion(result, LEDGER)
    assert (ledger["actual"], ledger["status"]) == (0, "SUCCESS")
    assert result["status"] == "SUCCESS"


def test_an_edited_ledger_fails_the_criterion_and_a_floor_too_high_fails_the_status(tmp_path):
    text = LEDGER_EDIT + "  - {kind: ledger-verifies}\n  - {kind: throughput, min_sim_speed_x: 1000000000}\n"
    result, path = _run(tmp_path, text)
    ledger = _criterion(result, LEDGER)
    assert ledger["status"] == "FAILURE" and ledger["actual"] >= 1
    # The edit is still caught by its rule: the failed criterion is about the ledger, not the alert.
    assert result["detections"]["edited"]["rule"] == "evidence-tamper-ledger"

    speed = _criterion(result, "simulated seconds per wall second")
    assert speed["status"] == "FAILURE" and 0 < speed["actual"] < 1e9
    assert speed not in result["criteria"], "wall-clock criteria stay apart from the deterministic ones"
    assert result["wall"]["criteria"] == [speed]
    assert result["status"] == "FAILURE"

    # Recomputed from the kept log and wall time, as `cangtwin report` does: the same verdicts.
    scenario = load_scenario(path)
    outcome, _ = outcome_from_log(scenario, scenario.spec.seed, tmp_path / "run" / "events.jsonl",
                                  result["wall"]["run_s"])
    again = json.loads(json.dumps(build_result(outcome, "n/a")))
    assert again["criteria"] == result["criteria"]
    assert again["wall"] == result["wall"]


def test_a_generous_floor_passes(tmp_path):
    text = LEDGER_EDIT.replace("duration: 12m", "duration: 3m").replace(
        "injections:\n  - {kind: ledger-edit, id: edited, at: 8.5m, entry: 2, rehash: true}\n", "").replace(
        "  - {kind: detect, label: edited, rule: evidence-tamper-ledger, view: bank, success_s: 61, acceptable_s: 120}\n",
        "").replace("  - {kind: no-false-alarms}\n", "") + "  - {kind: throughput, min_sim_speed_x: 0.001, min_messages_per_s: 0.001}\n"
    result, _ = _run(tmp_path, text)
    floors = result["wall"]["criteria"]
    assert [c["name"] for c in floors] == ["device messages per wall second", "simulated seconds per wall second"]
    assert all(c["status"] == "SUCCESS" and c["actual"] > c["expected"] for c in floors)


@pytest.mark.parametrize("expectation, field", [
    ("{kind: throughput}", "expectations[2]"),
    ("{kind: throughput, min_sim_speed_x: -5}", "expectations[2].min_sim_speed_x"),
    ("{kind: ledger-verifies, strict: true}", "expectations[2].strict"),
])
def test_a_bad_expectation_names_the_file_the_line_and_the_field(tmp_path, expectation, field):
    path = tmp_path / "bad.yaml"
    text = LEDGER_EDIT + f"  - {expectation}\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    message = str(caught.value)
    line = text.splitlines().index(f"  - {expectation}") + 1
    assert message.startswith(f"{path}:{line}:"), message
    assert field in message, message
