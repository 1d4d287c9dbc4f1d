"""The bank API: per-bank isolation, the alert lifecycle, the audit log, proofs a bank checks itself.

Two kinds of platform back the app: a real scenario run (twin → devices → edge → cloud, two banks
at one site, a theft from each), and, for properties over many books, a cloud fed alert records
through its ordinary uplink ingest, without a twin.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import msgspec
import pytest
import simpy
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cangtwin.platform.api.access import AuthError, Principal, TokenRegistry, hash_token, new_token
from cangtwin.platform.api.app import create_app
from cangtwin.platform.api.audit import AuditLog
from cangtwin.platform.clock import SimPyClock
from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot
from cangtwin.platform.cloud.evidence import REQUIRED_SIGNATURES, EvidenceRecorder
from cangtwin.platform.cloud.service import CloudService
from cangtwin.platform.config_file import InputError
from cangtwin.platform.ledger.log import EvidenceLog
from cangtwin.platform.ledger.merkle import verify_consistency
from cangtwin.platform.ledger.package import EvidencePackage, verify_package
from cangtwin.platform.ledger.tree_head import SignedTreeHead, generate_party_keys, verify_quorum
from cangtwin.platform.records import Alert, UplinkBatch, record_encoder
from cangtwin.platform.rules.ruleset import default_ruleset_path, load_ruleset
from cangtwin.scenarios.run import Run
from cangtwin.scenarios.spec import load_scenario

START = 1_772_000_000.0
TOKENS = {
    "tok-a": Principal("a-risk", "bank", "bank-a"),
    "tok-b": Principal("b-risk", "bank", "bank-b"),
    "tok-ops": Principal("ops", "operator"),
    "tok-reg": Principal("csrc", "regulator"),
}

TWO_BANKS = textwrap.dedent("""\
    scenario: api-two-banks
    description: Two banks lend against goods at one site; a theft from each.
    site: small
    seed: 11
    start: "2026-03-02T10:00"
    duration: 8m
    twin: {lidar_scans: false}
    loans:
      - {id: LN-A-001, bank: bank-a, borrower: 华东金属贸易有限公司, amount_cny: 400000, bays: [B01, B02]}
      - {id: LN-B-001, bank: bank-b, borrower: 江南铜业有限公司, amount_cny: 300000, bays: [B09]}
    injections:
      - {kind: unauthorized-outbound, id: theft-a, at: 2m, lots: [B01-03]}
      - {kind: unauthorized-outbound, id: theft-b, at: 4m, lots: [B09-02]}
""")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def scenario_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A finished run; its ledger is reopened (the run closes its writer when it ends)."""
    folder = tmp_path_factory.mktemp("api-run")
    (folder / "two-banks.yaml").write_text(TWO_BANKS, encoding="utf-8")
    (folder / "out").mkdir()
    run = Run(load_scenario(folder / "two-banks.yaml"), folder / "out")
    run.execute()
    run.evidence.log = EvidenceLog.open(run.evidence.log.path)
    return run


@pytest.fixture
def client(scenario_run: Run) -> TestClient:
    """A fresh app and audit log per test over the shared run; tests that write reopen alerts."""
    app = create_app(scenario_run.cloud, TokenRegistry.from_mapping(TOKENS), AuditLog.open("sqlite://"))
    return TestClient(app, raise_server_exceptions=False)


def alert_ids(client: TestClient, token: str) -> set[str]:
    body = client.get("/v1/alerts", headers=auth(token)).json()
    assert body["total"] == len(body["items"])
    return {a["id"] for a in body["items"]}


# --- a cloud fed through its uplink ingest, for properties over many books ------------------

