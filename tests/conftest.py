"""Shared pytest fixtures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from services import (
    MissingBinary,
    MosquittoInstance,
    PostgresInstance,
    skip_or_fail,
    start_mosquitto,
    start_postgres,
)


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoInstance]:
    """A fresh anonymous broker per test, so no retained messages or sessions leak between tests."""
    try:
        broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    except MissingBinary as error:
        skip_or_fail(error)
    with broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresInstance]:
    """One private server per session: initdb costs seconds, a database costs milliseconds."""
    try:
        server = start_postgres(tmp_path_factory.mktemp("postgres"))
    except MissingBinary as error:
        skip_or_fail(error)
    with server:
        yield server


@pytest.fixture
def postgres_dsn(postgres_server: PostgresInstance) -> Iterator[str]:
    """DSN of a fresh, empty database per test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    dsn = postgres_server.create_database(name)
    try:
        yield dsn
    finally:
        postgres_server.drop_database(name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the dashboard tests last. Their recorded runs (a 24 h `medium` day among them) start in
    other processes when those modules are collected; on two cores the rest of the suite runs
    beside the recording instead of waiting for it."""
    items.sort(key=lambda item: item.path.name.startswith("test_dash_"))
