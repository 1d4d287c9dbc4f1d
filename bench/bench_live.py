"""Live-mode benchmark (issue #6): the deployed platform over a private Mosquitto and PostgreSQL.

Run: python bench/bench_live.py [--soak-s 600] [--soak-rate N]   (about 2 min plus the soak; CPU-bound on 2 cores)

Everything runs on private instances on free 127.0.0.1 ports (tests/services.py): a Mosquitto with
the deployment's generated logins and ACLs (platform/live/broker.py), a PostgreSQL cloud store, and
`serve --cloud` and `serve --edge small` as two processes. Devices are paho clients in separate
processes, each with its own login and key, sealing climate readings with `wire.seal` at send time.

Prints `name: measured (baseline: X, target: Y)`:
- throughput: device messages/s end to end (device → broker → edge → broker → cloud → PostgreSQL),
  from the first publish until the cloud has committed every outbox entry the edge made from them
  (found by a marker frame sent after the last PUBACK; see `_wait_committed`). Baseline: the same
  publishers through the same broker to one bare paho QoS 1 subscriber (MQTT 5; and again with
  MQTT 3.1.1, the edge's device-side protocol). Target ≥ 8,000/s.
- p99 ingest → bank-visible alert at 4k msg/s: probe frames from an unprovisioned device name (a
  fresh name each, so each is a new `message-integrity` alert) ride along 4k/s of readings; latency
  is the alert's `visible_at` in the PostgreSQL alerts table minus the probe's send time. Target ≤ 100 ms.
- RSS of the edge and cloud processes over a soak at 4k msg/s: growth from the end of the warm-up
  (first quarter) to the end. Target: flat (≤ 5 %).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
import msgspec
import paho.mqtt.client as mqtt
import psycopg
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cangtwin.devices.thing_descriptions import TD_DIR
from cangtwin.platform.live import topics
from cangtwin.platform.live.broker import Login, logins, write_broker_files
from cangtwin.platform.wire import seal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from services import START_TIMEOUT_S, find_program, free_port, port_accepts, start_postgres  # noqa: E402

SITE = "small"
THROUGHPUT_TARGET = 8000.0
LATENCY_TARGET_MS = 100.0
LATENCY_RATE = 4000.0
RSS_GROWTH_TARGET = 0.05
PROBE_EVERY_S = 0.1
INFLIGHT = 1000
BENCH_USER, PROBE_DEVICE = "bench", "probe"


def _key(n: int) -> bytes:
    return bytes([n % 256]) * 32


# --- publishers (one process each) ------------------------------------------------------------

def _publisher(host: str, port: int, user: str, password: str, device: str, key: bytes, topic: str,
               count: int, rate: float | None, start_at: float, out: mp.Queue) -> None:
    """Publish `count` sealed readings at `rate`/s (None: as fast as QoS 1 acks allow); report times."""
    acked = threading.Event()
    done = [0]

    def on_publish(_c, _u, _mid, _reason, _p) -> None:
        done[0] += 1
        if done[0] == count:
            acked.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{device}", protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(INFLIGHT)
    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    payload = {"temperature_c": 21.5, "humidity_pct": 48.0}
    while time.time() < start_at:
        time.sleep(0.001)
    first = time.time()
    for seq in range(1, count + 1):
        if rate is not None:
            due = first + (seq - 1) / rate
            if (lag := due - time.time()) > 0:
                time.sleep(lag)
        client.publish(topic, seal(device, key, seq, time.time(), "climate", payload), qos=1)
    acked.wait(timeout=600)
    last = time.time()
    client.disconnect()
    client.loop_stop()
    out.put((device, first, last, done[0]))


def _run_publishers(broker, pubs: list[tuple[str, str, str, bytes, str]], count: int, rate: float | None) -> list:
    """Start one process per publisher (user, password, device, key, topic); wait for all."""
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start_at = time.time() + 2.0  # all connected before the first publish
    procs = [ctx.Process(target=_publisher, args=(broker.host, broker.port, user, pw, device, key, topic, count,
                                                   None if rate is None else rate / len(pubs), start_at, out))
             for user, pw, device, key, topic in pubs]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join()
    return results


# --- the broker, the database, serve ----------------------------------------------------------

class Broker:
    def __init__(self, workdir: Path, all_logins: list[Login]) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        conf = write_broker_files(workdir, self.port, all_logins)
        if os.geteuid() == 0:  # see services.start_mosquitto: stay root to read the private dir
            conf.write_text(conf.read_text() + "user root\n")
        self.log = open(workdir / "mosquitto.log", "wb")
        self.process = subprocess.Popen([find_program("mosquitto", "mosquitto", ("/usr/sbin",)), "-c", str(conf)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"error: mosquitto did not start; see {workdir / 'mosquitto.log'}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


def _serve(config: Path, *args: str, profile: Path | None = None) -> subprocess.Popen:
    """`serve` as its own process; under cProfile (stats written at its clean exit) when `profile` is set."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    proc = subprocess.Popen([sys.executable, *profiler, "-m", "cangtwin.platform.live", "serve", str(config), *args],
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    while not (line := proc.stderr.readline()).startswith("serving:"):
        if not line or line.startswith("error:"):
            proc.kill()
            raise SystemExit(f"error: serve {' '.join(args)} did not start: {line}{''.join(lines[-5:])}")
        lines.append(line)
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep the pipe drained
    return proc


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cloud:
    """Reads what the bank sees: the alerts and committed ranges in the PostgreSQL store."""

    _decoder = msgspec.msgpack.Decoder()

    def __init__(self, dsn: str) -> None:
        self.db = psycopg.connect(dsn, autocommit=True)

    def integrity_alerts(self) -> dict[str, tuple[float, float]]:
        """device name → (edge receive time, visible_at) of its message-integrity alert."""
        rows = self.db.execute("SELECT visible_at, record FROM alerts WHERE rule = 'message-integrity'").fetchall()
        found = {}
        for visible_at, record in rows:
            alert = self._decoder.decode(record)
            for target in alert["targets"]:
                found[target.removeprefix("device:")] = (alert["observed_at"], visible_at)
        return found

    def ranges(self) -> list[tuple[int, int]]:
        return self.db.execute("SELECT first_seq, last_seq FROM ingest_ranges WHERE site = %s ORDER BY first_seq",
                               (SITE,)).fetchall()


