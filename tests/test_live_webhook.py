"""Webhooks against real HTTP receivers on 127.0.0.1: per-bank scope, HMAC signatures, retries with
backoff, and a bounded queue, so a dead receiver never holds up alerting."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cangtwin.platform.live.config import parse_deployment
from cangtwin.platform.config_file import InputError
from cangtwin.platform.live.webhook import SIGNATURE_HEADER, Hook, WebhookSink, sign, verify
from test_api import ingest_cloud, make_alert
from test_live_serve import deployment, write

SECRET = b"a-secret-of-enough-length"


class Receiver:
    """An HTTP receiver that answers `fail_first` calls with 503, then 200, recording every call."""

    def __init__(self, fail_first: int = 0, status: int = 200) -> None:
        self.calls: list[tuple[float, dict, bytes]] = []
        self.fail_first, self.status = fail_first, status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.calls.append((time.monotonic(), dict(self.headers), body))
                failing = len(receiver.calls) <= receiver.fail_first
                self.send_response(503 if failing else receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cloud(tmp_path):
    """Bank A's goods at s1, bank B's at s2; an alert on each bank's lot and one on a device at s1."""
    loans = [("LN-A-001", "bank-a", "s1", ["L1"]), ("LN-B-001", "bank-b", "s2", ["L3"])]
    alerts = [make_alert("s1-A000001", "s1", ("lot:L1",)), make_alert("s2-A000001", "s2", ("lot:L3",)),
              make_alert("s1-A000002", "s1", ("device:cam-1",), rule="camera-tamper")]
    _, cloud = ingest_cloud(tmp_path, loans, alerts, ledger=False)
    return cloud


