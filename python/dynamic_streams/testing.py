"""pytest fixtures that give each test a fresh, empty event store.

Enable them in your own suite with ``pytest_plugins = ["dynamic_streams.testing"]`` in
``conftest.py`` (or ``-p dynamic_streams.testing``). The database comes from the
``DYNAMIC_STREAMS_DSN`` environment variable; without it, one embedded PostgreSQL server
(the ``embedded`` extra) is started for the whole test session. Each test gets its own
table, dropped afterwards.

Fixtures: ``event_store_dsn`` (session), ``event_store_table``, ``event_store``,
``async_event_store``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from dynamic_streams.store import DSN_ENV, AsyncEventStore, EventStore

__all__ = ["async_event_store", "event_store", "event_store_dsn", "event_store_table"]


@pytest.fixture(scope="session")
def event_store_dsn() -> Iterator[str]:
    """The DSN of the test database: ``DYNAMIC_STREAMS_DSN``, else an embedded server."""
    dsn = os.environ.get(DSN_ENV)
    if dsn:
        yield dsn
        return
    from dynamic_streams.embedded import EmbeddedPostgres

    with EmbeddedPostgres() as server:
        yield server.dsn


@pytest.fixture
def event_store_table(event_store_dsn: str) -> Iterator[str]:
    """A fresh table name with its schema created; the table is dropped after the test."""
    table = f"events_{uuid.uuid4().hex[:16]}"
    with EventStore(event_store_dsn, table=table) as store:
        store.create_schema()
        yield table
        store._native.drop_table()


@pytest.fixture
def event_store(event_store_dsn: str, event_store_table: str) -> Iterator[EventStore]:
    """An :class:`EventStore` on a fresh table."""
    with EventStore(event_store_dsn, table=event_store_table) as store:
        yield store


@pytest.fixture
def async_event_store(event_store_dsn: str, event_store_table: str) -> Iterator[AsyncEventStore]:
    """An :class:`AsyncEventStore` on a fresh table (usable from any event loop)."""
    store = AsyncEventStore(event_store_dsn, table=event_store_table)
    yield store
    store.close()
