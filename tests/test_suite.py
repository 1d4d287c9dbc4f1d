"""Scenario suites: seeded replications, aggregates with confidence intervals, crashes kept as
errors, JUnit XML, `cangtwin report` recomputing from the kept logs, and the pytest plugin."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cangtwin.scenarios.junit import write_junit
from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario
from cangtwin.scenarios.suite import (
    _rule_counts,
    exit_code,
    mean_ci,
    recompute_suite,
    run_suite,
    without_wall,
)

CLI = Path(sys.executable).parent / "cangtwin"

# The demo theft, shortened to 20 minutes; the last expectation (bank-visible within 10 ms)
# cannot be met, so every replication has one FAILURE criterion.
DEMO = """\
scenario: demo-short
site: small
seed: 20260302
start: "2026-03-02T08:30"
duration: 20m
loans:
  - {id: LN-A-001, bank: bank-a, borrower: 华东金属贸易有限公司, amount_cny: 700000, bays: [B01, B02, B09]}
operations:
  - {kind: release, at: 3m, loan: LN-A-001, lots: [B09-01, B09-02]}
  - {kind: outbound, at: 4m, lots: [B09-01, B09-02]}
injections:
  - {kind: unauthorized-outbound, id: theft-1, at: 10m, lots: [B01-03, B02-01]}
expectations:
  - {kind: detect, label: theft-1, rule: outbound-unauthorized, view: bank, success_s: 2, acceptable_s: 60}
  - {kind: no-false-alarms}
  - {kind: detect, label: theft-1, rule: outbound-unauthorized, view: bank, success_s: 0.01, acceptable_s: 0.02}
"""

DUPLICATE = """\
scenario: duplicate-short
site: small
seed: 3
start: "2026-03-02T09:00"
duration: 20m
loans:
  - {id: LN-A-001, bank: bank-a, borrower: 江南电缆有限公司, amount_cny: 500000, bays: [B09, B10]}
injections:
  - {kind: duplicate-pledge, id: double-1, at: 5m, loan: LN-A-001, bank: bank-c}
expectations:
  - {kind: detect, label: double-1, rule: duplicate-pledge, view: bank, success_s: 1, acceptable_s: 5}
  - {kind: no-false-alarms}
"""

# The theft names a lot that an earlier, honest outbound already took away: the twin cannot
# carry goods that are no longer in the warehouse, and the run crashes.
GONE_LOT = """\
scenario: gone-lot
site: small
seed: 1
start: "2026-03-02T08:30"
duration: 10m
loans:
  - {id: LN-A-001, bank: bank-a, borrower: 华东金属贸易有限公司, amount_cny: 700000, bays: [B01]}
operations:
  - {kind: outbound, at: 1m, lots: [B07-01]}
injections:
  - {kind: unauthorized-outbound, id: theft-1, at: 2m, lots: [B07-01]}
