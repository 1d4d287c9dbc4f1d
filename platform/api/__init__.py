"""The bank-facing REST API (FastAPI, OpenAPI) over a running cloud service and its ledger."""
