"""Alembic migrations of the cloud store, run in code by `store.migrate`."""
