"""The cloud's durable store: what a restarted (or another) cloud worker needs to resume.

One code path for SQLite (the embedded default) and PostgreSQL: the URL decides. The schema is
created and evolved by the Alembic migrations shipped in `migrations/`, run in code at open.
Each ingest commits in one transaction: the warehouse's committed sequence ranges, the alerts it
raised and the warehouse's slice of the book. Only then is the batch acknowledged.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import msgspec
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, event, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from cangtwin.platform.cloud.alert_desk import AlertCase, AlertDesk, AlertStatus
from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot, Receipt
from cangtwin.platform.cloud.dedupe import SeenRanges
from cangtwin.platform.live.schema import alerts, book_slices, ingest_ranges, rulesets
from cangtwin.platform.records import Alert, record_encoder

MIGRATIONS = Path(__file__).parent / "migrations"
LOANS_SLICE = "*"
_alert_decoder = msgspec.msgpack.Decoder(Alert)


class StoreError(Exception):
    """The store URL is unusable or the database cannot be reached."""


def database_url(url: str) -> str:
    """Accept plain libpq DSNs too: `postgresql://` means psycopg 3, the driver this project ships."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_engine(url: str) -> Engine:
    try:
        parsed = make_url(database_url(url))
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r} ({exc})") from None
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record) -> None:  # readers never block the ingest writer
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

        return engine
    return create_engine(parsed, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic, configured in code: no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


# --- how in-memory state maps to rows ---------------------------------------------------------

def seen_ranges(seen: SeenRanges) -> list[tuple[int, int]]:
    # SeenRanges has no public view of its ranges; this is the one place that reads them.
    return list(zip(seen._starts, seen._ends))


def seen_from(ranges: list[tuple[int, int]]) -> SeenRanges:
    seen = SeenRanges()
    for first, last in sorted(ranges):
        seen._starts.append(first)
        seen._ends.append(last)
    return seen


def book_slice(book: CollateralBook, site: str) -> dict:
    """The part of the book that belongs to one warehouse (all loans for LOANS_SLICE)."""
    if site == LOANS_SLICE:
        return {"loans": [dataclasses.asdict(loan) for _, loan in sorted(book.loans.items())]}
    lots = {lid for lid, lot in book.lots.items() if lot.site == site}
    return {
        "lots": [dataclasses.asdict(book.lots[lid]) for lid in sorted(lots)],
        "pledges": {lid: book.pledges[lid] for lid in sorted(lots & book.pledges.keys())},
        "released": sorted(lots & book.released),
        "receipts": [dataclasses.asdict(r) for _, r in sorted(book.receipts.items()) if set(r.lots) & lots],
    }


def book_from(slices: list[tuple[int, dict]]) -> CollateralBook:
    book = CollateralBook()
    for version, state in slices:
        book.version = max(book.version, version)
        for loan in state.get("loans", ()):
            book.loans[loan["id"]] = Loan(**loan)
        for lot in state.get("lots", ()):
            book.lots[lot["id"]] = Lot(**lot)
        book.pledges.update(state.get("pledges", {}))
        book.released.update(state.get("released", ()))
        for receipt in state.get("receipts", ()):
            book.receipts[receipt["id"]] = Receipt(receipt["id"], receipt["loan"], tuple(receipt["lots"]))
    return book


def _case_row(case: AlertCase) -> dict:
    return {
        "status": str(case.status), "repeats": case.repeats,
        "history": json.dumps([[t, str(s), actor] for t, s, actor in case.history]),
    }


class CloudStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_engine(url)
        try:
            migrate(self.engine)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open the cloud store {make_url(database_url(url))!r}: "
                             f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None

    def close(self) -> None:
        self.engine.dispose()

    # --- one ingest, one transaction ---------------------------------------------------------
    def commit(self, ranges: dict[str, SeenRanges], new_cases: list[AlertCase], changed_cases: list[AlertCase],
               book: CollateralBook | None, book_sites: set[str]) -> None:
        with self.engine.begin() as db:
            for site, seen in ranges.items():
                db.execute(delete(ingest_ranges).where(ingest_ranges.c.site == site))
                rows = [{"site": site, "first_seq": a, "last_seq": b} for a, b in seen_ranges(seen)]
                if rows:
                    db.execute(insert(ingest_ranges), rows)
            known = set()
            if new_cases:
                ids = [c.alert.id for c in new_cases]
                known = set(db.scalars(select(alerts.c.id).where(alerts.c.id.in_(ids))))
            fresh = [c for c in new_cases if c.alert.id not in known]  # a takeover may re-raise one
            if fresh:
                db.execute(insert(alerts), [{
                    "id": c.alert.id, "site": c.alert.site, "rule": c.alert.rule, "severity": c.alert.severity,
                    "visible_at": c.visible_at, "received_at": c.cloud_received_at,
                    "record": record_encoder.encode(c.alert), **_case_row(c),
                } for c in fresh])
            for case in changed_cases:
                db.execute(update(alerts).where(alerts.c.id == case.alert.id).values(**_case_row(case)))
            for site in sorted(book_sites):
                state = json.dumps(book_slice(book, site), sort_keys=True)
                updated = db.execute(update(book_slices).where(book_slices.c.site == site)
                                     .values(version=book.version, state=state))
                if updated.rowcount == 0:
                    db.execute(insert(book_slices).values(site=site, version=book.version, state=state))

    def record_ruleset(self, sha256: str, label: str, text: str, at: float) -> None:
        with self.engine.begin() as db:
            last = db.execute(select(rulesets.c.sha256).order_by(rulesets.c.id.desc()).limit(1)).scalar()
            if last != sha256:
                db.execute(insert(rulesets).values(sha256=sha256, label=label, text=text, activated_at=at))

    # --- resuming ----------------------------------------------------------------------------
    def load_ranges(self, site: str) -> SeenRanges:
        with self.engine.connect() as db:
            rows = db.execute(select(ingest_ranges.c.first_seq, ingest_ranges.c.last_seq)
                              .where(ingest_ranges.c.site == site)).all()
        return seen_from([(a, b) for a, b in rows])

    def restore_alerts(self, desk: AlertDesk, site: str) -> int:
        """Put a warehouse's stored alerts back on the desk, open ones deduping repeats again."""
        with self.engine.connect() as db:
            rows = db.execute(select(alerts).where(alerts.c.site == site).order_by(alerts.c.visible_at)).all()
        restored = 0
        for row in rows:
            if row.id in desk.cases:
                continue
            alert = _alert_decoder.decode(row.record)
            status = AlertStatus(row.status)
            history = [(t, AlertStatus(s), actor) for t, s, actor in json.loads(row.history)]
            if status is AlertStatus.RESOLVED:
                desk.cases[alert.id] = AlertCase(alert, row.visible_at, row.received_at, status, row.repeats, history)
            else:
                case = desk.raise_alert(alert, row.received_at, row.visible_at)
                if case is None:
                    continue
                case.status, case.repeats, case.history = status, row.repeats, history
            restored += 1
        return restored

    def load_book(self) -> CollateralBook | None:
        with self.engine.connect() as db:
            rows = db.execute(select(book_slices.c.version, book_slices.c.state)).all()
        return book_from([(v, json.loads(s)) for v, s in rows]) if rows else None

    def alert_rows(self) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(alerts).order_by(alerts.c.visible_at))]

    def ruleset_history(self) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(rulesets).order_by(rulesets.c.id))]
