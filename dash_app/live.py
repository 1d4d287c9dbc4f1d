"""Following a running `cangtwin serve` through its bank API, with one principal's token.

The dashboard holds no rights of its own here: every read goes to the API with the token the
viewer gave (or `cangtwin dash --live URL --token ...`), so a bank's token shows only what the
API lets that bank see (per-bank scope, 404 on other banks' resources). Alerts are fetched
whole while they fit in one page (so their status stays fresh), and beyond that only from the
last offset on (the API lists them oldest first by bank-visible time); collateral and receipts
are read whole on each poll. Evidence packages are fetched as the API
serves them and checked with the ledger's own `verify_package`, against the parties' keys
given out of band (`--keys parties.json`) when there are any.

Every failure becomes a `LiveError` with a one-line message for the page: the address that did
not answer, a refused token, or the API's own error message (which names the request).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec

from cangtwin.platform.cloud.evidence import REQUIRED_SIGNATURES
from cangtwin.platform.ledger.package import VerificationReport, verify_package

TIMEOUT_S = 5.0
PAGE = 1000  # the API's largest page


class LiveError(Exception):
    """What the page says when the API cannot be followed (one line)."""


class EvidencePending(LiveError):
    """The alert's evidence is not under a signed tree head yet (the API's 409 evidence-pending)."""


def load_keys(path: str | Path) -> dict[str, bytes]:
    """The parties' public keys a viewer trusts (`parties.json`: party -> base64 raw Ed25519 key)."""
    path = Path(path)
    try:
        return msgspec.json.decode(path.read_bytes(), type=dict[str, bytes])
    except FileNotFoundError:
        raise LiveError(f"{path}: file not found (the parties' keys)") from None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise LiveError(f"{path}: not the parties' keys (party: base64 key): {exc}") from None


def api_base(url: str) -> str:
    """`http://host:port` or `.../v1` as typed, as the base of `/v1/...` paths."""
    url = (url or "").strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    if not url.startswith(("http://", "https://")):
        raise LiveError(f"{url or '(empty)'}: give the API's address, e.g. http://127.0.0.1:8080")
    return url


@dataclass
class Snapshot:
    """What one poll found: the service, the caller, collateral, receipts and alerts so far."""

    health: dict
    me: dict
    loans: list[dict]
    receipts: list[dict]
    alerts: list[dict]
    new_alerts: list[str] = field(default_factory=list)  # ids first seen in this poll


class LiveClient:
    """One connection to a bank API (one base URL and one token), shared by the page's polls."""

    def __init__(self, url: str, token: str, keys: dict[str, bytes] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not token:
            raise LiveError("a token is needed: the API answers only bearers (cangtwin api-token makes one)")
        self.base = api_base(url)
        self.keys = keys
        self._http = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {token.strip()}"},
                                  timeout=TIMEOUT_S, transport=transport)
        self._lock = threading.Lock()  # polls from several callbacks share the alert list
        self._alerts: list[dict] = []
        self._ids: set[str] = set()
        self.me = self._json("/v1/me")

    def close(self) -> None:
        self._http.close()

    # --- requests --------------------------------------------------------------------------
    def _get(self, path: str, **params) -> httpx.Response:
        try:
            response = self._http.get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise LiveError(f"{self.base}: no answer from the bank API ({type(exc).__name__}: {exc})") from None
        if response.status_code == 200:
            return response
        try:
            error = response.json()["error"]
            message, code = error["message"], error["code"]
        except (ValueError, KeyError, TypeError):
            message, code = f"GET {path}: HTTP {response.status_code}", ""
        if code == "evidence-pending":
            raise EvidencePending(message)
        if response.status_code == 401:
            raise LiveError(f"{self.base}: the API refused the token: {message}")
        raise LiveError(message)

    def _json(self, path: str, **params):
        try:
            return self._get(path, **params).json()
        except ValueError:
            raise LiveError(f"{self.base}{path}: the answer is not JSON (is this a cangtwin bank API?)") from None

    def _all(self, path: str, start: int = 0) -> tuple[list[dict], int]:
        """(the items from `start` on, the total the API counts)."""
        items, offset = [], start
        while True:
            page = self._json(path, offset=offset, limit=PAGE)
            items += page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return items, page["total"]

    # --- what the page shows ---------------------------------------------------------------
    def poll(self) -> Snapshot:
        health = self._json("/v1/health")
        receipts, _ = self._all("/v1/pledges")
        banks = [self.me["bank"]] if self.me["role"] == "bank" else sorted({r["bank"] for r in receipts})
        loans = [loan for bank in banks for loan in self._json(f"/v1/banks/{bank}/collateral")["loans"]]
        with self._lock:
            start = len(self._alerts) if len(self._alerts) > PAGE else 0
            fresh, total = self._all("/v1/alerts", start)
            if start and start + len(fresh) != total:  # the list changed before the offset: read it whole
                fresh, total = self._all("/v1/alerts")
            new = [a["id"] for a in fresh if a["id"] not in self._ids]
            self._alerts = fresh if start == 0 or len(fresh) == total else self._alerts + fresh
            self._ids = {a["id"] for a in self._alerts}
            alerts = list(self._alerts)
        return Snapshot(health, self.me, loans, receipts, alerts, new)

    def alert(self, alert_id: str) -> dict:
        return self._json(f"/v1/alerts/{alert_id}")

    def evidence(self, alert_id: str) -> bytes:
        return self._get(f"/v1/alerts/{alert_id}/evidence").content

    def verify(self, alert_id: str) -> VerificationReport:
        """The ledger's verdict on the alert's package as the API serves it (pinned keys if given)."""
        return verify_package(self.evidence(alert_id), REQUIRED_SIGNATURES, trusted_keys=self.keys)


class Connections:
    """Live connections by an unguessable id the browser keeps; the token stays on the server."""

    def __init__(self) -> None:
        self._by_id: dict[str, LiveClient] = {}
        self._lock = threading.Lock()

    def add(self, key: str, client: LiveClient) -> None:
        with self._lock:
            old = self._by_id.pop(key, None)
            self._by_id[key] = client
        if old is not None:
            old.close()

    def get(self, key: str | None) -> LiveClient | None:
        with self._lock:
            return self._by_id.get(key) if key else None
