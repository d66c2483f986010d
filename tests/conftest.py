"""Shared fixtures: the behaviour suite runs every assertion against both stores.

``store`` is an :class:`EventStore`, or an :class:`AsyncEventStore` driven through its own
event loop behind the same synchronous surface, so one test body checks both.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from dynamic_streams import AsyncEventStore, EventStore


async def drain(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


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