def _probe_client(broker, password: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe", protocol=mqtt.MQTTv5)
    client.username_pw_set(f"{SITE}.{PROBE_DEVICE}", password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _probe(client: mqtt.Client, name: str) -> float:
    """A frame naming a device the edge does not know: refused and alerted. Returns the send time."""
    sent = time.time()
    client.publish(topics.device(SITE, PROBE_DEVICE, "climate"), seal(name, b"\0" * 32, 1, sent, "climate", {}), qos=1)
    return sent


def _wait_committed(cloud: Cloud, probe: mqtt.Client, name: str, timeout_s: float = 600.0) -> float:
    """When the cloud had committed everything the edge produced before marker frame `name`.

    The marker is sent after every reading was PUBACKed, so the edge processes it after them and
    its alert enters the outbox in the same flush as their last telemetry or later. Once the alert
    is visible and the committed ranges are one run from 1 (no hole below the highest committed
    entry), every earlier outbox entry is in PostgreSQL.
    """
    _probe(probe, name)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if name in cloud.integrity_alerts():
            ranges = cloud.ranges()
            if len(ranges) == 1 and ranges[0][0] == 1:
                return time.time()
        time.sleep(0.01)
    raise SystemExit(f"error: the cloud did not commit marker {name} within {timeout_s:.0f} s")


def _p99(values: list[float]) -> float:
    return values[int(0.99 * (len(values) - 1))]


def _load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


# --- the three measurements -------------------------------------------------------------------

def bench_baseline(broker, pubs, count: int, protocol: int = mqtt.MQTTv5) -> float:
    """Bare paho QoS 1: the publishers → broker → one subscriber that PUBACKs at once."""
    total = count * len(pubs)
    got = [0, 0.0]
    finished = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub", protocol=protocol)
    sub.username_pw_set(BENCH_USER, BENCH_USER)

    def on_message(_c, _u, _m) -> None:
        got[0] += 1
        if got[0] == total:
            got[1] = time.time()
            finished.set()

    subscribed = threading.Event()
    sub.on_message = on_message
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_connect = lambda c, *_: c.subscribe(f"{topics.ROOT}/bench/#", qos=1)
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    subscribed.wait(10)
    bare = [(BENCH_USER, BENCH_USER, device, key, f"{topics.ROOT}/bench/{device}") for _, _, device, key, _ in pubs]
    results = _run_publishers(broker, bare, count, None)
    finished.wait(120)
    sub.disconnect()
    sub.loop_stop()
    if got[0] != total:
        raise SystemExit(f"error: the bare subscriber got {got[0]} of {total} messages")
    return total / (got[1] - min(r[1] for r in results))


def bench_throughput(broker, pubs, count: int, cloud: Cloud, probe, procs) -> tuple[float, int, dict[str, float], dict[str, float]]:
    """End-to-end msg/s, devices refused for clock skew, and each serve process's CPU use: in cores
    and in CPU µs per device message (the cost that does not depend on how loaded the machine is)."""
    before = {name: cpu_s(proc.pid) for name, proc in procs.items()}
    results = _run_publishers(broker, pubs, count, None)
    done = _wait_committed(cloud, probe, "marker-throughput")
    start = min(r[1] for r in results)
    used = {name: cpu_s(proc.pid) - before[name] for name, proc in procs.items()}
    cores = {name: seconds / (time.time() - start) for name, seconds in used.items()}
    per_message = {name: seconds / (count * len(pubs)) * 1e6 for name, seconds in used.items()}
    skewed = sum(1 for name in cloud.integrity_alerts() if not name.startswith(("marker", "probe-")))
    return count * len(pubs) / (done - start), skewed, cores, per_message


def bench_latency(broker, pubs, seconds: float, rate: float, cloud: Cloud, probe,
                  procs) -> tuple[tuple[list[float], ...], dict[str, float]]:
    """Send → visible, and its two legs: send → edge receive, edge receive → visible (ms, sorted);
    and each serve process's CPU µs per device message at this offered rate."""
    sent: dict[str, float] = {}
    before = {name: cpu_s(proc.pid) for name, proc in procs.items()}
    stop = threading.Event()

    def probing() -> None:
        time.sleep(2.5)  # the publishers start 2 s after they are launched
        n = 0
        while not stop.is_set():
            name = f"probe-{n:05d}"
            sent[name] = _probe(probe, name)
            n += 1
            time.sleep(PROBE_EVERY_S)

    thread = threading.Thread(target=probing)
    thread.start()
    count = int(rate * seconds / len(pubs))
    _run_publishers(broker, pubs, count, rate)
    stop.set()
    thread.join()
    _wait_committed(cloud, probe, "marker-latency")
    per_message = {name: (cpu_s(proc.pid) - before[name]) / (count * len(pubs)) * 1e6 for name, proc in procs.items()}
    visible = cloud.integrity_alerts()
    missing = [name for name in sent if name not in visible]
    if missing:
        raise SystemExit(f"error: {len(missing)} probe alerts never became visible, e.g. {missing[0]}")
    legs = [(visible[name][1] - at, visible[name][0] - at, visible[name][1] - visible[name][0])
            for name, at in sent.items()]
    return tuple(sorted(leg[i] * 1000 for leg in legs) for i in range(3)), per_message


def bench_soak(broker, pubs, seconds: float, rate: float, procs: dict[str, subprocess.Popen]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in procs}
    stop = threading.Event()

    def sampling() -> None:
        while not stop.is_set():
            for name, proc in procs.items():
                samples[name].append(rss_mb(proc.pid))
            stop.wait(max(1.0, seconds / 60))

    thread = threading.Thread(target=sampling)
    time.sleep(0.5)
    thread.start()
    _run_publishers(broker, pubs, int(rate * seconds / len(pubs)), rate)
    stop.set()
    thread.join()
    return samples


@click.command()
@click.option("--publishers", default=4, show_default=True, help="Publisher processes (one device each).")
@click.option("--throughput-n", default=60_000, show_default=True, help="Messages for the throughput run.")
@click.option("--latency-s", default=20.0, show_default=True, help="Seconds of --rate msg/s for the latency run.")
@click.option("--rate", default=LATENCY_RATE, show_default=True, help="Device msg/s offered in the latency run and the soak.")
@click.option("--soak-s", default=600.0, show_default=True, help="Seconds of --soak-rate msg/s for the memory soak.")
@click.option("--soak-rate", type=float, help="Device msg/s offered in the soak (default: --rate); above what the "
              "machine sustains, the broker's queue for the edge fills and the soak measures overload instead.")
@click.option("--profile", type=click.Path(file_okay=False, path_type=Path),
              help="Run edge and cloud under cProfile; write edge.prof and cloud.prof here and print their top functions.")
def main(publishers: int, throughput_n: int, latency_s: float, rate: float, soak_s: float, soak_rate: float | None,
         profile: Path | None) -> None:
    soak_rate = soak_rate or rate
    print(f"bench_live: {publishers} publishers, {throughput_n} msgs, latency {latency_s:.0f} s, "
          f"soak {soak_s:.0f} s; {_load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-live-", dir=".") as tmp:
        work = Path(tmp).resolve()
        devices = [{"id": f"climate-{n}", "type": "climate-sensor", "key_hex": _key(n).hex(),
                    "password": f"pw-{n}", "attrs": {}} for n in range(publishers)]
        site_logins = {SITE: ("edge-pw", {d["id"]: d["password"] for d in devices} | {PROBE_DEVICE: "probe-pw"})}
        all_logins = logins(site_logins, "cloud-pw") + [
            Login(BENCH_USER, BENCH_USER, read=(f"{topics.ROOT}/bench/#",), write=(f"{topics.ROOT}/bench/#",))]
        broker = Broker(work / "broker", all_logins)
        pg = start_postgres(work / "pg")
        procs: dict[str, subprocess.Popen] = {}
        try:
            dsn = pg.create_database("cangtwin")
            (work / "state").mkdir()
            deployment = {
                "broker": {"host": broker.host, "port": broker.port},
                "thing_descriptions": str(TD_DIR),
                "cloud": {"database": dsn, "login": {"username": "cloud", "password": "cloud-pw"}},
                "sites": [{"name": SITE, "outbox": {"path": "state/outbox.db"},
                           "login": {"username": f"edge-{SITE}", "password": "edge-pw"}, "devices": devices}],
            }
            config = work / "serve.yaml"
            config.write_text(yaml.safe_dump(deployment, sort_keys=False), encoding="utf-8")
            pubs = [(f"{SITE}.{d['id']}", d["password"], d["id"], _key(n), topics.device(SITE, d["id"], "climate"))
                    for n, d in enumerate(devices)]

            baseline = bench_baseline(broker, pubs, throughput_n // publishers)
            print(f"  bare paho QoS 1 hop: {baseline:,.0f} msg/s; {_load()}", flush=True)
            # The edge's device side speaks MQTT 3.1.1 (docs/live.md), which paho decodes more cheaply.
            baseline311 = bench_baseline(broker, pubs, throughput_n // publishers, mqtt.MQTTv311)
            print(f"  bare paho QoS 1 hop, MQTT 3.1.1 subscriber: {baseline311:,.0f} msg/s; {_load()}", flush=True)

            if profile:
                profile.mkdir(parents=True, exist_ok=True)
            procs["cloud"] = _serve(config, "--cloud", profile=profile and profile.resolve() / "cloud.prof")
            procs["edge"] = _serve(config, "--edge", SITE, profile=profile and profile.resolve() / "edge.prof")
            cloud = Cloud(dsn)
            probe = _probe_client(broker, "probe-pw")
            _wait_committed(cloud, probe, "marker-warmup", timeout_s=60)

            end_to_end, skewed, cores, per_message = bench_throughput(broker, pubs, throughput_n // publishers, cloud,
                                                                      probe, procs)
            note = f"; {skewed} devices had frames refused for clock skew (backlog > 5 s)" if skewed else ""
            print(f"throughput end to end: {end_to_end:,.0f} msg/s (baseline: {baseline:,.0f} msg/s bare paho QoS 1 hop, "
                  f"{baseline311:,.0f} msg/s with an MQTT 3.1.1 subscriber, "
                  f"target: >= {THROUGHPUT_TARGET:,.0f} msg/s); {_load()}{note}", flush=True)
            print("  CPU during it (first publish to last commit, cores): "
                  + ", ".join(f"{name} {used:.2f}" for name, used in cores.items())
                  + "; CPU per device message: " + ", ".join(f"{name} {us:.0f} µs" for name, us in per_message.items()),
                  flush=True)

            (latencies, to_edge, edge_to_visible), per_message = bench_latency(broker, pubs, latency_s, rate, cloud,
                                                                               probe, procs)
            p50, p99 = statistics.median(latencies), _p99(latencies)
            print(f"p99 ingest -> bank-visible alert at {rate:,.0f} msg/s: {p99:.1f} ms "
                  f"(baseline: p50 {p50:.1f} ms, max {latencies[-1]:.1f} ms over {len(latencies)} probes, "
                  f"target: <= {LATENCY_TARGET_MS:.0f} ms); {_load()}", flush=True)
            print(f"  legs (p50 / p99): device send -> edge receive {statistics.median(to_edge):.1f} / {_p99(to_edge):.1f} ms, "
                  f"edge receive -> bank-visible {statistics.median(edge_to_visible):.1f} / {_p99(edge_to_visible):.1f} ms"
                  "; CPU per device message: " + ", ".join(f"{name} {us:.0f} µs" for name, us in per_message.items()),
                  flush=True)

            samples = bench_soak(broker, pubs, soak_s, soak_rate, procs)
            for name, series in samples.items():
                warm = series[max(0, len(series) // 4 - 1)]
                growth = (series[-1] - warm) / warm
                print(f"{name} RSS growth over a {soak_s:.0f} s soak at {soak_rate:,.0f} msg/s: {growth:+.1%} "
                      f"({warm:.0f} -> {series[-1]:.0f} MB, peak {max(series):.0f} MB) "
                      f"(baseline: {warm:.0f} MB after warm-up, target: <= {RSS_GROWTH_TARGET:+.0%}); {_load()}",
                      flush=True)
            probe.loop_stop()
            cloud.db.close()
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(timeout=15)
            broker.stop()
            pg.stop()
    if profile:
        for name in ("edge", "cloud"):
            print(f"--- {name}: top 25 by cumulative time")
            pstats.Stats(str(profile / f"{name}.prof")).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
