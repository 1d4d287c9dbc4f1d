"""The cloud store on SQLite and on a private PostgreSQL: migrations, one-transaction commits, resume."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import inspect, text

from cangtwin.platform.cloud.alert_desk import AlertDesk, AlertStatus
from cangtwin.platform.cloud.dedupe import SeenRanges
from cangtwin.platform.live.store import LOANS_SLICE, CloudStore, StoreError, seen_from, seen_ranges
from cangtwin.platform.records import Alert

from test_live_transport import seed_book


def alert(n: int, site: str = "small", rule: str = "outbound-unauthorized") -> Alert:
    return Alert(f"{site}-A{n:06d}", rule, "physical", "critical", "4.5", site, (f"lot:B01-0{n}",),
                 100.0 + n, 100.5 + n, 101.0 + n, "default@1#abc", "pledged goods left", {"gate": "G1"})


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cloud.db'}"
    return request.getfixturevalue("postgres_dsn")


def test_migrations_create_the_schema_once(store_url):
    first = CloudStore(store_url)
    second = CloudStore(store_url)  # upgrading an up-to-date store is a no-op
    try:
        tables = set(inspect(second.engine).get_table_names())
        assert {"ingest_ranges", "alerts", "book_slices", "rulesets", "alembic_version"} <= tables
        with second.engine.connect() as db:
            assert db.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
        assert second.engine.dialect.name == ("postgresql" if store_url.startswith("postgresql") else "sqlite")
    finally:
        first.close()
        second.close()


def test_commit_then_resume(store_url):
    store = CloudStore(store_url)
    book = seed_book()
    desk = AlertDesk()
    cases = [desk.raise_alert(alert(n), 110.0 + n, 111.0 + n) for n in (1, 2)]
    seen = SeenRanges()
    for seq in (*range(1, 50), *range(60, 70)):
        seen.add(seq)
    book.record_outbound(["B01-01"])
    store.commit({"small": seen}, cases, [], book, {"small", LOANS_SLICE})
    desk.acknowledge(cases[0].alert.id, 120.0, "officer-1")
    desk.resolve(cases[1].alert.id, 121.0, "officer-1")
    store.commit({}, [cases[0]], cases, book, set())  # re-offering a stored alert does not duplicate it
    store.record_ruleset("a" * 64, "default@1#aaaa", "ruleset: default", 1.0)
    store.record_ruleset("a" * 64, "default@1#aaaa", "ruleset: default", 2.0)  # same rules: no new entry
    store.record_ruleset("b" * 64, "default@2#bbbb", "ruleset: default v2", 3.0)
    store.close()

    resumed = CloudStore(store_url)
    try:
        assert seen_ranges(resumed.load_ranges("small")) == [(1, 49), (60, 69)]
        assert seen_ranges(resumed.load_ranges("elsewhere")) == []
        fresh = AlertDesk()
        assert resumed.restore_alerts(fresh, "small") == 2
        assert fresh.cases[cases[0].alert.id].status is AlertStatus.ACKNOWLEDGED
        assert fresh.cases[cases[1].alert.id].status is AlertStatus.RESOLVED
        assert fresh.cases[cases[0].alert.id].alert == cases[0].alert
        # The acknowledged alert is still open, so the same verdict again is a repeat, not a new alert.
        assert fresh.raise_alert(_same_verdict(alert(1)), 200.0, 200.0) is None
        restored = resumed.load_book()
        assert restored.version == book.version and not restored.lots["B01-01"].present
        assert restored.pledges == book.pledges and restored.loans == book.loans
        restored.check()
        assert [r["label"] for r in resumed.ruleset_history()] == ["default@1#aaaa", "default@2#bbbb"]
    finally:
        resumed.close()


def _same_verdict(original: Alert) -> Alert:
    """The same rule on the same targets, raised again later under a new id."""
    return Alert(original.id + "-again", original.rule, original.category, original.severity, original.section,
                 original.site, original.targets, original.event_time + 60, original.observed_at + 60,
                 original.raised_at + 60, original.ruleset, original.summary, original.detail)


def test_bad_store_url_is_one_clear_error(tmp_path):
    with pytest.raises(StoreError, match="not a database URL"):
        CloudStore("definitely not a url")
    with pytest.raises(StoreError, match="cannot open the cloud store"):
        CloudStore(f"sqlite:///{tmp_path / 'missing-dir' / 'cloud.db'}")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=120))
def test_seen_ranges_round_trip(seqs):
    seen = SeenRanges()
    for seq in seqs:
        seen.add(seq)
    again = seen_from(seen_ranges(seen))
    assert seen_ranges(again) == seen_ranges(seen)
    assert all((n in again) == (n in set(seqs)) for n in range(-1, 402))
