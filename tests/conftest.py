"""Shared fixtures: the behaviour suite runs every assertion against both stores.

``store`` is an :class:`EventStore`, or an :class:`AsyncEventStore` driven through its own
event loop behind the same synchronous surface, so one test body checks both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from dynamic_streams import AsyncEventStore, Event, EventFilter, EventStore, QueryResult


class AsyncDriven:
    """Runs an AsyncEventStore's coroutines to completion on a private event loop."""

    def __init__(self, store: AsyncEventStore) -> None:
        self.inner = store
        self.loop = asyncio.new_event_loop()

    def query(self, filter: EventFilter, **kw: Any) -> QueryResult:
        return self.loop.run_until_complete(self.inner.query(filter, **kw))

    def append(self, filter: EventFilter, expected: int, *events: Event, **kw: Any) -> list[int]:
        return self.loop.run_until_complete(self.inner.append(filter, expected, *events, **kw))

    def create_schema(self, **kw: Any) -> None:
        self.loop.run_until_complete(self.inner.create_schema(**kw))

    def close(self) -> None:
        self.inner.close()
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def store(
    request: pytest.FixtureRequest, event_store_dsn: str, event_store_table: str
) -> Iterator[Any]:
    if request.param == "sync":
        with EventStore(event_store_dsn, table=event_store_table) as s:
            yield s
    else:
        driven = AsyncDriven(AsyncEventStore(event_store_dsn, table=event_store_table))
        yield driven
        driven.close()
