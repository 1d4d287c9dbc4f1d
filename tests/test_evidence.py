"""Evidence end to end: a run's ledger and alert packages verify offline; tampering is caught."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "cangtwin"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evidence")
    subprocess.run([str(CLI), "run", str(REPO / "scenarios/library/demo-outbound.yaml"), "--out", str(out)],
                   check=True, capture_output=True)
    return out / "demo-outbound-s20260302"


def _verify(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), "verify", *map(str, args)], capture_output=True, text=True)


def test_the_theft_alert_has_a_package_that_verifies_against_pinned_keys(run_folder):
    result = json.loads((run_folder / "result.json").read_text())
    alert_id = result["detections"]["theft-1"]["alert"]
    package = run_folder / "evidence" / result["evidence"][alert_id]
    body = json.loads(package.read_text())
    kinds = sorted(json.loads(_data(e))["type"] for e in body["entries"])
    # The alert, the gate event behind it, and one evidence clip per camera (取证指令).
    assert kinds == ["alert"] + ["evidence-clip"] * 4 + ["gate"]
    proc = _verify(package, "--keys", run_folder / "parties.json")
    assert proc.returncode == 0, proc.stdout
    assert "verified" in proc.stdout


def _data(entry: dict) -> bytes:
    import base64

    return base64.b64decode(entry["data"])


def test_a_package_without_pinned_keys_is_not_accepted(run_folder):
    package = next((run_folder / "evidence").glob("*.json"))
    proc = _verify(package)
    assert proc.returncode == 1 and "keys pinned" in proc.stdout


def test_an_edited_package_entry_fails_inclusion(run_folder, tmp_path):
    import base64

    package = next((run_folder / "evidence").glob("*.json"))
    body = json.loads(package.read_text())
    entry = json.loads(_data(body["entries"][0]))
    entry["targets"] = ["lot:B99-99"]  # someone rewrites what the alert was about
    body["entries"][0]["data"] = base64.b64encode(json.dumps(entry).encode()).decode()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(body))
    proc = _verify(forged, "--keys", run_folder / "parties.json")
    assert proc.returncode == 1 and "FAILED" in proc.stdout and "inclusion" in proc.stdout


def test_the_ledger_log_verifies_and_a_flipped_byte_is_located(run_folder, tmp_path):
    assert _verify(run_folder / "ledger.log").returncode == 0
    for name in ("ledger-heads.json", "parties.json"):
        (tmp_path / name).write_bytes((run_folder / name).read_bytes())
    data = bytearray((run_folder / "ledger.log").read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "ledger.log").write_bytes(bytes(data))
    proc = _verify(tmp_path / "ledger.log")
    assert proc.returncode == 1 and "first bad entry" in proc.stdout


def test_missing_or_garbage_input_is_a_one_line_error(tmp_path):
    proc = _verify(tmp_path / "absent.json")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "file not found" in proc.stderr
    (tmp_path / "ledger.log").write_bytes(b"garbage")
    (tmp_path / "ledger-heads.json").write_text("{not json")
    proc = _verify(tmp_path / "ledger.log")
    assert proc.returncode == 2 and "ledger-heads.json" in proc.stderr and "Traceback" not in proc.stderr
