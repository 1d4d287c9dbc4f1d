"""Schemathesis against the bank API's own OpenAPI document: no server errors, and every response
matches the status codes, content types, headers and schemas the document declares. The writes
(alert lifecycle, pledges, release orders, rule-set activation) are fuzzed too, as the operator
and as a bank, against a platform whose book, alerts and rules they really change."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cangtwin.platform.api.access import TokenRegistry
from cangtwin.platform.api.app import create_app
from cangtwin.platform.api.audit import AuditLog
from test_api import TOKENS, auth, ingest_cloud, make_alert

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


def _build_app():
    """Two banks at two sites, alerts on lots and on a device, a ledger with signed heads."""
    loans = [("LN-A-001", "bank-a", "s1", ["L1", "L2"]), ("LN-B-001", "bank-b", "s2", ["L3"])]
    alerts = [make_alert("s1-A000001", "s1", ("lot:L1",)), make_alert("s2-A000001", "s2", ("lot:L3",)),
              make_alert("s1-A000002", "s1", ("device:cam-1",), rule="camera-tamper")]
    _, cloud = ingest_cloud(WORKDIR, loans, alerts)
    return create_app(cloud, TokenRegistry.from_mapping(TOKENS), AuditLog.open("sqlite://"))


# Schemathesis reads the schema when the module is imported (its fixture-based loader does not
# work with pytest 9), so the platform is built here, in a folder removed after the module.
WORKDIR = Path(tempfile.mkdtemp(prefix="cangtwin-api-schema-"))
schema = schemathesis.openapi.from_asgi("/openapi.json", _build_app())


@pytest.fixture(scope="module", autouse=True)
def _remove_workdir() -> Iterator[None]:
    yield
    shutil.rmtree(WORKDIR, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi(case) -> None:
    """Each case as the operator (sees everything) and as a bank (404 on what is not its own)."""
    for token in ("tok-ops", "tok-a"):
        case.call_and_validate(headers=auth(token), checks=CHECKS)


def test_openapi_documents_every_operation_and_its_errors() -> None:
    document = schema.raw_schema
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert operations >= {
        ("GET", "/v1/health"), ("GET", "/v1/banks/{bank}/collateral"), ("GET", "/v1/alerts"),
        ("POST", "/v1/alerts/{alert_id}/acknowledge"), ("POST", "/v1/alerts/{alert_id}/resolve"),
        ("GET", "/v1/alerts/{alert_id}/evidence"), ("GET", "/v1/ledger/heads"), ("GET", "/v1/ledger/consistency"),
        ("GET", "/v1/rulesets/current"), ("GET", "/v1/rulesets/history"), ("GET", "/v1/audit"),
        ("POST", "/v1/loans/{loan_id}/pledges"), ("POST", "/v1/loans/{loan_id}/releases"), ("POST", "/v1/rulesets"),
    }
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert ("200" in responses or "201" in responses) and "422" in responses, (method, path)
            assert responses["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"}, (method, path)
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
