"""Request and response schemas of the bank API: every body is one of these, so OpenAPI is whole.

Times are seconds on the platform's clock (Unix time in live mode, simulated Unix time in a
virtual-time run), except in the audit log, whose `at` is wall-clock UTC. Binary values (hashes,
signatures, keys, ledger entries) are standard base64, exactly as the ledger's evidence
packages encode them, so `cangtwin.platform.ledger` can check them as they arrive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AlertStatus = Literal["raised", "acknowledged", "resolved", "escalated"]
Band = Literal["ok", "warning", "margin-call", "disposal"]
Base64 = str


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors -------------------------------------------------------------------------------

class FieldError(Schema):
    field: str = Field(description="where in the request: path.x, query.x, header.x or body.x.y")
    message: str


class FileLocation(Schema):
    """Where in an uploaded file (e.g. a rule file) the first problem is."""

    source: str = Field(description="the file name the upload gave")
    line: int | None = Field(description="1-based line, when the problem has one")
    field: str | None = Field(description="the field in the file, e.g. rules[3].params.window_s")
    message: str


class ErrorDetail(Schema):
    status: int
    code: str = Field(description="stable machine-readable reason, e.g. not-found, invalid-request")
    message: str = Field(description="one line naming the request and, for bad input, the field")
    request: str = Field(description="method and path of the request, e.g. POST /v1/alerts/A1/resolve")
    request_id: str = Field(description="the X-Request-ID of the request (sent or assigned)")
    field: str | None = None
    errors: list[FieldError] = []
    file: FileLocation | None = Field(default=None, description="for an uploaded file refused: where in it")


class ErrorResponse(Schema):
    error: ErrorDetail


# --- service ------------------------------------------------------------------------------

class Health(Schema):
    status: Literal["ok"]
    ruleset: str = Field(description="label of the rule set in force: name@version#hash")
    ledger_size: int = Field(description="entries in the evidence ledger")
    signed_size: int = Field(description="size of the latest signed tree head (0: none yet)")
    platform_time: float


class Me(Schema):
    name: str
    role: Literal["bank", "operator", "regulator"]
    bank: str | None


# --- collateral ---------------------------------------------------------------------------

class LotStatus(Schema):
    id: str
    tag: str
    site: str
    commodity: str
    mass_kg: float
    bay: str | None
    present: bool = Field(description="false once the goods were seen leaving the warehouse")
    pledged: bool = Field(description="pledged now (to the loan or receipt being shown)")
    released: bool = Field(description="a release order (解押) took it out of its pledge")


class LoanStatus(Schema):
    loan: str
    bank: str
    borrower: str
    amount_cny: float
    receipts: list[str] = Field(description="warehouse receipts (电子仓单) issued for this loan")
    lots: list[LotStatus] = Field(description="lots pledged to the loan now")
    pledged_mass_kg: float
    present_mass_kg: float = Field(description="of the pledged lots, those still in the warehouse")
    value_cny: float = Field(description="present, priced lots at the latest prices, after haircuts")
    ltv: float | None = Field(description="amount / value; null when a commodity has no price, when "
                              "nothing is pledged, or when the pledged goods are all gone (then band "
                              "is disposal)")
    band: Band | None = Field(description="LTV band under the ltv-band rule of the rule set in force")
    absent: list[str] = Field(description="pledged lots seen leaving: they carry no value")
    unpriced: list[str] = Field(description="commodities without a price")
    prices: dict[str, float] = Field(description="commodity → CNY per tonne used")


class CollateralStatus(Schema):
    bank: str
    platform_time: float
    book_version: int
    loans: list[LoanStatus]
    value_cny: float
    amount_cny: float


class ReceiptStatus(Schema):
    receipt: str
    loan: str
    bank: str
    lots: list[LotStatus]


LotId = Annotated[str, Field(min_length=1, max_length=200)]


class PledgeRequest(Schema):
    """Pledge lots to the loan under a new warehouse receipt (电子仓单); all the lots or none."""

    receipt: str = Field(min_length=1, max_length=200, description="the new receipt's id; each is issued once")
    lots: list[LotId] = Field(min_length=1, max_length=1000, description="lots in the warehouse, not pledged")
    note: str = Field(default="", max_length=2000)


class ReleaseRequest(Schema):
    """A release order (解押): the lots leave the loan's pledge and may then leave the warehouse."""

    lots: list[LotId] = Field(min_length=1, max_length=1000, description="lots pledged to this loan now")
    note: str = Field(default="", max_length=2000, description="e.g. the release order's number")


