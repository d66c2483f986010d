"""Shared fixtures: the behaviour suite runs every assertion against both stores.

``store`` is an :class:`EventStore`, or an :class:`AsyncEventStore` driven through its own
event loop behind the same synchronous surface, so one test body checks both.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from dynamic_streams import AsyncEventStore, EventStore


async def drain(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


def sessions(dsn: str, application_name: str) -> int:
    """The server's sessions of that application name (a store's, when its DSN sets one)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def until_no_sessions(dsn: str, application_name: str, within: float) -> None:
    """Waits up to `within` seconds for those sessions to end (the server ends a session a
    moment after its client closed the socket), and fails if they did not."""
    deadline = time.monotonic() + within
    while sessions(dsn, application_name) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sessions(dsn, application_name) == 0, "the store's sessions did not end"


class AsyncDriven:
    """Runs an AsyncEventStore's coroutines to completion on a private event loop, behind
    the synchronous store's method names."""

    def __init__(self, store: AsyncEventStore) -> None:
        self.inner = store
        self.loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not callable(method):
            return method

        def driven(*args: Any, **kw: Any) -> Any:
            result = method(*args, **kw)
            if inspect.iscoroutine(result):
                return self.loop.run_until_complete(result)
            if inspect.isasyncgen(result):
                # A read's events are drained into a list.
                return self.loop.run_until_complete(drain(result))
            return result

        return driven

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
