"""The bank's side of a live run: a scenario's `release` and `rules-update` operations, made
through the platform's bank API at their scheduled times, as a bank's risk desk and the platform
operator would make them (cangtwin's API: `POST /v1/loans/{loan}/releases`, `POST /v1/rulesets`).

The adapter file's `bank_api` section says where the API is and which token acts for whom:

    bank_api:
      url: http://127.0.0.1:8080/v1
      tokens: {bank-a: "ctw_…"}     # each lending bank's token: its release orders
      operator: "ctw_…"             # the operator's: rule sets (and releases for a bank with no token)
      timeout_s: 10

A call blocks the twin until the platform answers, so an outbound scheduled after a release finds
the release in force, as it would when the goods leave on the strength of a confirmed order.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import httpx

from cangtwin.platform.config_file import InputError, read_text
from cangtwin.scenarios.live.adapter import Adapter
from cangtwin.scenarios.spec import Release, RulesUpdate, Scenario, rules_file

BANK_OPERATIONS = (Release, RulesUpdate)


@dataclasses.dataclass
class BankCall:
    """One operation as the platform answered it (platform time, HTTP status, its message)."""

    operation: str  # "operations[i]"
    kind: str
    at: float
    status: int | None  # None: no answer
    message: str
    ok: bool


def check_bank_api(scenario: Scenario, adapter: Adapter) -> None:
    """InputError (one line naming the adapter file and the missing field) when the scenario has a
    bank operation the adapter gives no way to make."""
    api = adapter.spec.bank_api
    loans = {loan.id: loan.bank for loan in scenario.spec.loans}
    for i, op in enumerate(scenario.spec.operations):
        if not isinstance(op, BANK_OPERATIONS):
            continue
        what = f"{Path(scenario.source).name} operations[{i}] ({op.kind}) is made through the platform's bank API"
        if api is None:
            raise adapter.error(("bank_api",), f"missing: {what}; add bank_api: {{url, tokens, operator}}")
        if isinstance(op, RulesUpdate) and api.operator is None:
            raise adapter.error(("bank_api", "operator"), f"missing: {what}, and only the operator puts "
                                                          "a rule set in force")
        if isinstance(op, Release) and loans.get(op.loan) not in api.tokens and api.operator is None:
            raise adapter.error(("bank_api", "tokens", loans.get(op.loan) or op.loan),
                                f"missing: {what} for loan {op.loan}; give its bank's token or the operator's")


class BankDesk:
    """Makes the scenario's bank operations through the API and keeps each answer."""

    def __init__(self, scenario: Scenario, adapter: Adapter) -> None:
        check_bank_api(scenario, adapter)
        self.scenario, self.adapter = scenario, adapter
        self.api = adapter.spec.bank_api
        self.banks = {loan.id: loan.bank for loan in scenario.spec.loans}
        self.calls: list[BankCall] = []

    def make(self, index: int, op: Release | RulesUpdate) -> BankCall:
        """Make one operation now; a refusal is kept, not raised (the run's result reports it)."""
        where = f"operations[{index}]"
        note = f"{self.scenario.spec.scenario} {where}"
        if isinstance(op, Release):
            token = self.api.tokens.get(self.banks.get(op.loan, ""), self.api.operator)
            call = self._post(where, op.kind, f"/loans/{op.loan}/releases", token,
                              {"lots": list(op.lots), "note": note}, expected=(200,))
        else:
            path = rules_file(self.scenario, op.file)
            try:
                text = read_text(path)
            except InputError as err:
                call = BankCall(where, op.kind, self.adapter.platform_now(), None, str(err), False)
            else:
                # A file the platform refuses (422) or already has in force (409) is the platform doing
                # its job, as `bank.rules-refused` is in virtual time: answered, not failed.
                call = self._post(where, op.kind, "/rulesets", self.api.operator,
                                  {"text": text, "filename": path.name, "note": note}, expected=(201, 409, 422))
        self.calls.append(call)
        return call

    def _post(self, where: str, kind: str, path: str, token: str | None, body: dict,
              expected: tuple[int, ...]) -> BankCall:
        url = self.api.url.rstrip("/") + path
        at = self.adapter.platform_now()
        started = time.monotonic()
        try:
            response = httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"},
                                  timeout=self.api.timeout_s)
        except httpx.HTTPError as exc:
            return BankCall(where, kind, at, None, f"{url}: {exc.__class__.__name__}: {exc}", False)
        message = _message(response)
        took = time.monotonic() - started
        return BankCall(where, kind, at, response.status_code, f"{message} ({took * 1000:.0f} ms)",
                        response.status_code in expected)


def _message(response: httpx.Response) -> str:
    """The platform's own words: cangtwin's `error.message`, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))  # it names the request and the field already
    return "ok" if response.is_success else str(body)[:200]
