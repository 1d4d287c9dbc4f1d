"""Scale-out: warehouses spread over cloud workers by consistent hashing, taken over when one dies."""

from __future__ import annotations

import os
import signal
import time

import msgspec
from hypothesis import given, settings, strategies as st

from cangtwin.platform.live.hashring import HashRing
from cangtwin.platform.records import Alert
from cangtwin.platform.wire import seal
from cangtwin.scenarios.live.devices import DeviceClient

from test_live_serve import alerts_in, deployment, launch_serve, serving, start_serve, wait_for, write
from test_live_transport import LOOP, RFID

SITES = [f"wh{n:03d}" for n in range(300)]
worker_names = st.sets(st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12), min_size=1, max_size=8)


@settings(max_examples=40, deadline=None)
@given(worker_names, st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12))
def test_adding_a_worker_moves_only_its_share(workers, newcomer):
    if newcomer in workers:
        return
    before, after = HashRing(workers), HashRing(workers | {newcomer})
    moved = [s for s in SITES if before.owner(s) != after.owner(s)]
    assert all(after.owner(s) == newcomer for s in moved)  # sites only move to the newcomer
    share = 1 / (len(workers) + 1)
    assert len(moved) <= 2.5 * share * len(SITES)  # about 1/N of them, never a reshuffle


@settings(max_examples=40, deadline=None)
@given(worker_names.filter(lambda w: len(w) >= 2), st.data())
def test_removing_a_worker_moves_only_its_sites_and_each_site_has_one_owner(workers, data):
    gone = data.draw(st.sampled_from(sorted(workers)))
    before, after = HashRing(workers), HashRing(workers - {gone})
    for site in SITES:
        if before.owner(site) != gone:
            assert after.owner(site) == before.owner(site)
        assert after.owner(site) in workers - {gone}
    owned = [after.sites_of(worker, SITES) for worker in sorted(workers - {gone})]
    assert sum(len(o) for o in owned) == len(SITES) and set().union(*owned) == set(SITES)  # a partition


def multi_site(tmp_path, port: int, database: str, sites: list[str]) -> dict:
    data = deployment(tmp_path, port, database=database)
    template = data["sites"][0]
    data["sites"], data["book"]["lots"], data["book"]["pledges"] = [], [], []
    for site in sites:
        data["sites"].append({**template, "name": site, "outbox": {"path": f"state/outbox-{site}.db"}})
        lots = [{"id": f"{site}-B01-0{n}", "tag": f"EPC-{site}-0{n}", "site": site, "commodity": "steel-coil",
                 "mass_kg": 20000.0, "bay": "B01"} for n in (1, 2)]
        data["book"]["lots"] += lots
        data["book"]["pledges"].append({"loan": "LN-1", "receipt": f"WR-{site}", "lots": [lot["id"] for lot in lots]})
    data["cloud"]["scale_out"] = True
    return data


def site_theft(site: str, lot: int, seq: int) -> list[tuple[str, bytes]]:
    """theft() for a lot of another site: the same frames with that site's tag."""
    now = time.time()
    return [
        ("rfid-g1", seal("rfid-g1", RFID, seq, now, "tag_read", {"tag": f"EPC-{site}-0{lot}", "rssi_dbm": -55.0, "antenna": "1"})),
        ("loop-g1", seal("loop-g1", LOOP, seq, now + 0.01, "passage", {"direction": "out", "occupancy_s": 8.0})),
    ]


def test_two_workers_and_a_takeover(mosquitto, postgres_dsn, tmp_path):
    sites = ["north", "south", "east", "west"]
    ring = HashRing({"w1", "w2"})
    doomed = sorted(ring.sites_of("w2", sites))
    assert doomed and ring.sites_of("w1", sites), "both workers must own a site for this test to mean anything"
    config = write(tmp_path, multi_site(tmp_path, mosquitto.port, postgres_dsn, sites))
    w1 = launch_serve(config, "--cloud", "--worker", "w1")
    edges = launch_serve(config, *[arg for site in sites for arg in ("--edge", site)])
    serving(w1)
    w2 = start_serve(config, "--cloud", "--worker", "w2")  # joins later: w1 hands its share over
    serving(edges)
    devices = {(s, d): DeviceClient(mosquitto.host, mosquitto.port, s, d) for s in sites for d in ("rfid-g1", "loop-g1")}
    try:
        site = doomed[0]
        for device, frame in site_theft(site, 1, 1):
            devices[site, device].send(frame)
        wait_for(lambda: [r for r in alerts_in(postgres_dsn) if r["site"] == site], what="w2's alert")
        os.kill(w2.pid, signal.SIGKILL)
        assert w2.wait(timeout=10) == -signal.SIGKILL
        for device, frame in site_theft(site, 2, 2):
            devices[site, device].send(frame)
        rows = wait_for(lambda: len(found := [r for r in alerts_in(postgres_dsn) if r["site"] == site]) == 2 and found,
                        what="the alert after the takeover")
    finally:
        for device in devices.values():
            device.close()
        for process in (edges, w1, w2):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=15)
    targets = sorted(msgspec.msgpack.decode(r["record"], type=Alert).targets for r in rows)
    assert targets == [(f"lot:{site}-B01-01",), (f"lot:{site}-B01-02",)]  # before and after the takeover
    w1.wait(timeout=15)
    log = "".join(w1.lines)
    for lost in doomed:  # w1 held it alone, gave it to w2 when w2 came, and took it back when w2 died
        first = log.index(f"worker w1 owns {lost}")
        released = log.index(f"worker w1 released {lost}", first)
        assert log.index(f"worker w1 owns {lost}", released) > released
    assert all(f"worker w1 released {kept}" not in log for kept in sorted(set(sites) - set(doomed)))
