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
