"""Read models: the cloud's book, alert desk, price book and ledger, shaped as API responses."""

from __future__ import annotations

import math

import msgspec

from cangtwin.platform.cloud.alert_desk import AlertCase
from cangtwin.platform.cloud.book import CollateralBook
from cangtwin.platform.cloud.evidence import EvidenceRecorder
from cangtwin.platform.ledger.tree_head import SignedTreeHead
from cangtwin.platform.api import models
from cangtwin.platform.rules.ruleset import RuleSet
from cangtwin.platform.value.feed import PriceBook
from cangtwin.platform.value.mark_to_market import Thresholds, mark_loan, pledges_by_loan


def lot_status(book: CollateralBook, lot_id: str, loan_id: str) -> models.LotStatus:
    lot = book.lots[lot_id]
    return models.LotStatus(id=lot.id, tag=lot.tag, site=lot.site, commodity=lot.commodity,
                            mass_kg=lot.mass_kg, bay=lot.bay, present=lot.present,
                            pledged=book.pledges.get(lot_id) == loan_id, released=lot_id in book.released)


def _ltv_terms(ruleset: RuleSet) -> tuple[Thresholds, dict[str, float]]:
    """Thresholds and haircuts of the first enabled ltv-band rule, else the defaults."""
    for entry in ruleset.entries:
        if entry.kind == "ltv-band" and entry.enabled:
            return entry.params.thresholds, dict(entry.params.haircuts)
    return Thresholds(), {}


def loan_status(book: CollateralBook, loan_id: str, prices: PriceBook, ruleset: RuleSet) -> models.LoanStatus:
    loan = book.loans[loan_id]
    pledged = pledges_by_loan(book).get(loan_id, [])
    thresholds, haircuts = _ltv_terms(ruleset)
    quotes = {}
    for commodity in sorted({book.lots[lot].commodity for lot in pledged}):
        tick = prices.latest(commodity)
        if tick is not None:
            quotes[commodity] = tick.price_cny_per_t
    mark = mark_loan(book, loan_id, pledged, quotes, thresholds, haircuts)
    ltv, band = mark.ltv, mark.band
    if not pledged:
        ltv, band = None, None
    elif ltv is not None and not math.isfinite(ltv):
        ltv = None  # all pledged goods are gone: the band (disposal) says it
    lots = [lot_status(book, lot_id, loan_id) for lot_id in pledged]
    return models.LoanStatus(
        loan=loan.id, bank=loan.bank, borrower=loan.borrower, amount_cny=loan.amount_cny,
        receipts=sorted(r.id for r in book.receipts.values() if r.loan == loan_id), lots=lots,
        pledged_mass_kg=sum(lot.mass_kg for lot in lots),
        present_mass_kg=sum(lot.mass_kg for lot in lots if lot.present),
        value_cny=mark.value_cny, ltv=ltv, band=band, absent=list(mark.absent),
        unpriced=list(mark.unpriced), prices=mark.prices,
    )


def receipt_status(book: CollateralBook, receipt_id: str) -> models.ReceiptStatus:
    receipt = book.receipts[receipt_id]
    return models.ReceiptStatus(receipt=receipt.id, loan=receipt.loan, bank=book.loans[receipt.loan].bank,
                                lots=[lot_status(book, lot, receipt.loan) for lot in receipt.lots
                                      if lot in book.lots])


def alert_view(case: AlertCase, banks: frozenset[str] | None) -> dict:
    """The fields of `models.AlertView` (a dict, so `AlertDetail` can extend it)."""
    alert = case.alert
    return dict(
        id=alert.id, rule=alert.rule, category=alert.category, severity=alert.severity,
        section=alert.section, site=alert.site, targets=list(alert.targets),
        event_time=alert.event_time, observed_at=alert.observed_at, raised_at=alert.raised_at,
        cloud_received_at=case.cloud_received_at, visible_at=case.visible_at,
        ruleset=alert.ruleset, summary=alert.summary, detail=dict(alert.detail),
        status=str(case.status), repeats=case.repeats,
        history=[models.HistoryStep(at=at, status=str(status), actor=actor) for at, status, actor in case.history],
        banks=None if banks is None else sorted(banks),
    )


def signed_head(sth: SignedTreeHead) -> models.SignedTreeHeadModel:
    return models.SignedTreeHeadModel.model_validate(msgspec.to_builtins(sth))


class RuleSetLedger:
    """Rule-set activations as the ledger records them, scanning only entries added since last time."""

    _MARK = b'"type":"ruleset"'  # entries are canonical JSON (sorted keys, no spaces)

    def __init__(self, evidence: EvidenceRecorder | None) -> None:
        self.evidence = evidence
        self._scanned = 0
        self._items: list[models.RuleSetActivation] = []

    def activations(self) -> list[models.RuleSetActivation]:
        if self.evidence is None:
            return []
        log = self.evidence.log
        for index in range(self._scanned, log.size):
            data = log.entry(index)
            if self._MARK in data:
                record = msgspec.json.decode(data)
                self._items.append(models.RuleSetActivation(
                    name=record["name"], version=record["version"], sha256=record["sha256"],
                    activated_at=record["effective_at"], ledger_index=index))
            self._scanned = index + 1
        return list(self._items)
