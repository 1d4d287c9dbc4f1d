"""The twin drives cangtwin's live platform in real time (5x), through the adapter alone.

One short scenario holds both sides of the demo: an honest truck takes unpledged goods out
through the gate, then a theft takes two pledged coils the same way. Devices publish over a
private Mosquitto with their own logins and ACLs; `serve` (edge, cloud, bank API) runs as a real
process on a clock at 5x; alerts come back only by polling the bank API as the adapter says.
The same scenario in virtual time gives the same verdicts. A bank's release order, made through
the bank API at its time in the scenario, lets the same coils leave without an alert.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import httpx

import pytest
import yaml
from click.testing import CliRunner

from cangtwin.platform.live.broker import acl_text, logins
from cangtwin.scenarios.live.cli import live_run, provision
from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario

from services import MissingBinary, free_port, skip_or_fail, start_mosquitto
from test_live_serve import launch_serve, serving

# Budgets at 5x: 1 s of wall time for a frame to reach the edge (5 s clock skew), ~6 s for a stall.
# At 10x (0.5 s) a loaded 2-core machine (load 11-16) broke it: frames took up to 0.56 s from the
# harness through Mosquitto to an outside subscriber, with the processes waiting for a core.
SPEED = 5.0
LIBRARY = Path(__file__).resolve().parents[1] / "scenarios" / "library"
SCENARIO = """\
scenario: live-gate
description: An honest outbound of unpledged goods, then two pledged coils leave with no release.
site: small
seed: 7
start: "2026-03-02T08:30"
duration: 270s
twin: {lidar_scans: false}
loans:
  - {id: LN-A-001, bank: bank-a, borrower: acme, amount_cny: 700000, bays: [B01, B02, B09]}
operations:
  - {kind: outbound, at: 0s, lots: [B07-01]}
injections:
  - {kind: unauthorized-outbound, id: theft-1, at: 20s, lots: [B01-03, B02-01]}
expectations:
  - {kind: detect, label: theft-1, rule: outbound-unauthorized, view: bank, success_s: 60, acceptable_s: 120}
  - {kind: no-false-alarms}
  - {kind: zero-loss}
"""


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


RELEASE = """\
scenario: live-release
description: authorized-release, short; the bank releases two coils through its API, then they leave.
site: small
seed: 7
start: "2026-03-02T08:30"
duration: 240s
twin: {lidar_scans: false}
loans:
  - {id: LN-A-001, bank: bank-a, borrower: acme, amount_cny: 700000, bays: [B01, B02, B09]}
operations:
  - {kind: release, at: 5s, loan: LN-A-001, lots: [B01-03, B02-01]}
  - {kind: outbound, at: 20s, lots: [B01-03, B02-01]}
expectations:
  - {kind: no-alerts, rule: outbound-unauthorized}
  - {kind: no-false-alarms}
