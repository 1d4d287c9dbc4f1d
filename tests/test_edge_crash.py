"""Edge crash and restart from the durable outbox: committed records survive, ids stay unique."""

from __future__ import annotations

import json
from pathlib import Path

from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"


def test_crash_restart_then_theft(tmp_path):
    outcome = run_scenario(load_scenario(LIBRARY / "edge-crash.yaml"), tmp_path)
    result = build_result(outcome, "n/a")
    assert result["status"] == "SUCCESS", result["criteria"]
    m = outcome.messages
    assert m["lost_while_edge_down"] > 0  # devices kept talking to a dead edge
    assert m["records_lost"] == 0 and m["outbox_evicted"] == 0  # what was committed reached the cloud
    ids = [a["id"] for a in result["alerts"]]
    assert len(ids) == len(set(ids))
    theft = next(a for a in result["alerts"] if a["rule"] == "outbound-unauthorized")
    assert "-r" in theft["id"]  # raised by the restarted edge, under its new boot prefix
    events = [json.loads(line)["ev"] for line in outcome.log.lines]
    assert events.index("fault.edge-crash") < events.index("fault.edge-restart")
    assert (tmp_path / "edge-outbox.sqlite").exists()