class ReceiptPage(Schema):
    total: int
    offset: int
    limit: int
    items: list[ReceiptStatus]


# --- alerts -------------------------------------------------------------------------------

class HistoryStep(Schema):
    at: float
    status: AlertStatus
    actor: str


class AlertView(Schema):
    id: str
    rule: str
    category: str
    severity: str
    section: str
    site: str
    targets: list[str]
    event_time: float
    observed_at: float
    raised_at: float
    cloud_received_at: float
    visible_at: float = Field(description="when the cloud held it: bank-visible from then on")
    ruleset: str
    summary: str
    detail: dict[str, Any]
    status: AlertStatus
    repeats: int = Field(description="times the same rule fired on the same targets while open")
    history: list[HistoryStep]
    banks: list[str] | None = Field(description="banks the alert concerns (operator and regulator "
                                    "only; null for a bank)")


class AlertNote(Schema):
    at: datetime
    actor: str
    action: str
    note: str
    request_id: str


class AlertDetail(AlertView):
    notes: list[AlertNote] = Field(description="notes left with successful acknowledge/resolve calls")


class AlertPage(Schema):
    total: int
    offset: int
    limit: int
    items: list[AlertView]


class AcknowledgeRequest(Schema):
    note: str = Field(default="", max_length=2000)


class ResolveRequest(Schema):
    note: str = Field(min_length=1, max_length=2000, description="why the alert is closed")


# --- ledger -------------------------------------------------------------------------------

class TreeHeadModel(Schema):
    size: int
    root: Base64
    timestamp: float


class SignedTreeHeadModel(Schema):
    head: TreeHeadModel
    signatures: dict[str, Base64] = Field(description="party → Ed25519 signature")


class PackageEntryModel(Schema):
    index: int
    data: Base64 = Field(description="the ledger entry (canonical JSON), base64")
    tree_size: int
    inclusion: list[Base64] = Field(description="RFC 6962 audit path, bottom first")


class ConsistencyLinkModel(Schema):
    old_size: int
    new_size: int
    proof: list[Base64]


class EvidencePackageModel(Schema):
    """`cangtwin-evidence-package/v1`: check it with `cangtwin verify` or `verify_package`."""

    format: str
    alert: dict[str, Any]
    entries: list[PackageEntryModel]
    heads: list[SignedTreeHeadModel]
    consistency: list[ConsistencyLinkModel]
    public_keys: dict[str, Base64]


class HeadsPage(Schema):
    required_signatures: int = Field(description="parties that must sign a head (N of M)")
    public_keys: dict[str, Base64] = Field(description="party → raw Ed25519 public key")
    total: int
    offset: int
    limit: int
    heads: list[SignedTreeHeadModel] = Field(description="ascending size")


class ConsistencyProof(Schema):
    old_size: int
    new_size: int
    old_root: Base64
    new_root: Base64
    proof: list[Base64] = Field(description="RFC 6962 SUBPROOF, bottom first")


# --- rule sets ----------------------------------------------------------------------------

class RuleSetActivation(Schema):
    name: str
    version: int
    sha256: str
    activated_at: float = Field(description="when it took effect (its ledger entry's effective_at)")
    ledger_index: int


class RuleSetInForce(Schema):
    name: str
    version: int
    sha256: str
    label: str
    activated_at: float | None = Field(description="null until its ledger entry is integrated")
    ledger_index: int | None
    text: str = Field(description="the rule file as written; its SHA-256 is `sha256`")


class RuleSetUpload(Schema):
    """A rule file to put in force: parsed as strictly as the file on disk; a bad one changes nothing."""

    text: str = Field(min_length=1, description="the rule file (YAML) exactly as written; its SHA-256 is kept")
    filename: str = Field(default="rules.yaml", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                          description="the file's name, used in error messages and as the rule set's source")
    note: str = Field(default="", max_length=2000, description="why it goes into force (audited)")


class RuleSetHistory(Schema):
    items: list[RuleSetActivation] = Field(description="oldest first")


# --- audit --------------------------------------------------------------------------------

class AuditEntryModel(Schema):
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
    status: int = Field(description="HTTP status the request got (writes refused are logged too)")
    detail: str


class AuditPage(Schema):
    total: int
    offset: int
    limit: int
    items: list[AuditEntryModel]