"""


@pytest.fixture
def live_platform(tmp_path):
    with deployed(tmp_path, "live-gate.yaml", SCENARIO) as deployment:
        yield deployment


@contextmanager
def deployed(tmp_path: Path, name: str, text: str):
    """A provisioned deployment of the scenario: a broker with its logins and ACLs, and `serve`."""
    scenario_path = tmp_path / name
    scenario_path.write_text(text, encoding="utf-8")
    files = provision(load_scenario(scenario_path), tmp_path / "deploy", broker_port=1, api_port=free_port(),
                      speed=SPEED)
    serve_cfg = yaml.safe_load(files["serve.yaml"].read_text(encoding="utf-8"))
    site = serve_cfg["sites"][0]
    all_logins = logins({site["name"]: (site["login"]["password"], {d["id"]: d["password"] for d in site["devices"]})},
                        serve_cfg["cloud"]["login"]["password"])
    try:
        broker = start_mosquitto(tmp_path / "mosquitto", passwords={l.username: l.password for l in all_logins},
                                 acl=acl_text(all_logins))
    except MissingBinary as error:
        skip_or_fail(error)
    with broker:
        for name in ("serve.yaml", "adapter.yaml"):
            _edit(files[name], lambda data: data["broker"].update(port=broker.port))
        _edit(files["adapter.yaml"], lambda data: data.update(settle_s=3.0))
        process = serving(launch_serve(files["serve.yaml"]))
        try:
            yield scenario_path, files, broker
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0


def test_theft_caught_and_honest_outbound_quiet_live_as_in_virtual_time(live_platform, tmp_path):
    scenario_path, files, _broker = live_platform
    run = CliRunner().invoke(live_run, [str(scenario_path), "--config", str(files["adapter.yaml"]),
                                        "--speed", str(SPEED), "--out", str(tmp_path / "results")])
    assert run.exit_code == 0, run.output
    result = json.loads((tmp_path / "results" / "live-gate-s7-live" / "result.json").read_text(encoding="utf-8"))
    live = result["live"]

    # everything crossed the broker under the devices' own logins, and the endpoint answered
    assert live["drained"] and live["published"] == live["broker_acked"] > 500 and live["broker_refused"] == 0
    assert live["endpoint_answered"] and live["malformed_alerts"] == 0
    assert result["provenance"]["live"] is True and live["unobservable_expectations"] == ["zero-loss"]
    # the theft's critical alert made the edge command the cameras; each took it, as its TD declares
    assert live["commands_taken"] >= 1 and live["command_refusals"] == [], live
    log = (tmp_path / "results" / "live-gate-s7-live" / "events.jsonl").read_text(encoding="utf-8")
    assert '"ev":"device.command"' in log and '"action":"capture_evidence"' in log
    # the theft: caught by its primary rule, matched to its label, seen by the bank after the act
    detection = result["detections"]["theft-1"]
    assert detection["rule"] == "outbound-unauthorized" and detection["bank_latency_s"] > 0
    caught = next(a for a in result["alerts"] if a["id"] == detection["alert"])
    assert {"lot:B01-03", "lot:B02-01"} <= set(caught["targets"])
    # the honest near miss: the unpledged lot left through the same gate and nothing was raised about it
    assert not any("lot:B07-01" in a["targets"] for a in result["alerts"])
    assert result["false_alarms"] == [] and result["missed"] == [] and result["status"] == "SUCCESS"

    # the same scenario in virtual time: the same verdicts, the same alerts (latencies aside)
    virtual = build_result(run_scenario(load_scenario(scenario_path), tmp_path / "virtual"), "-")
    verdicts = lambda r: {label: d["rule"] for label, d in r["detections"].items()}  # noqa: E731
    assert verdicts(result) == verdicts(virtual) == {"theft-1": "outbound-unauthorized"}
    alerts = lambda r: sorted((a["rule"], tuple(sorted(a["targets"]))) for a in r["alerts"])  # noqa: E731
    assert alerts(result) == alerts(virtual)
    assert virtual["false_alarms"] == [] and virtual["missed"] == []


@pytest.mark.parametrize("released", [True, False], ids=["release-by-api", "no-release"])
def test_a_release_made_through_the_bank_api_lets_the_coils_leave_quietly(tmp_path, released):
    """authorized-release, short and live: the bank's release order goes through the bank API at its
    time, so the coils that leave after it raise nothing. Without it, the same outbound is caught."""
    text = RELEASE if released else RELEASE.replace("  - {kind: release, at: 5s, loan: LN-A-001, lots: [B01-03, B02-01]}\n", "")
    assert (text == RELEASE) == released
    with deployed(tmp_path, "live-release.yaml", text) as (scenario_path, files, _broker):
        run = CliRunner().invoke(live_run, [str(scenario_path), "--config", str(files["adapter.yaml"]),
                                            "--speed", str(SPEED), "--out", str(tmp_path / "results")])
        adapter = yaml.safe_load(files["adapter.yaml"].read_text(encoding="utf-8"))
        api, bank_a = adapter["bank_api"]["url"], adapter["bank_api"]["tokens"]["bank-a"]
        loan = httpx.get(f"{api}/loans/LN-A-001", headers={"Authorization": f"Bearer {bank_a}"}, timeout=10).json()
    folder = tmp_path / "results" / "live-release-s7-live"
    result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    live, log = result["live"], (folder / "events.jsonl").read_text(encoding="utf-8")
    assert live["drained"] and live["endpoint_answered"] and live["broker_refused"] == 0
    caught = [a for a in result["alerts"] if a["rule"] == "outbound-unauthorized"]
    pledged_now = {lot["id"] for lot in loan["lots"] if lot["pledged"]}
    if released:
        assert run.exit_code == 0, run.output
        [call] = live["bank_calls"]
        assert (call["operation"], call["kind"], call["status"], call["ok"]) == ("operations[0]", "release", 200, True)
        assert '"ev":"bank.release"' in log and "bank.release-refused" not in log
        assert caught == [] and result["false_alarms"] == [] and result["status"] == "SUCCESS"
        # the platform's book says so too: the API took the coils out of the loan's pledge
        assert not {"B01-03", "B02-01"} & pledged_now, loan
    else:
        assert run.exit_code == 1, run.output  # the no-alerts criterion fails: the outbound is a theft now
        assert live["bank_calls"] == [] and "bank.release" not in log
        assert any({"lot:B01-03", "lot:B02-01"} <= set(a["targets"]) for a in caught), result["alerts"]
        assert result["status"] == "FAILURE" and {"B01-03", "B02-01"} <= pledged_now, loan


RULES = """\
scenario: live-rules
description: The operator puts rule files in force through the API; a broken one and a repeat are refused.
site: small
seed: 7
start: "2026-03-02T08:30"
duration: 40s
twin: {lidar_scans: false}
loans:
  - {id: LN-A-001, bank: bank-a, borrower: acme, amount_cny: 700000, bays: [B01, B02, B09]}
