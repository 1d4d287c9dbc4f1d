"""The API's audit log: who did what, when, to which resource, under which request id.

Append-only by construction: the class offers only `append` and reads, and the database itself
refuses UPDATE and DELETE on the table (a trigger on SQLite and on PostgreSQL), so a bug or a
stray script cannot rewrite history through this code path. SQLite is the embedded default;
any SQLAlchemy URL works, PostgreSQL included.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    DDL,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.pool import StaticPool

metadata = MetaData()

audit_table = Table(
    "api_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("platform_time", Float, nullable=False),  # the cloud clock (virtual or wall) at the write
    Column("request_id", String(64), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    Column("bank", String(100)),
    Column("action", String(64), nullable=False),
    Column("target", String(512), nullable=False),
    Column("note", Text, nullable=False),
    Column("status", Integer, nullable=False),  # the HTTP status the request got
    Column("detail", Text, nullable=False),
)

_SQLITE_GUARDS = [
    f"CREATE TRIGGER IF NOT EXISTS api_audit_no_{verb.lower()} BEFORE {verb} ON api_audit "
    "BEGIN SELECT RAISE(ABORT, 'api_audit is append-only'); END"
    for verb in ("UPDATE", "DELETE")
]
_POSTGRES_GUARDS = [
    "CREATE OR REPLACE FUNCTION api_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'api_audit is append-only'; END $$",
    "DROP TRIGGER IF EXISTS api_audit_append_only ON api_audit",
    "CREATE TRIGGER api_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON api_audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION api_audit_append_only()",
]
for _sql in _SQLITE_GUARDS:
    event.listen(audit_table, "after_create", DDL(_sql).execute_if(dialect="sqlite"))
for _sql in _POSTGRES_GUARDS:
    event.listen(audit_table, "after_create", DDL(_sql).execute_if(dialect="postgresql"))


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    platform_time: float
    request_id: str
    actor: str
    role: str
    bank: str | None
    action: str
    target: str
    note: str
    status: int
    detail: str


def _as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is written in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    @classmethod
    def open(cls, url: str = "sqlite:///api-audit.sqlite") -> AuditLog:
        """Open (creating the table if needed) the audit log at a SQLAlchemy URL.

        A plain `postgresql://` URL is taken to mean psycopg 3, the driver this project ships.
        """
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        if url in ("sqlite://", "sqlite:///:memory:"):  # one shared in-memory database, any thread
            return cls(create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False}))
        return cls(create_engine(url))

    @contextmanager
    def appending(self, *, at: datetime, platform_time: float, request_id: str, actor: str,
                  role: str, bank: str | None, action: str, target: str, note: str, status: int,
                  detail: str = "") -> Iterator[None]:
        """Write an entry, then run the block, then commit: the entry is in the database
        (flushed) before the change it records is made, and is rolled back if the block fails."""
        with self.engine.begin() as conn:
            self._insert(conn, at, platform_time, request_id, actor, role, bank, action, target,
                         note, status, detail)
            yield

    def append(self, *, at: datetime, platform_time: float, request_id: str, actor: str,
               role: str, bank: str | None, action: str, target: str, note: str, status: int,
               detail: str = "") -> None:
        with self.engine.begin() as conn:
            self._insert(conn, at, platform_time, request_id, actor, role, bank, action, target,
                         note, status, detail)

    @staticmethod
    def _insert(conn: Connection, at: datetime, platform_time: float, request_id: str, actor: str,
                role: str, bank: str | None, action: str, target: str, note: str, status: int,
                detail: str) -> None:
        conn.execute(insert(audit_table).values(
            at=at, platform_time=platform_time, request_id=request_id, actor=actor, role=role,
            bank=bank, action=action, target=target, note=note, status=status, detail=detail))

    def entries(self, *, offset: int = 0, limit: int = 100, actor: str | None = None,
                action: str | None = None, target: str | None = None) -> tuple[int, list[AuditEntry]]:
        """(matching count, one page of entries in write order)."""
        where = []
        if actor is not None:
            where.append(audit_table.c.actor == actor)
        if action is not None:
            where.append(audit_table.c.action == action)
        if target is not None:
            where.append(audit_table.c.target == target)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(audit_table).where(*where)).scalar_one()
            rows = conn.execute(select(audit_table).where(*where).order_by(audit_table.c.id)
                                .offset(offset).limit(limit)).mappings().all()
        return total, [AuditEntry(**{**row, "at": _as_utc(row["at"])}) for row in rows]

    def close(self) -> None:
        self.engine.dispose()
