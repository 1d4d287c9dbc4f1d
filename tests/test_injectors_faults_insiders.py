"""Loss and latency spikes, a colluding keeper, and a theft while the edge is down."""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.twin.network import Link, LinkProfile

from injector_runs import latency, run_library


@settings(max_examples=50, deadline=None)
@given(loss=st.floats(0.05, 0.9), extra=st.floats(0.0, 5.0), seed=st.integers(0, 2**32 - 1))
def test_a_spike_degrades_the_link_only_inside_its_window(loss, extra, seed):
    env = simpy.Environment()
    link = Link(env, "wan", np.random.default_rng(seed), LinkProfile(base_latency_s=0.03, jitter_s=0.0), fifo=False)
    link.add_spike(10.0, 20.0, loss, extra)
    arrivals: dict[int, float] = {}

    def send_at(t: float, n: int) -> None:
        env.timeout(t).callbacks.append(lambda _e: link.send(bytes([n % 256]), lambda _d: arrivals.setdefault(n, env.now)))

    times = [i * 0.1 for i in range(300)]  # 0 .. 30 s, a message every 100 ms
    for n, t in enumerate(times):
        send_at(t, n)
    env.run()
    inside = [n for n, t in enumerate(times) if 10.0 <= t < 20.0]
    outside = [n for n, t in enumerate(times) if not 10.0 <= t < 20.0]
    assert all(arrivals[n] - times[n] == pytest.approx(0.03) for n in outside)  # untouched
    delivered = [n for n in inside if n in arrivals]
    assert all(arrivals[n] - times[n] == pytest.approx(0.03 + extra) for n in delivered)
    assert link.stats.lost == len(inside) - len(delivered)
    assert abs(link.stats.lost / len(inside) - loss) < 0.25  # 100 draws: loose, but a broken rate fails


def test_spikes_lose_nothing_raise_nothing_false_and_the_theft_is_still_caught():
    outcome, result = run_library("link-spikes")
    assert result["status"] == "SUCCESS", result["criteria"]
    assert outcome.messages["records_lost"] == 0 and outcome.messages["outbox_evicted"] == 0
    assert outcome.messages["lost_on_links"] > 0 and outcome.messages["cloud_duplicates"] > 0  # it did bite
    assert latency(result, "theft", "edge") <= 2.0  # the edge alerts at once, whatever the uplink
    # Bank-visible: a lost batch waits for the edge's 5 s ack timeout before it is sent again.
    assert latency(result, "theft", "bank") <= 15.0
    assert result["false_alarms"] == []


def test_a_keeper_who_edits_the_edges_book_is_caught_by_the_cloud_check():
    outcome, result = run_library("colluding-keeper")
    assert result["status"] == "SUCCESS", result["criteria"]
    assert result["detections"]["keeper"]["rule"] == "outbound-unauthorized-cloud"
    assert latency(result, "keeper") <= 2.0
    assert result["detections"]["keeper-lens"]["rule"] == "camera-tamper"
    assert not [a for a in result["alerts"] if a["rule"] == "outbound-unauthorized"]  # the edge was silenced
    assert result["false_alarms"] == []
    [keeper] = [label for label in outcome.labels if label.id == "keeper"]
    assert [act.split(": ")[1] for act in keeper.detail["acts"]] == [
        "covered the gate camera", "marked the lots released at the edge", "called the truck",
    ]


def test_a_theft_while_the_edge_is_down_is_caught_by_the_bay_scans_after_the_restart():
    outcome, result = run_library("theft-during-edge-crash")
    assert result["status"] == "SUCCESS", result["criteria"]
    [theft] = [label for label in outcome.labels if label.id == "theft"]
    assert theft.detail.get("gate_unwatched") and theft.primary_rules == ["inventory-mismatch"]
    restart = next(label for label in outcome.labels if label.id == "crash").detail["restart_at"]
    detected = theft.onset + latency(result, "theft", "edge")
    assert restart < detected <= restart + 2 * 60.0 + 10  # two LiDAR scans after the edge is back
    assert latency(result, "crash") <= 30.0
    assert outcome.messages["lost_while_edge_down"] > 0 and result["false_alarms"] == []
