"""Which banks a resource concerns, from the collateral book: the basis of per-bank isolation.

A loan concerns its bank; a receipt concerns its loan's bank. An alert concerns:
- the banks of the loans, receipts and lots it targets (a lot counts for every loan a receipt
  ever pledged it to, so an alert stays visible after a release), of the loans its detail
  names, and the banks named in its registry detail (a duplicate pledge involves them all);
- if it names a loan or receipt and none of those resolve, nobody (operator and regulator only);
- otherwise, with no bank found (a device, an edge, a bay): every bank with goods pledged at the
  alert's site or at the site of the edge it names (a site where nobody lends: nobody);
- for an alert of the cloud's own rules with none of the above: every bank pledging the
  commodity it names (a stale price), or else every bank (the shared ledger is everyone's).
Everything here is derived from records that are only ever added to (loans, receipts), so the
answer for an alert never shrinks as the book changes.
"""

from __future__ import annotations

from collections import defaultdict

from cangtwin.platform.cloud.book import CollateralBook
from cangtwin.platform.records import Alert


class BankScope:
    """Indexes over the book, rebuilt whenever the book's version changes."""

    def __init__(self, book: CollateralBook, cloud_site: str) -> None:
        self.book = book
        self.cloud_site = cloud_site  # the `site` the cloud's own rules stamp on their alerts
        self._version = -1
        self._lot_banks: dict[str, set[str]] = {}
        self._site_banks: dict[str, set[str]] = {}
        self._commodity_banks: dict[str, set[str]] = {}

    def _refresh(self) -> None:
        book = self.book
        if self._version == book.version:
            return
        lot_banks: dict[str, set[str]] = defaultdict(set)
        ever_pledged = [(lot, r.loan) for r in book.receipts.values() for lot in r.lots]
        for lot_id, loan_id in ever_pledged + list(book.pledges.items()):
            loan = book.loans.get(loan_id)
            if loan is not None:
                lot_banks[lot_id].add(loan.bank)
        site_banks: dict[str, set[str]] = defaultdict(set)
        commodity_banks: dict[str, set[str]] = defaultdict(set)
        for lot_id, banks in lot_banks.items():
            lot = book.lots.get(lot_id)
            if lot is not None:
                site_banks[lot.site] |= banks
                commodity_banks[lot.commodity] |= banks
        self._lot_banks, self._site_banks = dict(lot_banks), dict(site_banks)
        self._commodity_banks = dict(commodity_banks)
        self._version = book.version

    def loan_bank(self, loan_id: str) -> str | None:
        loan = self.book.loans.get(loan_id)
        return None if loan is None else loan.bank

    def receipt_bank(self, receipt_id: str) -> str | None:
        receipt = self.book.receipts.get(receipt_id)
        return None if receipt is None else self.loan_bank(receipt.loan)

    def alert_banks(self, alert: Alert) -> frozenset[str]:
        self._refresh()
        banks: set[str] = set()
        priced: list[str] = []
        sites = {alert.site} if alert.site != self.cloud_site else set()
        for target in alert.targets:
            kind, _, name = target.partition(":")
            if kind == "loan":
                banks.add(self.loan_bank(name) or "")
            elif kind == "pledge":
                banks.add(self.receipt_bank(name) or "")
            elif kind == "lot":
                banks |= self._lot_banks.get(name, set())
            elif kind == "price":
                priced.append(name)
            elif kind == "edge":
                sites.add(name)
        detail = alert.detail if isinstance(alert.detail, dict) else {}
        loans = detail.get("loans")
        if isinstance(loans, list):
            banks |= {self.loan_bank(loan) or "" for loan in loans if isinstance(loan, str)}
        registrations = detail.get("registrations")
        if isinstance(registrations, list):
            banks |= {r["bank"] for r in registrations if isinstance(r, dict) and isinstance(r.get("bank"), str)}
        banks.discard("")
        names_finance = any(t.startswith(("loan:", "pledge:")) for t in alert.targets)
        if banks or names_finance:  # a loan or receipt nobody holds: the operator's business only
            return frozenset(banks)
        if sites:
            return frozenset(b for site in sites for b in self._site_banks.get(site, ()))
        if priced:
            return frozenset(b for c in priced for b in self._commodity_banks.get(c, ()))
        return frozenset(loan.bank for loan in self.book.loans.values())