"""


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("suite")
    scenarios = _write(base / "scenarios", {"a-demo.yaml": DEMO, "b-duplicate.yaml": DUPLICATE,
                                            "not-a-scenario.yaml": "threshold: 3\n"})
    out = base / "out"
    seen = []
    suite = run_suite(scenarios, 2, out, 2, lambda done, total, what: seen.append((done, total)))
    write_junit(suite, out)
    return scenarios, out, suite, seen


def _results(out: Path, scenario: dict) -> list[dict]:
    return [json.loads((out / rep["folder"] / "result.json").read_text()) for rep in scenario["replications"]]


def test_each_scenario_runs_seeded_replications_in_their_own_folders(suite_run):
    _, out, suite, seen = suite_run
    assert [s["scenario"] for s in suite["scenarios"]] == ["demo-short", "duplicate-short"]  # file order
    for s in suite["scenarios"]:
        assert [rep["seed"] for rep in s["replications"]] == [s["base_seed"], s["base_seed"] + 1]
        for rep, result in zip(s["replications"], _results(out, s)):
            assert rep["folder"] == f"{s['scenario']}/rep-{rep['index']}-s{rep['seed']}"
            assert (out / rep["folder"] / "events.jsonl").is_file()
            assert result["provenance"]["seed"] == rep["seed"] and rep["provenance"] == result["provenance"]
    assert json.loads((out / "suite.json").read_text()) == json.loads(msgspec.json.encode(suite))
    assert suite["result_format"] == "cangtwin.result/1" and suite["format"] == "cangtwin.suite/1"
    assert sorted(seen) == [(n, 4) for n in range(1, 5)]


def test_replication_zero_is_what_a_plain_run_gives(suite_run, tmp_path):
    scenarios, out, suite, _ = suite_run
    outcome = run_scenario(load_scenario(scenarios / "b-duplicate.yaml"), tmp_path)
    plain = json.loads(msgspec.json.encode(build_result(outcome, "n/a")))
    [kept, _] = _results(out, suite["scenarios"][1])
    for result in (plain, kept):
        del result["provenance"]["event_log_sha256"]
    assert without_wall(kept) == without_wall(plain)


def test_aggregates_count_statuses_and_give_t_intervals(suite_run):
    _, out, suite, _ = suite_run
    demo, duplicate = suite["scenarios"]
    assert demo["status"] == "FAILURE" and demo["pass_rate"] == 0.0
    assert duplicate["status"] == "SUCCESS" and duplicate["pass_rate"] == 1.0
    assert suite["status"] == "FAILURE" and exit_code(suite) == 1
    strict = "outbound-unauthorized catches theft-1 (bank)"
    assert list(demo["criteria"]) == [strict, "false alarms", f"{strict} #2"]  # two expectations read alike
    assert demo["criteria"][strict] == {"SUCCESS": 2, "ACCEPTABLE": 0, "FAILURE": 0}
    assert demo["criteria"][f"{strict} #2"] == {"SUCCESS": 0, "ACCEPTABLE": 0, "FAILURE": 2}
    latencies = [r["detections"]["theft-1"]["bank_latency_s"] for r in _results(out, demo)]
    stat = demo["detections"]["theft-1"]["bank_latency_s"]
    low, high = stats.t.interval(0.95, 1, loc=sum(latencies) / 2, scale=stats.sem(latencies))
    assert stat["n"] == 2 and stat["ci95"] == pytest.approx([low, high], abs=1e-6)
    assert demo["detections"]["theft-1"]["missed"] == 0 and demo["misses"] == 0
    assert demo["false_alarms"] == {"count": 0, "site_days": pytest.approx(2 * 20 / 1440, abs=1e-6),
                                    "per_site_day": 0.0, "per_replication": mean_ci([0.0, 0.0])}
    assert demo["rules"]["outbound-unauthorized"] == {"alerts": 2, "explained": 2, "labels": 2, "caught": 2,
                                                       "precision": 1.0, "recall": 1.0}
    emitted = sum(r["messages"]["emitted"] for r in _results(out, demo))
    assert demo["messages"]["emitted"] == emitted > 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1e3), min_size=2, max_size=30))
def test_mean_ci_is_the_student_t_interval(values):
    got = mean_ci(values)
    mean = sum(values) / len(values)
    if stats.sem(values) == 0:
        expected = (mean, mean)
    else:
        expected = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    expected = (max(0.0, expected[0]), expected[1])  # the figures are non-negative: cut at 0
    assert got["n"] == len(values) and got["mean"] == pytest.approx(mean, abs=1e-6)
    assert got["ci95"] == pytest.approx(list(expected), abs=1e-5)


def test_mean_ci_of_fewer_than_two_values_has_no_interval():
    assert mean_ci([]) == {"n": 0, "mean": None, "ci95": None, "values": []}
    assert mean_ci([2.5]) == {"n": 1, "mean": 2.5, "ci95": None, "values": [2.5]}


def test_rule_precision_and_recall_follow_the_matching_output():
    label = {"id": "L1", "primary_rules": ["a", "b"], "kind": "k", "fault": False}
    result = {
        "labels": [label, {"id": "L2", "primary_rules": ["c"], "kind": "k", "fault": False}],
        "alerts": [{"id": "x1", "rule": "a"}, {"id": "x2", "rule": "a"}, {"id": "x3", "rule": "a"},
                   {"id": "x4", "rule": "d"}, {"id": "x5", "rule": "c"}],
        # x4 is d, which L2 explains as a secondary rule: explained, but catches nothing
        "explained_by": {"x1": ["L1"], "x2": ["L1"], "x4": ["L2"]},
    }
    rules = _rule_counts([result])
    assert rules["a"] == {"alerts": 3, "explained": 2, "labels": 1, "caught": 1,
                          "precision": pytest.approx(2 / 3, abs=1e-6), "recall": 1.0}
    assert rules["b"] == {"alerts": 0, "explained": 0, "labels": 1, "caught": 0, "precision": None, "recall": 0.0}
    assert rules["c"] == {"alerts": 1, "explained": 0, "labels": 1, "caught": 0, "precision": 0.0, "recall": 0.0}
    assert rules["d"]["precision"] == 1.0 and rules["d"]["recall"] is None


def test_junit_has_one_case_per_replication_and_criterion(suite_run):
    _, out, suite, _ = suite_run
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    by_name = {ts.get("name"): ts for ts in root.findall("testsuite")}
    assert list(by_name) == ["demo-short", "duplicate-short"]
    demo = by_name["demo-short"]
    assert int(demo.get("tests")) == len(demo.findall("testcase")) == 6
    failures = demo.findall("testcase/failure")
    assert int(demo.get("failures")) == len(failures) == 2
    assert all("expected 0.01 s, acceptable 0.02 s, actual" in f.get("message") for f in failures)
    assert {c.get("name") for c in demo.findall("testcase")} >= {
        "false alarms [rep 0, seed 20260302]", "false alarms [rep 1, seed 20260303]"}
    assert int(by_name["duplicate-short"].get("tests")) == 4 and by_name["duplicate-short"].get("failures") == "0"
    assert root.get("tests") == "10" and root.get("failures") == "2" and root.get("errors") == "0"


def test_a_crashing_replication_is_an_error_with_its_seed_and_the_rest_finish(tmp_path):
    scenarios = _write(tmp_path / "scenarios", {"a.yaml": GONE_LOT, "b.yaml": DUPLICATE})
    out = tmp_path / "out"
    suite = run_suite(scenarios, 2, out, 2, None)
    crashed, fine = suite["scenarios"]
    assert crashed["status"] == "ERROR" and crashed["errors"] == 2
    for rep, seed in zip(crashed["replications"], (1, 2)):
        assert rep["status"] == "ERROR" and rep["seed"] == seed
        assert rep["error"]["rerun"] == f"cangtwin run {scenarios / 'a.yaml'} --seed {seed}"
        assert "Traceback" in (out / rep["error"]["traceback"]).read_text()
    assert [rep["status"] for rep in fine["replications"]] == ["SUCCESS", "SUCCESS"]
    assert suite["status"] == "ERROR" and exit_code(suite) == 3
    root = ET.parse(write_junit(suite, out)).getroot()
    errors = root.findall("testsuite/testcase/error")
    assert root.get("errors") == "2" and len(errors) == 2
    assert "--seed 2" in errors[1].get("message") and "Traceback" in errors[1].text
    # The crashed replications stay crashed when the suite is recomputed from its logs.
    recomputed, _ = recompute_suite(out)
    assert without_wall(recomputed) == without_wall(json.loads((out / "suite.json").read_text()))


def test_report_recomputes_the_suite_from_the_kept_logs(suite_run):
    _, out, suite, _ = suite_run
    recomputed, results = recompute_suite(out)
    assert without_wall(recomputed) == without_wall(json.loads((out / "suite.json").read_text()))
    for folder, result in results.items():
        assert without_wall(result) == without_wall(json.loads((out / folder / "result.json").read_text()))
    # The wall-clock figures are carried over, not invented.
    assert recomputed["scenarios"][0]["replications"][0]["wall"] == suite["scenarios"][0]["replications"][0]["wall"]


def test_report_command_rewrites_junit_and_html_and_exits_with_the_criteria(suite_run, tmp_path):
    _, out, _, _ = suite_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "junit.xml").unlink()
    done = subprocess.run([CLI, "report", copy], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # the impossible 10 ms criterion failed
    assert "every metric and criterion equals suite.json" in done.stdout
    assert (copy / "junit.xml").is_file() and (copy / "report.html").is_file()


def test_report_names_a_tampered_event_log(suite_run, tmp_path):
    _, out, suite, _ = suite_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    log = copy / suite["scenarios"][1]["replications"][1]["folder"] / "events.jsonl"
    lines = log.read_bytes().splitlines()
    log.write_bytes(b"\n".join(lines[:-3] + [b'{"t": 1, "ev": "edge.alert", "data": {"id": 7}}']) + b"\n")
    done = subprocess.run([CLI, "report", copy], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"error: {log}:{len(lines) - 2}: edge.alert: cannot read the record")


def test_report_refuses_a_folder_that_is_not_a_suite_or_another_format(tmp_path):
    done = subprocess.run([CLI, "report", tmp_path], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a suite folder" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "suite.json").write_text(json.dumps({"format": "cangtwin.suite/0", "scenarios": []}))
    done = subprocess.run([CLI, "report", tmp_path], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "format: holds 'cangtwin.suite/0'; this cangtwin reads 'cangtwin.suite/1'" in done.stderr


def test_suite_command_names_the_file_line_and_field_of_a_bad_scenario(tmp_path):
    _write(tmp_path, {"a.yaml": DUPLICATE.replace("duration: 20m", "duration: soon")})
    done = subprocess.run([CLI, "suite", tmp_path, "--out", tmp_path / "out"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"error: {tmp_path / 'a.yaml'}:5: duration:")
    assert not (tmp_path / "out" / "suite.json").exists()


def test_two_scenarios_with_one_name_are_refused(tmp_path):
    _write(tmp_path, {"a.yaml": DUPLICATE, "b.yaml": DUPLICATE})
    done = subprocess.run([CLI, "suite", tmp_path, "--out", tmp_path / "out"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "'duplicate-short' is also used by" in done.stderr


def test_pytest_plugin_runs_scenario_files_as_tests(tmp_path):
    _write(tmp_path / "scen", {"demo.yaml": DEMO, "duplicate.yaml": DUPLICATE, "rules.yaml": "threshold: 3\n"})
    (tmp_path / "pytest.ini").write_text("[pytest]\ncangtwin_scenarios = scen\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:dash", "-p", "no:cacheprovider",
         "-q", "-o", f"cangtwin_results={tmp_path / 'results'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 passed" in done.stdout
    assert "FAILED scen/demo.yaml::demo-short" in done.stdout
    assert "expected 0.01 s, acceptable 0.02 s, actual" in done.stdout  # the criteria table
    assert (tmp_path / "results" / "duplicate-short-s3" / "result.json").is_file()



def test_detection_samples_are_the_results_detections(suite_run):
    _, out, suite, _ = suite_run
    demo = suite["scenarios"][0]
    for sample, result in zip(demo["detections"]["theft-1"]["samples"], _results(out, demo)):
        d = result["detections"]["theft-1"]
        assert sample["bank_latency_s"] == d["bank_latency_s"] and sample["stages_s"] == d["stages_s"]
