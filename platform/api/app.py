"""The bank API over a running `CloudService`: collateral, alerts, evidence, rule sets, audit.

Writes: acknowledge and resolve alerts; pledge lots to a loan and release them (release orders),
through the cloud's own collateral book, which refuses anything that would break its invariants;
put a rule file in force (operator only), through the cloud's own rule-set activation. Every write
attempt is in the audit log with its outcome. After a write succeeds, `on_write` (live mode: the
cloud store's commit) runs before the answer, then the edges get the new book as a BookSync.

`create_app(cloud, access, audit)` returns an ASGI app. Handlers are `async def` and never
await while they touch the cloud, so when the app runs on the same event loop as the cloud
service (live mode) each request sees, and changes, the platform state in one step, with no
lock. Isolation: a bank sees a loan, receipt or alert only if it concerns that bank
(`scope.BankScope`); anything else answers 404 exactly as if it did not exist. A read-only role
(regulator) asking to write gets 403; the audit log is for operator and regulator only (403).
"""

import hashlib
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, NoReturn

import msgspec
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cangtwin.platform.api import models
from cangtwin.platform.api.access import AuthError, Principal, TokenRegistry
from cangtwin.platform.api.audit import AuditLog
from cangtwin.platform.api.errors import ApiError, RequestGuard, install_handlers, request_id
from cangtwin.platform.api.scope import BankScope
from cangtwin.platform.api.views import (
    RuleSetLedger,
    alert_view,
    loan_status,
    receipt_status,
    signed_head,
)
from cangtwin.platform.cloud.alert_desk import AlertCase, AlertDeskError
from cangtwin.platform.cloud.book import BookError
from cangtwin.platform.cloud.evidence import REQUIRED_SIGNATURES, EvidenceRecorder
from cangtwin.platform.cloud.service import CloudService
from cangtwin.platform.config_file import InputError

MAX_BODY_BYTES = 64 * 1024
_ERRORS = {status: {"model": models.ErrorResponse, "description": text} for status, text in {
    400: "a body that cannot be decoded at all (not UTF-8)",
    401: "missing, unknown or expired bearer token",
    403: "the role may not do this",
    404: "no such resource, or not one of the caller's bank",
    413: "request body too large",
    422: "invalid request: the error names the field",
}.items()}
_CONFLICT = {409: {"model": models.ErrorResponse, "description": "not possible in the current state"}}
_STORE = {503: {"model": models.ErrorResponse, "description": "the change was made but the store refused it; "
                                                              "the service stops (live mode)"}}
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _page(items: list, offset: int, limit: int) -> list:
    return items[offset:offset + limit]