def ingest_cloud(tmp: Path, loans: list[tuple[str, str, str, list[str]]], alerts: list[Alert],
                 ledger: bool = True) -> tuple[simpy.Environment, CloudService]:
    """A cloud with `loans` = (loan, bank, site, lots) in its book, then `alerts` arriving from
    their sites' edges over the uplink, applied and (with a ledger) integrated."""
    env = simpy.Environment(initial_time=START)
    clock = SimPyClock(env)
    book = CollateralBook()
    for n, (loan_id, bank, site, lots) in enumerate(loans, 1):
        for lot in lots:
            book.add_lot(Lot(lot, f"EPC-{lot}", site, "copper-cathode", 2500.0, "B01"))
        book.open_loan(Loan(loan_id, bank, f"borrower-{n}", 1_000_000.0))
        book.pledge(loan_id, lots, f"WR-{n:04d}")
    evidence = EvidenceRecorder(clock, tmp / "ledger.log", generate_party_keys()) if ledger else None
    cloud = CloudService(clock, book, load_ruleset(), tap=lambda _event, _record: None, evidence=evidence)
    cloud.start()
    sites = sorted({a.site for a in alerts} | {site for _, _, site, _ in loans})
    for site in sites:
        cloud.connect_edge(site, lambda _data: None)
        entries = [(seq, record_encoder.encode(a)) for seq, a in enumerate((a for a in alerts if a.site == site), 1)]
        if entries:
            cloud.on_uplink(record_encoder.encode(UplinkBatch(site, entries)))
    env.run(until=START + 5)
    assert set(cloud.desk.cases) == {a.id for a in alerts}, "only the injected alerts are held"
    return env, cloud


def make_alert(alert_id: str, site: str, targets: tuple[str, ...], rule: str = "outbound-unauthorized") -> Alert:
    """One alert as an edge would send it (alerts with the same rule and targets are repeats)."""
    return Alert(id=alert_id, rule=rule, category="physical", severity="critical",
                 section="4.5 出入库监管", site=site, targets=targets, event_time=START, observed_at=START,
                 raised_at=START + 0.1, ruleset="test", summary=f"alert on {', '.join(targets)}")


# --- isolation ------------------------------------------------------------------------------

def test_each_bank_sees_only_its_alerts_the_operator_all(client: TestClient, scenario_run: Run) -> None:
    everything = set(scenario_run.cloud.desk.cases)
    a, b = alert_ids(client, "tok-a"), alert_ids(client, "tok-b")
    assert a and b and not a & b
    assert a | b == everything == alert_ids(client, "tok-ops") == alert_ids(client, "tok-reg")
    outbound_of_a = {scenario_run.cloud.desk.cases[i].alert.targets for i in a
                     if scenario_run.cloud.desk.cases[i].alert.rule == "outbound-unauthorized"}
    assert outbound_of_a == {("lot:B01-03",)}  # bank A's stolen coil; the copper belongs to bank B
    # Whatever else the theft tripped (geofence on the way to the dock) names bank A's lots only.
    assert all("lot:B01-03" in scenario_run.cloud.desk.cases[i].alert.targets for i in a)
    for foreign in b:
        got = client.get(f"/v1/alerts/{foreign}", headers=auth("tok-a"))
        missing = client.get(f"/v1/alerts/{foreign}-nope", headers=auth("tok-a"))
        assert got.status_code == missing.status_code == 404
        assert got.json()["error"]["message"].replace(foreign, "X") == \
            missing.json()["error"]["message"].replace(f"{foreign}-nope", "X"), "a foreign alert looks missing"
        assert client.get(f"/v1/alerts/{foreign}/evidence", headers=auth("tok-a")).status_code == 404
    assert client.get("/v1/alerts", headers=auth("tok-a")).json()["items"][0]["banks"] is None
    assert client.get("/v1/alerts", headers=auth("tok-ops")).json()["items"][0]["banks"] == ["bank-a"]