operations:
  - {kind: rules-update, at: 5s, file: rules/broken.yaml}
  - {kind: rules-update, at: 10s, file: rules/min-two-lots.yaml}
  - {kind: rules-update, at: 15s, file: rules/min-two-lots.yaml}
expectations:
  - {kind: no-false-alarms}
"""


def test_rule_files_go_in_force_through_the_bank_api_with_the_operators_token(tmp_path):
    shutil.copytree(LIBRARY / "rules", tmp_path / "rules")
    with deployed(tmp_path, "live-rules.yaml", RULES) as (scenario_path, files, _broker):
        run = CliRunner().invoke(live_run, [str(scenario_path), "--config", str(files["adapter.yaml"]),
                                            "--speed", str(SPEED), "--out", str(tmp_path / "results")])
        adapter = yaml.safe_load(files["adapter.yaml"].read_text(encoding="utf-8"))
        current = httpx.get(adapter["bank_api"]["url"] + "/rulesets/current", timeout=10,
                            headers={"Authorization": f"Bearer {adapter['bank_api']['operator']}"}).json()
    assert run.exit_code == 0, run.output
    folder = tmp_path / "results" / "live-rules-s7-live"
    calls = json.loads((folder / "result.json").read_text(encoding="utf-8"))["live"]["bank_calls"]
    assert [(c["operation"], c["status"], c["ok"]) for c in calls] == [
        ("operations[0]", 422, True), ("operations[1]", 201, True), ("operations[2]", 409, True)]
    assert re.search(r"broken\.yaml:\d+: rules\[0\]\.params\.min_lots", calls[0]["message"]), calls[0]
    assert current["text"] == (LIBRARY / "rules" / "min-two-lots.yaml").read_text(encoding="utf-8")
    log = (folder / "events.jsonl").read_text(encoding="utf-8")
    assert log.count('"ev":"bank.rules-refused"') == 2 and log.count('"ev":"bank.rules-update"') == 1
