"""Twin building blocks: named random streams and virtual-time links."""

from __future__ import annotations

import numpy as np
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.twin.network import Link, LinkProfile
from cangtwin.twin.rng import RandomStreams


def test_streams_are_stable_per_name_and_independent_of_creation_order():
    a, b = RandomStreams(42), RandomStreams(42)
    a_first = a.get("device.scale").random(5)
    b.get("link.uplink").random(100)  # another component drawing first changes nothing
    assert np.array_equal(a_first, b.get("device.scale").random(5))
    assert not np.array_equal(a_first, RandomStreams(43).get("device.scale").random(5))
    assert not np.array_equal(a_first, RandomStreams(42).get("device.scale2").random(5))


def _link(profile: LinkProfile, fifo=True, seed=1):
    env = simpy.Environment()
    return env, Link(env, "l", np.random.default_rng(seed), profile, fifo=fifo)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=60), st.floats(0.0, 0.05))
def test_fifo_link_delivers_bytes_unchanged_and_in_order(messages, jitter):
    env, link = _link(LinkProfile(base_latency_s=0.01, jitter_s=jitter))
    got = []
    for i, m in enumerate(messages):
        env.timeout(i * 0.001).callbacks.append(lambda _e, m=m: link.send(m, got.append))
    env.run()
    assert got == messages
    assert link.stats.delivered == len(messages) and link.stats.bytes_delivered == sum(map(len, messages))


def test_outage_windows_drop_and_loss_is_at_the_configured_rate():
    env, link = _link(LinkProfile(base_latency_s=0.0, jitter_s=0.0, outages=((10.0, 20.0),)))
    got = []
    for t in range(30):
        env.timeout(t).callbacks.append(lambda _e: link.send(b"x", got.append))
    env.run()
    assert len(got) == 20 and link.stats.dropped_in_outage == 10
    env, lossy = _link(LinkProfile(loss=0.2))
    for _ in range(5000):
        lossy.send(b"x", lambda _b: None)
    env.run()
    assert 0.17 < lossy.stats.lost / 5000 < 0.23
