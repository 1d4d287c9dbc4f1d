"""The cloud store's tables (SQLAlchemy Core); Alembic migrations create and evolve them.

Every table that holds per-warehouse state is keyed by site first, so a warehouse's state can move
between cloud workers, and a PostgreSQL cluster can partition by warehouse (docs/scale-out.md).
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

# Idempotent ingest: the edge sequence numbers already committed, as merged inclusive ranges.
ingest_ranges = Table(
    "ingest_ranges", metadata,
    Column("site", String(128), primary_key=True),
    Column("first_seq", Integer, primary_key=True, autoincrement=False),
    Column("last_seq", Integer, nullable=False),
)

# Alerts the cloud holds, with their lifecycle (raised → acknowledged → resolved, or escalated).
alerts = Table(
    "alerts", metadata,
    Column("id", String(200), primary_key=True),
    Column("site", String(128), nullable=False, index=True),
    Column("rule", String(100), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("visible_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("repeats", Integer, nullable=False),
    Column("record", LargeBinary, nullable=False),  # the Alert as msgpack, exactly as it arrived
    Column("history", Text, nullable=False),  # JSON [[time, status, actor], ...]
)

# The collateral book, one slice per warehouse (lots, pledges, receipts, releases of its lots);
# site "*" holds the loans. Each slice is rewritten whole when that warehouse's part changes.
book_slices = Table(
    "book_slices", metadata,
    Column("site", String(128), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("state", Text, nullable=False),  # JSON
)

# Every rule set that took effect, in order; the last one is in force.
rulesets = Table(
    "rulesets", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("label", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("activated_at", Float, nullable=False),
)
