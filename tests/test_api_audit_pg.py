"""The API's audit log on a private PostgreSQL: written through the API, read back through it,
and refused by the database itself when anyone tries to rewrite it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cangtwin.platform.api.access import TokenRegistry
from cangtwin.platform.api.app import create_app
from cangtwin.platform.api.audit import AuditLog
from test_api import TOKENS, auth, ingest_cloud, make_alert


def test_audit_log_on_postgres_is_append_only(postgres_dsn: str, tmp_path: Path) -> None:
    audit = AuditLog.open(postgres_dsn)
    assert audit.engine.dialect.name == "postgresql"
    _, cloud = ingest_cloud(tmp_path, [("LN-1", "bank-a", "s1", ["L1"])], [make_alert("s1-A000001", "s1", ("lot:L1",))],
                            ledger=False)
    api = TestClient(create_app(cloud, TokenRegistry.from_mapping(TOKENS), audit))
    ack = api.post("/v1/alerts/s1-A000001/acknowledge", json={"note": "见到了"},
                   headers={**auth("tok-a"), "X-Request-ID": "pg-1"})
    assert ack.status_code == 200
    denied = api.post("/v1/alerts/s1-A000001/resolve", json={"note": "not mine"}, headers=auth("tok-b"))
    assert denied.status_code == 404
    page = api.get("/v1/audit", headers=auth("tok-ops")).json()
    assert [(e["actor"], e["action"], e["status"], e["note"]) for e in page["items"]] == [
        ("a-risk", "alert.acknowledge", 200, "见到了"), ("b-risk", "alert.resolve", 404, "not mine")]
    assert page["items"][0]["request_id"] == "pg-1"
    written = datetime.fromisoformat(page["items"][0]["at"])
    assert written.tzinfo is not None and abs((datetime.now(UTC) - written).total_seconds()) < 60

    for statement in ("UPDATE api_audit SET note = 'rewritten'", "DELETE FROM api_audit", "TRUNCATE api_audit"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with audit.engine.begin() as conn:
                conn.execute(sa.text(statement))

    # A second service on the same database (a restart, or another API worker) sees the same log
    # and keeps the guard; filters run in SQL.
    again = AuditLog.open(postgres_dsn)
    total, entries = again.entries(actor="a-risk")
    assert total == 1 and entries[0].note == "见到了" and entries[0].at == written
    assert again.entries(action="alert.resolve", target="s1-A000001")[0] == 1
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with again.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM api_audit WHERE status = 404"))
    audit.close()
    again.close()
