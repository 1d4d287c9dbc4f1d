"""`cangtwin serve`: the deployment file, its one-line errors, and the service as a real process."""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cangtwin.devices.thing_descriptions import TD_DIR
from cangtwin.platform.live.cli import broker_config, serve
from cangtwin.platform.live.store import CloudStore
from cangtwin.scenarios.live.devices import DeviceClient

from services import START_TIMEOUT_S, MosquittoInstance, ServiceError, free_port, port_accepts
from test_live_transport import LOOP, RFID, theft

START_S = 20.0


def deployment(tmp_path: Path, port: int, database: str | None = None, logins: bool = False, **extra) -> dict:
    site = {
        "name": "small",
        "outbox": {"path": "state/outbox-small.db"},
        "devices": [
            {"id": "rfid-g1", "type": "rfid-reader", "key_hex": RFID.hex(), "attrs": {"gate": "G1"}},
            {"id": "loop-g1", "type": "gate-sensor", "key_hex": LOOP.hex(), "attrs": {"gate": "G1"}},
        ],
    }
    cloud = {"database": database or "sqlite:///state/cloud.db"}
    if logins:
        site["login"] = {"username": "edge-small", "password": "edge-secret"}
        for device in site["devices"]:
            device["password"] = device["id"] + "-secret"
        cloud["login"] = {"username": "cloud", "password": "cloud-secret"}
    (tmp_path / "state").mkdir(exist_ok=True)
    return {
        "broker": {"host": "127.0.0.1", "port": port},
        "thing_descriptions": str(TD_DIR),
        "cloud": cloud,
        "book": {
            "lots": [{"id": f"B01-0{n}", "tag": f"EPC-B01-0{n}", "site": "small", "commodity": "steel-coil",
                      "mass_kg": 20000.0, "bay": "B01"} for n in (1, 2, 3)],
            "loans": [{"id": "LN-1", "bank": "bank-a", "borrower": "borrower", "amount_cny": 1e6}],
            "pledges": [{"loan": "LN-1", "receipt": "WR-1", "lots": ["B01-01", "B01-02", "B01-03"]}],
        },
        "sites": [site],
        **extra,
    }


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # deployment files refuse aliases, so never write any
        return True


