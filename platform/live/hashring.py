"""Consistent hashing of warehouses onto cloud workers.

Each warehouse's rule state (open alerts, dedupe ranges, fusion of its events) must live in one
worker, so messages are routed by topic filter per warehouse, not round-robin as MQTT shared
subscriptions would. Each worker holds `replicas` points on a ring of SHA-256 values; a site
belongs to the first worker point at or after its own hash. Adding or removing one worker of N
moves only about 1/N of the sites. Hand-written (about twenty lines) rather than a dependency.
"""

from __future__ import annotations

import bisect
import hashlib


def _point(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


class HashRing:
    def __init__(self, workers: list[str] | set[str], replicas: int = 128) -> None:
        self.workers = frozenset(workers)
        ring = sorted((_point(f"{worker}#{i}"), worker) for worker in self.workers for i in range(replicas))
        self._points = [p for p, _ in ring]
        self._owners = [w for _, w in ring]

    def owner(self, site: str) -> str:
        if not self._points:
            raise LookupError("no live worker owns any site")
        i = bisect.bisect_left(self._points, _point(site)) % len(self._points)
        return self._owners[i]

    def sites_of(self, worker: str, sites: list[str] | set[str]) -> set[str]:
        return {site for site in sites if self.workers and self.owner(site) == worker}