class _Platform:
    """What the handlers share: the live cloud, its ledger, the access list and the audit log."""

    def __init__(self, cloud: CloudService, audit: AuditLog, evidence: EvidenceRecorder | None,
                 on_write: Callable[[], bool] | None) -> None:
        self.cloud, self.audit, self.evidence = cloud, audit, evidence
        self.on_write = on_write
        self._scope = BankScope(cloud.book, cloud.engine.site)
        self.rulesets = RuleSetLedger(evidence)

    @property
    def scope(self) -> BankScope:
        """Follows the cloud's book even if the service swaps it (e.g. reloaded from its store)."""
        if self._scope.book is not self.cloud.book:
            self._scope = BankScope(self.cloud.book, self.cloud.engine.site)
        return self._scope

    # --- visibility ---

    def visible_case(self, who: Principal, alert_id: str) -> tuple[AlertCase, frozenset[str]]:
        case = self.cloud.desk.cases.get(alert_id)
        banks = self.scope.alert_banks(case.alert) if case is not None else frozenset()
        if case is None or not who.may_see(banks):
            raise ApiError(404, f"no alert {alert_id!r}", field="path.alert_id")
        return case, banks

    def detail(self, who: Principal, case: AlertCase, banks: frozenset[str]) -> models.AlertDetail:
        _, entries = self.audit.entries(target=case.alert.id, limit=1000)
        notes = [models.AlertNote(at=e.at, actor=e.actor, action=e.action, note=e.note, request_id=e.request_id)
                 for e in entries if e.status == 200 and e.action.startswith("alert.") and e.note]
        return models.AlertDetail(**alert_view(case, banks if who.sees_all else None), notes=notes)

    # --- writes ---

    def entry(self, request: Request, who: Principal, action: str, target: str, note: str) -> dict:
        """An audit row's fields for this write attempt (status and detail come with the outcome)."""
        return dict(at=datetime.now(UTC), platform_time=self.cloud.clock.now(), request_id=request_id(request.scope),
                    actor=who.name, role=who.role, bank=who.bank, action=action, target=target, note=note)

    def refuse(self, entry: dict, error: ApiError, detail: str | None = None) -> NoReturn:
        self.audit.append(**entry, status=error.status, detail=detail or error.message)
        raise error

    def writable(self, entry: dict, who: Principal) -> None:
        if not who.may_write:
            self.refuse(entry, ApiError(403, f"role {who.role!r} is read-only"), "read-only role")

    def stored(self) -> None:
        """Live mode: the store commits the change before anyone is told it happened."""
        if self.on_write is not None and not self.on_write():
            raise ApiError(503, "the change was made, but the cloud store refused to commit it; the service "
                                "is stopping and will resume from its store", code="store-unavailable")

    def transition(self, request: Request, who: Principal, alert_id: str, verb: str, note: str) -> models.AlertDetail:
        """Acknowledge or resolve an alert; every attempt is audited with its outcome."""
        entry = self.entry(request, who, f"alert.{verb}", alert_id, note)
        self.writable(entry, who)
        try:
            case, banks = self.visible_case(who, alert_id)
        except ApiError as exc:
            self.refuse(entry, exc, "no such alert for this principal")
        step = self.cloud.desk.acknowledge if verb == "acknowledge" else self.cloud.desk.resolve
        try:
            with self.audit.appending(**entry, status=200, detail=f"from {case.status}"):
                step(alert_id, entry["platform_time"], who.name)
        except AlertDeskError as exc:
            self.refuse(entry, ApiError(409, str(exc), code="invalid-transition"))
        self.stored()
        self.cloud.tap("api.alert", {"alert": alert_id, "status": str(case.status), "actor": who.name,
                                     "request_id": entry["request_id"]})
        return self.detail(who, case, banks)

    def own_loan(self, entry: dict, who: Principal, loan_id: str) -> None:
        loan = self.cloud.book.loans.get(loan_id)
        if loan is None or not who.may_see({loan.bank}):
            self.refuse(entry, ApiError(404, f"no loan {loan_id!r}", field="path.loan_id"),
                        "no such loan for this principal")

    def book_refusal(self, error: BookError, who: Principal, action: str, lots: list[str]) -> ApiError:
        """A book invariant the request would break, as a 4xx naming the request's field.

        A pledge of a lot pledged to another bank's loan is refused without naming that loan."""
        field = error.field or "lots"
        message = str(error)
        if action == "book.pledge" and field.startswith("lots[") and error.kind == "conflict":
            lot = lots[int(field[5:-1])]
            holder = self.cloud.book.loans.get(self.cloud.book.pledges.get(lot, ""))
            if holder is not None and not who.may_see({holder.bank}):
                message = f"lot {lot} is already pledged"
        status = 422 if error.kind in ("unknown", "invalid") else 409
        return ApiError(status, message, field="body." + field.replace("[", ".").replace("]", ""),
                        code="invalid-request" if status == 422 else "book-conflict")

    def change_book(self, request: Request, who: Principal, action: str, loan_id: str, lots: list[str],
                    note: str, change: Callable[[], str], status: int = 200) -> None:
        """A bank action on the collateral book: audited, refused whole if the book says no, stored,
        then sent to the edges."""
        entry = self.entry(request, who, action, loan_id, note)
        self.writable(entry, who)
        self.own_loan(entry, who, loan_id)
        book = self.cloud.book
        try:
            with self.audit.appending(**entry, status=status, detail=f"book version {book.version + 1}"):
                detail = change()
        except BookError as exc:
            self.refuse(entry, self.book_refusal(exc, who, action, lots), f"refused by the book: {exc}")
        self.stored()
        self.cloud.book_changed()
        self.cloud.tap("api.book", {"action": action, "loan": loan_id, "detail": detail, "actor": who.name,
                                    "request_id": entry["request_id"]})

    def activate(self, request: Request, who: Principal, upload: models.RuleSetUpload) -> None:
        """Put a rule file in force through the cloud's own activation (ledger, store, edges)."""
        digest = hashlib.sha256(upload.text.encode("utf-8")).hexdigest()
        entry = self.entry(request, who, "ruleset.activate", digest, upload.note)
        if who.role != "operator":
            self.refuse(entry, ApiError(403, "only the operator puts a rule set in force: it governs every "
                                             "bank's collateral"), f"role {who.role}")
        if digest == self.cloud.ruleset.sha256:
            self.refuse(entry, ApiError(409, f"rule set {self.cloud.ruleset.label} is already in force",
                                        field="body.text", code="already-in-force"))
        try:
            with self.audit.appending(**entry, status=201, detail=f"from {self.cloud.ruleset.label}"):
                self.cloud.activate_ruleset(upload.text, upload.filename)
        except InputError as exc:
            location = models.FileLocation(source=exc.source, line=exc.line, field=exc.field, message=exc.message)
            self.refuse(entry, ApiError(422, str(exc), field="body.text", code="invalid-rule-file", file=location))
        self.stored()


