"""The first cloud store: ingest ranges, alerts, book slices, rule-set history.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_ranges",
        sa.Column("site", sa.String(128), primary_key=True),
        sa.Column("first_seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("visible_at", sa.Float, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("repeats", sa.Integer, nullable=False),
        sa.Column("record", sa.LargeBinary, nullable=False),
        sa.Column("history", sa.Text, nullable=False),
    )
    op.create_index("ix_alerts_site", "alerts", ["site"])
    op.create_table(
        "book_slices",
        sa.Column("site", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_table(
        "rulesets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("activated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("rulesets", "book_slices", "alerts", "ingest_ranges"):
        op.drop_table(table)
