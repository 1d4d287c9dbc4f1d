"""Webhooks: the cloud pushes each alert event to receivers the deployment names, scoped per bank.

A hook for a bank gets only the alerts the bank API would show that bank (`api.scope.BankScope`),
shaped as the API shows them; a hook with no banks gets every alert (the operator's). Each event
is queued when the cloud has committed it (bank-visible) and delivered by the hook's own task, so
alerting never waits for a receiver:

- the queue is bounded; when it is full the oldest waiting delivery is dropped and counted;
- a delivery that fails (no connection, a timeout, 408, 429 or 5xx) is retried with exponential
  backoff up to `retries` times, then given up and counted; any other 4xx is the receiver
  refusing it, and is not retried;
- every request is signed: `X-Cangtwin-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
  "<t>.<body>" under the hook's secret>`, so a receiver can authenticate it and refuse replays
  (Stripe's scheme); `X-Cangtwin-Delivery` is stable across retries, for receivers to dedupe.

Hand-written on httpx because the delivery policy (bounded queue dropping the oldest, backoff,
signature) is the whole point and no small well-kept library offers exactly it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import httpx

from cangtwin.platform.api import models
from cangtwin.platform.api.scope import BankScope
from cangtwin.platform.api.views import alert_view
from cangtwin.platform.cloud.alert_desk import AlertCase
from cangtwin.platform.cloud.service import CloudService

log = logging.getLogger("cangtwin.webhook")
SIGNATURE_HEADER = "X-Cangtwin-Signature"
RETRYABLE = {408, 429}


@dataclass(frozen=True)
class Hook:
    url: str
    secret: bytes
    banks: frozenset[str] | None = None  # None: every alert
    token: str | None = None  # also sent as `Authorization: Bearer`, for receivers that want one
    queue: int = 1000
    retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    timeout_s: float = 5.0


@dataclass
class HookStats:
    queued: int = 0
    delivered: int = 0
    retried: int = 0
    dropped: int = 0  # pushed out of a full queue
    failed: int = 0  # given up after the retries, or refused by the receiver


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, header: str, body: bytes, now: float | None = None, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: check the signature, and that it is recent (no replays of old calls)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")


@dataclass
class _Delivery:
    id: str
    event: str
    body: bytes
    attempts: int = 0


@dataclass
class _Endpoint:
    hook: Hook
    waiting: deque = field(default_factory=deque)
    stats: HookStats = field(default_factory=HookStats)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


class WebhookSink:
    """Alert events → each hook's bounded queue → its receiver. `publish` never blocks."""

    def __init__(self, cloud: CloudService, hooks: list[Hook]) -> None:
        self.cloud = cloud
        self._scope = BankScope(cloud.book, cloud.engine.site)
        self.endpoints = [_Endpoint(hook) for hook in hooks]
        self._client: httpx.AsyncClient | None = None

    def stats(self, url: str) -> HookStats:
        return next(e.stats for e in self.endpoints if e.hook.url == url)

    async def start(self) -> None:
        self._client = httpx.AsyncClient()
        for endpoint in self.endpoints:
            endpoint.task = asyncio.ensure_future(self._deliver_forever(endpoint))

    async def close(self) -> None:
        for endpoint in self.endpoints:
            if endpoint.task is not None:
                endpoint.task.cancel()
        await asyncio.gather(*(e.task for e in self.endpoints if e.task is not None), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def publish(self, events: list[tuple[str, AlertCase]]) -> None:
        """Queue committed alert events (`alert.raised`, `alert.acknowledged`, …) for the hooks
        whose banks they concern."""
        if self._scope.book is not self.cloud.book:  # the cloud reloaded its book
            self._scope = BankScope(self.cloud.book, self.cloud.engine.site)
        for event, case in events:
            banks = self._scope.alert_banks(case.alert)
            for endpoint in self.endpoints:
                wanted = endpoint.hook.banks
                if wanted is not None and not wanted & banks:
                    continue
                view = models.AlertView(**alert_view(case, banks if wanted is None else None))
                delivery_id = f"{case.alert.id}:{event}:{len(case.history)}:{case.repeats}"
                body = json.dumps({"event": event, "delivery": delivery_id, "platform_time": self.cloud.clock.now(),
                                   "alert": view.model_dump(mode="json")}, ensure_ascii=False).encode("utf-8")
                self._enqueue(endpoint, _Delivery(delivery_id, event, body))

    @staticmethod
    def _enqueue(endpoint: _Endpoint, delivery: _Delivery) -> None:
        if len(endpoint.waiting) >= endpoint.hook.queue:
            dropped = endpoint.waiting.popleft()
            endpoint.stats.dropped += 1
            log.warning("webhook %s: queue full, dropped %s", endpoint.hook.url, dropped.id)
        endpoint.waiting.append(delivery)
        endpoint.stats.queued += 1
        endpoint.wake.set()

    async def _deliver_forever(self, endpoint: _Endpoint) -> None:
        while True:
            if not endpoint.waiting:
                endpoint.wake.clear()
                await endpoint.wake.wait()
                continue
            delivery = endpoint.waiting.popleft()
            await self._deliver(endpoint, delivery)

    async def _deliver(self, endpoint: _Endpoint, delivery: _Delivery) -> None:
        hook = endpoint.hook
        delay = hook.backoff_s
        while True:
            delivery.attempts += 1
            outcome = await self._post(hook, delivery)
            if outcome is None:
                endpoint.stats.delivered += 1
                return
            retry, reason = outcome
            if not retry or delivery.attempts > hook.retries:
                endpoint.stats.failed += 1
                log.warning("webhook %s: gave up on %s after %d attempt(s): %s", hook.url, delivery.id,
                            delivery.attempts, reason)
                return
            endpoint.stats.retried += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, hook.max_backoff_s)

    async def _post(self, hook: Hook, delivery: _Delivery) -> tuple[bool, str] | None:
        """None when delivered; else (worth retrying, why not)."""
        headers = {"Content-Type": "application/json", "X-Cangtwin-Event": delivery.event,
                   "X-Cangtwin-Delivery": delivery.id,
                   SIGNATURE_HEADER: sign(hook.secret, int(time.time()), delivery.body)}
        if hook.token:
            headers["Authorization"] = f"Bearer {hook.token}"
        try:
            response = await self._client.post(hook.url, content=delivery.body, headers=headers,
                                               timeout=hook.timeout_s)
        except httpx.HTTPError as exc:
            return True, f"{exc.__class__.__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        retry = response.status_code >= 500 or response.status_code in RETRYABLE
        return retry, f"HTTP {response.status_code}"