async def until(predicate, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_each_bank_hook_gets_only_its_alerts_signed(cloud) -> None:
    receivers = {name: Receiver() for name in ("a", "b", "ops")}
    hooks = [Hook(receivers["a"].url, SECRET, frozenset({"bank-a"}), token="tok-a"),
             Hook(receivers["b"].url, b"another-secret-for-bank-b", frozenset({"bank-b"})),
             Hook(receivers["ops"].url, b"the-operators-own-secret")]

    async def scenario() -> None:
        sink = WebhookSink(cloud, hooks)
        await sink.start()
        sink.publish([("alert.raised", case) for _, case in sorted(cloud.desk.cases.items())])
        await until(lambda: len(receivers["ops"].calls) == 3 and len(receivers["a"].calls) == 2
                    and len(receivers["b"].calls) == 1)
        await asyncio.sleep(0.2)  # nothing more arrives
        await sink.close()

    try:
        asyncio.run(scenario())
        got = {name: sorted(json.loads(body)["alert"]["id"] for _, _, body in r.calls) for name, r in receivers.items()}
        assert got == {"a": ["s1-A000001", "s1-A000002"], "b": ["s2-A000001"],
                       "ops": ["s1-A000001", "s1-A000002", "s2-A000001"]}
        _, headers, body = receivers["a"].calls[0]
        payload = json.loads(body)
        assert payload["event"] == "alert.raised" and payload["alert"]["banks"] is None  # a bank sees no bank list
        assert json.loads(receivers["ops"].calls[0][2])["alert"]["banks"] is not None
        assert headers["Authorization"] == "Bearer tok-a" and headers["X-Cangtwin-Event"] == "alert.raised"
        assert verify(SECRET, headers[SIGNATURE_HEADER], body)
        assert not verify(b"another-secret-for-bank-b", headers[SIGNATURE_HEADER], body)  # not bank B's key
        assert not verify(SECRET, headers[SIGNATURE_HEADER], body.replace(b"s1", b"s9"))  # edited in transit
        stale = sign(SECRET, int(time.time()) - 3600, body)
        assert not verify(SECRET, stale, body)  # a replay of an old call
    finally:
        for receiver in receivers.values():
            receiver.close()


def test_failed_deliveries_are_retried_with_growing_backoff(cloud) -> None:
    flaky, refusing = Receiver(fail_first=3), Receiver(status=401)
    hooks = [Hook(flaky.url, SECRET, retries=5, backoff_s=0.1, max_backoff_s=1.0),
             Hook(refusing.url, SECRET, retries=5, backoff_s=0.1)]

    async def scenario() -> WebhookSink:
        sink = WebhookSink(cloud, hooks)
        await sink.start()
        sink.publish([("alert.raised", cloud.desk.cases["s1-A000001"])])
        await until(lambda: sink.stats(flaky.url).delivered == 1 and sink.stats(refusing.url).failed == 1)
        await sink.close()
        return sink

    try:
        sink = asyncio.run(scenario())
        times = [at for at, _, _ in flaky.calls]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(times) == 4 and all(gap >= want for gap, want in zip(gaps, (0.1, 0.2, 0.4)))  # doubling
        assert len({headers["X-Cangtwin-Delivery"] for _, headers, _ in flaky.calls}) == 1  # same id: dedupable
        assert sink.stats(flaky.url).retried == 3
        assert len(refusing.calls) == 1  # a 401 is the receiver saying no: not retried
    finally:
        flaky.close()
        refusing.close()


def test_a_dead_receiver_never_blocks_alerting_and_its_queue_stays_bounded(cloud) -> None:
    dead = socket.socket()  # listens, never answers: every call hangs until its timeout
    dead.bind(("127.0.0.1", 0))
    dead.listen(64)
    alive = Receiver()
    url = f"http://127.0.0.1:{dead.getsockname()[1]}/hook"
    hooks = [Hook(url, SECRET, queue=5, retries=1, backoff_s=0.05, timeout_s=0.5), Hook(alive.url, SECRET)]
    case = cloud.desk.cases["s1-A000001"]

    async def scenario() -> tuple[WebhookSink, int, int]:
        sink = WebhookSink(cloud, hooks)
        await sink.start()
        ticks = 0

        async def heartbeat() -> None:  # the cloud's loop keeps running while the receiver hangs
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.ensure_future(heartbeat())
        for n in range(50):
            case.repeats = n  # 50 distinct events
            sink.publish([("alert.repeated", case)])
            await asyncio.sleep(0)
        waiting = len(sink.endpoints[0].waiting)
        await until(lambda: sink.stats(alive.url).delivered == 50)
        await asyncio.sleep(0.3)
        beat.cancel()
        await sink.close()
        return sink, ticks, waiting

    try:
        sink, ticks, waiting = asyncio.run(scenario())
        stats = sink.stats(url)
        assert waiting <= 5 and stats.queued == 50
        assert stats.dropped >= 50 - 5 - 1  # all but the queue and the one in flight
        assert stats.delivered == 0
        assert ticks > 10  # the loop was never blocked
        assert len(alive.calls) == 50  # the healthy hook got everything, in order
        assert [json.loads(body)["alert"]["repeats"] for _, _, body in alive.calls] == list(range(50))
    finally:
        dead.close()
        alive.close()


@pytest.mark.parametrize("hook,expected", [
    ({"url": "ftp://x", "secret": "s" * 16}, r"webhooks\[0\]\.url"),
    ({"url": "http://127.0.0.1:9/h", "secret": "short"}, r"webhooks\[0\]\.secret"),
    ({"url": "http://127.0.0.1:9/h", "secret": "s" * 16, "banks": []}, r"webhooks\[0\]\.banks"),
    ({"url": "http://127.0.0.1:9/h", "secret": "s" * 16, "retry": 3}, r"webhooks\[0\]\.retry"),
])
def test_bad_webhook_sections_are_one_located_line(tmp_path, hook, expected) -> None:
    data = deployment(tmp_path, 1883, webhooks=[hook])
    path = write(tmp_path, data)
    with pytest.raises(InputError) as refused:
        parse_deployment(path.read_text(encoding="utf-8"), str(path), tmp_path)
    assert re.search(r"serve\.yaml:\d+: " + expected, str(refused.value)), str(refused.value)
