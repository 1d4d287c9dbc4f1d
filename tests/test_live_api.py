"""`cangtwin serve --api-port`: the bank API and the evidence ledger beside the live cloud.

A theft sent by devices over a real (private) Mosquitto becomes an alert its bank reads through
the API, with an evidence package that verifies offline against the parties' pinned keys; another
bank gets 404 for the same alert and sees an empty list.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import yaml
from click.testing import CliRunner

from cangtwin.platform.api.access import hash_token
from cangtwin.platform.cloud.evidence import REQUIRED_SIGNATURES
from cangtwin.platform.ledger.package import verify_package
from cangtwin.platform.ledger.tree_head import PARTIES, public_key_bytes
from cangtwin.platform.live.cli import serve
from cangtwin.platform.live.config import load_deployment
from cangtwin.platform.live.webhook import SIGNATURE_HEADER, verify
from cangtwin.scenarios.live.adapter import AlertCollector, load_adapter
from cangtwin.scenarios.live.devices import DeviceClient

from test_live_serve import deployment, launch_serve, wait_for, write
from test_live_transport import theft
from test_live_webhook import Receiver

TOKENS = {"bank-a": "ctw_token-of-bank-a", "bank-b": "ctw_token-of-bank-b"}
PARTY_SEEDS = {name: f"{n:02x}" * 32 for n, name in enumerate(PARTIES, 1)}
WAIT_S = 30.0


def api_deployment(tmp_path: Path, port: int) -> dict:
    access = tmp_path / "access.yaml"
    access.write_text(yaml.safe_dump({"tokens": [
        {"name": f"{bank}-desk", "role": "bank", "bank": bank, "sha256": hash_token(token)}
        for bank, token in TOKENS.items()]}), encoding="utf-8")
    return deployment(tmp_path, port, api={"access": "access.yaml", "audit": "sqlite:///state/audit.db"},
                      ledger={"path": "state/ledger.log", "parties": PARTY_SEEDS})


def start_with_api(config: Path, keep_log: bool = False):
    """Launch `serve --api-port 0` and return (process, base URL) once it says it is serving; with
    `keep_log`, also the list its later stderr lines are collected into."""
    process = launch_serve(config, "--api-port", "0")
    lines = []
    while not (line := process.stderr.readline()).startswith("serving:"):
        if not line or line.startswith("error:"):
            process.kill()
            raise AssertionError(f"serve did not start: {''.join(lines)}{line}{process.stderr.read()}")
        lines.append(line)
    log: list[str] = []
    threading.Thread(target=lambda: [log.append(line) for line in process.stderr], daemon=True).start()  # drained
    url = re.search(r"api=(http://\S+)", line)
    assert url, line
    return (process, url.group(1), log) if keep_log else (process, url.group(1))


def get(base: str, path: str, bank: str) -> httpx.Response:
    return httpx.get(base + path, headers={"Authorization": f"Bearer {TOKENS[bank]}"}, timeout=10.0)


def test_live_alert_reaches_its_bank_with_verifying_evidence(mosquitto, tmp_path):
    config = write(tmp_path, api_deployment(tmp_path, mosquitto.port))
    process, base = start_with_api(config)
    devices = {d: DeviceClient(mosquitto.host, mosquitto.port, "small", d) for d in ("rfid-g1", "loop-g1")}
    try:
        for device, frame in theft(2, 1, time.time()):
            devices[device].send(frame)
        items = wait_for(lambda: get(base, "/v1/alerts?rule=outbound-unauthorized", "bank-a").json()["items"],
                         WAIT_S, "bank A to see the alert")
        [alert] = items
        assert "lot:B01-02" in alert["targets"] and alert["site"] == "small"

        def package():
            response = get(base, f"/v1/alerts/{alert['id']}/evidence", "bank-a")
            assert response.status_code in (200, 409), response.text  # 409: not yet in a signed head
            return response.content if response.status_code == 200 else None

        body = wait_for(package, WAIT_S, "the evidence package")
        pinned = public_key_bytes(load_deployment(config).ledger.parties)
        report = verify_package(body, REQUIRED_SIGNATURES, trusted_keys=pinned)
        assert report.ok and report.keys_pinned, report.failures
        tampered = body.replace(b"B01-02", b"B01-01", 1)
        assert not verify_package(tampered, REQUIRED_SIGNATURES, trusted_keys=pinned).ok

        other = get(base, f"/v1/alerts/{alert['id']}", "bank-b")
        assert other.status_code == 404 and other.json()["error"]["code"] == "not-found"
        assert get(base, f"/v1/alerts/{alert['id']}/evidence", "bank-b").status_code == 404
        assert get(base, "/v1/alerts", "bank-b").json()["total"] == 0
        assert get(base, "/v1/health", "bank-a").json()["ledger_size"] >= 2  # the rule set and the alert, at least
    finally:
        for device in devices.values():
            device.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_api_needs_its_section_and_a_good_access_file(tmp_path):
    plain = write(tmp_path, deployment(tmp_path, 1883), "plain.yaml")
    result = CliRunner().invoke(serve, [str(plain), "--api-port", "0"])
    assert result.exit_code == 2 and "api: --api-port needs an `api:` section" in result.output, result.output
    data = api_deployment(tmp_path, 1883)
    (tmp_path / "access.yaml").write_text("tokens:\n  - {name: x, role: bank, sha256: abc}\n", encoding="utf-8")
    result = CliRunner().invoke(serve, [str(write(tmp_path, data)), "--api-port", "0"])
    assert result.exit_code == 2, result.output
    assert re.match(r"error: .*access\.yaml:2: tokens\[0\]\.", result.output), result.output
    data["ledger"]["parties"] = {"bank": "00" * 32}
    result = CliRunner().invoke(serve, [str(write(tmp_path, data, "bad.yaml"))])
    assert result.exit_code == 2 and re.search(r"bad\.yaml:\d+: ledger\.parties: .*needs exactly the parties",
                                               result.output), result.output


def test_positioning_tags_need_a_site_plan(tmp_path):
    data = deployment(tmp_path, 1883)
    data["sites"][0]["devices"].append({"id": "uwb-fl1", "type": "positioning-tag", "key_hex": "ab" * 32,
                                        "attrs": {"forklift": "FL1"}})
    result = CliRunner().invoke(serve, [str(write(tmp_path, data))])
    assert result.exit_code == 2 and re.search(r"serve\.yaml:\d+: sites\[0\]: the geofence rule needs a site plan",
                                               result.output), result.output
    (tmp_path / "plan.yaml").write_text("site: small\ntimezone: Mars/Base\n", encoding="utf-8")
    data["sites"][0]["geometry"] = "plan.yaml"
    result = CliRunner().invoke(serve, [str(write(tmp_path, data))])
    assert result.exit_code == 2 and re.search(r"serve\.yaml:\d+: sites\[0\]\.geometry: the site plan does not load: "
                                               r".*plan\.yaml", result.output), result.output


OPS_TOKEN = "ctw_token-of-the-operator"
HOOK_SECRETS = {"bank-a": "webhook-secret-of-bank-a", "bank-b": "webhook-secret-of-bank-b"}


def test_live_writes_reach_the_edge_and_alerts_reach_each_banks_webhook(mosquitto, tmp_path):
    """Through `serve` alone: the operator puts a new rule file in force and bank A pledges a free coil;
    the edge applies both (its next alert is on that coil, under the new rules). The alert is pushed,
    signed, to bank A's webhook only, and to the harness's adapter listening as a webhook."""
    receivers = {bank: Receiver() for bank in HOOK_SECRETS}
    adapter_file = tmp_path / "adapter.yaml"
    adapter_file.write_text(yaml.safe_dump({
        "broker": {"host": mosquitto.host, "port": mosquitto.port}, "site": "small",
        "alerts": {"webhook": {"port": 0, "path": "/alerts", "token": "harness-hook-token", "items": "alert"}}}),
        encoding="utf-8")
    collector = AlertCollector(load_adapter(adapter_file))
    collector.start()
    data = api_deployment(tmp_path, mosquitto.port)
    data["book"]["lots"].append({"id": "B01-04", "tag": "EPC-B01-04", "site": "small", "commodity": "steel-coil",
                                 "mass_kg": 20000.0, "bay": "B01"})
    data["webhooks"] = [{"url": receivers[bank].url, "secret": secret, "banks": [bank], "backoff_s": 0.1}
                        for bank, secret in HOOK_SECRETS.items()]
    data["webhooks"].append({"url": collector.webhook_url, "secret": "harness-secret-0123", "token": "harness-hook-token"})
    access = yaml.safe_load((tmp_path / "access.yaml").read_text(encoding="utf-8"))
    access["tokens"].append({"name": "ops", "role": "operator", "sha256": hash_token(OPS_TOKEN)})
    (tmp_path / "access.yaml").write_text(yaml.safe_dump(access), encoding="utf-8")
    process, base, log = start_with_api(write(tmp_path, data), keep_log=True)
    devices = {d: DeviceClient(mosquitto.host, mosquitto.port, "small", d) for d in ("rfid-g1", "loop-g1")}
    ops = {"Authorization": f"Bearer {OPS_TOKEN}"}
    bank_a = {"Authorization": f"Bearer {TOKENS['bank-a']}"}
    try:
        rules = (Path(__file__).resolve().parents[1] / "platform" / "rules" / "default.yaml").read_text(encoding="utf-8")
        new_rules = rules.replace("version: 1", "version: 2")
        bad = rules.replace("max_clock_skew_s: 5.0", "max_clock_skew_s: soon")
        refused = httpx.post(base + "/v1/rulesets", headers=ops, json={"text": bad}, timeout=10)
        assert refused.status_code == 422 and refused.json()["error"]["file"]["line"] is not None, refused.text
        taken = httpx.post(base + "/v1/rulesets", headers=ops, json={"text": new_rules, "note": "v2"}, timeout=10)
        assert taken.status_code == 201, taken.text
        label = taken.json()["label"]
        pledged = httpx.post(base + "/v1/loans/LN-1/pledges", headers=bank_a,
                             json={"receipt": "WR-2", "lots": ["B01-04"]}, timeout=10)
        assert pledged.status_code == 201, pledged.text
        with sqlite3.connect(tmp_path / "state" / "cloud.db", timeout=30) as store:  # stored before the answer
            rows = store.execute("SELECT state FROM book_slices WHERE site = 'small'").fetchall()
            stored = [json.loads(state) for state, in rows]
            ruleset_rows = store.execute("SELECT label FROM rulesets").fetchall()
        assert stored and stored[0]["pledges"].get("B01-04") == "LN-1"
        assert (label,) in ruleset_rows
        assert httpx.post(base + "/v1/loans/LN-1/releases", headers={"Authorization": f"Bearer {TOKENS['bank-b']}"},
                          json={"lots": ["B01-01"]}, timeout=10).status_code == 404
        version = httpx.get(base + "/v1/banks/bank-a/collateral", headers=bank_a, timeout=10).json()["book_version"]
        wait_for(lambda: f"edge small holds book version {version}" in "".join(log), WAIT_S, "the edge to hold the book")

        for device, frame in theft(4, 1, time.time()):
            devices[device].send(frame)
        [alert] = wait_for(lambda: get(base, "/v1/alerts?rule=outbound-unauthorized", "bank-a").json()["items"],
                           WAIT_S, "the alert on the newly pledged coil")
        assert alert["targets"] == ["lot:B01-04"] and alert["ruleset"] == label  # the edge's book and rules
        wait_for(lambda: receivers["bank-a"].calls, WAIT_S, "bank A's webhook")
        _, headers, body = receivers["bank-a"].calls[0]
        assert verify(HOOK_SECRETS["bank-a"].encode(), headers[SIGNATURE_HEADER], body)
        assert json.loads(body)["alert"]["id"] == alert["id"] and json.loads(body)["event"] == "alert.raised"
        [seen] = wait_for(lambda: collector.alerts(), WAIT_S, "the adapter's webhook")
        assert (seen.alert.id, seen.alert.rule, seen.alert.targets) == (alert["id"], alert["rule"], ("lot:B01-04",))
        assert not collector.malformed

        history = wait_for(lambda: [i for i in httpx.get(base + "/v1/rulesets/history", headers=bank_a,
                                                         timeout=10).json()["items"] if i["version"] == 2],
                           WAIT_S, "the rule set's ledger entry")
        assert history[0]["sha256"] == taken.json()["sha256"]
        audit = httpx.get(base + "/v1/audit", headers=ops, timeout=10).json()["items"]
        assert [(row["action"], row["status"]) for row in audit] == [
            ("ruleset.activate", 422), ("ruleset.activate", 201), ("book.pledge", 201),
            ("book.release", 404)]
        assert receivers["bank-b"].calls == []  # nothing of bank A's reached bank B
    finally:
        collector.stop()
        for device in devices.values():
            device.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        for receiver in receivers.values():
            receiver.close()
