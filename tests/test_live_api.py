"""`cangtwin serve --api-port`: the bank API and the evidence ledger beside the live cloud.

A theft sent by devices over a real (private) Mosquitto becomes an alert its bank reads through
the API, with an evidence package that verifies offline against the parties' pinned keys; another
bank gets 404 for the same alert and sees an empty list.
"""

from __future__ import annotations

import re
import signal
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
from cangtwin.scenarios.live.devices import DeviceClient

from test_live_serve import deployment, launch_serve, wait_for, write
from test_live_transport import theft

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


def start_with_api(config: Path):
    """Launch `serve --api-port 0` and return (process, base URL) once it says it is serving."""
    process = launch_serve(config, "--api-port", "0")
    lines = []
    while not (line := process.stderr.readline()).startswith("serving:"):
        if not line or line.startswith("error:"):
            process.kill()
            raise AssertionError(f"serve did not start: {''.join(lines)}{line}{process.stderr.read()}")
        lines.append(line)
    threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # keep the pipe drained
    url = re.search(r"api=(http://\S+)", line)
    assert url, line
    return process, url.group(1)


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