def write(tmp_path: Path, data: dict, name: str = "serve.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.dump(data, Dumper=_PlainDumper, sort_keys=False), encoding="utf-8")
    return path


def launch_serve(config: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cangtwin.platform.live", "serve", str(config), *args],
                            stderr=subprocess.PIPE, text=True, env=env)


def start_serve(config: Path, *args: str) -> subprocess.Popen:
    return serving(launch_serve(config, *args))


def serving(process: subprocess.Popen) -> subprocess.Popen:
    """Wait until a launched `serve` says it is serving (connected, warehouses claimed).

    Everything it writes to stderr, before and after, is collected in `process.lines` by a thread.
    """
    process.lines = []
    while not (line := process.stderr.readline()).startswith("serving:"):
        if not line or line.startswith("error:"):
            process.kill()
            raise AssertionError(f"serve did not start: {line}{process.stderr.read()}")
        process.lines.append(line)

    def collect() -> None:
        for line in process.stderr:
            process.lines.append(line)

    threading.Thread(target=collect, daemon=True).start()
    return process


def said(process: subprocess.Popen, text: str) -> bool:
    return any(text in line for line in list(process.lines))


def relaunch(broker: MosquittoInstance) -> MosquittoInstance:
    """Start a stopped private broker again from its own config: same port, same persistence dir."""
    config = broker.workdir / "mosquitto.conf"
    with open(broker.log_path, "ab") as log:
        process = subprocess.Popen([broker.process.args[0], "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    again = MosquittoInstance(process, broker.port, broker.workdir)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_accepts(broker.port):
        if process.poll() is not None or time.monotonic() > deadline:
            again.stop()
            raise ServiceError(f"mosquitto did not restart on port {broker.port}")
        time.sleep(0.02)
    return again


def alerts_in(url: str, rule: str = "outbound-unauthorized") -> list[dict]:
    store = CloudStore(url)
    try:
        return [row for row in store.alert_rows() if row["rule"] == rule]
    finally:
        store.close()


def wait_for(predicate, timeout_s: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_serve_runs_edge_and_cloud_as_a_process(mosquitto, tmp_path):
    config = write(tmp_path, deployment(tmp_path, mosquitto.port))
    process = start_serve(config)
    url = f"sqlite:///{tmp_path / 'state' / 'cloud.db'}"
    devices = {d: DeviceClient(mosquitto.host, mosquitto.port, "small", d) for d in ("rfid-g1", "loop-g1")}
    try:
        for device, frame in theft(2, 1, time.time()):
            devices[device].send(frame)
        [row] = wait_for(lambda: alerts_in(url), what="the alert in the store")
        assert row["site"] == "small" and "lot:B01-02" in row["record"].decode("utf-8", "replace")
    finally:
        for device in devices.values():
            device.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    assert (tmp_path / "state" / "outbox-small.db").exists()


@pytest.mark.parametrize("edit,expected", [
    (lambda d: d.update(colour="red"), r"serve\.yaml:\d+: colour: Extra inputs are not permitted"),
    (lambda d: d["sites"][0]["devices"][0].update(key_hex="zz"), r"serve\.yaml:\d+: sites\[0\]\.devices\[0\]\.key_hex"),
    (lambda d: d["sites"][0]["devices"][1].update(type="toaster"),
     r"serve\.yaml:\d+: sites\[0\]\.devices\[1\]\.type: no Thing Description for 'toaster'"),
    (lambda d: d["sites"].append(copy.deepcopy(d["sites"][0])), r"serve\.yaml:\d+: sites\[1\]\.name: site 'small' is listed twice"),
    (lambda d: d["sites"][0].update(name="a/b"), r"serve\.yaml:\d+: sites\[0\]\.name: site id 'a/b' contains /"),
    (lambda d: d["book"]["pledges"].append({"loan": "LN-1", "receipt": "WR-2", "lots": ["B01-01"]}),
     r"serve\.yaml:\d+: book\.pledges\[1\]: lot B01-01 is already pledged to loan LN-1"),
    (lambda d: d.update(thing_descriptions="nowhere"), r"serve\.yaml:\d+: thing_descriptions: .*nowhere is not a directory"),
    (lambda d: d["broker"].update(port=70000), r"serve\.yaml:\d+: broker\.port: Input should be less than or equal to 65535"),
])
def test_bad_deployment_file_is_one_located_line(tmp_path, edit, expected):
    data = deployment(tmp_path, 1883)
    edit(data)
    result = CliRunner().invoke(serve, [str(write(tmp_path, data))])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert re.search(expected, lines[0]), lines[0]


def test_unreachable_broker_is_one_line_for_the_cloud(tmp_path):
    data = deployment(tmp_path, free_port())
    data["broker"]["connect_timeout_s"] = 1.0
    result = CliRunner().invoke(serve, [str(write(tmp_path, data)), "--cloud"])
    assert result.exit_code == 1 and "no answer from 127.0.0.1" in result.output, result.output


def test_edge_starts_offline_and_connects_when_the_broker_appears(mosquitto, tmp_path):
    """边缘自治: an edge whose broker is down still starts, and joins once the broker is up."""
    mosquitto.stop()  # down before the edge starts; relaunched later from the same config, on the same port
    data = deployment(tmp_path, mosquitto.port)
    data["broker"]["connect_timeout_s"] = 0.5
    process = start_serve(write(tmp_path, data), "--edge", "small")
    try:
        assert process.poll() is None
        with relaunch(mosquitto) as broker:
            device = DeviceClient(broker.host, broker.port, "small", "rfid-g1")
            device.close()
            assert wait_for(lambda: "edge-small" in broker.log_path.read_text(), what="the edge to connect")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_broker_config_from_the_deployment(tmp_path):
    config = write(tmp_path, deployment(tmp_path, 18831, logins=True))
    result = CliRunner().invoke(broker_config, [str(config), str(tmp_path / "broker")])
    assert result.exit_code == 0, result.output
    acl = (tmp_path / "broker" / "acl").read_text()
    assert "user small.loop-g1\ntopic read cangtwin/small/loop-g1/command/+\ntopic write cangtwin/small/loop-g1/+" in acl
    missing = deployment(tmp_path, 18831, logins=True)
    del missing["sites"][0]["devices"][0]["password"]
    result = CliRunner().invoke(broker_config, [str(write(tmp_path, missing, "b.yaml")), str(tmp_path / "b")])
    assert result.exit_code == 2 and "device 'rfid-g1' has no password" in result.output