def test_bank_cannot_read_or_change_another_banks_pledges(client: TestClient, scenario_run: Run) -> None:
    mine = client.get("/v1/banks/bank-a/collateral", headers=auth("tok-a"))
    assert mine.status_code == 200
    (loan,) = mine.json()["loans"]
    assert loan["loan"] == "LN-A-001" and loan["bank"] == "bank-a"
    assert loan["absent"] == ["B01-03"]
    assert loan["present_mass_kg"] < loan["pledged_mass_kg"]
    for path in ("/v1/banks/bank-b/collateral", "/v1/loans/LN-B-001", "/v1/pledges/WR-small-0002"):
        theirs = client.get(path, headers=auth("tok-a"))
        assert theirs.status_code == 404, path
        assert client.get(path, headers=auth("tok-ops")).status_code == 200, path
    assert client.get("/v1/banks/bank-zz/collateral", headers=auth("tok-a")).status_code == 404
    listed = client.get("/v1/pledges", headers=auth("tok-a")).json()
    assert [r["receipt"] for r in listed["items"]] == ["WR-small-0001"]
    # Writes to bank B's alert by bank A: refused as missing, nothing changes, the attempt is audited.
    (theirs,) = [i for i in alert_ids(client, "tok-b") if scenario_run.cloud.desk.cases[i].alert.rule ==
                 "outbound-unauthorized"]
    before = scenario_run.cloud.desk.cases[theirs].status
    for verb in ("acknowledge", "resolve"):
        r = client.post(f"/v1/alerts/{theirs}/{verb}", json={"note": "not mine"}, headers=auth("tok-a"))
        assert r.status_code == 404
    assert scenario_run.cloud.desk.cases[theirs].status == before
    audit = client.get("/v1/audit", params={"actor": "a-risk"}, headers=auth("tok-ops")).json()
    assert [(e["action"], e["status"]) for e in audit["items"]] == [("alert.acknowledge", 404), ("alert.resolve", 404)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_isolation_holds_for_any_book(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Random banks, loans at two sites, alerts on random lots or devices: each bank lists exactly
    the alerts on its lots plus the device alerts at sites where it has goods, and gets 404 on
    (and cannot change) every other alert."""
    banks = data.draw(st.lists(st.sampled_from(["bank-a", "bank-b", "bank-c", "bank-d"]), min_size=2,
                               max_size=4, unique=True), label="banks")
    loans = []
    for n in range(data.draw(st.integers(2, 5), label="loans")):
        bank = data.draw(st.sampled_from(banks))
        site = data.draw(st.sampled_from(["s1", "s2"]))
        loans.append((f"LN-{n}", bank, site, [f"{site}-L{n}-{k}" for k in range(data.draw(st.integers(1, 3)))]))
    lot_bank = {lot: bank for _, bank, _, lots in loans for lot in lots}
    lot_site = {lot: site for _, _, site, lots in loans for lot in lots}
    alerts, expected = [], {bank: set() for bank in banks}
    for n in range(data.draw(st.integers(1, 8), label="alerts")):
        if data.draw(st.booleans()):
            lots = data.draw(st.lists(st.sampled_from(sorted(lot_bank)), min_size=1, max_size=3, unique=True))
            site = lot_site[lots[0]]
            alert = make_alert(f"{site}-A{n:06d}", site, tuple(f"lot:{lot}" for lot in lots), rule=f"r{n}")
            owners = {lot_bank[lot] for lot in lots}
        else:
            site = data.draw(st.sampled_from(["s1", "s2"]))
            alert = make_alert(f"{site}-A{n:06d}", site, (f"device:cam-{n}",), rule=f"r{n}")
            owners = {bank for _, bank, s, _ in loans if s == site}
        alerts.append(alert)
        for bank in owners:
            expected[bank].add(alert.id)
    _, cloud = ingest_cloud(tmp_path_factory.mktemp("iso"), loans, alerts, ledger=False)
    tokens = {f"t-{bank}": Principal(bank, "bank", bank) for bank in banks} | {"t-ops": Principal("ops", "operator")}
    api = TestClient(create_app(cloud, TokenRegistry.from_mapping(tokens), AuditLog.open("sqlite://")),
                     raise_server_exceptions=False)
    assert alert_ids(api, "t-ops") == {a.id for a in alerts}
    for bank in banks:
        assert alert_ids(api, f"t-{bank}") == expected[bank]
        for alert in alerts:
            if alert.id in expected[bank]:
                continue
            assert api.get(f"/v1/alerts/{alert.id}", headers=auth(f"t-{bank}")).status_code == 404
            r = api.post(f"/v1/alerts/{alert.id}/resolve", json={"note": "x"}, headers=auth(f"t-{bank}"))
            assert r.status_code == 404
            assert cloud.desk.cases[alert.id].status == "raised"


# --- lifecycle and audit --------------------------------------------------------------------

def test_acknowledge_resolve_lifecycle_is_audited(tmp_path: Path) -> None:
    env, cloud = ingest_cloud(tmp_path, [("LN-1", "bank-a", "s1", ["L1", "L2"])],
                              [make_alert("s1-A000001", "s1", ("lot:L1",)),
                               make_alert("s1-A000002", "s1", ("lot:L2",), rule="substitution-or-hollow")])
    client = TestClient(create_app(cloud, TokenRegistry.from_mapping(TOKENS), AuditLog.open("sqlite://")))
    mine = "s1-A000001"
    r = client.post(f"/v1/alerts/{mine}/acknowledge", json={"note": "keeper called"},
                    headers={**auth("tok-a"), "X-Request-ID": "req-ack-1"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "req-ack-1"
    body = r.json()
    assert body["status"] == "acknowledged" == cloud.desk.cases[mine].status
    assert body["history"][-1] == {"at": env.now, "status": "acknowledged", "actor": "a-risk"}
    assert [n["note"] for n in body["notes"]] == ["keeper called"]
    again = client.post(f"/v1/alerts/{mine}/acknowledge", json={}, headers=auth("tok-a"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid-transition"
    no_note = client.post(f"/v1/alerts/{mine}/resolve", json={}, headers=auth("tok-a"))
    assert no_note.status_code == 422
    assert no_note.json()["error"]["field"] == "body.note"
    assert no_note.json()["error"]["message"].startswith(f"POST /v1/alerts/{mine}/resolve: body.note:")
    regulator = client.post(f"/v1/alerts/{mine}/resolve", json={"note": "x"}, headers=auth("tok-reg"))
    assert regulator.status_code == 403
    done = client.post(f"/v1/alerts/{mine}/resolve", json={"note": "goods recovered"},
                       headers={**auth("tok-a"), "X-Request-ID": "req-res-1"})
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    assert [h["status"] for h in done.json()["history"]] == ["raised", "acknowledged", "resolved"]
    assert alert_ids_by_status(client, "tok-a", "resolved") == {mine}

    # Nobody acknowledged the other alert for 15 minutes: the platform escalated it; a bank still can.
    env.run(until=env.now + 1000)
    other = "s1-A000002"
    escalated = alert_ids_by_status(client, "tok-a", "escalated")
    assert other in escalated
    assert escalated - {other} <= {i for i, c in cloud.desk.cases.items() if c.alert.targets == ("edge:s1",)}
    late = client.post(f"/v1/alerts/{other}/acknowledge", json={"note": "late"}, headers=auth("tok-ops"))
    assert late.status_code == 200
    assert [(h["status"], h["actor"]) for h in late.json()["history"]] == [
        ("raised", "platform"), ("escalated", "platform"), ("acknowledged", "ops")]

    assert client.get("/v1/audit", headers=auth("tok-a")).status_code == 403
    audit = client.get("/v1/audit", headers=auth("tok-reg")).json()
    rows = [(e["actor"], e["action"], e["target"], e["status"], e["note"]) for e in audit["items"]]
    assert rows == [
        ("a-risk", "alert.acknowledge", mine, 200, "keeper called"),
        ("a-risk", "alert.acknowledge", mine, 409, ""),
        ("csrc", "alert.resolve", mine, 403, "x"),
        ("a-risk", "alert.resolve", mine, 200, "goods recovered"),
        ("ops", "alert.acknowledge", other, 200, "late"),
    ], "every write attempt that reached a handler, in order; the 422 never did"
    assert [e["request_id"] for e in audit["items"]][0::3] == ["req-ack-1", "req-res-1"]
    assert all(e["at"].endswith("Z") for e in audit["items"])
    assert audit["items"][0]["platform_time"] == START + 5


def alert_ids_by_status(client: TestClient, token: str, status: str) -> set[str]:
    r = client.get("/v1/alerts", params={"status": status}, headers=auth(token))
    assert r.status_code == 200
    return {a["id"] for a in r.json()["items"]}


def test_audit_log_refuses_edits(tmp_path: Path) -> None:
    import sqlalchemy as sa
    from datetime import UTC, datetime

    audit = AuditLog.open(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    audit.append(at=datetime.now(UTC), platform_time=1.0, request_id="r", actor="a", role="bank", bank="b",
                 action="alert.resolve", target="X", note="n", status=200)
    for statement in ("UPDATE api_audit SET note = 'rewritten'", "DELETE FROM api_audit"):
        with pytest.raises(sa.exc.IntegrityError, match="append-only"):
            with audit.engine.begin() as conn:
                conn.execute(sa.text(statement))
    total, (entry,) = audit.entries()
    assert total == 1 and entry.note == "n"
    reopened = AuditLog.open(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    assert reopened.entries()[0] == 1


# --- evidence and proofs, checked by the client ---------------------------------------------

def test_evidence_package_and_proofs_verify_client_side(client: TestClient, scenario_run: Run) -> None:
    trusted = scenario_run.evidence.public_keys()  # what a bank holds out of band
    (mine,) = [i for i in alert_ids(client, "tok-a") if scenario_run.cloud.desk.cases[i].alert.rule ==
                "outbound-unauthorized"]
    package = client.get(f"/v1/alerts/{mine}/evidence", headers=auth("tok-a"))
    assert package.status_code == 200
    report = verify_package(package.content, REQUIRED_SIGNATURES, trusted_keys=trusted)
    assert report.ok, report.failures
    assert any(c.name.startswith("inclusion") for c in report.checks)
    decoded = msgspec.json.decode(package.content, type=EvidencePackage)
    # The proven alert entry is the one shown (verify_package proves entries, not the `alert` copy).
    proven = [msgspec.json.decode(e.data) for e in decoded.entries]
    shown = client.get(f"/v1/alerts/{mine}", headers=auth("tok-a")).json()
    assert any(p.get("type") == "alert" and p["id"] == mine and p["rule"] == shown["rule"]
               and p["targets"] == shown["targets"] for p in proven)
    first = decoded.entries[0]
    forged = msgspec.structs.replace(first, data=first.data.replace(b"small", b"SMALL", 1))
    tampered = msgspec.json.encode(msgspec.structs.replace(decoded, entries=[forged, *decoded.entries[1:]]))
    assert not verify_package(tampered, REQUIRED_SIGNATURES, trusted_keys=trusted).ok

    page = client.get("/v1/ledger/heads", params={"limit": 1000}, headers=auth("tok-b")).json()
    assert page["required_signatures"] == REQUIRED_SIGNATURES
    assert msgspec.convert(page["public_keys"], dict[str, bytes]) == trusted
    heads = msgspec.json.decode(msgspec.json.encode(page["heads"]), type=list[SignedTreeHead])
    assert len(heads) == page["total"] >= 2
    for sth in heads:
        assert len(verify_quorum(sth, trusted, REQUIRED_SIGNATURES)) >= REQUIRED_SIGNATURES
    pairs = list(zip(heads, heads[1:])) + [(heads[0], heads[-1])]
    for old, new in pairs:
        r = client.get("/v1/ledger/consistency", params={"old_size": old.head.size, "new_size": new.head.size},
                       headers=auth("tok-a"))
        assert r.status_code == 200
        proof = msgspec.json.decode(r.content, type=dict[str, int | list[bytes] | bytes])
        assert verify_consistency(old.head.size, new.head.size, old.head.root, new.head.root, proof["proof"])
        assert not verify_consistency(old.head.size, new.head.size, old.head.root, bytes(32), proof["proof"])
    beyond = client.get("/v1/ledger/consistency", params={"old_size": 1, "new_size": heads[-1].head.size + 1},
                        headers=auth("tok-a"))
    assert beyond.status_code == 422 and beyond.json()["error"]["field"] == "query.new_size"
    backwards = client.get("/v1/ledger/consistency", params={"old_size": 3, "new_size": 2}, headers=auth("tok-a"))
    assert backwards.status_code == 422 and backwards.json()["error"]["field"] == "query.old_size"


def test_ruleset_in_force_and_history(tmp_path: Path) -> None:
    env, cloud = ingest_cloud(tmp_path, [("LN-1", "bank-a", "s1", ["L1"])], [])
    api = TestClient(create_app(cloud, TokenRegistry.from_mapping(TOKENS), AuditLog.open("sqlite://")))
    first = api.get("/v1/rulesets/current", headers=auth("tok-a")).json()
    assert first["version"] == 1 and first["ledger_index"] is not None
    text = default_ruleset_path().read_text(encoding="utf-8").replace("version: 1", "version: 2", 1)
    env.run(until=env.now + 60)
    cloud.activate_ruleset(text, "bank-a-edit.yaml")
    pending = api.get("/v1/rulesets/current", headers=auth("tok-a")).json()
    assert pending["version"] == 2 and pending["activated_at"] is None, "not in the ledger yet"
    env.run(until=env.now + 5)
    current = api.get("/v1/rulesets/current", headers=auth("tok-b")).json()
    history = api.get("/v1/rulesets/history", headers=auth("tok-b")).json()["items"]
    assert [(h["version"], h["sha256"]) for h in history] == [(1, first["sha256"]), (2, current["sha256"])]
    assert current["activated_at"] == history[1]["activated_at"] > history[0]["activated_at"]
    assert current["text"] == text and current["ledger_index"] == history[1]["ledger_index"]


# --- bad input ------------------------------------------------------------------------------

def test_bad_tokens_are_refused_with_a_reason(client: TestClient) -> None:
    for headers, reason in [({}, "missing bearer token"), ({"Authorization": "Basic dG9rLWE6"}, "missing bearer"),
                            (auth("tok-ab"), "unknown token"), (auth("TOK-A"), "unknown token"),
                            (auth("x" * 5000), "unknown token")]:
        r = client.get("/v1/alerts", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert reason in r.json()["error"]["message"]
    registry = TokenRegistry.from_mapping({"ok": Principal("x", "bank", "bank-a")})
    with pytest.raises(AuthError, match="unknown"):
        registry.authenticate("ok2")


def test_token_file_stores_hashes_and_expiry(tmp_path: Path) -> None:
    live, old = new_token(), new_token()
    assert live != old and len(live) > 40
    path = tmp_path / "access.yaml"
    path.write_text(textwrap.dedent(f"""\
        tokens:
          - {{name: a-risk, role: bank, bank: bank-a, sha256: {hash_token(live)}}}
          - {{name: a-old, role: bank, bank: bank-a, sha256: {hash_token(old)}, expires: 2020-01-01T00:00:00Z}}
          - {{name: ops, role: operator, sha256: {hash_token('ops-token')}}}
        """), encoding="utf-8")
    registry = TokenRegistry.from_file(path)
    assert registry.authenticate(live) == Principal("a-risk", "bank", "bank-a")
    with pytest.raises(AuthError, match="expired"):
        registry.authenticate(old)
    assert live not in repr(vars(registry))
    env, cloud = ingest_cloud(tmp_path, [("LN-1", "bank-a", "s1", ["L1"])], [], ledger=False)
    api = TestClient(create_app(cloud, registry, AuditLog.open("sqlite://")))
    assert api.get("/v1/me", headers=auth(live)).json() == {"name": "a-risk", "role": "bank", "bank": "bank-a"}
    expired = api.get("/v1/me", headers=auth(old))
    assert expired.status_code == 401 and "token expired" in expired.json()["error"]["message"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"tokens:\n  - name: x\n    role: bank\n    sha256: {hash_token('t')}\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        TokenRegistry.from_file(bad)
    assert str(err.value).startswith(f"{bad}:2: tokens[0]: a token with role 'bank' must name its bank")
    plain = tmp_path / "plain.yaml"
    plain.write_text("tokens:\n  - {name: x, role: operator, sha256: not-a-hash}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"plain.yaml:2: tokens\[0\].sha256"):
        TokenRegistry.from_file(plain)


def test_bad_requests_get_json_errors_never_tracebacks(client: TestClient, scenario_run: Run, tmp_path: Path) -> None:
    (mine,) = [i for i in alert_ids(client, "tok-a") if scenario_run.cloud.desk.cases[i].alert.rule ==
                "outbound-unauthorized"]
    url = f"/v1/alerts/{mine}/acknowledge"
    cases = [
        (client.post(url, content=b'{"note": ', headers={**auth("tok-a"), "content-type": "application/json"}),
         422, "body"),
        (client.post(url, json={"note": "x", "extra": 1}, headers=auth("tok-a")), 422, "body.extra"),
        (client.post(url, json={"note": "x" * 2001}, headers=auth("tok-a")), 422, "body.note"),
        (client.post(url, json={"note": "x" * 70_000}, headers=auth("tok-a")), 413, None),
        (client.get("/v1/alerts", params={"limit": "many"}, headers=auth("tok-a")), 422, "query.limit"),
        (client.get("/v1/alerts", params={"status": "closed"}, headers=auth("tok-a")), 422, "query.status"),
        (client.get("/v1/nowhere", headers=auth("tok-a")), 404, None),
        (client.delete(f"/v1/alerts/{mine}", headers=auth("tok-a")), 405, None),
    ]
    for response, status, field in cases:
        error = response.json()["error"]
        assert response.status_code == status == error["status"], response.text
        assert error["field"] == field
        assert error["request"] in error["message"] and error["request_id"]
        assert "Traceback" not in response.text
    assert client.get(f"/v1/alerts/{mine}", headers=auth("tok-a")).json()["status"] == "raised"

    # A real internal failure (the ledger file is gone from under the service): a 500 that
    # names the request id and nothing about the code.
    _, cloud = ingest_cloud(tmp_path, [("LN-1", "bank-a", "s1", ["L1"])],
                            [make_alert("s1-A000001", "s1", ("lot:L1",))])
    cloud.evidence.log.close()
    api = TestClient(create_app(cloud, TokenRegistry.from_mapping(TOKENS), AuditLog.open("sqlite://")),
                     raise_server_exceptions=False)
    broken = api.get("/v1/alerts/s1-A000001/evidence", headers={**auth("tok-a"), "X-Request-ID": "rq-500"})
    assert broken.status_code == 500
    assert broken.json()["error"]["message"] == ("GET /v1/alerts/s1-A000001/evidence: internal error; "
                                                 "quote request id rq-500")
    assert "Traceback" not in broken.text and "File " not in broken.text


def test_scope_of_cloud_wide_and_registry_alerts() -> None:
    """Alerts without lots: who sees a stale price, a silent edge, a duplicate pledge, the ledger."""
    from cangtwin.platform.api.scope import BankScope

    book = CollateralBook()
    for lot, site, commodity in [("L1", "s1", "copper"), ("L2", "s2", "rubber"), ("L3", "s2", "copper")]:
        book.add_lot(Lot(lot, f"T-{lot}", site, commodity, 1000.0, None))
    for n, (loan, bank, lots) in enumerate([("LA", "bank-a", ["L1"]), ("LB", "bank-b", ["L2"]),
                                           ("LC", "bank-c", ["L3"])], 1):
        book.open_loan(Loan(loan, bank, "x", 1.0))
        book.pledge(loan, lots, f"WR-{n}")
    book.release("LA", ["L1"])  # released goods: bank A keeps seeing what concerned its pledge
    scope = BankScope(book, cloud_site="cloud")

    def banks(site: str, *targets: str, **detail) -> set[str]:
        alert = make_alert("X", site, targets)
        return set(scope.alert_banks(Alert(**{**msgspec.structs.asdict(alert), "detail": detail})))

    assert banks("s1", "lot:L1") == {"bank-a"}
    assert banks("cloud", "price:copper") == {"bank-a", "bank-c"}
    assert banks("cloud", "edge:s2") == {"bank-b", "bank-c"}
    assert banks("s2", "device:cam-1") == {"bank-b", "bank-c"}
    assert banks("s9", "device:cam-9") == set(), "a site where nobody lends: operator and regulator only"
    assert banks("cloud", "ledger:evidence") == {"bank-a", "bank-b", "bank-c"}
    assert banks("cloud", "loan:LB") == {"bank-b"}
    assert banks("cloud", "pledge:WR-3", "registration:REG-9",
                 registrations=[{"bank": "bank-c"}, {"bank": "bank-z"}]) == {"bank-c", "bank-z"}
    assert banks("cloud", "loan:unknown") == set(), "never everyone's by default"


def test_api_token_command_output_admits_the_token(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cangtwin.platform.api.cli import api_token

    result = CliRunner().invoke(api_token, ["--name", "b-desk", "--role", "bank", "--bank", "bank-b"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    token = lines[0].rsplit(" ", 1)[1]
    (tmp_path / "access.yaml").write_text("tokens:\n" + lines[2] + "\n", encoding="utf-8")
    assert token not in (tmp_path / "access.yaml").read_text(encoding="utf-8")
    assert TokenRegistry.from_file(tmp_path / "access.yaml").authenticate(token) == Principal("b-desk", "bank", "bank-b")
    refused = CliRunner().invoke(api_token, ["--name", "x", "--role", "operator", "--bank", "bank-b"])
    assert refused.exit_code == 2 and "sees every bank" in refused.output
