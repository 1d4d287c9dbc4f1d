"""Bank API writes beyond alerts: pledges and release orders on the collateral book, rule-set
activation, and the bad input around them. Every write goes through the cloud's own book and
rule-set code, reaches the edges as a command, lands in the audit log, and a refused one changes
nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cangtwin.platform.api.access import TokenEntry, TokenRegistry, hash_token
from cangtwin.platform.api.app import create_app
from cangtwin.platform.api.audit import AuditLog
from cangtwin.platform.cloud.book import Lot
from cangtwin.platform.records import BookSync, RuleSetUpdate, downlink_decoder
from cangtwin.platform.rules.ruleset import default_ruleset_path
from test_api import TOKENS, auth, ingest_cloud, make_alert

DEFAULT_RULES = default_ruleset_path().read_text(encoding="utf-8")


class Platform:
    """A cloud with two banks at two sites, edges that record their commands, and the API over it."""

    def __init__(self, tmp: Path, on_write=None) -> None:
        loans = [("LN-A-001", "bank-a", "s1", ["L1", "L2"]), ("LN-B-001", "bank-b", "s2", ["L3"])]
        self.env, self.cloud = ingest_cloud(tmp, loans, [make_alert("s1-A000001", "s1", ("lot:L1",))])
        for lot in ("F1", "F2"):  # in the warehouse, pledged to nobody yet
            self.cloud.book.add_lot(Lot(lot, f"EPC-{lot}", "s1", "copper-cathode", 2500.0, "B02"))
        self.commands: dict[str, list] = {"s1": [], "s2": []}
        for site, sent in self.commands.items():
            self.cloud.connect_edge(site, lambda data, sent=sent: sent.append(downlink_decoder.decode(data)))
            sent.clear()
        self.audit = AuditLog.open("sqlite://")
        expired = TokenEntry(name="a-old", role="bank", bank="bank-a", sha256=hash_token("tok-old"),
                             expires=datetime.now(UTC) - timedelta(days=1))
        registry = TokenRegistry([TokenEntry(name=p.name, role=p.role, bank=p.bank, sha256=hash_token(t))
                                  for t, p in TOKENS.items()] + [expired])
        self.api = TestClient(create_app(self.cloud, registry, self.audit, on_write=on_write),
                              raise_server_exceptions=False)

    def state(self) -> tuple:
        book = self.cloud.book
        return dict(book.pledges), set(book.released), set(book.receipts), book.version, self.cloud.ruleset.sha256

    def syncs(self, site: str) -> list[BookSync]:
        return [c for c in self.commands[site] if isinstance(c, BookSync)]

    def audit_rows(self, action: str) -> list[tuple[str, int]]:
        _, rows = self.audit.entries(action=action, limit=1000)
        return [(row.actor, row.status) for row in rows]


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return Platform(tmp_path)


def test_a_bank_pledges_and_releases_its_own_lots_and_the_edge_hears_of_it(platform: Platform) -> None:
    api = platform.api
    answer = api.post("/v1/loans/LN-A-001/pledges", headers=auth("tok-a"),
                      json={"receipt": "WR-A-9", "lots": ["F1", "F2"], "note": "new coils"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["bank"] == "bank-a" and [lot["id"] for lot in answer.json()["lots"]] == ["F1", "F2"]
    assert platform.cloud.book.pledges["F1"] == "LN-A-001" and platform.cloud.book.receipts["WR-A-9"].lots == ("F1", "F2")
    sync = platform.syncs("s1")[-1]
    assert sync.version == platform.cloud.book.version and sync.pledged["F2"] == "LN-A-001"

    answer = api.post("/v1/loans/LN-A-001/releases", headers=auth("tok-a"), json={"lots": ["L1", "F1"], "note": "RO-17"})
    assert answer.status_code == 200, answer.text
    shown = {lot["id"] for lot in answer.json()["lots"]}
    assert shown == {"L2", "F2"}  # what the loan still holds
    sync = platform.syncs("s1")[-1]
    assert {"L1", "F1"} <= set(sync.released) and "L1" not in sync.pledged  # the edge no longer guards them
    assert platform.audit_rows("book.pledge") == [("a-risk", 201)]
    assert platform.audit_rows("book.release") == [("a-risk", 200)]
    _, [row] = platform.audit.entries(action="book.release")
    assert row.target == "LN-A-001" and row.note == "RO-17"
    platform.cloud.book.check()


def test_bank_a_cannot_touch_bank_b_loans_or_lots(platform: Platform) -> None:
    api, before = platform.api, platform.state()
    assert api.post("/v1/loans/LN-B-001/releases", headers=auth("tok-a"), json={"lots": ["L3"]}).status_code == 404
    refused = api.post("/v1/loans/LN-B-001/pledges", headers=auth("tok-a"), json={"receipt": "WR-X", "lots": ["F1"]})
    assert refused.status_code == 404 and refused.json()["error"]["field"] == "path.loan_id"
    # Bank B's lot, pledged to its loan: bank A may not re-pledge it, and learns not whose it is.
    taken = api.post("/v1/loans/LN-A-001/pledges", headers=auth("tok-a"), json={"receipt": "WR-X", "lots": ["L3"]})
    assert taken.status_code == 409 and taken.json()["error"]["field"] == "body.lots.0"
    assert "already pledged" in taken.text and "LN-B-001" not in taken.text and "bank-b" not in taken.text
    # Bank A's release order naming bank B's lot: not pledged to A's loan.
    foreign = api.post("/v1/loans/LN-A-001/releases", headers=auth("tok-a"), json={"lots": ["L1", "L3"]})
    assert foreign.status_code == 409 and foreign.json()["error"]["field"] == "body.lots.1"
    unknown = api.post("/v1/loans/LN-A-001/releases", headers=auth("tok-a"), json={"lots": ["L1", "L9"]})
    same = lambda answer: answer.json()["error"]["message"].replace("L3", "L9")  # noqa: E731
    assert same(foreign) == unknown.json()["error"]["message"]  # bank B's lot looks like no lot at all
    assert platform.state() == before and platform.syncs("s1") == platform.syncs("s2") == []
    assert sorted(status for _, status in platform.audit_rows("book.release")) == [404, 409, 409]
    assert sorted(status for _, status in platform.audit_rows("book.pledge")) == [404, 409]


@pytest.mark.parametrize("path,body,status,field,words", [
    ("releases", {"lots": ["F1"]}, 409, "body.lots.0", "F1 is not pledged to loan LN-A-001"),  # unpledged
    ("releases", {"lots": ["L1", "L1"]}, 422, "body.lots.1", "listed twice"),
    ("releases", {"lots": ["NOPE"]}, 409, "body.lots.0", "NOPE is not pledged to loan LN-A-001"),
    ("pledges", {"receipt": "WR-N", "lots": ["L2"]}, 409, "body.lots.0", "already pledged to loan LN-A-001"),
    ("pledges", {"receipt": "WR-N", "lots": ["F1", "NOPE"]}, 422, "body.lots.1", "unknown lot NOPE"),
    ("pledges", {"receipt": "WR-N", "lots": ["F1", "F1"]}, 422, "body.lots.1", "listed twice"),
    ("pledges", {"receipt": "WR-0001", "lots": ["F1"]}, 409, "body.receipt", "already issued"),
    ("pledges", {"receipt": "WR-N", "lots": ["GONE"]}, 409, "body.lots.0", "no longer in the warehouse"),
    ("pledges", {"receipt": "WR-N", "lots": []}, 422, "body.lots", "at least 1"),
    ("pledges", {"receipt": "WR-N", "lots": ["F1"], "extra": 1}, 422, "body.extra", "Extra inputs"),
])
def test_requests_that_would_break_the_book_are_4xx_naming_the_field_and_change_nothing(
        platform: Platform, path, body, status, field, words) -> None:
    platform.cloud.book.add_lot(Lot("GONE", "EPC-GONE", "s1", "copper-cathode", 2500.0, "B02", present=False))
    before = platform.state()
    answer = platform.api.post(f"/v1/loans/LN-A-001/{path}", headers=auth("tok-a"), json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["field"] == field and words in error["message"], error
    assert platform.state() == before and platform.syncs("s1") == []
    by_the_book = "extra" not in body and body["lots"]  # the others are refused before the handler
    action = "book.pledge" if path == "pledges" else "book.release"
    assert platform.audit_rows(action) == ([("a-risk", status)] if by_the_book else [])


def test_roles_tokens_and_bodies_that_never_reach_the_book(platform: Platform) -> None:
    api, before = platform.api, platform.state()
    pledge = {"receipt": "WR-R", "lots": ["F1"]}
    regulator = api.post("/v1/loans/LN-A-001/pledges", headers=auth("tok-reg"), json=pledge)
    assert regulator.status_code == 403
    assert api.post("/v1/loans/LN-A-001/pledges", headers=auth("tok-old"), json=pledge).status_code == 401
    assert "expired" in api.post("/v1/loans/LN-A-001/pledges", headers=auth("tok-old"), json=pledge).text
    assert api.post("/v1/loans/LN-A-001/pledges", headers=auth("tok-forged"), json=pledge).status_code == 401
    malformed = api.post("/v1/loans/LN-A-001/pledges", headers={**auth("tok-a"), "Content-Type": "application/json"},
                         content=b'{"receipt": "WR-R", "lots": ["F1"')
    assert malformed.status_code == 422 and malformed.json()["error"]["field"] == "body"
    huge = api.post("/v1/loans/LN-A-001/pledges", headers=auth("tok-a"),
                    json={"receipt": "WR-R", "lots": ["F1"], "note": "x" * 70_000})
    assert huge.status_code == 413
    assert platform.state() == before
    assert platform.audit_rows("book.pledge") == [("csrc", 403)]  # refused before the handler: not audited


def test_the_operator_puts_a_rule_file_in_force_and_a_bad_one_changes_nothing(platform: Platform) -> None:
    api, cloud = platform.api, platform.cloud
    good = DEFAULT_RULES.replace("version: 1", "version: 2").replace("max_clock_skew_s: 5.0", "max_clock_skew_s: 8.0")
    assert good != DEFAULT_RULES
    for token, status in (("tok-a", 403), ("tok-reg", 403)):
        assert api.post("/v1/rulesets", headers=auth(token), json={"text": good}).status_code == status
    bad = good.replace("max_clock_skew_s: 8.0", "max_clock_skew_s: soon")
    before = platform.state()
    refused = api.post("/v1/rulesets", headers=auth("tok-ops"), json={"text": bad, "filename": "desk-v2.yaml"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    line = bad.splitlines().index("      max_clock_skew_s: soon") + 1
    assert error["field"] == "body.text" and error["code"] == "invalid-rule-file"
    assert error["file"]["source"] == "desk-v2.yaml" and error["file"]["line"] == line
    assert "max_clock_skew_s" in error["file"]["field"] and f"desk-v2.yaml:{line}:" in error["message"]
    assert platform.state() == before and not any(isinstance(c, RuleSetUpdate) for c in platform.commands["s1"])

    taken = api.post("/v1/rulesets", headers=auth("tok-ops"), json={"text": good, "note": "wider skew at s1"})
    assert taken.status_code == 201, taken.text
    assert taken.json()["version"] == 2 and cloud.ruleset.version == 2 and taken.json()["text"] == good
    for site in ("s1", "s2"):  # the edges get the file itself
        [update] = [c for c in platform.commands[site] if isinstance(c, RuleSetUpdate)]
        assert update.text == good and update.sha256 == cloud.ruleset.sha256
    platform.env.run(until=platform.env.now + 5)  # the ledger integrates the activation
    history = api.get("/v1/rulesets/history", headers=auth("tok-a")).json()["items"]
    assert [item["version"] for item in history] == [1, 2] and history[-1]["sha256"] == cloud.ruleset.sha256
    current = api.get("/v1/rulesets/current", headers=auth("tok-a")).json()
    assert current["ledger_index"] == history[-1]["ledger_index"]
    again = api.post("/v1/rulesets", headers=auth("tok-ops"), json={"text": good})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already-in-force"
    assert platform.audit_rows("ruleset.activate") == [("a-risk", 403), ("csrc", 403), ("ops", 422), ("ops", 201),
                                                       ("ops", 409)]


def test_a_write_the_store_refuses_is_answered_503_and_each_success_is_stored_before_the_answer(tmp_path) -> None:
    calls: list[int] = []
    outcome = {"ok": True}

    def commit() -> bool:
        calls.append(1)
        return outcome["ok"]

    platform = Platform(tmp_path, on_write=commit)
    api = platform.api
    assert api.post("/v1/loans/LN-A-001/pledges", headers=auth("tok-a"),
                    json={"receipt": "WR-1A", "lots": ["F1"]}).status_code == 201
    assert api.post("/v1/loans/LN-A-001/releases", headers=auth("tok-a"), json={"lots": ["F9"]}).status_code == 409
    assert len(calls) == 1  # a refusal stores nothing
    outcome["ok"] = False
    down = api.post("/v1/alerts/s1-A000001/acknowledge", headers=auth("tok-a"), json={})
    assert down.status_code == 503 and down.json()["error"]["code"] == "store-unavailable"
    assert len(calls) == 2


LOT_IDS = ["L1", "L2", "L3", "F1", "F2", "NOPE"]
LOAN_IDS = ["LN-A-001", "LN-B-001", "LN-X"]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.tuples(st.sampled_from(["tok-a", "tok-b", "tok-ops", "tok-reg"]), st.sampled_from(LOAN_IDS),
                                st.booleans(), st.lists(st.sampled_from(LOT_IDS), min_size=1, max_size=3),
                                st.sampled_from(["WR-0001", "WR-N1", "WR-N2"])), min_size=1, max_size=12))
def test_any_sequence_of_pledges_and_releases_keeps_the_book_whole(tmp_path_factory, steps) -> None:
    """Whatever banks ask, in any order: never a 5xx, a refusal changes nothing, the invariants hold,
    a bank never changes another bank's pledge, and every attempt that reached a handler is audited."""
    platform = Platform(tmp_path_factory.mktemp("seq"))
    book = platform.cloud.book
    handled = 0
    for token, loan, pledging, lots, receipt in steps:
        before, owners = platform.state(), dict(book.pledges)
        body = {"receipt": receipt, "lots": lots} if pledging else {"lots": lots}
        answer = platform.api.post(f"/v1/loans/{loan}/{'pledges' if pledging else 'releases'}",
                                   headers=auth(token), json=body)
        assert answer.status_code in (200, 201, 403, 404, 409, 422), answer.text
        handled += 1
        if answer.status_code >= 400:
            assert platform.state() == before
            continue
        bank = TOKENS[token].bank
        changed = {lot for lot in set(owners) | set(book.pledges) if owners.get(lot) != book.pledges.get(lot)}
        assert bank is None or all(book.loans[loan].bank == bank for loan in
                                   {owners.get(lot) or book.pledges.get(lot) for lot in changed})
        book.check()
    total, _ = platform.audit.entries()
    assert total == handled


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(cut=st.integers(0, len(DEFAULT_RULES)), junk=st.text(max_size=20))
def test_any_edit_of_a_rule_file_is_put_in_force_or_refused_never_a_server_error(tmp_path_factory, cut, junk) -> None:
    platform = Platform(tmp_path_factory.mktemp("rules"))
    text = DEFAULT_RULES[:cut] + junk + DEFAULT_RULES[cut:]
    before = platform.cloud.ruleset.sha256
    answer = platform.api.post("/v1/rulesets", headers=auth("tok-ops"), json={"text": text})
    assert answer.status_code in (201, 409, 422), answer.text
    if answer.status_code == 422:
        assert platform.cloud.ruleset.sha256 == before and answer.json()["error"]["file"]["source"] == "rules.yaml"
    elif answer.status_code == 201:
        assert platform.cloud.ruleset.text == text