def create_app(cloud: CloudService, access: TokenRegistry, audit: AuditLog, *,
               evidence: EvidenceRecorder | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               on_write: Callable[[], bool] | None = None) -> FastAPI:
    """The API over `cloud`; `evidence` defaults to the recorder the cloud writes its ledger with.

    `on_write` runs after each successful write, before the answer; False means the store refused
    the change (answered 503). Live mode passes the cloud node's commit."""
    p = _Platform(cloud, audit, evidence if evidence is not None else cloud.evidence, on_write)
    app = FastAPI(
        title="cangtwin bank API", version="1.0.0", responses=_ERRORS,
        description="Collateral, alerts, evidence with RFC 6962 proofs, rule sets and the audit log, "
                    "scoped per bank by bearer token. See docs/api.md.",
    )
    install_handlers(app)
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)
    bearer = HTTPBearer(auto_error=False, description="a token from the API's access file")

    async def principal(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)", headers=challenge)
        try:
            return access.authenticate(credentials.credentials)
        except AuthError as exc:
            raise ApiError(401, str(exc), headers=challenge) from None

    Who = Annotated[Principal, Depends(principal)]

    def need_ledger() -> EvidenceRecorder:
        if p.evidence is None:
            raise ApiError(404, "this platform keeps no evidence ledger", code="no-ledger")
        return p.evidence

    # --- service ---

    @app.get("/v1/health", response_model=models.Health, tags=["service"])
    async def health() -> models.Health:
        """Liveness and the state a monitor wants: rule set, ledger size. No token needed."""
        heads = p.evidence.heads if p.evidence else []
        return models.Health(status="ok", ruleset=cloud.ruleset.label,
                             ledger_size=p.evidence.log.size if p.evidence else 0,
                             signed_size=heads[-1].head.size if heads else 0,
                             platform_time=cloud.clock.now())

    @app.get("/v1/me", response_model=models.Me, tags=["service"])
    async def me(who: Who) -> models.Me:
        """Who the token belongs to."""
        return models.Me(name=who.name, role=who.role, bank=who.bank)

    # --- collateral ---

    @app.get("/v1/banks/{bank}/collateral", response_model=models.CollateralStatus, tags=["collateral"])
    async def collateral(bank: str, who: Who) -> models.CollateralStatus:
        """A bank's loans with their pledged lots, masses, value at the latest prices, LTV and band."""
        if not who.sees_all and bank != who.bank:
            raise ApiError(404, f"no bank {bank!r}", field="path.bank")
        loans = [loan_status(cloud.book, loan.id, cloud.prices, cloud.ruleset)
                 for loan in sorted(cloud.book.loans.values(), key=lambda loan: loan.id) if loan.bank == bank]
        if not loans and bank != who.bank:
            raise ApiError(404, f"no bank {bank!r}", field="path.bank")
        return models.CollateralStatus(bank=bank, platform_time=cloud.clock.now(), book_version=cloud.book.version,
                                       loans=loans, value_cny=sum(loan.value_cny for loan in loans),
                                       amount_cny=sum(loan.amount_cny for loan in loans))

    @app.get("/v1/loans/{loan_id}", response_model=models.LoanStatus, tags=["collateral"])
    async def loan(loan_id: str, who: Who) -> models.LoanStatus:
        """One loan's collateral status."""
        found = cloud.book.loans.get(loan_id)
        if found is None or not who.may_see({found.bank}):
            raise ApiError(404, f"no loan {loan_id!r}", field="path.loan_id")
        return loan_status(cloud.book, loan_id, cloud.prices, cloud.ruleset)

    @app.post("/v1/loans/{loan_id}/pledges", response_model=models.ReceiptStatus, status_code=201,
              tags=["collateral"], responses={**_CONFLICT, **_STORE})
    async def pledge_lots(loan_id: str, body: models.PledgeRequest, request: Request, who: Who) -> models.ReceiptStatus:
        """Pledge lots to one of the caller's loans under a new warehouse receipt; all or none. Refused
        (409, naming the field) if a lot is pledged already or has left, or the receipt exists. Audited."""
        p.change_book(request, who, "book.pledge", loan_id, body.lots, body.note,
                      lambda: f"receipt {cloud.book.pledge(loan_id, list(body.lots), body.receipt).id}: "
                              f"{','.join(body.lots)}", status=201)
        return receipt_status(cloud.book, body.receipt)

    @app.post("/v1/loans/{loan_id}/releases", response_model=models.LoanStatus, tags=["collateral"],
              responses={**_CONFLICT, **_STORE})
    async def release_lots(loan_id: str, body: models.ReleaseRequest, request: Request, who: Who) -> models.LoanStatus:
        """A release order (解押): the lots leave the loan's pledge, and the edges stop guarding them
        against outbound. Refused (409, naming the field) for a lot not pledged to this loan. Audited."""
        p.change_book(request, who, "book.release", loan_id, body.lots, body.note,
                      lambda: cloud.book.release(loan_id, list(body.lots)) or f"released {','.join(body.lots)}")
        return loan_status(cloud.book, loan_id, cloud.prices, cloud.ruleset)

    @app.get("/v1/pledges", response_model=models.ReceiptPage, tags=["collateral"])
    async def pledges(who: Who, offset: Offset = 0, limit: Limit = 100) -> models.ReceiptPage:
        """Warehouse receipts (电子仓单) the caller may see, with the state of each lot."""
        ids = sorted(r.id for r in cloud.book.receipts.values() if who.may_see({p.scope.receipt_bank(r.id)}))
        items = [receipt_status(cloud.book, rid) for rid in _page(ids, offset, limit)]
        return models.ReceiptPage(total=len(ids), offset=offset, limit=limit, items=items)

    @app.get("/v1/pledges/{receipt_id}", response_model=models.ReceiptStatus, tags=["collateral"])
    async def pledge(receipt_id: str, who: Who) -> models.ReceiptStatus:
        """One warehouse receipt."""
        bank = p.scope.receipt_bank(receipt_id)
        if bank is None or not who.may_see({bank}):
            raise ApiError(404, f"no pledge {receipt_id!r}", field="path.receipt_id")
        return receipt_status(cloud.book, receipt_id)

    # --- alerts ---

    @app.get("/v1/alerts", response_model=models.AlertPage, tags=["alerts"])
    async def alerts(who: Who, status: models.AlertStatus | None = None, rule: str | None = None,
                     site: str | None = None, offset: Offset = 0, limit: Limit = 100) -> models.AlertPage:
        """The caller's alerts, oldest first (by when they became bank-visible)."""
        rows = []
        for case in cloud.desk.cases.values():
            if (status and case.status != status) or (rule and case.alert.rule != rule) or \
                    (site and case.alert.site != site):
                continue
            banks = p.scope.alert_banks(case.alert)
            if who.may_see(banks):
                rows.append((case, banks))
        rows.sort(key=lambda row: (row[0].visible_at, row[0].alert.id))
        items = [models.AlertView(**alert_view(case, banks if who.sees_all else None))
                 for case, banks in _page(rows, offset, limit)]
        return models.AlertPage(total=len(rows), offset=offset, limit=limit, items=items)

    @app.get("/v1/alerts/{alert_id}", response_model=models.AlertDetail, tags=["alerts"])
    async def alert(alert_id: str, who: Who) -> models.AlertDetail:
        """One alert with its lifecycle history and the notes left with it."""
        case, banks = p.visible_case(who, alert_id)
        return p.detail(who, case, banks)

    @app.post("/v1/alerts/{alert_id}/acknowledge", response_model=models.AlertDetail, tags=["alerts"],
              responses=_CONFLICT)
    async def acknowledge(alert_id: str, body: models.AcknowledgeRequest, request: Request, who: Who) -> models.AlertDetail:
        """Raised or escalated → acknowledged. Audited."""
        return p.transition(request, who, alert_id, "acknowledge", body.note)

    @app.post("/v1/alerts/{alert_id}/resolve", response_model=models.AlertDetail, tags=["alerts"],
              responses=_CONFLICT)
    async def resolve(alert_id: str, body: models.ResolveRequest, request: Request, who: Who) -> models.AlertDetail:
        """Raised, acknowledged or escalated → resolved, with a note saying why. Audited."""
        return p.transition(request, who, alert_id, "resolve", body.note)

    @app.get("/v1/alerts/{alert_id}/evidence", tags=["evidence"], response_class=Response,
             responses={200: {"model": models.EvidencePackageModel, "description": "the evidence package",
                              "content": {"application/json": {}}}, **_CONFLICT})
    async def evidence_package(alert_id: str, who: Who) -> Response:
        """The alert's evidence package: its ledger entries with inclusion proofs, the signed tree
        heads they are proven against, consistency proofs between those heads, and the parties'
        keys. The bytes are the package itself: `cangtwin verify` checks them offline."""
        case, _ = p.visible_case(who, alert_id)
        package = need_ledger().package(case.alert)
        if package is None:
            raise ApiError(409, f"the evidence of {alert_id} is not integrated into the ledger yet; retry shortly",
                           code="evidence-pending", headers={"Retry-After": "1"})
        return Response(content=package, media_type="application/json")

    # --- ledger ---

    @app.get("/v1/ledger/heads", response_model=models.HeadsPage, tags=["evidence"])
    async def heads(who: Who, offset: Offset = 0, limit: Limit = 100) -> models.HeadsPage:
        """Signed tree heads in ascending size, and the parties' public keys to check them."""
        recorder = need_ledger()
        all_heads = recorder.heads
        return models.HeadsPage(
            required_signatures=REQUIRED_SIGNATURES, public_keys=msgspec.to_builtins(recorder.public_keys()),
            total=len(all_heads), offset=offset, limit=limit,
            heads=[signed_head(h) for h in _page(all_heads, offset, limit)])

    @app.get("/v1/ledger/consistency", response_model=models.ConsistencyProof, tags=["evidence"])
    async def consistency(who: Who, old_size: Annotated[int, Query(ge=0)],
                          new_size: Annotated[int, Query(ge=0)]) -> models.ConsistencyProof:
        """RFC 6962 proof that the ledger at `old_size` is a prefix of the ledger at `new_size`.
        Both sizes must be within the latest signed tree head."""
        recorder = need_ledger()
        signed = recorder.heads[-1].head.size if recorder.heads else 0
        if new_size > signed:
            raise ApiError(422, f"must be at most {signed}, the size of the latest signed tree head, "
                                f"got {new_size}", field="query.new_size")
        if old_size > new_size:
            raise ApiError(422, f"must be at most new_size ({new_size}), got {old_size}", field="query.old_size")
        log = recorder.log
        proof = log.consistency_proof(old_size, new_size)
        return models.ConsistencyProof.model_validate(msgspec.to_builtins(
            {"old_size": old_size, "new_size": new_size, "old_root": log.root(old_size),
             "new_root": log.root(new_size), "proof": proof}))

    # --- rule sets ---

    @app.get("/v1/rulesets/current", response_model=models.RuleSetInForce, tags=["rules"])
    async def ruleset_current(who: Who) -> models.RuleSetInForce:
        """The rule set in force, with its file text and when its hash entered the ledger."""
        ruleset = cloud.ruleset
        entry = next((a for a in reversed(p.rulesets.activations()) if a.sha256 == ruleset.sha256), None)
        return models.RuleSetInForce(
            name=ruleset.name, version=ruleset.version, sha256=ruleset.sha256, label=ruleset.label,
            activated_at=entry.activated_at if entry else None, ledger_index=entry.ledger_index if entry else None,
            text=ruleset.text)

    @app.post("/v1/rulesets", response_model=models.RuleSetInForce, status_code=201, tags=["rules"],
              responses={**_CONFLICT, **_STORE})
    async def ruleset_activate(body: models.RuleSetUpload, request: Request, who: Who) -> models.RuleSetInForce:
        """Put a rule file in force (operator only): parsed strictly (a bad file is 422 naming its line
        and field, and changes nothing), its hash into the evidence ledger, the file to every edge.
        Audited."""
        p.activate(request, who, body)
        return await ruleset_current(who)

    @app.get("/v1/rulesets/history", response_model=models.RuleSetHistory, tags=["rules"])
    async def ruleset_history(who: Who) -> models.RuleSetHistory:
        """Every rule set that took effect, oldest first, as recorded in the evidence ledger."""
        return models.RuleSetHistory(items=p.rulesets.activations())

    # --- audit ---

    @app.get("/v1/audit", response_model=models.AuditPage, tags=["audit"])
    async def audit_log(who: Who, offset: Offset = 0, limit: Limit = 100, actor: str | None = None,
                        action: str | None = None, target: str | None = None) -> models.AuditPage:
        """Every write attempt, oldest first (operator and regulator only)."""
        if not who.sees_all:
            raise ApiError(403, "the audit log is for the operator and the regulator")
        total, entries = audit.entries(offset=offset, limit=limit, actor=actor, action=action, target=target)
        items = [models.AuditEntryModel(**asdict(e)) for e in entries]
        return models.AuditPage(total=total, offset=offset, limit=limit, items=items)

    return app

