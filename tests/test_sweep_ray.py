"""`cangtwin sweep --ray`: a real Ray head on loopback, a two-task sweep on it, and results that
carry the Ray node and worker that ran them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cangtwin.scenarios.sweep_cli import sweep_command
from test_sweep import _files, _sweep

RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head --block` on 127.0.0.1 with every port free-picked, in its own session;
    stopped by signalling that process (it drains and stops its children), never `ray stop`,
    which would stop every Ray on the machine."""
    port = _free_port()
    # Ray's session folder holds unix sockets, whose paths must stay short.
    temp = Path(f"/tmp/ct-ray-{os.getpid()}")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    ports = {flag: _free_port() for flag in ("ray-client-server-port", "dashboard-port", "dashboard-agent-listen-port",
                                            "dashboard-agent-grpc-port", "runtime-env-agent-port",
                                            "metrics-export-port", "object-manager-port", "node-manager-port")}
    log = tmp_path_factory.mktemp("ray") / "head.log"
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--object-store-memory=100000000", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
         *(f"--{flag}={value}" for flag, value in ports.items())],
        env=env, start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Ray head did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.3)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(90)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # anything of ours still in the head's group
        except ProcessLookupError:
            pass
        subprocess.run(["rm", "-rf", str(temp)], check=False)


def test_a_sweep_runs_on_a_ray_cluster_and_records_node_and_worker(tmp_path, ray_head):
    path = _files(tmp_path, _sweep("  - field: rules.outbound-unauthorized.params.min_lots\n    values: [1, 3]\n"))
    out = tmp_path / "out"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    run = subprocess.run(
        [sys.executable, "-c", "from cangtwin.scenarios.sweep_cli import sweep_command; sweep_command()",
         str(path), "--out", str(out), "--ray", ray_head],
        env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    document = json.loads((out / "sweep.json").read_text())
    assert document["executor"] == "ray" and document["errors"] == 0
    nodes, workers = set(), set()
    for point in document["points"]:
        (rep,) = point["replications"]
        executor = rep["executor"]
        assert executor["kind"] == "ray" and executor["node_ip"] == "127.0.0.1"
        assert len(executor["node_id"]) == 56 and len(executor["worker_id"]) == 56  # Ray's hex ids
        nodes.add(executor["node_id"])
        workers.add(executor["worker_id"])
        # the run folder came back from the worker whole, as a local sweep leaves it
        result = json.loads((out / rep["folder"] / "result.json").read_text())
        assert result["provenance"]["seed"] == rep["seed"] and (out / rep["folder"] / "events.jsonl").is_file()
    assert len(nodes) == 1  # one head node, which ran both tasks
    caught, missed = document["points"]
    assert caught["metrics"]["recall"]["mean"] == 1.0 and missed["metrics"]["recall"]["mean"] == 0.0
    assert "ray node" in (out / "sweep.html").read_text(encoding="utf-8")


def test_a_bad_ray_address_is_a_one_line_error(tmp_path):
    path = _files(tmp_path, _sweep("  - field: rules.outbound-unauthorized.params.min_lots\n    values: [1]\n"))
    result = CliRunner().invoke(sweep_command, [str(path), "--out", str(tmp_path / "out"), "--ray", "not an address"])
    assert result.exit_code == 2
    assert result.stderr == ("error: --ray: cannot join the Ray cluster at 'not an address': "
                             "Invalid address format: not an address\n")
